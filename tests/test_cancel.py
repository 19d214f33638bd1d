"""Cancellation (issue 4): a request whose client left, that ran past `--timeout`, or that a
forced shutdown reached is cancelled — skipped if queued; if running, it sees
`environ["ferrule.disconnected"]()` turn true, its writes are discarded, and after
`--cancel-grace` its exception is raised in its thread; `close()` (Django's
`request_finished`) still runs; the access log says 499 or 504.

The fixture app (`tests/apps/cancelapp.py`, a one-file Django project) records what happened
to each request in a file, and the tests assert on that: what the application saw, not only
what the client got. Over TCP and a Unix socket; HTTP/1.1, HTTP/2 (RST_STREAM with the `h2`
package) and TLS. No timing assertions beyond generous liveness bounds.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
from pathlib import Path

import pytest
from conftest import start
from h2_helpers import H2
from helpers import Conn, Truncated, Unmet, build_request, host_header, vm_rss, wait_until
from nginx_helpers import proxy_to_unix, running_nginx
from tls_helpers import Pki, TlsView, tls_args

# How long the application may take to notice what a test did. Generous: the machine is
# shared; a broken server fails these tests by exceeding them, not a slow one.
LIVENESS = 20


class Events:
    """The events the fixture app recorded, one `fixture: ...` line each."""

    def __init__(self, path: Path):
        self.path = path

    def lines(self) -> list[str]:
        try:
            return self.path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def matching(self, pattern: str) -> list[str]:
        rx = re.compile(pattern)
        return [line for line in self.lines() if rx.search(line)]

    def wait(self, pattern: str, timeout: float = LIVENESS) -> str:
        """The first event matching `pattern`, once it has happened."""
        rx = re.compile(pattern)

        def first():
            lines = self.lines()
            hit = next((line for line in lines if rx.search(line)), None)
            return hit or Unmet({"events": len(lines), "last": lines[-5:]})

        return wait_until(first, timeout, what=pattern)


@pytest.fixture
def cancelapp(serve, tmp_path):
    """cancelapp(*args) -> (Server, Events): the fixture app with events in tmp_path."""

    def _serve(*args: str, bare: bool = False):
        events = Events(tmp_path / "events.log")
        env = {"FERRULE_TEST_CLOSE_LOG": str(events.path)}
        if bare:
            env["CANCELAPP_BARE"] = "1"
        server = serve("cancelapp", *args, env=env)
        return server, events

    return _serve


def access_line(method: str, target: str, status: int) -> str:
    return re.escape(f'"{method} {target} HTTP/1.1" {status} ')


def send(server, target: str, method: str = "GET", body: bytes = b"", timeout=30) -> Conn:
    """A connection with one request sent and its response not read."""
    c = Conn(server, timeout=timeout)
    c.send(build_request(method, target, host=host_header(server), body=body))
    return c


# -- the request object ----------------------------------------------------------------------


def test_the_request_object_describes_a_running_request(cancelapp):
    server, events = cancelapp()
    first = json.loads(server.request("GET", "/quick?tag=a")[1])
    second = json.loads(server.request("GET", "/quick?tag=b")[1])
    assert first["method"] == "GET" and first["path"] == "/quick"
    assert first["cancelled"] is None and first["disconnected"] is False
    assert first["asleep"] == 0.0
    assert second["id"] != first["id"] and len(first["id"]) == 32
    assert first["repr"] == f"<ferrule.Request {first['id']} GET /quick>"


# -- the client leaves -------------------------------------------------------------------------


def test_a_queued_request_whose_client_left_is_never_run(cancelapp, tmp_path):
    server, events = cancelapp("--threads", "1", "--access-log")
    gate = tmp_path / "gate"
    with send(server, f"/gate?tag=first&gate={gate}") as first:
        events.wait("called tag=first")
        # The only thread is busy: this one waits in the queue, and its client leaves.
        send(server, "/quick?tag=second").close()
        server.wait_for_output(access_line("GET", "/quick?tag=second", 499), LIVENESS)
        gate.touch()
        assert first.read_response().body == b"passed"
    assert server.request("GET", "/quick?tag=third")[0].status == 200
    assert events.matching("called tag=third")
    assert not events.matching("tag=second"), "the application ran a request nobody waited for"


def test_requests_whose_clients_left_before_the_server_read_them_are_logged(cancelapp, tmp_path):
    # Head and end of stream already waiting when the server first reads the connection (the
    # server is stopped while the clients connect, send and close). If hyper reads both in
    # one pass it drops the request's future before polling it: the request must still be
    # logged as 499 (such a request once left no trace), and never reach the application.
    server, events = cancelapp("--threads", "1", "--access-log")
    gate = tmp_path / "gate"
    with send(server, f"/gate?tag=first&gate={gate}") as first:
        events.wait("called tag=first")
        server.proc.send_signal(signal.SIGSTOP)
        try:
            for i in range(20):
                send(server, f"/quick?tag=burst{i}").close()
        finally:
            server.proc.send_signal(signal.SIGCONT)
        for i in range(20):
            server.wait_for_output(access_line("GET", f"/quick?tag=burst{i}", 499), LIVENESS)
        gate.touch()
        assert first.read_response().body == b"passed"
    assert not events.matching("tag=burst"), "the application ran a request nobody waited for"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_view_polling_disconnected_sees_the_client_leave(cancelapp, method):
    # The POST body is read whole (and, past --body-buffer-size, spooled) before the view
    # runs: the server still notices the client leaving afterwards.
    server, events = cancelapp("--access-log", "--body-buffer-size", "64K")
    body = b"x" * 200_000 if method == "POST" else b""
    c = send(server, "/poll?tag=leaves", method=method, body=body)
    events.wait(f"started tag=leaves body={len(body)}")
    assert not events.matching("saw cancel")
    c.close()
    events.wait("saw cancel tag=leaves reason=disconnected")
    events.wait("request_finished tag=leaves")
    server.wait_for_output(access_line(method, "/poll?tag=leaves", 499))
    server.wait_for_output(r"/poll\?tag=leaves was cancelled \(the client disconnected\)")


def test_a_busy_thread_gets_client_disconnected_after_the_grace(cancelapp):
    server, events = cancelapp("--cancel-grace", "0.5", "--access-log")
    c = send(server, "/cpu?tag=spin")
    events.wait("started tag=spin")
    c.close()
    events.wait("interrupted tag=spin exc=ClientDisconnected cancelled=disconnected")
    # The middleware turned the exception into a response, which was discarded; close()
    # still ran.
    events.wait("middleware caught ClientDisconnected tag=spin")
    events.wait("request_finished tag=spin")
    server.wait_for_output(
        r"WARNING\] GET /cpu\?tag=spin was still running 0.5s after it was cancelled "
        r"\(the client disconnected\); raised ClientDisconnected in its thread"
    )
    server.wait_for_output(access_line("GET", "/cpu?tag=spin", 499))
    # The thread is free again.
    assert server.request("GET", "/quick?tag=after")[0].status == 200


@pytest.mark.parametrize("why", ["disconnect", "timeout"])
def test_without_a_middleware_a_cancelled_view_is_one_quiet_line(cancelapp, why):
    # No middleware catches the cancellation: Django's error path would log a 500 with its
    # traceback (and mail ADMINS, and signal Sentry); ferrule answers it quietly instead.
    server, events = cancelapp(
        "--timeout",
        "1" if why == "timeout" else "0",
        "--cancel-grace",
        "0.5",
        "--access-log",
        bare=True,
    )
    c = send(server, "/cpu?tag=bare")
    events.wait("started tag=bare")
    if why == "disconnect":
        c.close()
        exc, status, said = "ClientDisconnected", 499, "the client disconnected"
    else:
        exc, status, said = "RequestTimeout", 504, "it ran longer than --timeout"
    events.wait(f"interrupted tag=bare exc={exc}")
    events.wait("request_finished tag=bare")
    server.wait_for_output(
        rf"INFO\] GET /cpu\?tag=bare was stopped in its view \({re.escape(said)}\)"
    )
    server.wait_for_output(access_line("GET", "/cpu?tag=bare", status))
    c.close()
    # No error signal (Sentry's), no traceback.
    assert events.matching("got_request_exception") == [], events.lines()
    output = server.output()
    assert "Traceback" not in output, output[-2000:]


def test_cancel_grace_zero_never_raises(cancelapp):
    server, events = cancelapp("--cancel-grace", "0")
    c = send(server, "/cpu?tag=spin&for=2")
    events.wait("started tag=spin")
    c.close()
    events.wait("cpu ran out tag=spin")
    events.wait("request_finished tag=spin")
    assert not events.matching("interrupted")


def test_a_client_leaving_a_stream_stops_it(cancelapp):
    server, events = cancelapp("--access-log")
    with send(server, "/stream?tag=s") as c:
        assert c.read_head().status == 200
        assert c.read_chunk()
        events.wait("streaming tag=s")
    events.wait("stream closed tag=s cancelled=disconnected")
    events.wait("request_finished tag=s")
    server.wait_for_output(access_line("GET", "/stream?tag=s", 499))


def test_tls_clients_leaving_are_noticed(serve, tmp_path):
    (tmp_path / "pki").mkdir()
    pki = Pki(tmp_path / "pki")
    events = Events(tmp_path / "events.log")
    server = serve(
        "cancelapp",
        *tls_args(pki.server()),
        env={"FERRULE_TEST_CLOSE_LOG": str(events.path)},
    )
    view = TlsView(server, pki.context(alpn=["http/1.1"]))
    c = send(view, "/poll?tag=tls")
    events.wait("started tag=tls")
    c.close()
    events.wait("saw cancel tag=tls reason=disconnected")
    events.wait("request_finished tag=tls")


def test_a_client_leaving_nginx_cancels_the_request_behind_it(tmp_path):
    events = Events(tmp_path / "events.log")
    sock = tmp_path / "ferrule.sock"
    server = start(
        ["--bind", f"unix:{sock}", "--unix-socket-mode", "666", "cancelapp"],
        env={"FERRULE_TEST_CLOSE_LOG": str(events.path)},
    )
    block = proxy_to_unix(sock)
    try:
        with running_nginx(tmp_path, block) as port:
            c = socket.create_connection(("127.0.0.1", port), timeout=30)
            c.sendall(b"GET /poll?tag=nginx HTTP/1.1\r\nHost: localhost\r\n\r\n")
            events.wait("started tag=nginx")
            c.close()
            events.wait("saw cancel tag=nginx reason=disconnected")
            events.wait("request_finished tag=nginx")
    finally:
        server.stop()


# -- HTTP/2 ------------------------------------------------------------------------------------


def test_an_http2_stream_reset_cancels_only_that_request(cancelapp):
    server, events = cancelapp("--access-log")
    client = H2(server)
    try:
        polling = client.request("/poll?tag=reset")
        events.wait("started tag=reset")
        other = client.request("/quick?tag=other")
        client.reset(polling)
        response = client.response(other, timeout=30)
        assert response.status == "200" and json.loads(response.body)["cancelled"] is None
        events.wait("saw cancel tag=reset reason=disconnected")
        events.wait("request_finished tag=reset")
        # The connection is still good for more streams.
        assert client.response(client.request("/quick?tag=later"), timeout=30).status == "200"
    finally:
        client.close()
    server.wait_for_output(re.escape('"GET /poll?tag=reset HTTP/2.0" 499 '))


def test_losing_an_http2_connection_cancels_its_requests(cancelapp):
    server, events = cancelapp()
    client = H2(server)
    client.request("/poll?tag=h2gone")
    events.wait("started tag=h2gone")
    client.close()
    events.wait("saw cancel tag=h2gone reason=disconnected")
    events.wait("request_finished tag=h2gone")


# -- --timeout ---------------------------------------------------------------------------------


def test_timeout_answers_504_and_raises_request_timeout(cancelapp):
    server, events = cancelapp("--timeout", "1", "--cancel-grace", "0.5", "--access-log")
    with Conn(server, timeout=30) as c:
        resp = c.request("GET", "/cpu?tag=slow")
        assert resp.status == 504
        assert b"--timeout" in resp.body
        # The request body was read, so the connection stays usable.
        assert c.request("GET", "/quick?tag=next").status == 200
    events.wait("interrupted tag=slow exc=RequestTimeout cancelled=timeout")
    events.wait("middleware caught RequestTimeout tag=slow")
    events.wait("request_finished tag=slow")
    server.wait_for_output(r"GET /cpu\?tag=slow ran longer than --timeout \(1s\)")
    server.wait_for_output(access_line("GET", "/cpu?tag=slow", 504))


def test_timeout_cuts_a_stream_that_already_started(cancelapp):
    server, events = cancelapp("--timeout", "1", "--access-log")
    with send(server, "/stream?tag=long") as c:
        assert c.read_head().status == 200
        with pytest.raises((Truncated, ConnectionResetError)):
            while c.read_chunk():
                pass
    events.wait("stream closed tag=long cancelled=timeout")
    events.wait("request_finished tag=long")
    server.wait_for_output(access_line("GET", "/stream?tag=long", 504))


def test_a_view_polling_disconnected_sees_the_timeout(cancelapp):
    server, events = cancelapp("--timeout", "0.5")
    resp, _ = server.request("GET", "/poll?tag=t")
    assert resp.status == 504
    events.wait("saw cancel tag=t reason=timeout")
    events.wait("request_finished tag=t")


# -- forced shutdown -------------------------------------------------------------------------


def test_the_graceful_timeout_cancels_running_requests(cancelapp):
    server, events = cancelapp("--graceful-timeout", "1", "--threads", "2")
    # The polling view sleeps, so a second thread is started for the spinning one.
    polling = send(server, "/poll?tag=waits")
    events.wait("started tag=waits")
    spinning = send(server, "/cpu?tag=spins")
    events.wait("started tag=spins")
    try:
        server.proc.send_signal(signal.SIGTERM)
        events.wait("saw cancel tag=waits reason=shutdown")
        # The grace is cut short at shutdown: the exception is raised well before 5 s.
        events.wait("interrupted tag=spins exc=RequestCancelled cancelled=shutdown")
        events.wait("request_finished tag=waits")
        events.wait("request_finished tag=spins")
        # Both threads unwound, so the process exits cleanly.
        assert server.proc.wait(timeout=LIVENESS) == 0
    finally:
        polling.close()
        spinning.close()


# -- nothing leaks ---------------------------------------------------------------------------


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def storm(server, events: Events, n: int, batch: int = 50) -> None:
    """`n` requests whose clients leave: each batch is sent, then once one of its requests
    runs every client closes, so some are cancelled while running and the rest while
    queued. (Closing at once let a loaded server find every client gone before it ran
    anything, and the running path went untested.)"""
    for first in range(0, n, batch):
        running = len(events.matching("started tag=storm"))
        conns = [send(server, "/poll?tag=storm") for _ in range(min(batch, n - first))]

        def one_more(running=running):
            now = len(events.matching("started tag=storm"))
            return now > running or Unmet(f"{now} started, {running} before the batch")

        wait_until(one_more, LIVENESS, what="a request of the batch running")
        for c in conns:
            c.close()


def test_a_storm_of_cancelled_requests_leaks_nothing(cancelapp):
    server, events = cancelapp(
        "--threads", "4", "--thread-idle-timeout", "0.5", "--cancel-grace", "0.2"
    )
    pid = server.proc.pid
    started_with = threads(pid)

    def settled() -> None:
        """Every request that started has seen its cancellation and finished."""

        def done():
            started = len(events.matching("started tag=storm"))
            saw = len(events.matching("saw cancel tag=storm reason=disconnected"))
            finished = len(events.matching("request_finished tag=storm"))
            counts = f"{started} started, {saw} saw the cancel, {finished} finished"
            return started == saw == finished or Unmet(counts)

        wait_until(done, LIVENESS, what="cancelled requests to finish")
        assert server.request("GET", "/quick?tag=alive")[0].status == 200

    def at_most(count, limit: int, unit: str):
        """For wait_until: `count(pid)` is down to `limit`."""
        n = count(pid)
        return n <= limit or Unmet(f"{n} {unit}, want <= {limit}")

    # Warm up (imports, allocator arenas, the threads' first start), then take the baseline
    # once the extra threads have gone idle and exited.
    storm(server, events, 200)
    settled()
    wait_until(
        lambda: at_most(threads, started_with, "threads"), LIVENESS, what="extra threads to exit"
    )
    base_fds, base_rss = fds(pid), vm_rss(pid)

    storm(server, events, 1000)
    settled()
    wait_until(
        lambda: at_most(threads, started_with, "threads"),
        LIVENESS,
        what="threads back to baseline",
    )
    wait_until(lambda: at_most(fds, base_fds, "fds"), LIVENESS, what="fds back to baseline")
    # Generous: the allocator keeps what it likes; a leak of even 1 KiB per request would
    # still show over a few storms, but one storm must not grow the process by much.
    assert vm_rss(pid) - base_rss < 32 << 20, (base_rss, vm_rss(pid))


# -- complete responses are not disconnects ----------------------------------------------------


def test_a_complete_response_with_a_content_length_is_not_a_disconnect(serve, tmp_path):
    # hyper stops polling an HTTP/1 body once its Content-Length is out and drops it; the
    # disconnect guard must count that as complete (a Django FileResponse goes this way).
    data = tmp_path / "data.bin"
    data.write_bytes(b"z" * 300_000)
    server = serve("filewrap", "--access-log")
    target = f"/?path={data}&cl=size"
    resp, body = server.request("GET", target)
    assert resp.status == 200 and len(body) == 300_000
    server.wait_for_output(access_line("GET", target, 200), LIVENESS)
    assert "was cancelled" not in server.output()


def test_a_complete_stream_with_a_content_length_is_not_a_disconnect(serve):
    server = serve("stream", "--access-log")
    target = "/?n=5&size=10&cl=1&tag=done"
    resp, body = server.request("GET", target)
    assert resp.status == 200 and len(body) == 50
    server.wait_for_output(access_line("GET", target, 200), LIVENESS)
    assert "was cancelled" not in server.output()
