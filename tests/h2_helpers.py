"""The HTTP/2 test client: one connection to a `conftest.Server`, over TCP or a Unix socket,
h2c (prior knowledge) or TLS with ALPN h2, for tests that look at streams and frames. Real
clients (httpx, h2load) cover the ordinary requests.

`H2` drives the `h2` package's state machine: it sends requests, resets streams, answers
SETTINGS and PING, grants flow-control window for the data it receives (or none, to be a slow
reader), and records each stream's response. `H2(server, raw=True)` has no state machine:
frames made with `hyperframe` go out as they are, for the abuse `h2` refuses to send. Either
way every frame from the server is read one at a time, recorded in the streams, the server's
SETTINGS and its GOAWAY, and the waits (`wait`, `until`, `response`, `read`) fail with an
AssertionError that says what came.

conftest.py owns the server process; this module only speaks the protocol.
"""

from __future__ import annotations

import ssl
import time
from collections import deque
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hpack
from helpers import small_window_socket
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# The longest wait for what a test expects from the server: a liveness bound, not a timing.
TIMEOUT = 15


def request_headers(
    path: str, method: str = "GET", authority: str = "localhost"
) -> list[tuple[str, str]]:
    """The pseudo-header fields of a request (:scheme "http" over TLS too, as these tests have
    always sent it)."""
    return [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)]


def error_name(code: int) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return str(code)


@dataclass
class Stream:
    """One stream's response, as far as it has come."""

    id: int
    status: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    ended: bool = False  # END_STREAM came
    reset: int | None = None  # the error code of the server's RST_STREAM

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def __repr__(self) -> str:
        state = "ended" if self.ended else "open"
        if self.reset is not None:
            state = f"reset {error_name(self.reset)}"
        return f"<stream {self.id}: {self.status}, {len(self.body)} bytes, {state}>"


class H2:
    """An HTTP/2 client connection (see the module's docstring).

    `ctx` makes it TLS (ALPN h2, SNI localhost). `rcvbuf` shrinks the socket's receive buffer
    before connecting. `window` is the streams' initial flow-control window (the connection's
    is raised to match; it starts at 65,535 and can only grow), and with `grant=False` no
    window is ever given back: a client that reads the socket but takes no data. `timeout`
    bounds connecting and sending.
    """

    def __init__(
        self,
        server,
        ctx: ssl.SSLContext | None = None,
        *,
        timeout: float = 30,
        rcvbuf: int | None = None,
        window: int | None = None,
        grant: bool = True,
        raw: bool = False,
    ):
        assert not (raw and window is not None), "a raw connection has no window to set"
        sock = small_window_socket(server, rcvbuf, timeout) if rcvbuf else server.connect(timeout)
        if ctx is not None:
            ctx.set_alpn_protocols(["h2"])
            try:
                sock = ctx.wrap_socket(sock, server_hostname="localhost")
            except BaseException:
                sock.close()
                raise
            assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        self.sock = sock
        self.grant = grant
        self.buf = bytearray()
        self.streams: dict[int, Stream] = {}
        self.settings: dict[int, int] = {}  # the server's, as they stand
        self.goaway: GoAwayFrame | None = None  # the first
        self.closed = False  # the server closed the connection (end of stream or reset)
        self.last: deque[Frame] = deque(maxlen=10)  # for the failure messages
        self.conn: h2.connection.H2Connection | None = None
        if raw:
            self.encoder = hpack.Encoder()
            self.decoder = hpack.Decoder()
            self._send(PREFACE + SettingsFrame(0).serialize())
            return
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config)
        self.decoder = self.conn.decoder  # for the frames after GOAWAY, which h2 refuses
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
            if window > 65535:
                self.conn.increment_flow_control_window(window - 65535)
        self.flush()

    def __repr__(self) -> str:
        streams = list(self.streams.values())[-10:]
        goaway = None if self.goaway is None else error_name(self.goaway.error_code)
        return (
            f"<H2 streams {streams}, goaway={goaway}, closed={self.closed}, "
            f"last frames {list(self.last)}>"
        )

    def __enter__(self) -> H2:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # -- sending ----------------------------------------------------------------------------

    def _send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            return False  # closed, or no longer read; what the server sent is still to be read
        return True

    def flush(self) -> None:
        """Send what the state machine has queued."""
        if data := self.conn.data_to_send():
            self._send(data)

    def request(
        self,
        path: str,
        method: str = "GET",
        *,
        authority: str = "localhost",
        headers: list[tuple[str, str]] | tuple = (),
        body: bytes = b"",
        end_stream: bool = True,
        flush: bool = True,
    ) -> int:
        """Open a stream with a request; its id. The request ends with its `body` unless not
        `end_stream`; with `flush=False` it stays queued for a burst."""
        stream = self.conn.get_next_available_stream_id()
        self.streams[stream] = Stream(stream)
        fields = request_headers(path, method, authority) + list(headers)
        self.conn.send_headers(stream, fields, end_stream=end_stream and not body)
        if body:
            self.send_data(stream, body, end_stream)
        if flush:
            self.flush()
        return stream

    def send_data(self, stream: int, data: bytes, end_stream: bool = True) -> None:
        """Send `data` on `stream` as fast as the server's windows let it, reading (up to
        TIMEOUT for each window) while they are shut."""
        view = memoryview(data)
        while True:
            n = min(
                len(view),
                self.conn.local_flow_control_window(stream),
                self.conn.max_outbound_frame_size,
            )
            if n == 0 and view:
                self.flush()
                self.wait(
                    lambda: self.conn.local_flow_control_window(stream) > 0,
                    what=f"window to send on stream {stream}",
                )
                continue
            self.conn.send_data(
                stream, view[:n].tobytes(), end_stream=end_stream and n == len(view)
            )
            view = view[n:]
            if not view:
                return

    def reset(
        self, stream: int, code: int = h2.errors.ErrorCodes.CANCEL, flush: bool = True
    ) -> None:
        """RST_STREAM."""
        self.conn.reset_stream(stream, code)
        if flush:
            self.flush()

    def send(self, *frames: Frame) -> bool:
        """Raw frames as they are (on a raw connection); False once the server has closed or
        no longer reads."""
        return self._send(b"".join(f.serialize() for f in frames))

    def headers_frame(
        self, stream: int, path: str, end_headers: bool = True, authority: str = "localhost"
    ) -> HeadersFrame:
        """A raw GET's HEADERS, with END_STREAM. Encoded now: send them in the order made."""
        flags = ["END_STREAM"] + (["END_HEADERS"] if end_headers else [])
        block = self.encoder.encode(request_headers(path, authority=authority))
        return HeadersFrame(stream, data=block, flags=flags)

    # -- receiving ---------------------------------------------------------------------------

    def _fill(self, timeout: float) -> bool:
        """Wait up to `timeout` for bytes from the server; False once it has closed."""
        if self.closed:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.buf += data
        return True

    def _take(self) -> Frame | None:
        """Handle the next whole frame in the buffer, if there is one."""
        if len(self.buf) < 9:
            return None
        size = 9 + int.from_bytes(self.buf[:3], "big")
        if len(self.buf) < size:
            return None
        data = bytes(self.buf[:size])
        del self.buf[:size]
        frame, _ = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9:]))
        self.last.append(frame)
        if self.conn is not None and self.goaway is None:
            # One frame at a time, and none to `h2` after GOAWAY: it closes its state machine
            # on the first GOAWAY and raises on the PING and second GOAWAY of a graceful
            # shutdown (RFC 9113 §6.8), though streams still finish.
            for event in self.conn.receive_data(data):
                self._event(event)
            self.flush()
        else:
            self._frame(frame)
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            self.settings.update(frame.settings)
        elif isinstance(frame, GoAwayFrame) and self.goaway is None:
            self.goaway = frame
        return frame

    def _stream(self, stream: int) -> Stream:
        return self.streams.setdefault(stream, Stream(stream))

    def _event(self, event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            s = self._stream(event.stream_id)
            s.headers = list(event.headers)
            s.status = s.header(":status")
        elif isinstance(event, h2.events.DataReceived):
            self._stream(event.stream_id).body += event.data
            if self.grant:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            self._stream(event.stream_id).trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            self._stream(event.stream_id).ended = True
        elif isinstance(event, h2.events.StreamReset):
            self._stream(event.stream_id).reset = event.error_code

    def _frame(self, frame: Frame) -> None:
        """A frame `h2` does not see (a raw connection, or after GOAWAY). No window is given
        back for its data; a PING is answered unless the connection is raw. (A header block
        continued in CONTINUATION frames is not decoded: ferrule's responses need none.)"""
        if isinstance(frame, HeadersFrame) and "END_HEADERS" in frame.flags:
            s = self._stream(frame.stream_id)
            headers = list(self.decoder.decode(frame.data))
            status = dict(headers).get(":status")
            if s.status is None and status is not None and not status.startswith("1"):
                s.headers, s.status = headers, status
        elif isinstance(frame, DataFrame):
            self._stream(frame.stream_id).body += frame.data
        elif isinstance(frame, RstStreamFrame):
            self._stream(frame.stream_id).reset = frame.error_code
        elif isinstance(frame, PingFrame) and "ACK" not in frame.flags and self.conn is not None:
            self._send(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]).serialize())
        if isinstance(frame, HeadersFrame | DataFrame) and "END_STREAM" in frame.flags:
            self._stream(frame.stream_id).ended = True

    def _next(self, deadline: float, timeout: float, what: str) -> Frame | None:
        """The next frame, handled; None once the server has closed."""
        while (frame := self._take()) is None:
            if self.closed:
                return None
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                self._fill(left)
            except TimeoutError:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; last saw {self!r}"
                ) from None
        return frame

    def read(self, timeout: float = TIMEOUT) -> None:
        """Wait for what the server sends next and handle every whole frame that came (a
        reader that takes its time between reads). Sets `closed` if the server closed."""
        deadline = time.monotonic() + timeout
        frame = self._next(deadline, timeout, "a frame")
        while frame is not None:
            frame = self._take()

    def wait(self, condition, timeout: float = TIMEOUT, what: str = "the condition"):
        """Read frames until `condition()` holds; its value. Fails if the server closes
        first (unless that is the condition) or at the deadline, saying what came."""
        deadline = time.monotonic() + timeout
        value = condition()
        while not value:
            closed = self._next(deadline, timeout, what) is None
            value = condition()
            if closed and not value:
                raise AssertionError(f"the server closed before {what}; last saw {self!r}")
        return value

    def until(self, predicate, timeout: float = TIMEOUT, what: str = "a matching frame"):
        """Read frames until one matches `predicate` (called once on each new frame): that
        frame, or None if the server closes first. Fails at the deadline, saying what came."""
        deadline = time.monotonic() + timeout
        while (frame := self._next(deadline, timeout, what)) is not None:
            if predicate(frame):
                return frame
        return None

    def response(self, stream: int, timeout: float = TIMEOUT) -> Stream:
        """`stream` once it has ended or been reset."""
        s = self.streams[stream]
        self.wait(lambda: s.done, timeout, what=f"the end of stream {stream}")
        return s
