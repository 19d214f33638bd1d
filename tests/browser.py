"""Headless Chromium over the DevTools protocol, for tests that look at a page as a person would.

`Browser()` starts Debian's `chromium --headless=new` with its own profile in a temporary
directory and `--remote-debugging-port=0`, reads the port it chose from
`PROFILE/DevToolsActivePort`, and talks to one page target over a websocket. A `Page` opens a
URL and waits for its load event, and meanwhile collects what a developer would see in the
console (errors, uncaught exceptions, failed loads) and every URL the page requested.
`screenshot()` returns a PNG; `count_pixels()` counts the pixels of one colour in it.

`close()` (or leaving the `with` block) kills the browser's whole process group and removes
its profile: no Chromium outlives a test.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import websocket

# How long Chromium may take to start, and a page to load. Generous: the machine is shared;
# a broken page fails by exceeding them, not a slow machine.
START_TIMEOUT = 30
LOAD_TIMEOUT = 30


def chromium_path() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_or_skip(width: int, height: int):
    """A `Browser` for a module fixture to yield; the module's tests are skipped where
    Chromium is not installed — an error under CI, where .ci/run installs it."""
    if chromium_path() is None:
        if os.environ.get("CI"):
            raise RuntimeError("chromium is not installed: .ci/run should have installed it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return Browser(width=width, height=height)


class BrowserError(Exception):
    """Chromium did not start, or did not answer as the protocol says."""


class Browser:
    """One headless Chromium process; `page()` opens a tab in it."""

    def __init__(self, width: int = 1400, height: int = 2000, scrollbars: bool = False):
        """`scrollbars`: draw them, and let them take their width from the page as a
        desktop browser's do (hidden by default, so screenshots show only the page)."""
        binary = chromium_path()
        if binary is None:
            raise BrowserError("chromium is not installed (apt-get install chromium)")
        self.width, self.height = width, height
        self.profile = Path(tempfile.mkdtemp(prefix="ferrule-chromium-"))
        self.log_path = self.profile / "chromium.log"
        argv = [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
            "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        if not scrollbars:
            argv.insert(-1, "--hide-scrollbars")
        with open(self.log_path, "wb") as log:
            # A session (process group) of its own, so that close() reaches every helper
            # process Chromium starts (zygote, renderer, GPU, network service).
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.port = self._read_port()
        except BaseException:
            self.close()
            raise

    def _read_port(self) -> int:
        # Chromium writes the file once it listens; there is no event to wait on but the file.
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(
                    f"chromium exited with code {self.proc.returncode}:\n{self.log()}"
                )
            try:
                first = active.read_text().splitlines()[0]
            except (FileNotFoundError, IndexError):
                time.sleep(0.05)
                continue
            return int(first)
        raise BrowserError(
            f"chromium wrote no DevToolsActivePort in {START_TIMEOUT}s:\n{self.log()}"
        )

    def log(self) -> str:
        """What Chromium printed (its own diagnostics, not the page's console)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def page(self, width: int | None = None, height: int | None = None) -> Page:
        """A new tab showing about:blank, with a viewport of `width` × `height` (by default
        the browser's size): one browser can show a page at several screen widths."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT"
        )
        with urllib.request.urlopen(req, timeout=START_TIMEOUT) as resp:
            target = json.load(resp)
        return Page(target["webSocketDebuggerUrl"], width or self.width, height or self.height)

    def close(self) -> None:
        """Kill every Chromium process and remove the profile."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        # The helpers are reaped by init once their parent is gone; wait until the group is
        # empty, so that a test that ends here leaves no Chromium behind.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    """One tab, driven over its DevTools websocket.

    Commands are answered in order with the events that came before them; events are
    recorded as they pass: `errors` (console errors, uncaught exceptions, error log entries
    such as a failed resource load, and failed network loads) and `requests` (the URL of
    every request the page made).
    """

    def __init__(self, ws_url: str, width: int, height: int):
        # No Origin header: Chromium refuses DevTools connections from origins it was not
        # told to allow.
        self.ws = websocket.create_connection(ws_url, timeout=START_TIMEOUT, suppress_origin=True)
        self.next_id = 0
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    # -- the protocol ------------------------------------------------------------------------

    def _receive(self, timeout: float) -> dict:
        self.ws.settimeout(timeout)
        try:
            msg = json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException as e:
            raise TimeoutError from e
        except websocket.WebSocketConnectionClosedException as e:
            raise BrowserError(f"the page's DevTools connection closed: {e}") from e
        if "method" in msg:
            self._note(msg)
        return msg

    def _note(self, event: dict) -> None:
        self.events.append(event)
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(
                str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
            )
            self.errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"uncaught exception: {exc}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                where = entry.get("url", "")
                self.errors.append(f"{entry.get('source')}: {entry.get('text')} {where}".strip())
        elif method == "Network.loadingFailed":
            # A navigation (the page refreshing itself) cancels what is still loading: not
            # an error of the page.
            if not params.get("canceled"):
                self.errors.append(f"load failed: {params.get('errorText')}")
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])

    def call(self, method: str, timeout: float = LOAD_TIMEOUT, **params):
        """Send one command and return its result; events that arrive meanwhile are noted."""
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(
                    f"no answer to {method} within {timeout}s; last events {self.last_events()}"
                )
            try:
                msg = self._receive(left)
            except TimeoutError:
                continue
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise BrowserError(f"{method} failed: {msg['error']}")
                return msg.get("result", {})

    def wait_event(self, method: str, timeout: float = LOAD_TIMEOUT, since: int = 0) -> dict:
        """The first event named `method` among those noted from index `since` on, waiting
        for it if it has not come yet."""
        deadline = time.monotonic() + timeout
        seen = since
        while True:
            for event in self.events[seen:]:
                if event["method"] == method:
                    return event
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(
                    f"no {method} within {timeout}s; last events {self.last_events(since)}"
                )
            try:
                self._receive(left)
            except TimeoutError:
                continue

    def last_events(self, since: int = 0, count: int = 5) -> list[str]:
        """The names of the last `count` events noted from index `since` on."""
        return [event["method"] for event in self.events[since:][-count:]]

    def settle(self, seconds: float) -> None:
        """Take in events for `seconds` (late console errors, requests after load)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self._receive(left)
            except TimeoutError:
                break

    # -- what a test does --------------------------------------------------------------------

    def open(self, url: str, timeout: float = LOAD_TIMEOUT) -> None:
        """Navigate to `url` and wait for its load event."""
        since = len(self.events)
        result = self.call("Page.navigate", url=url, timeout=timeout)
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url} failed: {result['errorText']}")
        self.wait_event("Page.loadEventFired", timeout, since)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serializable values)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} raised: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        """A PNG of the viewport."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        return base64.b64decode(data)

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def count_pixels(
    png: bytes,
    rgb: tuple[int, int, int],
    tolerance: int = 0,
    box: tuple[int, int, int, int] | None = None,
) -> int:
    """How many pixels of the image are `rgb`, each channel within ±`tolerance`; only those
    inside `box` (left, top, right, bottom) if given."""
    from PIL import Image, ImageChops

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if box is not None:
        image = image.crop(box)
    mask = None
    for band, want in zip(image.split(), rgb, strict=True):
        lo, hi = want - tolerance, want + tolerance
        hit = band.point(lambda v, lo=lo, hi=hi: 255 if lo <= v <= hi else 0)
        mask = hit if mask is None else ImageChops.multiply(mask, hit)
    return mask.histogram()[255]
