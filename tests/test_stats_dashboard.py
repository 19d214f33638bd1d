"""The statistics dashboard (issue 5) as a person sees it: the admin listener's `/` opened in
headless Chromium (tests/browser.py) after a few seconds of mixed traffic.

It must load without a console error, draw its charts as inline SVG with the traffic in them
(the request-rate line has points, and its colour is on the screenshot), list the views, ask
for nothing outside the admin listener (it works offline), run no script, and refresh itself.

Chromium is Debian's `chromium` package, which CI installs (.ci/run); on a machine without it
these tests are skipped, except under CI where that is a failure.
"""

from __future__ import annotations

import os
import re
import threading
import time

import pytest
from browser import Browser, chromium_path, count_pixels
from helpers import wait_until
from stats_helpers import Admin, free_port

if chromium_path() is None:
    if os.environ.get("CI"):
        raise RuntimeError("chromium is not installed: .ci/run should have installed it")
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

TRAFFIC_SECONDS = 6
MIX = ["/work", "/wait", "/api/users", "/status/503", "/big", "/label/checkout", "/both"]
LABELS = ["/work", "/wait", "/api", "/status", "/big", "checkout", "/both"]


def send_traffic(server, seconds: float, workers: int = 4) -> int:
    """The MIX round and round from `workers` threads for `seconds`; how many were sent.
    Bounded in time, so it stops by itself."""
    deadline = time.monotonic() + seconds
    sent = []

    def loop(offset: int) -> None:
        i = offset
        while time.monotonic() < deadline:
            resp, _ = server.request("GET", MIX[i % len(MIX)])
            assert resp.status in (200, 503)
            sent.append(1)
            i += 1

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    return len(sent)


@pytest.fixture(scope="module")
def dashboard():
    """(server, admin, page, screenshot) with the dashboard loaded after the traffic; one
    browser and one server for the module, stopped at the end."""
    from conftest import start

    admin = Admin(f"127.0.0.1:{free_port()}")
    server = start(["--bind", "127.0.0.1:0", "--stats-bind", admin.bind, "statsapp"])
    browser = None
    try:
        assert send_traffic(server, TRAFFIC_SECONDS) > 20
        # The last second must be over for the timeline to hold it.
        wait_until(
            lambda: len(admin.snapshot()["seconds"]) >= TRAFFIC_SECONDS - 1,
            20,
            interval=0.2,
            what="the timeline to have the traffic's seconds",
        )
        browser = Browser(width=1400, height=2000)
        page = browser.page()
        page.open(admin.origin + "/")
        page.settle(1.0)
        yield server, admin, page, page.screenshot()
        page.close()
    finally:
        if browser is not None:
            browser.close()
        server.stop()


def test_the_page_loads_without_console_errors(dashboard):
    _, _, page, _ = dashboard
    assert page.errors == [], page.errors
    assert page.evaluate("document.readyState") == "complete"
    assert page.evaluate("document.title")


def test_the_page_asks_for_nothing_beyond_the_admin_listener(dashboard):
    _, admin, page, _ = dashboard
    assert page.requests, "no request was seen"
    strangers = [
        u for u in page.requests if not (u.startswith(admin.origin + "/") or u.startswith("data:"))
    ]
    assert strangers == [], strangers
    # No script at all: the charts are drawn by the server.
    assert page.evaluate("document.scripts.length") == 0
    assert page.evaluate("document.querySelectorAll('link[rel=stylesheet]').length") == 0


def test_the_charts_are_inline_svg_with_data(dashboard):
    _, _, page, _ = dashboard
    assert page.evaluate("document.querySelectorAll('svg').length") >= 3
    points = page.evaluate(
        "Array.from(document.querySelectorAll('svg .series.rate'))"
        ".map(e => e.points ? e.points.numberOfItems : 0)"
    )
    assert points, "no element with class 'series rate' in an SVG"
    assert max(points) >= TRAFFIC_SECONDS - 1, points
    # A line with data is not flat: its points have different heights.
    ys = page.evaluate(
        "(pl => Array.from({length: pl.numberOfItems}, (_, i) => pl.getItem(i).y))"
        "(document.querySelector('svg .series.rate').points)"
    )
    assert len(set(ys)) > 1, ys


def test_the_rate_line_is_drawn(dashboard, tmp_path):
    _, _, page, shot = dashboard
    stroke = page.evaluate("getComputedStyle(document.querySelector('svg .series.rate')).stroke")
    m = re.fullmatch(r"rgba?\((\d+), (\d+), (\d+)(?:, [\d.]+)?\)", stroke or "")
    assert m, f"the rate line has no plain colour: {stroke!r}"
    rgb = tuple(int(x) for x in m.groups())
    assert rgb != (255, 255, 255), "the rate line is white"
    (tmp_path / "dashboard.png").write_bytes(shot)
    # Anti-aliasing blends the line's edges; its core keeps the colour within a few levels.
    pixels = count_pixels(shot, rgb, tolerance=12)
    assert pixels >= 150, f"only {pixels} pixels of the rate colour {rgb}; see {tmp_path}"


def test_the_page_lists_the_views(dashboard):
    _, _, page, _ = dashboard
    text = page.evaluate("document.body.innerText")
    missing = [label for label in LABELS if label not in text]
    assert missing == [], f"views not on the page: {missing}"


def test_the_page_refreshes_itself(dashboard):
    _, admin, page, _ = dashboard
    content = page.evaluate(
        "(document.querySelector('meta[http-equiv=refresh i]') || {}).content || null"
    )
    assert content, "no <meta http-equiv=refresh>"
    seconds = float(re.match(r"\s*(\d+(?:\.\d+)?)", content).group(1))
    assert 1 <= seconds <= 60, content
    since = len(page.events)
    page.wait_event("Page.loadEventFired", timeout=seconds + 20, since=since)
    assert page.errors == [], page.errors
