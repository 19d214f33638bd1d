"""Limits the server enforces before (or instead of) running the app: body size (413),
request line (414), header count and size (431), transfer codings (501), the queue (503),
timeouts, and memory staying bounded for huge bodies in either direction.

Every test runs over TCP and over a Unix socket (the `serve` fixture).
"""

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import (
    Conn,
    Unmet,
    build_request,
    host_header,
    vm_rss,
    wait_until,
)

MIB = 1 << 20


def refused_without_the_app(server, raw: bytes, status: int):
    """Send `raw` and expect `status` as the very first response (no 100 Continue before it)."""
    with Conn(server, timeout=10) as c:
        c.send(raw)
        resp = c.read_response(interim=True)
    assert resp.status == status, (resp.status, resp.body[:300])
    return resp


def assert_app_only_ran_for(server, path: str):
    resp, _ = server.request("GET", path)
    assert resp.status == 200
    server.wait_for_output(f"echo called GET {path}")
    called = [line for line in server.output().splitlines() if "fixture: echo called" in line]
    assert len(called) == 1, called


# -- 413 ----------------------------------------------------------------------------------


def test_declared_content_length_over_max_body_size_gets_413(serve):
    server = serve("echo:app", "--max-body-size", "1K", env={"ECHO_TRACE": "1"})
    host = host_header(server)
    # Only the head is sent: the server must answer from Content-Length alone.
    head = build_request("POST", "/big", host=host, headers=[("Content-Length", "2048")])
    refused_without_the_app(server, head, 413)
    assert_app_only_ran_for(server, "/after-413")


def test_content_length_at_max_body_size_is_accepted(serve):
    server = serve("echo:app", "--max-body-size", "1K")
    with Conn(server) as c:
        resp = c.request("POST", "/exact", body=b"x" * 1024)
        over = c.request("POST", "/over", body=b"x" * 1025)
    assert resp.status == 200 and resp.json()["body_len"] == 1024
    assert over.status == 413


def test_expect_100_continue_over_the_limit_gets_413_not_100(serve):
    server = serve("echo:app", "--max-body-size", "1K")
    head = build_request(
        "POST",
        "/big",
        host=host_header(server),
        headers=[("Content-Length", "4096"), ("Expect", "100-continue")],
    )
    with Conn(server) as c:
        c.send(head)
        resp = c.read_response(interim=True)
    assert resp.status == 413, resp


def test_chunked_body_over_max_body_size_gets_413(serve):
    server = serve("echo:app", "--max-body-size", "1K", env={"ECHO_TRACE": "1"})
    raw = build_request("POST", "/big", host=host_header(server), body=b"y" * 3000, chunked=True)
    refused_without_the_app(server, raw, 413)
    assert_app_only_ran_for(server, "/after-413")


# -- 414, 431, 501 ------------------------------------------------------------------------


def test_request_line_over_the_limit_gets_414(serve):
    server = serve("echo:app", "--limit-request-line", "200", env={"ECHO_TRACE": "1"})
    host = host_header(server)
    with Conn(server) as c:
        fits = c.request("GET", "/" + "a" * 150)
    assert fits.status == 200
    refused_without_the_app(server, build_request("GET", "/" + "b" * 300, host=host), 414)
    assert_app_only_ran_for_prefix(server, "/a")


def assert_app_only_ran_for_prefix(server, prefix: str):
    resp, _ = server.request("GET", prefix + "-after")
    assert resp.status == 200
    server.wait_for_output(f"echo called GET {prefix}-after")
    called = [line for line in server.output().splitlines() if "fixture: echo called" in line]
    assert all(f"GET {prefix}" in line for line in called), called


def test_too_many_header_fields_gets_431(serve):
    server = serve("echo:app", "--limit-request-fields", "10", env={"ECHO_TRACE": "1"})
    host = host_header(server)
    few = [(f"X-H{i}", "v") for i in range(5)]
    many = [(f"X-H{i}", "v") for i in range(20)]
    with Conn(server) as c:
        assert c.request("GET", "/few", headers=few).status == 200
    refused_without_the_app(server, build_request("GET", "/many", host=host, headers=many), 431)
    assert_app_only_ran_for_prefix(server, "/few")


def test_exactly_the_field_limit_passes_though_an_id_header_is_added(serve):
    # Issue 5 review: the X-Request-ID the server adds was counted against
    # --limit-request-fields, so a request with exactly the limit got 431.
    server = serve("echo:app", "--limit-request-fields", "10")
    exact = [(f"X-H{i}", "v") for i in range(9)]  # and Host: 10 fields
    with Conn(server) as c:
        resp = c.request("GET", "/exact", headers=exact)
    assert resp.status == 200
    assert len(resp.header("X-Request-ID")) == 32


def test_header_field_over_the_size_limit_gets_431(serve):
    server = serve("echo:app", "--limit-request-field-size", "100", env={"ECHO_TRACE": "1"})
    host = host_header(server)
    with Conn(server) as c:
        assert c.request("GET", "/small", headers=[("X-Small", "s" * 50)]).status == 200
    raw = build_request("GET", "/big", host=host, headers=[("X-Big", "b" * 200)])
    refused_without_the_app(server, raw, 431)
    assert_app_only_ran_for_prefix(server, "/small")


def test_header_field_over_the_default_size_limit_gets_431(serve):
    server = serve("echo:app")
    raw = build_request("GET", "/", host=host_header(server), headers=[("X-Big", "b" * 9000)])
    refused_without_the_app(server, raw, 431)


def test_unknown_transfer_coding_gets_501(serve):
    server = serve("echo:app", env={"ECHO_TRACE": "1"})
    raw = (
        f"POST /te HTTP/1.1\r\nHost: {host_header(server)}\r\n"
        "Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ).encode()
    refused_without_the_app(server, raw, 501)
    assert_app_only_ran_for(server, "/after-501")


def test_transfer_coding_not_ending_in_chunked_is_refused_and_closed(serve):
    # RFC 9112 6.3: a request whose final coding is not chunked MUST get 400 and a closed
    # connection (its length is unknowable). `gzip, chunked` (length known, coding unknown)
    # is the 501 case above. The app must not run and the connection must close.
    server = serve("echo:app", env={"ECHO_TRACE": "1"})
    raw = (
        f"POST /te HTTP/1.1\r\nHost: {host_header(server)}\r\n"
        "Transfer-Encoding: gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ).encode()
    with Conn(server, timeout=10) as c:
        c.send(raw)
        resp = c.read_response(interim=True)
        assert resp.status == 400, (resp.status, resp.body[:300])
        assert c.closed_by_server(timeout=5)
    assert_app_only_ran_for(server, "/after-gzip")


# -- 503 ----------------------------------------------------------------------------------


def test_full_queue_gets_503_with_retry_after_and_a_log_line(serve, tmp_path):
    server = serve("slow:app", "--threads", "1", "--max-queue", "1")
    gate = tmp_path / "gate"
    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(server.request, "GET", f"/?gate={gate}&tag=first")
        server.wait_for_output("slow started tag=first")
        # One of these fits in the queue behind `first`; the rest must be refused at once,
        # while `first` still holds the only thread.
        others = [pool.submit(server.request, "GET", f"/?s=0&tag=q{i}") for i in range(4)]
        wait_until(
            lambda: (n := sum(f.done() for f in others)) >= 3 or Unmet(f"{n} answered"),
            10,
            what="three refused while the thread is held",
        )
        gate.touch()
        results = [f.result(timeout=30) for f in others]
        first_resp, first_body = first.result(timeout=30)
    assert (first_resp.status, first_body) == (200, b"passed")
    statuses = sorted(resp.status for resp, _ in results)
    assert statuses.count(503) >= 3 and set(statuses) <= {200, 503}, statuses
    for resp, _ in results:
        if resp.status == 503:
            retry = resp.getheader("Retry-After")
            assert retry is not None and retry.strip().isdigit(), resp.getheaders()
    # The refusal is logged with the queue depth (waitress: "Task queue depth is N").
    server.wait_for_output(r"(?i)queue.*\b1\b")
    resp, body = server.request("GET", "/?s=0&tag=after")
    assert (resp.status, body) == (200, b"slept 0")


def test_a_slow_upload_does_not_hold_the_only_thread(serve):
    # The body is read by the network core before the app runs, so a client trickling its
    # body in must not keep others waiting for the single Python thread.
    server = serve("echo:app", "--threads", "1")
    host = host_header(server)
    with Conn(server, timeout=10) as slow:
        slow.send(
            build_request("POST", "/slow", host=host, headers=[("Content-Length", "10")]) + b"12345"
        )
        with Conn(server, timeout=5) as other:
            assert other.request("GET", "/other").status == 200
        slow.send(b"67890")
        resp = slow.read_response()
    assert resp.status == 200 and resp.json()["body"] == "1234567890"


def test_max_connections_holds_further_connections_until_one_closes(serve):
    server = serve("echo:app", "--max-connections", "1")
    host = host_header(server)
    with Conn(server) as first:
        assert first.request("GET", "/first").status == 200
        with Conn(server, timeout=10) as second:
            second.send(build_request("GET", "/second", host=host))
            second.sock.settimeout(1)
            with pytest.raises(TimeoutError):
                second.sock.recv(1)  # not served while `first` holds the only slot
            second.sock.settimeout(10)
            first.close()
            resp = second.read_response()
    assert resp.status == 200 and resp.json()["environ"]["PATH_INFO"] == "/second"


# -- timeouts -----------------------------------------------------------------------------


def test_incomplete_request_head_is_dropped_after_header_timeout(serve):
    server = serve("echo:app", "--header-timeout", "1")
    with Conn(server, timeout=8) as c:
        c.send(f"GET / HTTP/1.1\r\nHost: {host_header(server)}\r\nX-Slow: ".encode())
        t0 = time.monotonic()
        received = b""
        try:
            while chunk := c.sock.recv(65536):  # a 408 is allowed before the close
                received += chunk
        except ConnectionResetError:
            pass
        elapsed = time.monotonic() - t0
    assert elapsed < 6, f"connection still open after {elapsed:.1f}s"
    assert received == b"" or received.startswith(b"HTTP/1.1 408"), received[:200]


def test_idle_keep_alive_connection_is_closed_after_keep_alive(serve):
    server = serve("echo:app", "--keep-alive", "1")
    with Conn(server) as c:
        assert c.request("GET", "/").status == 200
        t0 = time.monotonic()
        assert c.closed_by_server(timeout=6)
        assert time.monotonic() - t0 < 6


# -- memory -------------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_1gib_streamed_response_read_slowly_keeps_rss_bounded(serve):
    server = serve("stream:app")
    pid = server.proc.pid
    with Conn(server, timeout=60) as c:
        baseline = vm_rss(pid)
        peak = baseline
        c.send(build_request("GET", "/?mb=1024&tag=gib", host=host_header(server)))
        head = c.read_head()
        assert head.status == 200
        assert (head.header("Transfer-Encoding") or "").lower() == "chunked"
        # Give an unbounded server every chance to run ahead of this slow reader.
        server.wait_for_output("stream started tag=gib")
        time.sleep(1)
        peak = max(peak, vm_rss(pid))
        buf = bytearray(256 * 1024)
        view = memoryview(buf)
        total = len(c.buf)
        tail = bytes(c.buf[-5:])
        next_sample = 0
        while True:
            n = c.sock.recv_into(view)
            if not n:
                break
            total += n
            tail = (tail + bytes(view[max(0, n - 5) : n]))[-5:]
            if total >= next_sample:
                peak = max(peak, vm_rss(pid))
                next_sample += 16 * MIB
                if total < 128 * MIB:
                    time.sleep(0.05)  # the slow phase
            if tail == b"0\r\n\r\n" and total >= 1024 * MIB:
                break
    assert tail == b"0\r\n\r\n", tail
    assert total >= 1024 * MIB
    growth = peak - baseline
    assert growth < 200 * MIB, f"server RSS grew by {growth / MIB:.0f} MiB"
    server.wait_for_output("stream close\\(\\) called tag=gib")


@pytest.mark.timeout(240)
def test_384mib_upload_is_spooled_and_keeps_rss_bounded(serve):
    server = serve("echo:app", "--body-buffer-size", "1M")
    pid = server.proc.pid
    block = os.urandom(MIB)
    size = 384
    expected = hashlib.sha256()
    with Conn(server, timeout=120) as c:
        baseline = vm_rss(pid)
        peak = baseline
        c.send(
            build_request(
                "POST",
                f"/?read=chunks&n={MIB}",
                host=host_header(server),
                headers=[("Content-Length", str(size * MIB))],
            )
        )
        for i in range(size):
            c.send(block)
            expected.update(block)
            if i % 16 == 0:
                peak = max(peak, vm_rss(pid))
        resp = c.read_response()
        peak = max(peak, vm_rss(pid))
    assert resp.status == 200
    data = resp.json()
    assert data["body_len"] == size * MIB
    assert data["body_sha256"] == expected.hexdigest()
    growth = peak - baseline
    assert growth < 150 * MIB, f"server RSS grew by {growth / MIB:.0f} MiB"


def test_server_survives_a_client_that_vanishes_mid_upload(serve):
    server = serve("echo:app")
    with Conn(server) as c:
        c.send(
            build_request(
                "POST", "/", host=host_header(server), headers=[("Content-Length", "100000")]
            )
        )
        c.send(b"z" * 5000)
    resp, _ = server.request("GET", "/still-alive")
    assert resp.status == 200
