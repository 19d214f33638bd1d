"""Clients and apps that try to hold the server's resources: regressions from the review of
issue 2 (slow readers, stalled bodies, conflicting framing, HEAD on long bodies)."""

from __future__ import annotations

import subprocess
import sys
import time

from helpers import Conn, build_request, host_header


def test_a_client_that_stops_reading_frees_its_thread_after_send_timeout(serve):
    # One thread only: while the stalled stream held it, nothing else could be served.
    server = serve("stream:app", "--threads", "1", "--send-timeout", "1")
    stalled = Conn(server, timeout=30)
    try:
        stalled.send(build_request("GET", "/?mb=1024&tag=stalled", host=host_header(server)))
        server.wait_for_output("stream started tag=stalled")
        t0 = time.monotonic()
        with Conn(server, timeout=20) as other:
            resp = other.request("GET", "/?n=2&size=3&tag=next")
            assert resp.status == 200
            assert resp.body == b"AAABBB"
        assert time.monotonic() - t0 < 15
        # The worker's own --send-timeout or the connection's (listen/deadline.rs), whichever
        # runs out first: both are 1 s, started microseconds apart. When the connection's does,
        # the worker sees its client gone.
        server.wait_for_output(
            r"did not read its response for 1s|went away before the response was complete"
            r"|was cancelled \(the client disconnected\)"
        )
        server.wait_for_output("stream close\\(\\) called tag=stalled")
        # The stalled response ends without the final chunk: the connection is cut.
        stalled.sock.settimeout(10)
        received = 0
        try:
            while data := stalled.sock.recv(1 << 20):
                received += len(data)
                assert received < 64 << 20, "the stalled stream was not cut short"
        except (ConnectionResetError, TimeoutError):
            pass
    finally:
        stalled.close()


def test_a_stalled_request_body_gets_408_after_body_timeout(serve):
    server = serve("echo:app", "--body-timeout", "1", env={"ECHO_TRACE": "1"})
    with Conn(server, timeout=10) as c:
        c.send(
            f"POST /stalled HTTP/1.1\r\nHost: {host_header(server)}\r\n"
            "Content-Length: 100\r\n\r\n0123456789".encode()
        )
        t0 = time.monotonic()
        resp = c.read_response()
        assert resp.status == 408
        assert time.monotonic() - t0 < 8
        assert c.closed_by_server(timeout=5)
    assert "echo called POST /stalled" not in server.output()


def test_conflicting_content_lengths_from_the_app_are_a_500(serve):
    server = serve("errors:app")
    with Conn(server, timeout=10) as c:
        resp = c.request("GET", "/two-content-lengths")
        assert resp.status == 500
        # The connection stays usable: no stray body bytes were sent.
        again = c.request("GET", "/ok")
        assert again.status == 200
    server.wait_for_output("conflicting Content-Length headers from the application: 4 and 100")


def test_head_stops_iterating_a_long_body(serve):
    server = serve("stream:app")
    with Conn(server, timeout=10) as c:
        t0 = time.monotonic()
        # 200 chunks 50 ms apart would take 10 s to produce.
        resp = c.request("HEAD", "/?n=200&size=10&delay=0.05&tag=head")
        assert resp.status == 200 and resp.body == b""
        server.wait_for_output("stream close\\(\\) called tag=head")
        assert time.monotonic() - t0 < 5


def test_max_queue_zero_is_refused():
    done = subprocess.run(
        [sys.executable, "-m", "ferrule", "--max-queue", "0", "echo:app"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--max-queue" in done.stderr
