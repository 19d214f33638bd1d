"""HTTP/1.1 against a live server: connection reuse, pipelining, request framing, interim
responses, HEAD, spooled bodies, and malformed requests answered 400 without running the app.

Every test runs over TCP and over a Unix socket: on a server the module's tests share per app,
options and transport where it only looks at its own answers (`shared`), else on its own
(`serve`).
"""

import hashlib
import os

import pytest
from helpers import (
    Conn,
    Truncated,
    build_request,
    echo,
    host_header,
)


def test_keep_alive_serves_two_requests_on_one_connection(shared):
    server = shared("echo:app")
    with Conn(server) as c:
        first = c.request("GET", "/first")
        second = c.request("POST", "/second", body=b"payload")
    assert first.status == second.status == 200
    assert first.json()["environ"]["PATH_INFO"] == "/first"
    assert second.json()["environ"]["PATH_INFO"] == "/second"
    assert second.json()["body"] == "payload"
    assert (first.header("Connection") or "").lower() != "close"
    if not server.is_unix:
        port = first.json()["environ"]["REMOTE_PORT"]
        assert second.json()["environ"]["REMOTE_PORT"] == port


def test_keep_alive_after_a_body_the_app_did_not_read(shared):
    server = shared("echo:app")
    with Conn(server) as c:
        skipped = c.request("POST", "/skip?read=skip", body=b"GET /smuggled HTTP/1.1\r\n\r\n")
        after = c.request("GET", "/after")
    assert skipped.status == 200 and skipped.json()["body_len"] == 0
    assert after.status == 200
    assert after.json()["environ"]["PATH_INFO"] == "/after"


def test_pipelined_requests_are_answered_in_order(shared):
    server = shared("echo:app")
    host = host_header(server)
    requests = [
        build_request("GET", "/p?i=0", host=host),
        build_request("POST", "/p?i=1", host=host, body=b"body one"),
        build_request("POST", "/p?i=2&read=skip", host=host, body=b"body two, unread"),
        build_request("POST", "/p?i=3", host=host, body=b"chunked three " * 200, chunked=True),
        build_request("HEAD", "/p?i=4", host=host),
        build_request("GET", "/p?i=5", host=host),
    ]
    methods = ["GET", "POST", "POST", "POST", "HEAD", "GET"]
    with Conn(server) as c:
        c.send(b"".join(requests))
        responses = [c.read_response(m) for m in methods]
    assert [r.status for r in responses] == [200] * 6
    for i, r in enumerate(responses):
        if methods[i] == "HEAD":
            assert r.body == b""
            continue
        assert r.json()["environ"]["QUERY_STRING"].startswith(f"i={i}"), (i, r.body[:300])
    assert responses[1].json()["body"] == "body one"
    assert responses[3].json()["body"] == "chunked three " * 200


def test_chunked_request_body_with_extensions_and_trailers(shared):
    server = shared("echo:app")
    raw = (
        f"POST /chunked HTTP/1.1\r\nHost: {host_header(server)}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
        "5;name=value\r\nhello\r\n"
        "6\r\n world\r\n"
        "0\r\nX-Trailer: t\r\n\r\n"
    ).encode()
    with Conn(server) as c:
        c.send(raw)
        resp = c.read_response()
        again = c.request("GET", "/again")
    assert resp.status == 200, resp.body
    data = resp.json()
    assert data["body"] == "hello world"
    assert data["body_len"] == 11
    assert data["types"]["wsgi.input_terminated"] == "bool"
    assert data["environ"]["wsgi.input_terminated"] == "True"
    assert again.status == 200


@pytest.mark.parametrize("how", ["read", "chunks", "readline", "iter"])
def test_chunked_request_body_read_every_way(shared, how):
    server = shared("echo:app")
    body = b"".join(b"line %d of a chunked body\n" % i for i in range(500))
    with Conn(server) as c:
        resp = c.request("POST", f"/?read={how}&n=777", body=body, chunked=True)
    assert resp.status == 200
    assert resp.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert resp.json()["body_len"] == len(body)


def test_expect_100_continue_gets_100_then_the_response(shared):
    server = shared("echo:app")
    body = os.urandom(5000)
    with Conn(server) as c:
        c.send(
            build_request(
                "POST",
                "/upload",
                host=host_header(server),
                headers=[("Content-Length", str(len(body))), ("Expect", "100-continue")],
            )
        )
        interim = c.read_response(interim=True)
        assert interim.status == 100, interim
        c.send(body)
        final = c.read_response()
    assert final.status == 200
    assert final.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_head_sends_headers_and_no_body(shared):
    server = shared("echo:app")
    with Conn(server) as c:
        head = c.request("HEAD", "/head")
        # Had the server sent a body after the HEAD response, this response would not parse.
        get = c.request("GET", "/after-head")
    assert head.status == 200
    assert int(head.header("Content-Length")) > 0
    assert head.header("Content-Type") == "application/json"
    assert head.body == b""
    assert get.status == 200
    assert get.json()["environ"]["PATH_INFO"] == "/after-head"


def test_head_of_a_streamed_response_sends_no_body(shared):
    server = shared("stream:app")
    with Conn(server) as c:
        head = c.request("HEAD", "/?n=3&size=100")
        get = c.request("GET", "/?n=3&size=100")
    assert head.status == 200 and head.body == b""
    assert get.status == 200 and get.body == b"A" * 100 + b"B" * 100 + b"C" * 100


@pytest.mark.parametrize("how", ["read", "chunks", "readline", "cl"])
def test_body_larger_than_the_buffer_is_spooled_and_echoed_intact(shared, how):
    server = shared("echo:app", "--body-buffer-size", "64K")
    body = os.urandom(3 * 1024 * 1024 + 17)
    data = echo(server, "POST", f"/?read={how}&n=65536", body=body)
    assert data["body_len"] == len(body)
    assert data["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_chunked_body_larger_than_the_buffer_is_spooled(shared):
    server = shared("echo:app", "--body-buffer-size", "16K")
    body = os.urandom(512 * 1024)
    with Conn(server) as c:
        resp = c.request("POST", "/?read=chunks&n=10000", body=body, chunked=True)
    assert resp.status == 200
    assert resp.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_connection_close_from_the_client_closes_after_the_response(shared):
    server = shared("echo:app")
    with Conn(server) as c:
        resp = c.request("GET", "/bye", headers=[("Connection", "close")])
        assert resp.status == 200
        assert c.closed_by_server(timeout=5)


def test_http_1_0_request_is_answered_and_closed(shared):
    server = shared("echo:app")
    with Conn(server) as c:
        resp = c.request("GET", "/old", version="HTTP/1.0")
        assert resp.status == 200
        assert resp.version in ("HTTP/1.0", "HTTP/1.1")
        assert resp.json()["environ"]["SERVER_PROTOCOL"] == "HTTP/1.0"
        assert c.closed_by_server(timeout=5)


# Each is a request the server must refuse with 400 before the application runs.
MALFORMED = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "request line without a version": b"GET /\r\nHost: x\r\n\r\n",
    "space in a header name": b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
    "space before the colon": b"GET / HTTP/1.1\r\nHost: x\r\nFoo : bar\r\n\r\n",
    "header line without a colon": b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
    "control byte in the target": b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n",
    "non-numeric Content-Length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "conflicting Content-Lengths": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    ),
    "missing Host in HTTP/1.1": b"GET / HTTP/1.1\r\n\r\n",
    "two Host headers": b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
    "bad chunk size": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    ),
}


def test_malformed_requests_get_400_without_calling_the_app(serve):
    server = serve("echo:app", env={"ECHO_TRACE": "1"})
    failures = []
    for name, raw in MALFORMED.items():
        with Conn(server, timeout=5) as c:
            c.send(raw)
            try:
                resp = c.read_response()
            except (Truncated, TimeoutError, ConnectionResetError) as e:
                failures.append(f"{name}: {raw!r} -> no response ({e!r})")
                continue
        if resp.status != 400:
            failures.append(f"{name}: {raw!r} -> {resp.status} {resp.body[:200]!r}")
    # The server survived all of it, and the app ran for this request only.
    resp, _ = server.request("GET", "/after-malformed")
    assert resp.status == 200
    server.wait_for_output(r"echo called GET /after-malformed")
    called = [line for line in server.output().splitlines() if "fixture: echo called" in line]
    assert not failures, "\n".join(failures)
    assert called == [line for line in called if "/after-malformed" in line], called
