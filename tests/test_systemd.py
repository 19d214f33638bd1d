"""systemd integration (issue 6): socket activation and `sd_notify`, as systemd does them.

The test plays systemd: it binds the listening sockets itself and starts ferrule with them at
fds 3, 4, ... and `LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES` set (through a small exec wrapper,
because `LISTEN_PID` must be ferrule's own pid), and it owns the `NOTIFY_SOCKET` datagram
socket and reads what ferrule says on it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import Server, UnixHTTPConnection, ferrule_env

# The wrapper systemd is in these tests: move the inherited sockets (argv[1], comma-separated
# fd numbers) to 3, 4, ..., set LISTEN_PID to its own pid, which exec keeps, and exec ferrule.
ACTIVATE = textwrap.dedent(
    """
    import fcntl, os, sys
    fds = [int(fd) for fd in sys.argv[1].split(",") if fd]
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
    for fd in fds:
        os.close(fd)
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i)  # dup2 leaves the copy inheritable
        os.close(fd)
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ.setdefault("LISTEN_FDS", str(len(fds)))
    os.execv(sys.executable, [sys.executable, "-m", "ferrule", *sys.argv[2:]])
    """
)

# An application that shows what it and the processes it starts see of systemd's variables.
ENVAPP = textwrap.dedent(
    """
    import json, os, subprocess

    NAMES = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC"]

    def application(environ, start_response):
        out = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout
        child = {line.split("=", 1)[0] for line in out.splitlines()}
        seen = {
            "os.environ": [n for n in NAMES if n in os.environ],
            "child": [n for n in NAMES if n in child],
        }
        body = json.dumps(seen).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    """
)


def activate(
    sockets: list[socket.socket],
    args: list[str],
    env: dict | None = None,
    expect_ready: bool = True,
) -> Server:
    """Start ferrule as systemd would with `sockets` passed (fds 3, 4, ...)."""
    fds = [s.fileno() for s in sockets]
    proc = subprocess.Popen(
        [sys.executable, "-c", ACTIVATE, ",".join(map(str, fds)), *args],
        pass_fds=fds,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=ferrule_env(env),
        text=True,
        errors="replace",
    )
    server = Server(proc)
    if expect_ready and not server.wait_ready(60):
        proc.kill()
        proc.wait()
        raise AssertionError("ferrule did not become ready:\n" + "".join(server.lines))
    return server


@pytest.fixture
def activated():
    """activated(sockets, args, ...) -> Server; whatever is left is killed at teardown."""
    servers: list[Server] = []

    def _activated(*a, **kw) -> Server:
        server = activate(*a, **kw)
        servers.append(server)
        return server

    yield _activated
    for s in servers:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def tcp_listener() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def unix_listener(path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(16)
    return s


def get(conn, path: str = "/") -> tuple[int, bytes]:
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def tcp_get(sock: socket.socket, path: str = "/") -> tuple[int, bytes]:
    host, port = sock.getsockname()
    return get(http.client.HTTPConnection(host, port, timeout=30), path)


# -- socket activation -------------------------------------------------------------------------


def test_activated_sockets_are_served_instead_of_bind(activated, tmp_path):
    app_tcp, app_unix = tcp_listener(), unix_listener(tmp_path / "app.sock")
    stats = tcp_listener()
    not_bound = tmp_path / "not-bound.sock"
    with app_tcp, app_unix, stats:
        server = activated(
            [app_tcp, app_unix, stats],
            [
                "--bind",
                f"unix:{not_bound}",
                "--stats-bind",
                f"unix:{tmp_path / 'nor.sock'}",
                "echo",
            ],
            env={"LISTEN_FDNAMES": "ferrule.socket:ferrule.socket:stats"},
        )
        host, port = app_tcp.getsockname()
        assert server.urls == [f"http://{host}:{port}", f"unix:{tmp_path / 'app.sock'}"]
        server.wait_for_output(rf"Statistics at: http://127\.0\.0\.1:{stats.getsockname()[1]}")
        assert not not_bound.exists() and not (tmp_path / "nor.sock").exists()

        status, body = tcp_get(app_tcp, "/hello")
        assert status == 200 and json.loads(body)["environ"]["PATH_INFO"] == "/hello"
        status, body = get(UnixHTTPConnection(str(tmp_path / "app.sock")), "/there")
        assert status == 200 and json.loads(body)["environ"]["PATH_INFO"] == "/there"
        status, body = tcp_get(stats, "/metrics")
        assert status == 200 and b"ferrule_" in body

        assert server.stop() == 0
        # The socket file is systemd's (here the test's): ferrule leaves it in place.
        assert (tmp_path / "app.sock").exists()


def test_activation_variables_are_not_handed_on(activated, tmp_path):
    (tmp_path / "envapp.py").write_text(ENVAPP)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    with tcp_listener() as app, notify:
        activated(
            [app],
            ["--pythonpath", str(tmp_path), "envapp"],
            env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "60000000"},
        )
        status, body = tcp_get(app)
        assert status == 200, body
        assert json.loads(body) == {"os.environ": [], "child": []}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LISTEN_FDS": "two"}, "invalid value 'two' for LISTEN_FDS"),
        ({"LISTEN_FDS": "2"}, "cannot listen on inherited fd 4: the descriptor is not open"),
        (
            {"LISTEN_FDNAMES": "app:stats"},
            "invalid value 'app:stats' for LISTEN_FDNAMES: 2 names for LISTEN_FDS=1",
        ),
        ({"LISTEN_FDNAMES": "stats"}, "systemd passed no socket for the application, only 'stats'"),
    ],
)
def test_bad_activation_is_a_usage_error(activated, env, message):
    with tcp_listener() as app:
        server = activated([app], ["echo"], env=env, expect_ready=False)
        assert server.proc.wait(60) == 2
        out = server.output()
        assert f"error: socket activation: {message}" in out, out
        assert "Listening at" not in out


def test_a_datagram_socket_is_refused(activated):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        server = activated([udp], ["echo"], expect_ready=False)
        assert server.proc.wait(60) == 2
        assert "inherited fd 3: it is not a stream socket" in server.output()


# -- sd_notify ---------------------------------------------------------------------------------


class Manager:
    """The service manager's end of NOTIFY_SOCKET: a datagram socket the test owns."""

    def __init__(self, address: str, bind_to: str | bytes):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind_to)
        self.received: list[str] = []

    def expect(self, prefix: str, timeout: float = 30) -> str:
        """The next message starting with `prefix`, skipping others (kept in `received`)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            self.received.append(message)
            if message.startswith(prefix):
                return message
        raise AssertionError(f"no {prefix!r} message; received {self.received}")


@pytest.fixture(params=["path", "abstract"])
def manager(request, tmp_path):
    if request.param == "path":
        path = str(tmp_path / "notify")
        m = Manager(path, path)
    else:
        name = f"ferrule-test-notify-{os.getpid()}-{time.monotonic_ns()}"
        m = Manager(f"@{name}", b"\0" + name.encode())
    with m.sock:
        yield m


def test_notify_ready_status_watchdog_reloading_stopping(manager, launched):
    # A short watchdog (0.2 s, so a keep-alive every 0.1 s) to see WATCHDOG=1 soon; nothing
    # here measures the interval.
    server = launched(
        ["--bind", "127.0.0.1:0", "echo"],
        env={"NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": "200000"},
    )
    assert manager.expect("READY=1") == "READY=1"
    status = manager.expect("STATUS=")
    assert "requests/s" in status and "threads busy" in status, status
    manager.expect("WATCHDOG=1")

    server.proc.send_signal(signal.SIGHUP)
    reloading = manager.expect("RELOADING=1")
    assert reloading.split("\n")[1].startswith("MONOTONIC_USEC="), reloading
    int(reloading.split("=")[-1])
    manager.expect("READY=1")

    server.proc.send_signal(signal.SIGTERM)
    manager.expect("STOPPING=1")
    assert server.proc.wait(30) == 0


def test_watchdog_for_another_process_is_not_ours(tmp_path, launched):
    path = str(tmp_path / "notify")
    manager = Manager(path, path)
    with manager.sock:
        server = launched(
            ["--bind", "127.0.0.1:0", "echo"],
            env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"},
        )
        manager.expect("READY=1")
        manager.expect("STATUS=")
        server.proc.send_signal(signal.SIGTERM)
        manager.expect("STOPPING=1")
        assert server.proc.wait(30) == 0
        assert "WATCHDOG=1" not in manager.received


def test_a_notify_socket_nobody_reads_does_not_stop_the_server(tmp_path, launched):
    server = launched(
        ["--bind", "127.0.0.1:0", "echo"],
        env={"NOTIFY_SOCKET": str(tmp_path / "nobody"), "WATCHDOG_USEC": "200000"},
    )
    resp, _ = server.request("GET", "/")
    assert resp.status == 200
    assert server.stop() == 0
