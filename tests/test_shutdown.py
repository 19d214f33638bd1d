"""Graceful shutdown against a live server: SIGTERM/SIGINT let in-flight requests finish,
refuse new connections, close idle ones, and give up after --graceful-timeout; a second
signal exits at once.

Every test runs over TCP and over a Unix socket (the `serve` fixture).
"""

import signal
import time

import pytest
from helpers import (
    Conn,
    Truncated,
    Unmet,
    build_request,
    host_header,
    try_connect,
    wait_until,
)


def refuses_connections(server) -> bool | Unmet:
    try:
        s = try_connect(server, timeout=2)
    except (ConnectionRefusedError, ConnectionResetError, FileNotFoundError):
        # A reset: the connection reached the backlog just as the listener closed.
        return True
    s.close()
    return Unmet(f"a connection to {server.url} was accepted")


def assert_cut_off(c: Conn) -> None:
    """A request a forced shutdown reached: cancelled (issue 4), its client gets 503 if the
    answer makes it out before the process exits, else a cut connection."""
    try:
        resp = c.read_response()
    except (Truncated, ConnectionResetError, TimeoutError):
        return
    assert resp.status == 503, (resp.status, resp.body)


def start_slow(server, seconds: float, tag: str) -> Conn:
    """A connection with a slow request in flight (the app has started running it)."""
    c = Conn(server, timeout=max(30, seconds + 10))
    c.send(build_request("GET", f"/?s={seconds}&tag={tag}", host=host_header(server)))
    server.wait_for_output(f"slow started tag={tag}")
    return c


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_in_flight_request_completes_then_exit_0(serve, sig):
    server = serve("slow:app")
    with start_slow(server, 2, "inflight") as c:
        server.proc.send_signal(sig)
        resp = c.read_response()
        assert (resp.status, resp.body) == (200, b"slept 2")
        # A connection that was busy at the signal is not kept alive afterwards.
        assert c.closed_by_server(timeout=5)
    assert server.proc.wait(timeout=10) == 0


def test_in_flight_stream_is_sent_to_the_end(serve):
    server = serve("stream:app")
    with Conn(server, timeout=15) as c:
        c.send(
            build_request("GET", "/?n=4&size=1000&delay=0.5&tag=drain", host=host_header(server))
        )
        assert c.read_head().status == 200
        assert c.read_chunk() == b"A" * 1000
        server.proc.send_signal(signal.SIGTERM)
        rest = b"".join(iter(c.read_chunk, b""))
    assert rest == b"B" * 1000 + b"C" * 1000 + b"D" * 1000
    assert server.proc.wait(timeout=10) == 0
    server.wait_for_output(r"stream close\(\) called tag=drain")


def start_held(server, gate, tag: str) -> Conn:
    """A connection with a request in flight that runs until the file `gate` exists."""
    c = Conn(server, timeout=30)
    c.send(build_request("GET", f"/?gate={gate}&tag={tag}", host=host_header(server)))
    server.wait_for_output(f"slow started tag={tag}")
    return c


def test_new_connections_are_refused_after_the_signal(serve, tmp_path):
    server = serve("slow:app")
    gate = tmp_path / "gate"
    with start_held(server, gate, "busy") as c:
        server.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: refuses_connections(server), timeout=3, what="connections refused")
        assert "slow finished tag=busy" not in server.output()
        gate.touch()
        resp = c.read_response()
        assert (resp.status, resp.body) == (200, b"passed")
    assert server.proc.wait(timeout=10) == 0


def test_idle_keep_alive_connections_are_closed_at_the_signal(serve, tmp_path):
    server = serve("slow:app")
    gate = tmp_path / "gate"
    with Conn(server) as idle:
        assert idle.request("GET", "/?s=0&tag=warmup").status == 200
        with start_held(server, gate, "busy") as busy:
            server.proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            assert idle.closed_by_server(timeout=3), "idle connection left open"
            assert time.monotonic() - t0 < 3
            assert "slow finished tag=busy" not in server.output()
            gate.touch()
            assert busy.read_response().status == 200
    assert server.proc.wait(timeout=10) == 0


def test_idle_server_exits_0_on_sigterm(serve):
    server = serve("echo:app")
    assert server.request("GET", "/")[0].status == 200
    t0 = time.monotonic()
    assert server.stop(signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_exits_at_once(serve, second):
    server = serve("slow:app", "--graceful-timeout", "60")
    with start_slow(server, 30, "stuck") as c:
        server.proc.send_signal(signal.SIGTERM)
        # The first signal has been handled once the listener is gone.
        wait_until(lambda: refuses_connections(server), timeout=3, what="connections refused")
        t0 = time.monotonic()
        server.proc.send_signal(second)
        server.proc.wait(timeout=5)
        assert time.monotonic() - t0 < 5
        assert_cut_off(c)


def test_graceful_timeout_bounds_the_wait(serve):
    server = serve("slow:app", "--graceful-timeout", "1")
    with start_slow(server, 10, "long") as c:
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=8)
        elapsed = time.monotonic() - t0
        assert elapsed < 5, f"exited {elapsed:.1f}s after SIGTERM with --graceful-timeout 1"
        assert_cut_off(c)
