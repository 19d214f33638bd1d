"""Raw HTTP/1.1 over a socket, for tests that need more control than http.client gives
(pipelining, interim responses, malformed requests, half-read streams), and `run_ferrule`, the
command run to completion for its exit code and messages.

conftest.py owns the server process that serves requests; this module only speaks the protocol.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from conftest import ferrule_env


def host_header(server) -> str:
    """The Host a client would send to `server`."""
    if server.is_unix:
        return "localhost"
    host, port = server.address
    return f"{host}:{port}"


def build_request(
    method: str = "GET",
    target: str = "/",
    host: str | None = "localhost",
    headers: list[tuple[str, str]] | tuple = (),
    body: bytes = b"",
    chunked: bool = False,
    version: str = "HTTP/1.1",
    content_length: bool = True,
) -> bytes:
    """Bytes of one request; a body gets Content-Length unless `chunked` (one chunk per KiB)."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in headers]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 1024]), body[i : i + 1024])
            for i in range(0, len(body), 1024)
        )
        payload += b"0\r\n\r\n"
    else:
        if body and content_length:
            lines.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


@dataclass
class Response:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    chunked: bool = False
    interim: list[Response] = field(default_factory=list)
    # The fields of a chunked body's trailer section.
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def headers_named(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)


class Truncated(Exception):
    """The server closed the connection in the middle of a response."""


class Conn:
    """A raw client connection with a read buffer that survives across responses."""

    def __init__(self, server, timeout: float = 10):
        self.server = server
        self.sock: socket.socket = server.connect(timeout)
        self.buf = b""

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method="GET", target="/", **kw) -> Response:
        """Send one request (Host filled in) and read its response."""
        kw.setdefault("host", host_header(self.server))
        self.send(build_request(method, target, **kw))
        return self.read_response(method)

    def until(self, marker: bytes) -> bytes:
        """Read until `marker` has come; everything received so far (left unparsed)."""
        while marker not in self.buf:
            self._fill()
        return self.buf

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise Truncated(f"connection closed; unparsed bytes: {self.buf[:200]!r}")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self) -> Response:
        line = self._line().decode("latin-1")
        m = re.match(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", line)
        if not m:
            raise AssertionError(f"bad status line {line!r}")
        headers = []
        while True:
            h = self._line()
            if not h:
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers.append((k, v.strip()))
        return Response(int(m.group(2)), m.group(3) or "", m.group(1), headers)

    def read_response(self, method: str = "GET", interim: bool = False) -> Response:
        """The next response. 1xx responses are skipped into `.interim` unless `interim`."""
        seen = []
        while True:
            resp = self.read_head()
            if 100 <= resp.status < 200 and resp.status != 101:
                if interim:
                    return resp
                seen.append(resp)
                continue
            break
        resp.interim = seen
        te = (resp.header("Transfer-Encoding") or "").lower()
        if method == "HEAD" or resp.status in (204, 304):
            return resp
        if te:
            assert te == "chunked", f"unexpected Transfer-Encoding {te!r}"
            resp.chunked = True
            parts = []
            while True:
                size_line = self._line().split(b";")[0].strip()
                size = int(size_line, 16)
                if size == 0:
                    while line := self._line():
                        k, _, v = line.decode("latin-1").partition(":")
                        resp.trailers.append((k.lower(), v.strip()))
                    break
                parts.append(self._exact(size))
                if self._exact(2) != b"\r\n":
                    raise AssertionError("chunk not followed by CRLF")
            resp.body = b"".join(parts)
        elif resp.header("Content-Length") is not None:
            resp.body = self._exact(int(resp.header("Content-Length")))
        else:
            while True:
                try:
                    self._fill()
                except Truncated:
                    break
            resp.body, self.buf = self.buf, b""
        return resp

    def read_chunk(self) -> bytes:
        """One chunk of a chunked body (after read_head); b"" for the last one."""
        size = int(self._line().split(b";")[0].strip(), 16)
        if size == 0:
            while self._line():
                pass
            return b""
        data = self._exact(size)
        if self._exact(2) != b"\r\n":
            raise AssertionError("chunk not followed by CRLF")
        return data

    def closed_by_server(self, timeout: float = 5) -> bool:
        """True once the server closes (EOF or reset) within `timeout`; False if it stays open.

        Unread response bytes count as a protocol error, not as 'open'.
        """
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        if data:
            raise AssertionError(f"unexpected bytes from the server: {data[:200]!r}")
        return True


def try_connect(server, timeout: float = 5) -> socket.socket:
    """Like server.connect(), but the socket is closed when connecting fails."""
    family = socket.AF_UNIX if server.is_unix else socket.AF_INET
    if not server.is_unix and ":" in server.address[0]:
        family = socket.AF_INET6
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(server.address)
    except BaseException:
        s.close()
        raise
    return s


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` (an IPv4 or IPv6 literal) that nobody listens on, for a listener
    whose address the test must know before it starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def vm_rss(pid: int) -> int:
    """Resident set size of a process, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class Unmet:
    """What a `wait_until` predicate returns while its condition does not hold: falsy, and
    shown in the timeout message, so a test that times out says what it last saw."""

    def __init__(self, seen):
        self.seen = seen

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return repr(self.seen)


def wait_until(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value. For state with no event to wait on
    (a listener closing, a file appearing); readiness uses wait_for_output instead. On
    timeout the error names `what` and the predicate's last value (return `Unmet(state)` to
    show the state that fell short)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; last saw {value!r}"
            )
        time.sleep(interval)


def echo(server, method="GET", path="/", body=None, headers=None) -> dict:
    """One request to the echo app; returns the decoded JSON."""
    resp, data = server.request(method, path, body=body, headers=headers)
    assert resp.status == 200, (resp.status, data[:500])
    return json.loads(data)


def small_window_socket(server, rcvbuf: int = 4096, timeout: float = 30) -> socket.socket:
    """A connected socket whose receive buffer was shrunk before connecting (TCP sizes its
    window from it)."""
    if server.is_unix:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET6 if ":" in server.address[0] else socket.AF_INET)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(server.address)
    except BaseException:
        s.close()
        raise
    return s


def run_ferrule(
    *args: str, env: dict | None = None, cwd=None, merge_stderr: bool = False
) -> tuple[int, str, str]:
    """Run `python -m ferrule ARGS` to completion; (exit code, stdout, stderr). `merge_stderr`
    sends stderr into stdout, interleaved as written, and leaves the third item ""."""
    proc = subprocess.run(
        [sys.executable, "-m", "ferrule", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        errors="replace",
        env=ferrule_env(env),
        cwd=cwd,
        timeout=60,
    )
    return proc.returncode, proc.stdout, proc.stderr or ""
