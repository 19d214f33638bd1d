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
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT, Server, UnixHTTPConnection, ferrule_env
from helpers import free_port

DOC = ROOT / "docs" / "deploy-systemd.md"
# The virtualenv's `ferrule` script, standing for /srv/mysite/.venv/bin/ferrule.
FERRULE = str(Path(sys.executable).parent / "ferrule")

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


# -- docs/deploy-systemd.md --------------------------------------------------------------------


def doc_unit(name: str) -> str:
    """The unit file of docs/deploy-systemd.md whose first line is `# test: NAME`, with the
    virtualenv's `ferrule` for /srv/mysite's."""
    for block in re.findall(r"```ini\n(.*?)```", DOC.read_text(), re.S):
        first, _, rest = block.partition("\n")
        if first.strip() == f"# test: {name}":
            return rest.replace("/srv/mysite/.venv/bin/ferrule", FERRULE)
    raise AssertionError(f"docs/deploy-systemd.md has no block marked '# test: {name}'")


def unit_values(unit: str, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", unit, re.M)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_the_unit_files_pass_systemd_analyze_verify(tmp_path):
    units = {
        "mysite.socket": doc_unit("socket"),
        "mysite-stats.socket": doc_unit("stats-socket"),
        "mysite.service": doc_unit("service"),
        "mysite-plain.service": doc_unit("plain-service"),
    }
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    checked = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / n) for n in units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", (
        checked.stdout + checked.stderr
    )


@pytest.mark.skipif(
    not shutil.which("systemd-socket-activate"), reason="needs systemd-socket-activate"
)
def test_the_socket_activated_unit_under_systemd_socket_activate(tmp_path):
    """systemd's own tool passes the sockets of the page's two socket units to its service's
    ExecStart= (the application swapped for the echo fixture)."""
    app_stream = unit_values(doc_unit("socket"), "ListenStream")
    stats_unit = doc_unit("stats-socket")
    assert app_stream == ["/run/mysite.sock"]
    assert unit_values(stats_unit, "ListenStream") == ["127.0.0.1:9180"]
    assert unit_values(stats_unit, "FileDescriptorName") == ["stats"]
    service = doc_unit("service")
    [exec_start] = unit_values(service, "ExecStart")
    argv = [a if a != "mysite.wsgi:application" else "echo" for a in shlex.split(exec_start)]
    app_sock, stats_port = tmp_path / "mysite.sock", free_port()
    manager = Manager(str(tmp_path / "notify"), str(tmp_path / "notify"))
    env = ferrule_env({"NOTIFY_SOCKET": manager.address})
    passed = ["PYTHONPATH", "PYTHONUNBUFFERED", "NOTIFY_SOCKET", "PATH"]
    proc = subprocess.Popen(
        [
            "systemd-socket-activate",
            f"--listen={app_sock}",
            f"--listen=127.0.0.1:{stats_port}",
            # Without FileDescriptorName=, systemd names a socket after its unit.
            "--fdname=mysite.socket:stats",
            *(f"--setenv={name}" for name in passed),
            *argv,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        errors="replace",
    )
    server = Server(proc)
    try:
        with manager.sock:
            server.wait_for_output(r"Listening on 127\.0\.0\.1:\d+ as 4")
            # The first connection starts the service (systemd-socket-activate execs it).
            status, body = get(UnixHTTPConnection(str(app_sock), timeout=60), "/first")
            assert status == 200 and json.loads(body)["environ"]["PATH_INFO"] == "/first"
            manager.expect("READY=1")
            server.wait_for_output(rf"Listening at: unix:{re.escape(str(app_sock))}")
            server.wait_for_output(rf"Statistics at: http://127\.0\.0\.1:{stats_port}")
            status, body = get(
                http.client.HTTPConnection("127.0.0.1", stats_port, timeout=30), "/metrics"
            )
            assert status == 200 and b"ferrule_" in body
            proc.send_signal(signal.SIGTERM)
            manager.expect("STOPPING=1")
            assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
