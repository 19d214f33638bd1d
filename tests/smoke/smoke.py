"""Smoke test of an installed ferrule, against live servers over real sockets.

Run it with the interpreter of a virtualenv that has the ferrule wheel and Django installed:

    python tests/smoke/smoke.py

`make test-wheels` does, for every CPython 3.10-3.13 on the machine (tests/smoke/each_python.py);
the release workflow does, for each wheel it builds, on the runner that can run it.

On a copy of tests/smoke/site, in a temporary directory:
- `python manage.py server` serves a Django page;
- a static file from STATIC_ROOT, which only ferrule's core can have served (DEBUG is off);
- a saved view, served by the restarted worker (development reload, on by default);
- `ferrule hello:app` serves a plain WSGI app.

Servers bind port 0 and the port is read from their `Listening at:` line. Every wait has a
generous deadline and says what it last saw. Every server's process group is killed at the
end, also on failure; on failure, what the servers printed is shown.

Only the standard library, ferrule and Django: the smoke venvs have no pytest, so this keeps
its own small server runner instead of tests/conftest.py's.
"""

from __future__ import annotations

import http.client
import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SITE = Path(__file__).resolve().parent / "site"
# Seconds. Generous: the release runners and a loaded 2-core machine start Django slowly.
READY_DEADLINE = 90
RELOAD_DEADLINE = 90
STOP_DEADLINE = 30
REQUEST_TIMEOUT = 30

LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
READY = re.compile(r"Ready to accept requests")


class Failed(Exception):
    """A check that did not hold; the message says what was expected and what was seen."""


class Server:
    """A server command in its own process group, its output collected by a thread."""

    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str]):
        self.name = name
        self.lines: list[str] = []
        self.ended = False
        self.changed = threading.Condition()
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            # A group of its own, so that the master and its workers are killed together.
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def wait_for_line(self, pattern: re.Pattern[str], deadline: float, what: str) -> re.Match:
        """The first printed line matching `pattern`, waiting up to `deadline` seconds."""
        end = time.monotonic() + deadline
        seen = 0
        with self.changed:
            while True:
                for line in self.lines[seen:]:
                    if m := pattern.search(line):
                        return m
                seen = len(self.lines)
                left = end - time.monotonic()
                if self.ended or left <= 0:
                    state = "exited" if self.ended else f"still silent after {deadline}s"
                    last = self.lines[-1].strip() if self.lines else "(nothing)"
                    raise Failed(f"{self.name}: {state} before {what}; its last line: {last}")
                self.changed.wait(left)

    def start(self) -> int:
        """Wait for the readiness line; the port it listens on."""
        port = int(self.wait_for_line(LISTENING, READY_DEADLINE, "listening").group(1))
        self.wait_for_line(READY, READY_DEADLINE, "being ready")
        return port

    def stop(self) -> int | None:
        """SIGTERM to the group, then SIGKILL past the deadline; the exit code, None if killed."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                code = self.proc.wait(STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                continue
            if sig == signal.SIGTERM:
                # The workers may outlive a master that exited: no process of the group stays.
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return code
        return None

    def output(self) -> str:
        with self.changed:
            return "".join(self.lines)


def get(port: int, path: str) -> tuple[int, str, bytes]:
    """One GET on a fresh connection: status, Content-Type, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


def expect(port: int, path: str, body: bytes, content_type: str) -> None:
    status, ctype, got = get(port, path)
    if (status, got) != (200, body) or not ctype.startswith(content_type):
        raise Failed(
            f"GET {path}: wanted 200 {content_type} {body!r}, got {status} {ctype} {got[:200]!r}"
        )


def wait_until(check, deadline: float, what: str):
    """Poll `check`, which returns (done, what it saw), until done; on timeout, fail saying
    what it saw last."""
    end = time.monotonic() + deadline
    while True:
        ok, seen = check()
        if ok:
            return seen
        if time.monotonic() > end:
            raise Failed(f"timed out after {deadline}s waiting for {what}; last saw {seen!r}")
        time.sleep(0.1)


def save(path: Path, text: str) -> None:
    """Write as an editor does: a new file renamed over the old one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def check_django(site: Path, env: dict[str, str], servers: list[Server]) -> None:
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "collectstatic", "--noinput", "-v0"], cwd=site, env=env, check=True)
    server = Server("manage.py server", [*manage, "server", "127.0.0.1:0"], site, env)
    servers.append(server)
    port = server.start()

    expect(port, "/", b"hello from django", "text/plain")
    css = (site / "smokesite" / "static" / "smokesite" / "smoke.css").read_bytes()
    expect(port, "/static/smokesite/smoke.css", css, "text/css")

    views = site / "smokesite" / "views.py"
    save(views, views.read_text().replace("hello from django", "hello again, reloaded"))

    def reloaded():
        try:
            status, _, body = get(port, "/")
        except OSError as e:
            return False, repr(e)
        return (status, body) == (200, b"hello again, reloaded"), (status, body[:200])

    wait_until(reloaded, RELOAD_DEADLINE, "the saved view's new page")


def check_wsgi(site: Path, env: dict[str, str], servers: list[Server]) -> None:
    argv = [sys.executable, "-m", "ferrule", "--bind", "127.0.0.1:0", "hello:app"]
    server = Server("ferrule hello:app", argv, site, env)
    servers.append(server)
    expect(server.start(), "/", b"hello from wsgi", "text/plain")


def main() -> int:
    import django
    import ferrule

    # SIGTERM (each_python.py's deadline, a CI runner's cancel) unwinds through the `finally`
    # that stops the servers, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    where = Path(ferrule.__file__).parent
    about = (
        f"ferrule {importlib.metadata.version('ferrule')} from {where}, "
        f"Django {django.get_version()}, CPython {sys.version.split()[0]}"
    )
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="ferrule-smoke-") as tmp:
        site = Path(tmp) / "site"
        shutil.copytree(SITE, site, ignore=shutil.ignore_patterns("__pycache__", "collected"))
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        env.pop("DJANGO_SETTINGS_MODULE", None)
        try:
            check_django(site, env, servers)
            check_wsgi(site, env, servers)
        except (Failed, OSError, subprocess.CalledProcessError) as e:
            for server in servers:
                server.stop()
                print(f"--- {server.name} printed:\n{server.output()}", file=sys.stderr)
            print(f"smoke: FAILED: {e} ({about})", file=sys.stderr)
            return 1
        finally:
            codes = {server.name: server.stop() for server in servers}
    stopped = {name: code for name, code in codes.items() if code != 0}
    if stopped:
        print(f"smoke: FAILED: not stopped by SIGTERM with code 0: {stopped} ({about})")
        return 1
    print(f"smoke: ok: Django page, static file, reload, WSGI app ({about})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
