"""Clients that stop reading their response (review of issue 3): whatever the body — a static
file, an application's body in one piece, a `wsgi.file_wrapper` file — the connection is
closed once the client has accepted nothing for `--send-timeout`, its `--max-connections`
permit and file descriptors are released, and a client that reads slowly but steadily still
gets the whole body. HTTP/2 clients too, including one that stops granting flow-control
window while it keeps reading the connection and answering pings. Over TCP and a Unix
socket, and over TLS.

The stalled clients shrink their receive buffer and never read; that the server closed is
seen as a hang-up on the socket (poll), without reading. The bounds are liveness bounds, far
above `--send-timeout 1`, not timing assertions.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
import threading
import time

import pytest
from h2_helpers import H2
from helpers import Conn, Unmet, small_window_socket, wait_until
from tls_helpers import Pki, TlsView, tls_args

MIB = 1 << 20
LIVENESS = 20
HANG_UP = select.POLLRDHUP | select.POLLHUP | select.POLLERR


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("slow-readers")
    # Random bytes: nothing on the way can compress them.
    (root / "big.bin").write_bytes(os.urandom(8 * MIB))
    (root / "steady.bin").write_bytes(os.urandom(4 * MIB))
    return root


def bodies(files) -> dict[str, tuple[str, int]]:
    """Target and body length of each kind of large response."""
    big = files / "big.bin"
    return {
        "static": ("/static/big.bin", 8 * MIB),
        "app-list": ("/list?mb=16", 16 * MIB),
        "file-wrapper": (f"/file?path={big}", 8 * MIB),
    }


def start(serve, files, *args: str):
    return serve(
        "bulk:app",
        "--send-timeout",
        "1",
        "--max-connections",
        "2",
        "--static",
        f"/static={files}",
        *args,
    )


def stall(server, target: str, wrap=None) -> socket.socket:
    """Ask for `target`, then never read."""
    s = small_window_socket(server, 4096)
    if wrap is not None:
        s = wrap(s)
    s.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    return s


def hung_up(sock: socket.socket, timeout: float = LIVENESS) -> bool:
    """True once the server has closed its end (FIN or reset), looked at without reading."""
    poller = select.poll()
    poller.register(sock, HANG_UP)
    return bool(poller.poll(timeout * 1000))


def drain(sock: socket.socket) -> int:
    """Read what is left until end of stream or reset; how many bytes that was."""
    sock.settimeout(LIVENESS)
    n = 0
    try:
        while data := sock.recv(MIB):
            n += len(data)
    except ConnectionResetError:
        pass
    return n


def open_fds(server) -> int:
    return len(os.listdir(f"/proc/{server.proc.pid}/fd"))


def fds_back_to(server, baseline: int):
    """For wait_until: the server holds no more descriptors than `baseline`."""
    n = open_fds(server)
    return n <= baseline or Unmet(f"{n} descriptors open, want <= {baseline}")


def peer_name(server, sock: socket.socket) -> str:
    """How the server's log names this client."""
    if server.is_unix:
        return "a Unix-socket peer"
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


@pytest.mark.parametrize("kind", ["static", "app-list", "file-wrapper"])
def test_clients_that_stop_reading_are_cut_off_and_release_their_permits(serve, files, kind):
    server = start(serve, files)
    target, length = bodies(files)[kind]
    # Served whole to a client that reads, and once, so the baseline has every descriptor
    # that stays open (the static root, Python's imports).
    resp, data = server.request("GET", target)
    assert resp.status == 200 and len(data) == length
    baseline = open_fds(server)

    stalled = [stall(server, target) for _ in range(2)]
    try:
        # Both permits are taken by clients that read nothing; a third client waits in the
        # listen backlog and is served only once the server gives one of them up.
        with Conn(server, timeout=LIVENESS + 10) as third:
            resp = third.request("GET", "/")
            assert resp.status == 200 and resp.body == b"ok"
        for s in stalled:
            assert hung_up(s), "the server still holds a connection that reads nothing"
            server.wait_for_output(
                f"closing the connection to {peer_name(server, s)}: it accepted nothing "
                r"of its response for 1s \(--send-timeout\)"
            )
            # What was in flight is readable (TCP: unless the reset discarded it), and it is
            # not the whole response.
            assert drain(s) < length
    finally:
        for s in stalled:
            s.close()
    wait_until(lambda: fds_back_to(server, baseline), LIVENESS, what="descriptors released")
    # And the server is as good as new.
    resp, data = server.request("GET", target)
    assert resp.status == 200 and len(data) == length


def test_a_slow_but_steady_reader_gets_the_whole_body(serve, files):
    server = start(serve, files)
    expected = (files / "steady.bin").read_bytes()
    # 128 KiB every 0.25 s: a pause of a quarter of --send-timeout between reads. On TCP the
    # server's socket buffer grows to megabytes, and the kernel wakes a writer only once a
    # third of it is free: its writes wait several seconds at a time, though the client
    # never stops.
    with small_window_socket(server, 64 * 1024) as s:
        s.sendall(b"GET /static/steady.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = bytearray()
        while b"\r\n\r\n" not in received:
            received += s.recv(64 * 1024)
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        body = bytearray(body)
        while len(body) < len(expected):
            time.sleep(0.25)
            want = min(128 * 1024, len(expected) - len(body))
            while want > 0:
                data = s.recv(want)
                assert data, f"the server closed after {len(body)} bytes"
                body += data
                want -= len(data)
    assert hashlib.sha256(body).digest() == hashlib.sha256(expected).digest()
    assert "accepted nothing" not in server.output()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


def test_over_tls_a_client_that_stops_reading_is_cut_off(serve, files, pki):
    server = start(serve, files, *tls_args(pki.server()))
    ctx = pki.context()
    view = TlsView(server, ctx)
    resp, data = view.request("GET", "/static/big.bin")
    assert resp.status == 200 and len(data) == 8 * MIB
    baseline = open_fds(server)

    def tls(sock: socket.socket) -> socket.socket:
        return ctx.wrap_socket(sock, server_hostname="localhost")

    stalled = [stall(server, "/static/big.bin", wrap=tls) for _ in range(2)]
    try:
        with Conn(view, timeout=LIVENESS + 10) as third:
            resp = third.request("GET", "/")
            assert resp.status == 200 and resp.body == b"ok"
        for s in stalled:
            assert hung_up(s), "the server still holds a TLS connection that reads nothing"
            server.wait_for_output(f"closing the connection to {peer_name(server, s)}: ")
    finally:
        for s in stalled:
            s.close()
    wait_until(lambda: fds_back_to(server, baseline), LIVENESS, what="descriptors released")


# -- HTTP/2 -------------------------------------------------------------------------------


def read_until_closed(client: H2) -> None:
    """Keep reading and answering pings, granting no window, until the server closes (or
    LIVENESS passes: the caller's assertion then shows what the client last saw)."""
    with contextlib.suppress(AssertionError):
        client.wait(lambda: client.closed, LIVENESS, what="the server to close")


@pytest.mark.parametrize("kind", ["static", "app-list"])
def test_http2_clients_that_grant_no_window_are_cut_off(serve, files, kind):
    # They read the connection and answer pings, so the socket never stalls: what stalls is
    # HTTP/2 flow control, and hyper would wait for window forever.
    server = start(serve, files)
    target, length = bodies(files)[kind]
    resp, data = server.request("GET", target)
    assert resp.status == 200 and len(data) == length
    baseline = open_fds(server)

    stalled = [H2(server, rcvbuf=64 * 1024, grant=False) for _ in range(2)]
    try:
        responses = [c.streams[c.request(target)] for c in stalled]
        readers = [threading.Thread(target=read_until_closed, args=(c,)) for c in stalled]
        for r in readers:
            r.start()
        with Conn(server, timeout=LIVENESS + 10) as third:
            resp = third.request("GET", "/")
            assert resp.status == 200 and resp.body == b"ok"
        for r in readers:
            r.join()
        for c, response in zip(stalled, responses, strict=True):
            assert c.closed, f"the server still holds an HTTP/2 connection that takes nothing: {c}"
            assert not response.ended and len(response.body) < length
            server.wait_for_output(
                f"closing the HTTP/2 connection to {peer_name(server, c.sock)}: a response has "
                r"waited for the client's flow-control window for 1s \(--send-timeout\)"
            )
    finally:
        for c in stalled:
            c.close()
    wait_until(lambda: fds_back_to(server, baseline), LIVENESS, what="descriptors released")


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        # No window at all: hyper never asks the body for its first byte.
        (0, r"a response has waited for the client's flow-control window for 1s"),
        # One byte: the whole 2-byte body is handed over and the stream is done for hyper,
        # which holds the last byte; the connection is idle, and its GOAWAY cannot finish it.
        (1, r"the client has not taken the rest of its responses 1s after GOAWAY"),
    ],
)
def test_http2_clients_with_a_tiny_window_are_cut_off(serve, files, window, reason):
    server = start(serve, files, "--keep-alive", "1")
    client = H2(server, rcvbuf=64 * 1024, window=window, grant=False)
    with client:
        stream = client.request("/")
        read_until_closed(client)
        assert client.closed and not client.streams[stream].ended, client
        server.wait_for_output(f"connection to {peer_name(server, client.sock)}: {reason}")


def test_an_http2_client_that_stops_reading_the_socket_is_cut_off(serve, files):
    # Windows wide open and the socket not read at all: the write deadline's case.
    server = start(serve, files)
    client = H2(server, rcvbuf=4096, window=2**31 - 1)
    with client:
        client.request("/list?mb=16")
        assert hung_up(client.sock)
        # The write deadline, or the stream waiting on a window the full socket cannot move:
        # whichever runs out first, the connection is reset.
        server.wait_for_output(
            f"closing the (HTTP/2 )?connection to {peer_name(server, client.sock)}: "
        )


def test_a_slow_but_steady_http2_reader_gets_the_whole_body(serve, files):
    server = start(serve, files)
    client = H2(server, rcvbuf=64 * 1024)
    with client:
        # One piece of 1 MiB from the application: the server hands it to HTTP/2 a window's
        # worth at a time, so each window the client grants is progress.
        response = client.streams[client.request("/list?mb=1")]
        # The client grants what it read every 0.25 s, a quarter of --send-timeout; at the
        # default window of 64 KiB that takes 4 s.
        while not response.ended:
            assert not client.closed, f"the server closed after {len(response.body)} bytes"
            time.sleep(0.25)
            client.read(LIVENESS)
    assert len(response.body) == MIB
    assert "flow-control window" not in server.output()
