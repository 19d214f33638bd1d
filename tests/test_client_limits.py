"""Limits per client (issue 16): what one client may take of the server, so that many hostile
ones cannot take it all. The disk that large request bodies are spooled to
(`--max-spool-size`, `--spool-dir`), the slowest transfer accepted both ways (`--min-rate`),
the connections one address may hold (`--max-connections-per-ip`, or the requests in flight of
one client behind a trusted proxy) and the requests one HTTP/2 connection may have in the
application (`--h2-max-pending`). The issue's acceptance test is the campaign at the end: a
thousand hostile connections from one address while an honest client from another keeps
getting answers.

Over TCP and a Unix socket where the transport matters; the per-address limits are TCP's
(Unix-socket peers have no address and are exempt, which one test checks). Every wait is on a
condition with a generous deadline (the machine is shared and loaded): the bounds stated are
liveness bounds, not timings.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import resource
import select
import selectors
import socket
import threading
import time

import pytest
from h2_helpers import H2
from helpers import (
    Conn,
    Unmet,
    build_request,
    free_port,
    host_header,
    run_ferrule,
    small_window_socket,
    wait_until,
)

KIB = 1 << 10
# What an answer the test waits for may take at most, attack or not: a liveness bound.
LIVENESS = 10
# Peers trusted to send X-Forwarded-For, other than loopback (the default trusts loopback,
# whose connections are then not counted per address).
NOT_LOOPBACK = "10.255.255.1"
HANG_UP = select.POLLRDHUP | select.POLLHUP | select.POLLERR


# -- shared -------------------------------------------------------------------------------


def untrusted(launched, *args: str, app: str = "slow:app"):
    """A server on 127.0.0.1 that does not trust loopback as a proxy: the test client is then
    a client like any other, counted per address and per connection."""
    return launched(["--bind", "127.0.0.1:0", "--forwarded-allow-ips", NOT_LOOPBACK, *args, app])


def head(server, length: int, target: str = "/", headers=()) -> bytes:
    """A POST head declaring a `length`-byte body, without the body."""
    return build_request(
        "POST",
        target,
        host=host_header(server),
        headers=[("Content-Length", str(length)), *headers],
    )


def spool_files(pid: int, spool_dir) -> list[str]:
    """What the process holds open in `spool_dir` (spooled bodies are unlinked, so only its
    descriptors show them)."""
    prefix = f"{spool_dir}/"
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith(prefix):
            found.append(target)
    return found


def spooled_bytes(pid: int, spool_dir) -> int:
    """The bytes of the files the process holds open in `spool_dir`."""
    total = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        path = f"/proc/{pid}/fd/{fd}"
        try:
            if os.readlink(path).startswith(f"{spool_dir}/"):
                total += os.stat(path).st_size
        except OSError:
            continue  # closed meanwhile
    return total


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    """Send `data` from another thread, so the test can read the answer meanwhile (the server
    may answer and close before it has read it all)."""

    def run() -> None:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server closed; what it answered is read by the test

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def bind_for(transport: str, tmp_path, name: str) -> str:
    """A `--bind` for the transport, for a test that starts more than one server."""
    if transport == "unix":
        return f"unix:{tmp_path / name}.sock"
    return "127.0.0.1:0"


def raise_fd_limit(need: int) -> None:
    """Let this process (and the servers it starts) open `need` descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"the hard limit on open files is {hard}; this test needs {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def hung_up(sock: socket.socket) -> bool:
    """Whether the server has closed its end (FIN or reset), looked at without reading."""
    poller = select.poll()
    poller.register(sock, HANG_UP)
    return bool(poller.poll(0))


# -- the spool: --max-spool-size, --spool-dir ------------------------------------------------


def test_a_body_the_spool_has_no_room_for_gets_503_before_it_is_sent(serve, tmp_path):
    # --max-spool-size 1M: A's body takes its room as it arrives; once 890 KB of it are
    # spooled, B's 300 KB cannot have room, and is told so before it sends a byte of its
    # body; once A is done its room is back and B's retry goes through.
    spool = tmp_path / "spool"
    spool.mkdir()
    server = serve(
        "echo:app",
        "--body-buffer-size",
        "64K",
        "--max-spool-size",
        "1M",
        "--spool-dir",
        str(spool),
    )
    body_a = os.urandom(900_000)
    with Conn(server, timeout=LIVENESS) as a:
        a.send(head(server, len(body_a)))
        a.send(body_a[:890_000])
        # Past --body-buffer-size, the body is spooled in --spool-dir: a file only the
        # server's descriptors show, unlinked at once.
        wait_until(
            lambda: spool_files(server.proc.pid, spool) or Unmet(os.listdir(spool)),
            LIVENESS,
            what="A's body spooled to a file in --spool-dir",
        )
        assert os.listdir(spool) == [], "spooled bodies are unlinked"
        wait_until(
            lambda: (n := spooled_bytes(server.proc.pid, spool)) >= 890_000 or Unmet(n),
            LIVENESS,
            what="890 KB of A's body spooled",
        )

        # B's head alone: no body is sent, so an answer at all says it came before the body.
        with Conn(server, timeout=LIVENESS) as b:
            b.send(head(server, 300_000))
            refused = b.read_response("POST")
            assert refused.status == 503, (refused.status, refused.body)
            assert refused.header("Retry-After") == "5", refused.headers
            assert (refused.header("Connection") or "").lower() == "close", refused.headers
            assert b.closed_by_server(LIVENESS)
        server.wait_for_output(r"WARNING.*--max-spool-size", timeout=LIVENESS)

        # A client waiting for 100 Continue gets the 503 in its place.
        with Conn(server, timeout=LIVENESS) as c:
            c.send(head(server, 300_000, headers=[("Expect", "100-continue")]))
            first = c.read_response("POST", interim=True)
            assert first.status == 503, (first.status, first.headers)
            assert first.header("Retry-After") == "5", first.headers

        a.send(body_a[890_000:])
        answered = a.read_response("POST")
        assert answered.status == 200, (answered.status, answered.body[:300])
        echoed = answered.json()
        assert echoed["body_len"] == len(body_a)
        assert echoed["body_sha256"] == hashlib.sha256(body_a).hexdigest()

    # A's request is done: its file is closed and its room given back.
    wait_until(
        lambda: not (held := spool_files(server.proc.pid, spool)) or Unmet(held),
        LIVENESS,
        what="A's spool file to be closed",
    )
    body_b = os.urandom(300_000)
    resp, data = server.request("POST", "/", body=body_b)
    assert resp.status == 200, (resp.status, data[:300])
    assert json.loads(data)["body_len"] == len(body_b)


def test_a_body_larger_than_the_whole_spool_gets_413_and_one_trickling_holds_only_what_it_sent(
    serve, tmp_path
):
    # A body that can never fit is no temporary condition: 413, not 503. A client declaring
    # 900 KB and sending 100 KB holds 100 KB of the spool, not 900 KB (issue 16 review: a
    # few trickling clients declaring gigabytes held the whole spool for days).
    spool = tmp_path / "spool"
    spool.mkdir()
    server = serve(
        "echo:app",
        "--body-buffer-size",
        "64K",
        "--max-spool-size",
        "1M",
        "--spool-dir",
        str(spool),
    )
    with Conn(server, timeout=LIVENESS) as conn:
        conn.send(head(server, 2_000_000))
        refused = conn.read_response("POST")
        assert refused.status == 413, (refused.status, refused.body)
        assert b"store" in refused.body
    with Conn(server, timeout=LIVENESS) as trickler:
        trickler.send(head(server, 900_000) + os.urandom(100_000))
        wait_until(
            lambda: (n := spooled_bytes(server.proc.pid, spool)) >= 100_000 or Unmet(n),
            LIVENESS,
            what="the trickler's 100 KB spooled",
        )
        body = os.urandom(800_000)
        resp, data = server.request("POST", "/", body=body)
        assert resp.status == 200, (resp.status, data[:300])
        assert json.loads(data)["body_len"] == len(body)


def test_a_chunked_body_gets_503_as_it_passes_the_spool_cap(serve):
    # A chunked body declares nothing: it takes room as it goes past --body-buffer-size, and
    # is refused when it would pass --max-spool-size; the room it held is given back.
    server = serve("echo:app", "--body-buffer-size", "64K", "--max-spool-size", "256K")
    with Conn(server, timeout=LIVENESS) as conn:
        sender = send_in_background(
            conn.sock,
            build_request(
                "POST", "/", host=host_header(server), body=os.urandom(1 << 20), chunked=True
            ),
        )
        refused = conn.read_response("POST")
        assert refused.status == 503, (refused.status, refused.body)
        assert refused.header("Retry-After") == "5", refused.headers
        assert conn.closed_by_server(LIVENESS)
        sender.join(LIVENESS)
    server.wait_for_output(r"WARNING.*--max-spool-size", timeout=LIVENESS)
    body = os.urandom(200 * KIB)
    with Conn(server, timeout=LIVENESS) as conn:
        resp = conn.request("POST", "/", body=body, chunked=True)
    assert resp.status == 200, (resp.status, resp.body[:300])
    assert resp.json()["body_len"] == len(body)


def test_the_spool_cap_is_shared_out_among_the_workers(serve):
    # Two workers share --max-spool-size 1M: each has 512 KiB, so 600 KB never fits in one
    # worker though it would in the whole: 413, as for any body larger than a worker's share.
    server = serve(
        "echo:app", "--workers", "2", "--body-buffer-size", "64K", "--max-spool-size", "1M"
    )
    with Conn(server, timeout=LIVENESS) as conn:
        conn.send(head(server, 600_000))
        refused = conn.read_response("POST")
    assert refused.status == 413, (refused.status, refused.body)
    body = os.urandom(400_000)
    resp, data = server.request("POST", "/", body=body)
    assert resp.status == 200, (resp.status, data[:300])
    assert json.loads(data)["body_len"] == len(body)


@pytest.mark.parametrize(
    "args, option",
    [
        (["--spool-dir", "/nonexistent"], "--spool-dir"),
        (["--max-spool-size", "lots"], "--max-spool-size"),
        (["--h2-max-pending", "0"], "--h2-max-pending"),
    ],
)
def test_bad_client_limits_exit_2_naming_the_option(args, option):
    code, out, err = run_ferrule(*args, "echo:app")
    assert code == 2, (code, out, err)
    assert option in err, err


# -- --min-rate: request bodies ----------------------------------------------------------


def trickle(conn: Conn, piece: bytes, every: float, bound: float) -> float:
    """Send `piece` every `every` seconds until the server answers (or closes); how long that
    took. Fails if it has not within `bound` seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < bound:
        try:
            conn.send(piece)
        except OSError:
            break  # closed; its answer is read by the caller
        readable, _, _ = select.select([conn.sock], [], [], every)
        if readable:
            break
    else:
        raise AssertionError(f"no answer within {bound}s to a body sent {piece!r} a time")
    return time.monotonic() - t0


@pytest.mark.parametrize(
    "app, target", [("echo:app", "/"), ("asgiapp:app", "/echo")], ids=["wsgi", "asgi"]
)
def test_a_body_slower_than_min_rate_gets_408_though_it_never_pauses(serve, app, target):
    # 10 bytes every 0.25 s is 40 B/s: never a pause of --body-timeout (1 s), but far short of
    # --min-rate 1000 over each 1 s window. 2,000 bytes every 0.25 s (8 KB/s) over 1.5 s is
    # served, on another connection at the same time.
    server = serve(app, "--body-timeout", "1", "--min-rate", "1000")
    fast_body = os.urandom(12_000)
    fast: dict = {}

    def fast_client() -> None:
        with Conn(server, timeout=LIVENESS) as conn:
            conn.send(head(server, len(fast_body), target))
            for i in range(0, len(fast_body), 2000):
                conn.send(fast_body[i : i + 2000])
                time.sleep(0.25)
            fast["resp"] = conn.read_response("POST")

    fast_thread = threading.Thread(target=fast_client, daemon=True)
    fast_thread.start()
    with Conn(server, timeout=LIVENESS) as slow:
        slow.send(head(server, 100_000, target))
        took = trickle(slow, b"x" * 10, every=0.25, bound=20)
        resp = slow.read_response("POST")
        assert resp.status == 408, (resp.status, resp.body)
        assert b"--min-rate" in resp.body, resp.body
        assert slow.closed_by_server(LIVENESS)
    print(f"the slow body was answered 408 after {took:.1f}s")
    fast_thread.join(30)
    assert "resp" in fast, "the fast client got no answer"
    answered = fast["resp"]
    assert answered.status == 200, (answered.status, answered.body[:300])
    if app == "echo:app":
        assert answered.json()["body_len"] == len(fast_body)
    else:
        assert answered.body == fast_body


def test_asgi_time_the_application_keeps_the_body_waiting_is_not_the_clients(serve):
    # The application takes the first piece of a 4 MiB body and sleeps 2 s (two windows of
    # --body-timeout) before taking the rest: the server reads nothing meanwhile, as it has
    # nowhere to put it, and that time is not counted against the client's --min-rate.
    server = serve("pace:app", "--body-timeout", "1", "--min-rate", "200000")
    body = os.urandom(4 << 20)
    with Conn(server, timeout=30) as conn:
        sender = send_in_background(conn.sock, head(server, len(body), "/?s=2") + body)
        server.wait_for_output(r"fixture: pace asleep", timeout=LIVENESS)
        resp = conn.read_response("POST")
        sender.join(LIVENESS)
    assert resp.status == 200, (resp.status, resp.body)
    assert resp.body == str(len(body)).encode()


# -- --min-rate: responses -----------------------------------------------------------------

# The slow reader takes up to 32 KiB every 0.25 s (a quarter of --send-timeout): over TCP its
# 4 KiB window lets it have a few KiB at a time; over a Unix socket, where the kernel frees a
# sent piece only once it is read whole, 32 KiB keeps it moving. Steady progress either way,
# and below the 200,000 B/s of --min-rate.
READ_PIECE = 32 * KIB
READ_EVERY = 0.25
# How long the slow reader gets, six times --send-timeout: the connection must be gone by
# then with --min-rate, and still there without it.
READER_BOUND = 6


def steady_reader(server, result: dict) -> None:
    """Ask for a 64 MiB response on a small-window socket and read READ_PIECE every
    READ_EVERY seconds until the server hangs up or READER_BOUND has passed."""
    with small_window_socket(server, 4096, timeout=LIVENESS) as s:
        s.sendall(b"GET /?mb=64 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        t0 = time.monotonic()
        got = late = 0
        result["closed_after"] = None
        while time.monotonic() - t0 < READER_BOUND:
            if hung_up(s):
                result["closed_after"] = time.monotonic() - t0
                break
            try:
                data = s.recv(READ_PIECE)
            except ConnectionResetError:
                data = b""
            except TimeoutError:
                data = None  # nothing for LIVENESS: not closed, but no progress either
            if data == b"":
                result["closed_after"] = time.monotonic() - t0
                break
            got += len(data or b"")
            if time.monotonic() - t0 > READER_BOUND / 2:
                late += len(data or b"")
            time.sleep(READ_EVERY)
        result["got"], result["late"] = got, late


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_a_reader_slower_than_min_rate_is_disconnected(transport, tmp_path, launched):
    # Both servers stream 64 MiB to a reader taking 16 KiB/s (TCP) or 128 KiB/s (Unix): it
    # never leaves a write waiting a whole --send-timeout (1 s), but it takes less than
    # --min-rate 200000 of the time the writes wait, so it is disconnected; with --min-rate 0
    # the same reader stays connected.
    servers = {
        rate: launched(
            [
                "--bind",
                bind_for(transport, tmp_path, f"rate-{rate}"),
                "--send-timeout",
                "1",
                "--min-rate",
                rate,
                "stream:app",
            ]
        )
        for rate in ("200000", "0")
    }
    results: dict[str, dict] = {rate: {} for rate in servers}
    threads = [
        threading.Thread(target=steady_reader, args=(servers[rate], results[rate]), daemon=True)
        for rate in servers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(READER_BOUND + 2 * LIVENESS)
    print(f"readers: {results}")
    limited, unlimited = results["200000"], results["0"]
    assert limited.get("closed_after") is not None, f"still connected: {limited}"
    assert "got" in unlimited and unlimited["closed_after"] is None, unlimited
    # It kept reading all along.
    assert unlimited["late"] > 0, unlimited


# -- --max-connections-per-ip ------------------------------------------------------------


def served_on(conn: Conn) -> int:
    """A GET on `conn`; its status."""
    return conn.request("GET", "/?read=skip").status


def test_connections_over_the_per_ip_limit_are_closed_at_once(launched):
    server = untrusted(launched, "--max-connections-per-ip", "3", app="echo:app")
    held = [Conn(server, timeout=LIVENESS) for _ in range(3)]
    try:
        # Each has been accepted (and counted): it was answered.
        assert [served_on(c) for c in held] == [200, 200, 200]
        with Conn(server, timeout=LIVENESS) as fourth:
            try:
                fourth.send(build_request("GET", "/", host=host_header(server)))
            except OSError:
                pass  # closed already
            assert fourth.closed_by_server(LIVENESS), "a fourth connection was kept open"
        server.wait_for_output(r"WARNING.*--max-connections-per-ip", timeout=LIVENESS)
        # A slot given back is a slot another connection can take.
        held.pop().close()

        def another_served():
            try:
                with Conn(server, timeout=LIVENESS) as c:
                    return served_on(c) == 200
            except (OSError, AssertionError) as e:
                return Unmet(repr(e))

        wait_until(another_served, LIVENESS, what="a new connection once one closed")
    finally:
        for c in held:
            c.close()


def test_unix_peers_and_trusted_proxies_are_not_counted_per_address(serve, transport):
    # Over Unix the peer has no address (and the proxies are not loopback); over TCP the
    # peer is loopback, which the default --forwarded-allow-ips trusts as a proxy.
    args = ["--max-connections-per-ip", "1"]
    if transport == "unix":
        args += ["--forwarded-allow-ips", NOT_LOOPBACK]
    server = serve("echo:app", *args)
    conns = [Conn(server, timeout=LIVENESS) for _ in range(4)]
    try:
        assert [served_on(c) for c in conns] == [200] * 4
        assert [served_on(c) for c in conns] == [200] * 4
    finally:
        for c in conns:
            c.close()
    assert "--max-connections-per-ip" not in server.output()


def test_forwarded_clients_beyond_the_limit_get_429(serve, tmp_path):
    # Behind a trusted proxy (loopback or a Unix socket peer) the connections are the
    # proxy's; each forwarded client may have --max-connections-per-ip requests in flight.
    server = serve("slow:app", "--threads", "8", "--max-connections-per-ip", "2")
    xff = [("X-Forwarded-For", "203.0.113.9")]
    gate = tmp_path / "gate"
    held = [Conn(server, timeout=30) for _ in range(2)]
    try:
        for i, c in enumerate(held):
            target = f"/?gate={gate}&tag=held{i}"
            c.send(build_request("GET", target, host=host_header(server), headers=xff))
        for i in range(2):
            server.wait_for_output(rf"fixture: slow started tag=held{i}", timeout=LIVENESS)
        with Conn(server, timeout=LIVENESS) as third:
            refused = third.request("GET", "/?s=0&tag=third", headers=xff)
            assert refused.status == 429, (refused.status, refused.body)
            assert refused.header("Retry-After") == "1", refused.headers
            # The refusal did not cost the proxy its connection.
            other = third.request(
                "GET", "/?s=0&tag=other", headers=[("X-Forwarded-For", "203.0.113.10")]
            )
            assert other.status == 200, (other.status, other.body)
        server.wait_for_output(r"203\.0\.113\.9.*--max-connections-per-ip", timeout=LIVENESS)
        assert "slow finished tag=held" not in server.output(), "held requests still in flight"
        gate.touch()
        for c in held:
            assert c.read_response().status == 200
        # Its requests done, the client may send more.
        with Conn(server, timeout=LIVENESS) as again:
            assert again.request("GET", "/?s=0&tag=again", headers=xff).status == 200
    finally:
        for c in held:
            c.close()
    assert "slow started tag=third" not in server.output()


# -- --h2-max-pending ----------------------------------------------------------------------


def test_h2_requests_beyond_max_pending_get_503_at_once(launched):
    # Over TCP from an untrusted address: a trusted proxy (and a Unix-socket peer, always
    # trusted) multiplexes many clients over one connection and is not limited (next test).
    server = untrusted(launched, "--h2-max-pending", "4", "--threads", "2")
    with H2(server, timeout=30) as first:
        streams = [first.request(f"/?s=3&tag=s{i}") for i in range(10)]
        # Six are refused at once: all their answers come before any of the four in the
        # application (asleep 3 s) has finished.
        first.wait(
            lambda: sum(first.streams[s].status == "503" for s in streams) >= 6,
            timeout=LIVENESS,
            what="six 503s",
        )
        assert not any(first.streams[s].status == "200" for s in streams), first
        refused = [first.streams[s] for s in streams if first.streams[s].status == "503"]
        assert len(refused) == 6, first
        for s in refused:
            assert s.header("retry-after") == "1", s.headers
        # Another connection is not held to the first one's count.
        with H2(server, timeout=30) as second:
            other = second.response(second.request("/?s=0&tag=second"), timeout=30)
            assert other.status == "200", second
        for s in streams:
            first.response(s, timeout=30)
        statuses = sorted(first.streams[s].status for s in streams)
        assert statuses == ["200"] * 4 + ["503"] * 6, first
    server.wait_for_output(r"WARNING.*--h2-max-pending", timeout=LIVENESS)


def test_a_reset_stream_keeps_its_place_while_its_view_runs(launched, tmp_path):
    # Issue 16 review: the place was given back when the client reset the stream, while the
    # view ran on, so open-reset loops kept any number of threads busy from one connection.
    server = untrusted(launched, "--h2-max-pending", "2", "--threads", "4")
    gate = tmp_path / "gate"
    with H2(server, timeout=30) as conn:
        running = [conn.request(f"/?gate={gate}&tag=r{i}") for i in range(2)]
        for i in range(2):
            server.wait_for_output(rf"slow started tag=r{i}\b", timeout=LIVENESS)
        for stream in running:
            conn.reset(stream)
        # Both views still run (until the gate opens): their places are taken.
        more = [conn.request(f"/?s=0&tag=m{i}") for i in range(2)]
        statuses = [conn.response(s, timeout=LIVENESS).status for s in more]
        assert statuses == ["503", "503"], conn
        assert "slow finished tag=r" not in server.output()
        gate.touch()
        for i in range(2):
            server.wait_for_output(rf"slow finished tag=r{i}\b", timeout=LIVENESS)
        # Once a view is done its place is back (its worker lets go just after the line).
        wait_until(
            lambda: (
                (st := conn.response(conn.request("/?s=0&tag=after"), LIVENESS).status) == "200"
                or Unmet(st)
            ),
            LIVENESS,
            what="a place given back",
        )


def test_a_trusted_proxy_s_h2_connection_is_not_held_to_max_pending(serve, tmp_path):
    # Loopback is trusted by default, a Unix-socket peer always: an nginx or Envoy in front
    # sends many clients' requests over one connection (issue 16 review).
    server = serve("slow:app", "--h2-max-pending", "2", "--threads", "8")
    gate = tmp_path / "gate"
    with H2(server, timeout=30) as conn:
        streams = [conn.request(f"/?gate={gate}&tag=p{i}") for i in range(6)]
        # Three of them in the application at once, one more than --h2-max-pending (the
        # others may wait for a thread), before any can finish.
        wait_until(
            lambda: (n := server.output().count("slow started tag=p")) >= 3 or Unmet(n),
            LIVENESS,
            what="three streams running at once",
        )
        gate.touch()
        statuses = sorted(conn.response(s, timeout=LIVENESS).status for s in streams)
    assert statuses == ["200"] * 6, conn


# -- the campaign (issue 16's acceptance test) ---------------------------------------------

HOSTILE = 1000
# Seconds of attack: two rounds of the attacker's connections getting in and being cut off by
# --min-rate (a round is about 6 s: a 5 s window, then the reconnection ticks).
ATTACK = 12
HOSTILE_LIMIT = 50
# An honest request is answered within this during the attack.
HONEST_BOUND = 5


class Hostile:
    """HOSTILE connections from 127.0.0.1, driven from one thread with non-blocking sockets:
    each sends a POST head declaring a 1 MB body, then a byte every two seconds; a connection
    the server closes is opened again at the next one-second tick. Notes what the server
    sent each before closing it."""

    def __init__(self, port: int, head: bytes):
        self.port = port
        self.head = head
        self.selector = selectors.DefaultSelector()
        self.socks: dict[socket.socket, dict] = {}
        self.replies: list[bytes] = []  # of the connections that were answered, then closed
        self.silent_closes = 0  # closed without a byte
        self.connect_errors = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def _open(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind(("127.0.0.1", 0))
        err = s.connect_ex(("127.0.0.1", self.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            self.connect_errors += 1
            return
        self.socks[s] = {"sent": False, "reply": b"", "tick": len(self.socks) % 2}
        self.selector.register(s, selectors.EVENT_WRITE)

    def _close(self, s: socket.socket) -> None:
        state = self.socks.pop(s)
        self.selector.unregister(s)
        s.close()
        if state["reply"]:
            self.replies.append(state["reply"])
        elif state["sent"]:
            self.silent_closes += 1

    def _writable(self, s: socket.socket) -> None:
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.connect_errors += 1
            self._close(s)
            return
        try:
            s.send(self.head)
        except OSError:
            self._close(s)
            return
        self.socks[s]["sent"] = True
        self.selector.modify(s, selectors.EVENT_READ)

    def _readable(self, s: socket.socket) -> None:
        try:
            data = s.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.socks[s]["reply"] += data
        else:
            self._close(s)

    def _tick(self, n: int) -> None:
        for s, state in list(self.socks.items()):
            if state["sent"] and state["tick"] == n % 2:
                try:
                    s.send(b"x")
                except BlockingIOError:
                    pass
                except OSError:
                    self._close(s)
        while len(self.socks) < HOSTILE:
            self._open()

    def run(self) -> None:
        n = 0
        next_tick = time.monotonic()
        while not self.stop.is_set():
            if time.monotonic() >= next_tick:
                self._tick(n)
                n += 1
                next_tick += 1
            for key, events in self.selector.select(max(0.0, next_tick - time.monotonic())):
                s = key.fileobj
                if s not in self.socks:
                    continue
                if events & selectors.EVENT_WRITE and not self.socks[s]["sent"]:
                    self._writable(s)
                elif events & selectors.EVENT_READ:
                    self._readable(s)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(LIVENESS)
        for s in list(self.socks):
            s.close()
        self.selector.close()


def held_from(pid: int, port: int, ip_hex: str) -> set[str]:
    """The TCP connections from the address (hex as /proc/net/tcp has it) to `port` that the
    process holds a descriptor of (not those still in the listen backlog), by inode."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    held = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if (
                int(local.split(":")[1], 16) == port
                and remote.split(":")[0] == ip_hex
                and inode in inodes
            ):
                held.add(inode)
    return held


class Sampler:
    """The connections from 127.0.0.1 the server holds, sampled four times a second. A
    connection over the limit is accepted and closed at once, so a sample may catch some of
    those on their way out: what the server holds is what two samples in a row saw (kept at
    least a quarter of a second), `held`; `seen` is every sample's count, as it was."""

    def __init__(self, pid: int, port: int):
        self.pid, self.port = pid, port
        self.held: list[int] = []
        self.seen: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        last: set[str] = set()
        while not self.stop.wait(0.25):
            try:
                now = held_from(self.pid, self.port, "0100007F")
            except OSError:
                return
            self.seen.append(len(now))
            self.held.append(len(now & last))
            last = now

    def close(self) -> list[int]:
        self.stop.set()
        self.thread.join(LIVENESS)
        return self.held


def honest_from_another_address(port: int) -> float:
    """GET / from 127.0.0.2 on a fresh connection; how long until its 200."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=HONEST_BOUND, source_address=("127.0.0.2", 0)
    )
    try:
        conn.request("GET", "/?read=skip")
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    elapsed = time.monotonic() - t0
    assert resp.status == 200, resp.status
    return elapsed


@pytest.mark.timeout(120)
def test_issue_16_a_thousand_slow_posts_from_one_address_do_not_starve_another(launched):
    # 1,000 connections from 127.0.0.1, each declaring a 1 MB body and sending a byte every
    # 2 s (never a 5 s pause, so --body-timeout alone would wait for ever), against
    # --max-connections 200. At most --max-connections-per-ip (50) of them get in, the rest are
    # closed at once; those that got in are answered 408 by --min-rate 500 within a window or
    # two and make room for the next. Meanwhile every request from 127.0.0.2 is answered 200
    # within HONEST_BOUND.
    raise_fd_limit(2 * HOSTILE + 1024)
    port = free_port()
    server = launched(
        [
            "--bind",
            f"0.0.0.0:{port}",
            "--forwarded-allow-ips",
            NOT_LOOPBACK,
            "--max-connections",
            "200",
            "--max-connections-per-ip",
            str(HOSTILE_LIMIT),
            "--body-timeout",
            "5",
            "--min-rate",
            "500",
            "echo:app",
        ]
    )
    honest_from_another_address(port)  # the first request's start-up is not the attack's
    hostile = Hostile(
        port,
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 1000000\r\n\r\n".encode(),
    )
    sampler = Sampler(server.proc.pid, port)
    hostile.thread.start()
    honest_times: list[float] = []
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < ATTACK:
            honest_times.append(honest_from_another_address(port))
            time.sleep(0.2)
    finally:
        samples = sampler.close()
        hostile.close()
    refusals = [line for line in server.output().splitlines() if "--max-connections-per-ip" in line]
    print(
        f"honest: {len(honest_times)} requests, slowest {max(honest_times):.2f}s; "
        f"hostile held: max {max(samples)}, samples {samples}; as seen: {sampler.seen}; "
        f"hostile answered then closed: {len(hostile.replies)}, closed silently: "
        f"{hostile.silent_closes}, connect errors: {hostile.connect_errors}; "
        f"refusal lines: {len(refusals)}"
    )
    assert max(honest_times) < HONEST_BOUND, honest_times
    # The attacker got its share of connections, and never more (held: kept from one sample
    # to the next; those over the limit are accepted and closed at once).
    assert max(samples) == HOSTILE_LIMIT, samples
    # The ones that got in were cut off by --min-rate: a 408 that says so (never served,
    # never a --body-timeout), and enough of them to have made room at least once.
    assert len(hostile.replies) >= HOSTILE_LIMIT, len(hostile.replies)
    for reply in hostile.replies:
        assert reply.startswith(b"HTTP/1.1 408 "), reply[:300]
        assert b"--min-rate" in reply, reply[:300]
    # Most were refused at the door, each silently: the log says so in a few throttled lines.
    assert hostile.silent_closes >= HOSTILE, hostile.silent_closes
    assert 1 <= len(refusals) <= ATTACK // 5 + 2, refusals
