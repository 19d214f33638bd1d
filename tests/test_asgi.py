"""ASGI 3 applications (issue 14) against a live server, over TCP and a Unix socket: the scope
field by field, request bodies read as the application asks, streamed responses, pathsend,
server-sent events, a client that leaves, --timeout, errors, and the lifespan protocol.

The fixture is a raw ASGI application (tests/apps/asgiapp.py), so what is tested is the
server's side of the protocol; Django's ASGI handler is tested in test_django_asgi.py. Tests
that only look at their own answers and log lines share one server per transport (`shared`).
"""

from __future__ import annotations

import json
import signal
import socket

import pytest
from conftest import start
from helpers import Conn, build_request, host_header

LIVENESS = 30


@pytest.fixture
def asgi(serve):
    def _serve(*args: str, env: dict | None = None):
        return serve("asgiapp:app", *args, env=env)

    return _serve


def scope_of(server, target: str = "/scope", headers=None) -> dict:
    resp, body = server.request("GET", target, headers=headers)
    assert resp.status == 200, (resp.status, body[:300])
    return json.loads(body)


def test_hello_and_the_scope_field_by_field(shared, transport, tmp_path):
    server = shared("asgiapp:app")
    resp, body = server.request("GET", "/")
    assert (resp.status, body) == (200, b"hello")
    assert resp.getheader("content-type") == "text/plain"
    assert len(resp.getheader("x-request-id")) == 32
    scope = scope_of(server, "/scope/caf%C3%A9%20x?a=1&b=%20", headers={"X-Custom": "v1"})
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope/café x"
    assert scope["raw_path"] == "/scope/caf%C3%A9%20x"
    assert scope["query_string"] == "a=1&b=%20"
    assert scope["root_path"] == ""
    headers = dict(scope["headers"])
    assert headers["x-custom"] == "v1"
    assert headers["host"] == host_header(server)
    assert scope["extensions"] == {"http.response.pathsend": {}, "http.response.trailers": {}}
    if transport == "tcp":
        host, port = server.address
        assert scope["server"] == [host, port]
        assert scope["client"][0] == "127.0.0.1" and scope["client"][1] > 0
    else:
        assert scope["server"] == [server.address, None]
        assert scope["client"] is None


def test_root_path_under_a_prefix(asgi):
    server = asgi("--prefix", "/app")
    scope = scope_of(server, "/app/scope/x")
    assert scope["root_path"] == "/app"
    # The spec's path is the full path; the application strips root_path (Django does).
    assert scope["path"] == "/app/scope/x"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_is_read_as_the_application_asks_for_it(shared, chunked):
    server = shared("asgiapp:app")
    payload = bytes(range(256)) * 4096  # 1 MiB
    with Conn(server) as c:
        c.send(
            build_request("POST", "/echo", host=host_header(server), body=payload, chunked=chunked)
        )
        resp = c.read_response("POST")
    assert resp.status == 200
    assert resp.body == payload
    # More than one http.request message: the body was not collected before the app ran.
    assert int(resp.header("x-messages")) > 1


def test_a_streamed_response_arrives_whole(shared):
    server = shared("asgiapp:app")
    resp, body = server.request("GET", "/stream?n=300")
    assert resp.status == 200
    assert body == b"x" * 1024 * 300


def test_trailers_follow_the_body_over_http1_and_http2(shared):
    from h2_helpers import H2

    server = shared("asgiapp:app")
    assert scope_of(server)["extensions"]["http.response.trailers"] == {}
    trailers = [("x-checksum", "abc123"), ("x-checksum", "def456"), ("x-status", "0")]
    with Conn(server) as c:
        # HTTP/1.1 sends trailers to a client that says it takes them (TE: trailers) ...
        c.send(
            build_request(
                "GET", "/trailers", host=host_header(server), headers=[("TE", "trailers")]
            )
        )
        resp = c.read_response()
        assert (resp.status, resp.chunked, resp.body) == (200, True, b"part one, part two")
        assert resp.trailers == trailers
        # ... and to one that does not, the body alone, whole.
        c.send(build_request("GET", "/trailers", host=host_header(server)))
        resp = c.read_response()
        assert (resp.status, resp.body, resp.trailers) == (200, b"part one, part two", [])
    with H2(server) as c:
        s = c.response(c.request("/trailers"))
        assert (s.status, bytes(s.body), s.trailers) == ("200", b"part one, part two", trailers)


def test_a_code_without_a_usual_reason_phrase_gets_an_empty_one(shared):
    # ASGI carries no reason phrase; for 419 hyper's own would be the placeholder "<none>".
    server = shared("asgiapp:app")
    with Conn(server) as c:
        resp = c.request("GET", "/status?code=419")
        assert (resp.status, resp.reason) == (419, "")
        resp = c.request("GET", "/status?code=404")
        assert (resp.status, resp.reason) == (404, "Not Found")


def test_announced_trailers_that_never_come_leave_the_body_whole(shared):
    server = shared("asgiapp:app")
    with Conn(server) as c:
        c.send(
            build_request(
                "GET", "/trailers?missing=1", host=host_header(server), headers=[("TE", "trailers")]
            )
        )
        resp = c.read_response()
    assert (resp.status, resp.body, resp.trailers) == (200, b"part one, part two", [])
    server.wait_for_output(r"returned without the trailers its response announced", LIVENESS)


def test_pathsend_sends_the_file_from_the_core(shared):
    server = shared("asgiapp:app")
    resp, body = server.request("GET", "/pathsend")
    assert resp.status == 200
    with open("tests/apps/asgiapp.py", "rb") as f:
        assert body == f.read()
    assert int(resp.getheader("content-length")) == len(body)


def test_server_sent_events_arrive_as_they_are_sent(shared):
    server = shared("asgiapp:app")
    with Conn(server) as c:
        c.send(build_request("GET", "/sse?n=3", host=host_header(server)))
        seen = c.until(b"data: 0")
        # The first event came before the stream ended: nothing was held back.
        assert b"0\r\n\r\n" not in seen
        seen = c.until(b"0\r\n\r\n")
    assert seen.count(b"data: ") == 3


def test_a_client_that_leaves_is_seen_by_receive_and_send(asgi, tmp_path):
    events = tmp_path / "events.log"
    server = asgi(env={"FERRULE_TEST_CLOSE_LOG": str(events)})
    c = Conn(server)
    c.send(build_request("GET", "/disconnect?tag=bye", host=host_header(server)))
    server.wait_for_output(r"fixture: asgi body tag=bye type=http.request", LIVENESS)
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    server.wait_for_output(r"fixture: asgi disconnect tag=bye type=http.disconnect", LIVENESS)
    server.wait_for_output(r"fixture: asgi send failed tag=bye exc=ClientDisconnected", LIVENESS)
    assert "Error in the ASGI application" not in server.output()


def test_timeout_answers_504_and_cancels_the_task(asgi):
    server = asgi("--timeout", "0.5", "--cancel-grace", "0.2")
    resp, body = server.request("GET", "/sleep?s=30")
    assert resp.status == 504, body
    # The server is still serving.
    assert server.request("GET", "/")[0].status == 200


def test_an_application_error_is_a_500_logged_once(shared):
    server = shared("asgiapp:app")
    resp, body = server.request("GET", "/raise")
    assert resp.status == 500
    assert b"Traceback" not in body
    server.wait_for_output(r"ValueError: the ASGI fixture raised before responding", LIVENESS)
    resp, _ = server.request("GET", "/noresponse")
    assert resp.status == 500
    server.wait_for_output(r"returned without a response to GET /noresponse", LIVENESS)
    assert server.request("GET", "/")[0].status == 200


def test_lifespan_state_reaches_the_scope_and_shutdown_runs(asgi):
    server = asgi()
    resp, body = server.request("GET", "/state")
    assert json.loads(body) == {"started": True}
    assert server.stop(signal.SIGTERM, LIVENESS) == 0
    assert "fixture: asgi lifespan shutdown" in server.output()


def test_a_failed_lifespan_startup_stops_start_up_with_exit_3(tmp_path):
    server = start(
        ["--bind", f"unix:{tmp_path / 's.sock'}", "asgiapp:app"],
        env={"ASGIAPP_LIFESPAN": "fail"},
        expect_ready=False,
    )
    code = server.proc.wait(LIVENESS)
    out = server.output()
    assert code == 3, out
    assert "lifespan startup failed: the database is not there" in out, out
    assert "Ready to accept" not in out


def test_an_application_without_lifespan_is_served_anyway(asgi):
    server = asgi(env={"ASGIAPP_LIFESPAN": "none"})
    assert server.request("GET", "/")[0].status == 200
    assert server.request("GET", "/state")[1] == b"{}"
    assert "lifespan" not in server.output().lower()


def test_interface_asgi_serves_an_asgi_application(serve):
    server = serve("asgiapp:app", "--interface", "asgi")
    assert server.request("GET", "/")[1] == b"hello"


def test_interface_wsgi_serves_a_wsgi_application(serve):
    server = serve("echo:app", "--interface", "wsgi")
    assert server.request("GET", "/")[0].status == 200


def test_many_requests_at_once_on_one_loop(shared):
    from concurrent.futures import ThreadPoolExecutor

    server = shared("asgiapp:app")

    def one(i):
        return server.request("GET", f"/sleep?s=0.2&i={i}")[0].status

    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(one, range(64)))
    assert statuses == [200] * 64
