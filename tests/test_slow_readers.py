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

import hashlib
import os
import select
import socket
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
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


class H2Client:
    """An h2c client (prior knowledge) from the `h2` package: it reads every frame and answers
    pings, and grants flow-control window only for the data it says it has taken."""

    def __init__(self, server, rcvbuf: int = 64 * 1024, window: int | None = None):
        self.sock = small_window_socket(server, rcvbuf)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        if window is not None:
            # The streams' window; the connection's starts at 65,535 and can only grow.
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
            if window > 65535:
                self.conn.increment_flow_control_window(window - 65535)
        self.flush()
        self.data = 0
        self.buf = b""
        self.ended = False
        self.goaway = False
        self.closed = False

    def __repr__(self) -> str:
        return (
            f"<H2Client {self.data} bytes of data, ended={self.ended}, goaway={self.goaway}, "
            f"closed={self.closed}>"
        )

    def flush(self) -> None:
        if out := self.conn.data_to_send():
            self.sock.sendall(out)

    def get(self, path: str) -> int:
        stream = self.conn.get_next_available_stream_id()
        headers = [(":method", "GET"), (":scheme", "http"), (":authority", "localhost")]
        self.conn.send_headers(stream, [*headers, (":path", path)], end_stream=True)
        self.flush()
        return stream

    def read(self, take: bool, timeout: float = LIVENESS) -> None:
        """Read once and answer; with `take`, grant window for the data received."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(MIB)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return
        self.buf += data
        # One frame at a time, and none after GOAWAY: `h2` closes its state machine on the
        # first GOAWAY and refuses the PING a graceful shutdown sends after it.
        while not self.goaway and len(self.buf) >= 9:
            size = 9 + int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < size:
                break
            frame, self.buf = self.buf[:size], self.buf[size:]
            self.events(self.conn.receive_data(frame), take)
        try:
            self.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True

    def events(self, events: list, take: bool) -> None:
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self.data += len(event.data)
                if take:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
            elif isinstance(event, h2.events.StreamEnded):
                self.ended = True
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_until_closed(client: H2Client) -> None:
    """Keep reading and answering pings, granting no window, until the server closes."""
    deadline = time.monotonic() + LIVENESS
    while not client.closed and time.monotonic() < deadline:
        try:
            client.read(take=False, timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            return  # the caller's assertion shows what the client last saw


@pytest.mark.parametrize("kind", ["static", "app-list"])
def test_http2_clients_that_grant_no_window_are_cut_off(serve, files, kind):
    # They read the connection and answer pings, so the socket never stalls: what stalls is
    # HTTP/2 flow control, and hyper would wait for window forever.
    server = start(serve, files)
    target, length = bodies(files)[kind]
    resp, data = server.request("GET", target)
    assert resp.status == 200 and len(data) == length
    baseline = open_fds(server)

    stalled = [H2Client(server) for _ in range(2)]
    try:
        for c in stalled:
            c.get(target)
        readers = [threading.Thread(target=read_until_closed, args=(c,)) for c in stalled]
        for r in readers:
            r.start()
        with Conn(server, timeout=LIVENESS + 10) as third:
            resp = third.request("GET", "/")
            assert resp.status == 200 and resp.body == b"ok"
        for r in readers:
            r.join()
        for c in stalled:
            assert c.closed, f"the server still holds an HTTP/2 connection that takes nothing: {c}"
            assert not c.ended and c.data < length
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
    client = H2Client(server, window=window)
    with client:
        client.get("/")
        read_until_closed(client)
        assert client.closed and not client.ended, client
        server.wait_for_output(f"connection to {peer_name(server, client.sock)}: {reason}")


def test_an_http2_client_that_stops_reading_the_socket_is_cut_off(serve, files):
    # Windows wide open and the socket not read at all: the write deadline's case.
    server = start(serve, files)
    client = H2Client(server, rcvbuf=4096, window=2**31 - 1)
    with client:
        client.get("/list?mb=16")
        assert hung_up(client.sock)
        # The write deadline, or the stream waiting on a window the full socket cannot move:
        # whichever runs out first, the connection is reset.
        server.wait_for_output(
            f"closing the (HTTP/2 )?connection to {peer_name(server, client.sock)}: "
        )


def test_a_slow_but_steady_http2_reader_gets_the_whole_body(serve, files):
    server = start(serve, files)
    client = H2Client(server)
    with client:
        # One piece of 1 MiB from the application: the server hands it to HTTP/2 a window's
        # worth at a time, so each window the client grants is progress.
        client.get("/list?mb=1")
        # The client grants what it read every 0.25 s, a quarter of --send-timeout; at the
        # default window of 64 KiB that takes 4 s.
        while not client.ended:
            assert not client.closed, f"the server closed after {client.data} bytes"
            time.sleep(0.25)
            client.read(take=True)
    assert client.data == MIB
    assert "flow-control window" not in server.output()
