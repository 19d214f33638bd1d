"""A live ferrule process per test, over TCP or a Unix socket.

`serve(app, *args)` starts `python -m ferrule`, waits for its readiness line on stderr (no
sleeps), and returns a `Server` whose `request()` speaks HTTP/1.1 over the right socket.
The `transport` fixture parametrizes a test over "tcp" and "unix".
"""

from __future__ import annotations

import http.client
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
READY = re.compile(r"Ready to accept requests")
LISTENING = re.compile(r"Listening at: (\S+)")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class Server:
    """A running ferrule process and what it printed."""

    def __init__(self, proc: subprocess.Popen, urls: list[str] | None = None):
        self.proc = proc
        self.urls = urls if urls is not None else []
        self.lines: list[str] = []
        self._lines_q: queue.Queue[str | None] = queue.Queue()
        self._ended = False
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self._lines_q.put(line)
        self._lines_q.put(None)

    def wait_ready(self, timeout: float = 60) -> bool:
        """Read output until the readiness line, noting each `Listening at:` URL. False if
        the process ended or went quiet first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines_q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return False
            if line is None:
                return False
            self.lines.append(line)
            if m := LISTENING.search(line):
                self.urls.append(m.group(1))
            if READY.search(line):
                return True
        return False

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def is_unix(self) -> bool:
        return self.url.startswith("unix:")

    @property
    def address(self):
        """(host, port) for TCP, a path for Unix."""
        if self.is_unix:
            return self.url[len("unix:") :]
        m = re.match(r"https?://\[?([^\]]+?)\]?:(\d+)$", self.url)
        assert m, self.url
        return (m.group(1), int(m.group(2)))

    def connect(self, timeout: float = 30) -> socket.socket:
        """A raw connected socket."""
        if self.is_unix:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            s = socket.socket(socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET)
        s.settimeout(timeout)
        s.connect(self.address)
        return s

    def connection(self, timeout: float = 30) -> http.client.HTTPConnection:
        if self.is_unix:
            return UnixHTTPConnection(self.address, timeout=timeout)
        host, port = self.address
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def request(self, method: str = "GET", path: str = "/", body=None, headers=None):
        """One request on a fresh connection; returns (response, body bytes)."""
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp, data
        finally:
            conn.close()

    def raw(self, data: bytes, timeout: float = 10) -> bytes:
        """Send raw bytes, return everything received until the server closes or goes quiet."""
        s = self.connect(timeout)
        try:
            s.sendall(data)
            chunks = []
            while True:
                try:
                    chunk = s.recv(65536)
                except (TimeoutError, ConnectionResetError):
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            s.close()

    def output(self) -> str:
        """Everything the server printed so far (stderr and stdout); once the process has
        exited, everything it printed (the reader is given time to reach the end)."""
        if self.proc.poll() is not None and not self._ended:
            # Exited: its last lines may still be in the pipe (or in processes it started,
            # which hold the pipe open; hence the bound, waited once).
            self.pump.join(timeout=10)
            self._ended = True
        while True:
            try:
                line = self._lines_q.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return "".join(self.lines)

    def wait_for_output(self, pattern: str, timeout: float = 10) -> re.Match:
        """Block until a printed line matches `pattern` (a regex)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if m := rx.search(line):
                return m
        while time.monotonic() < deadline:
            try:
                line = self._lines_q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if m := rx.search(line):
                return m
        raise AssertionError(f"no line matching {pattern!r} in output:\n{''.join(self.lines)}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.output()


def ferrule_env(extra: dict | None = None) -> dict:
    """The environment a test server runs in: the fixture apps importable, output unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS / "apps"), str(TESTS)] + ([env["PYTHONPATH"]] if "PYTHONPATH" in env else [])
    )
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def start(
    args: list[str],
    env: dict | None = None,
    cwd=None,
    expect_ready: bool = True,
    timeout: float = 60,
) -> Server:
    """Start `python -m ferrule ARGS` and wait for its readiness line."""
    return start_command(
        [sys.executable, "-m", "ferrule", *args],
        ferrule_env(env),
        cwd=cwd,
        expect_ready=expect_ready,
        timeout=timeout,
    )


def start_command(
    argv: list[str], env: dict, cwd=None, expect_ready: bool = True, timeout: float = 60
) -> Server:
    """Start a server command (`python -m ferrule`, `manage.py server`) with exactly `env`,
    and wait for its readiness line."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        text=True,
        errors="replace",
    )
    server = Server(proc)
    if not expect_ready or server.wait_ready(timeout):
        return server
    proc.kill()
    proc.wait()
    raise AssertionError(f"{argv[1]} did not become ready:\n" + "".join(server.lines))


@pytest.fixture(params=["tcp", "unix"])
def transport(request) -> str:
    return request.param


@pytest.fixture
def launched():
    """launch(args, **kw) -> Server, started with `start()`; whatever is left is killed at
    teardown."""
    servers: list[Server] = []

    def _launch(args: list[str], **kw) -> Server:
        server = start(args, **kw)
        servers.append(server)
        return server

    yield _launch
    for s in servers:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


@pytest.fixture
def serve(transport, tmp_path, launched):
    """serve(app, *args, env=None) -> Server bound to port 0 or a Unix socket in tmp_path."""

    def _serve(app: str | None, *args: str, env: dict | None = None, cwd=None) -> Server:
        bind = "127.0.0.1:0" if transport == "tcp" else f"unix:{tmp_path / 'ferrule.sock'}"
        argv = ["--bind", bind, *args] + ([app] if app else [])
        return launched(argv, env=env, cwd=cwd)

    return _serve


@pytest.fixture(scope="module")
def shared_servers(tmp_path_factory):
    """get(transport, app, *args, env=None) -> Server: one server per transport, app, options
    and environment for the whole module, started on first use. Each must still be running
    after the module's last test (a test that crashed it fails there); then it is killed."""
    running: dict[tuple, Server] = {}

    def get(transport: str, app: str, *args: str, env: dict | None = None) -> Server:
        key = (transport, app, args, tuple(sorted((env or {}).items())))
        if key not in running:
            if transport == "tcp":
                bind = "127.0.0.1:0"
            else:
                bind = f"unix:{tmp_path_factory.mktemp('shared') / 'ferrule.sock'}"
            running[key] = start(["--bind", bind, *args, app], env=env)
        return running[key]

    yield get
    exited = {key: s for key, s in running.items() if s.proc.poll() is not None}
    for s in running.values():
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
    assert not exited, "shared servers exited before the module's end:\n" + "\n".join(
        f"{key}: exit {s.proc.returncode}\n{s.output()}" for key, s in exited.items()
    )


@pytest.fixture
def shared(transport, shared_servers):
    """shared(app, *args, env=None) -> Server: as `serve`, but one server for every test of
    the module that asks for the same app, options and environment over the same transport.

    Only for tests that leave the server as they found it: every request they make ends (no
    connection, thread or file left held), they change nothing it serves or counts, and they
    look in its output only for lines that their own requests print."""

    def _shared(app: str, *args: str, env: dict | None = None) -> Server:
        return shared_servers(transport, app, *args, env=env)

    return _shared


@pytest.fixture
def statsapp(serve, transport, tmp_path):
    """statsapp(*args, bind=None, env=None) -> (Server, Admin): the statistics fixture app with
    the admin listener on the transport's kind of socket (or at `bind`)."""
    from stats_helpers import Admin, admin_bind

    def _start(*args: str, bind: str | None = None, env: dict | None = None):
        bind = bind or admin_bind(transport, tmp_path)
        server = serve("statsapp", "--stats-bind", bind, *args, env=env)
        return server, Admin(bind)

    return _start
