"""Where ferrule was looser than it said (issue 16): one authority per request, non-ASCII
field values as PEP 3333 says, an access line for every head the core refuses, HTTP/2 PING and
SETTINGS floods cut off, and failed accepts logged at most once every 10 s.

The limits per client (spool, rate, per address, per HTTP/2 connection) are in
test_client_limits.py.
"""

from __future__ import annotations

import json
import re
import resource
import socket
import struct
import time

import pytest
from h2_helpers import H2, request_headers
from helpers import Conn, build_request, echo, host_header, wait_until
from hyperframe.frame import HeadersFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int = 0, stream: int = 0, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def ping(flags: int = 0) -> bytes:
    return frame(0x6, flags, 0, b"12345678")


# --- one authority ------------------------------------------------------------------------


def test_an_absolute_form_target_s_authority_replaces_host(serve):
    # RFC 9112 §3.2.2: the server must ignore the Host header and use the target's authority,
    # so ALLOWED_HOSTS sees the host the request is for.
    server = serve("echo:app")
    request = build_request(target="http://evil.example:8080/echo?x=1", host="good.example")
    with Conn(server) as conn:
        conn.send(request)
        resp = conn.read_response()
    assert resp.status == 200, resp
    environ = json.loads(resp.body)["environ"]
    assert environ["HTTP_HOST"] == "evil.example:8080"
    assert environ["PATH_INFO"] == "/echo"
    assert environ["SERVER_NAME"] == "evil.example"


def test_an_absolute_form_target_without_host_gets_one(serve):
    server = serve("echo:app")
    request = build_request(target="http://user@a.example/", host=None, version="HTTP/1.0")
    with Conn(server) as conn:
        conn.send(request)
        resp = conn.read_response()
    assert resp.status == 200, resp
    assert json.loads(resp.body)["environ"]["HTTP_HOST"] == "a.example"


@pytest.fixture
def h2_server(serve):
    return serve("echo:app", "--http", "2")


def h2_get(server, authority: str = "localhost", host: str | None = None) -> tuple[int, bytes]:
    """GET / over HTTP/2 with `authority` and, if given, a `host` header (a raw connection:
    the h2 package refuses to send the two when they disagree)."""
    with H2(server, raw=True) as conn:
        fields = request_headers("/", authority=authority)
        if host is not None:
            fields.append(("host", host))
        block = conn.encoder.encode(fields)
        conn.send(HeadersFrame(1, data=block, flags=["END_STREAM", "END_HEADERS"]))
        conn.wait(lambda: 1 in conn.streams and conn.streams[1].done, what="the response")
        stream = conn.streams[1]
        return int(stream.status), bytes(stream.body)


def test_an_h2_host_that_disagrees_with_authority_is_refused(h2_server):
    status, body = h2_get(h2_server, "a.example", host="b.example")
    assert status == 400, body
    assert b":authority" in body
    status, body = h2_get(h2_server, "a.example", host="A.example")
    assert status == 200, body
    assert json.loads(body)["environ"]["HTTP_HOST"] == "A.example"
    status, body = h2_get(h2_server, "a.example:81")
    assert status == 200, body
    assert json.loads(body)["environ"]["HTTP_HOST"] == "a.example:81"


# --- non-ASCII field values ---------------------------------------------------------------


def test_non_ascii_field_value_bytes_reach_wsgi_as_latin1(serve):
    # obs-text (0x80-0xFF) is allowed in field values (RFC 9110 §5.5); PEP 3333 gives them
    # as native strings of latin-1 code points, each byte one character.
    server = serve("echo:app")
    raw = "caf\u00c3\u00a9\u00ff"
    head = f"GET / HTTP/1.1\r\nHost: {host_header(server)}\r\nX-A: {raw}\r\n\r\n"
    with Conn(server) as conn:
        conn.send(head.encode("latin-1"))
        resp = conn.read_response()
    assert resp.status == 200, resp
    value = json.loads(resp.body)["environ"]["HTTP_X_A"]
    assert value.encode("latin-1") == b"caf\xc3\xa9\xff"


def test_non_ascii_in_a_field_name_is_refused(serve):
    server = serve("echo:app", env={"ECHO_TRACE": "1"})
    head = f"GET / HTTP/1.1\r\nHost: {host_header(server)}\r\nX-\u00e9: 1\r\n\r\n"
    with Conn(server) as conn:
        conn.send(head.encode("latin-1"))
        resp = conn.read_response()
    assert resp.status == 400, resp
    assert "echo called" not in server.output()


# --- refused heads are logged -------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["combined", "json"])
def test_a_head_hyper_refuses_gets_an_access_line_with_its_status_and_reason(serve, fmt):
    # Small limits make hyper's head buffer about 21 KB: a 100 KB field overflows it.
    limits = ["--limit-request-fields", "5", "--limit-request-field-size", "1000"]
    server = serve("echo:app", "--access-log-format", fmt, *limits)
    with Conn(server) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n")
        assert conn.read_response().status == 400
    with Conn(server) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        assert conn.read_response().status == 431
    if fmt == "combined":
        line = server.wait_for_output(r'\S+ - - \[[^\]]+\] "-" 400 - ').string
        assert line.split()[0] in ("127.0.0.1", "-"), line
        server.wait_for_output(r'"-" 431 - ')
    else:
        match = server.wait_for_output(r'\{[^\n]*"refused": ?"invalid HTTP header parsed"[^\n]*\}')
        entry = json.loads(match.group(0))
        assert entry["status"] == 400 and entry["label"] == "server", entry
        server.wait_for_output(r'"refused": ?"message head is too large"')


def test_a_refusal_of_ferrule_s_own_carries_its_reason_in_the_json_line(serve):
    server = serve("echo:app", "--access-log-format", "json")
    with Conn(server) as conn:
        conn.send(b"GET /x HTTP/1.1\r\nHost: a b\r\n\r\n")
        assert conn.read_response().status == 400
    match = server.wait_for_output(r'\{[^\n]*"path": ?"/x"[^\n]*\}')
    entry = json.loads(match.group(0))
    assert entry["status"] == 400 and "Host" in entry["refused"], entry


# --- HTTP/2 control-frame floods ------------------------------------------------------------


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bool, bytes]:
    """Read until the server closes (True) or `timeout` passes (False)."""
    sock.settimeout(0.5)
    got = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True, bytes(got)
        if not chunk:
            return True, bytes(got)
        got += chunk
    return False, bytes(got)


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_an_h2_ping_or_settings_flood_is_cut_off_and_others_are_served(serve, kind):
    server = serve("echo:app", "--http", "2")
    flood = ping() if kind == "ping" else frame(0x4)
    sock = server.connect()
    try:
        try:
            sock.sendall(PREFACE + frame(0x4) + flood * 2000)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed by the server before the client was done sending: what is tested
        closed, got = read_until_closed(sock, 30)
    finally:
        sock.close()
    assert closed, f"still open after 30 s; read {len(got)} bytes"
    server.wait_for_output(r"PING or SETTINGS frames faster than 10 a second")
    status, _ = h2_get(server)
    assert status == 200


def test_a_client_pinging_at_a_normal_pace_is_answered(serve):
    server = serve("echo:app", "--http", "2")
    sock = server.connect()
    try:
        sock.sendall(PREFACE + frame(0x4) + ping() * 50)
        acks = 0
        got = bytearray()
        sock.settimeout(30)
        deadline = time.monotonic() + 30
        while acks < 50 and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {acks} PING answers"
            got += chunk
            acks = got.count(bytes([0x6, 0x1, 0, 0, 0, 0]) + b"12345678")
        assert acks == 50, f"{acks} answers in {bytes(got[:200])!r}"
    finally:
        sock.close()


# --- failed accepts -----------------------------------------------------------------------


def test_out_of_descriptors_is_logged_once_every_10_s_with_a_count(launched, tmp_path):
    # EMFILE recurs every back-off (50 ms) while it lasts: without the throttle, about twenty
    # lines a second.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    try:
        server = launched(["--bind", "127.0.0.1:0", "--max-connections", "5000", "echo:app"])
        pid = server.proc.pid
        limit = 120
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        held = []
        try:
            for _ in range(limit + 20):
                s = socket.socket()
                s.settimeout(10)
                s.connect(server.address)
                held.append(s)
            server.wait_for_output(r"cannot accept a connection on the --bind listener", 30)
            time.sleep(3)
            lines = re.findall(r"cannot accept a connection", server.output())
            assert len(lines) == 1, f"{len(lines)} lines in 3 s"
        finally:
            for s in held:
                s.close()
        # Once descriptors are free again, clients are served.
        wait_until(lambda: echo(server)["environ"] is not None, 30, what="a request served")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
