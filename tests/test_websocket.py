"""WebSockets of ASGI applications (issue 14) against a live server, over TCP and a Unix
socket, with the `websockets` client and with raw frames where a client library would not
misbehave: the handshake the application answers (accept with a subprotocol and headers,
403, its own denial response), messages both ways, fragments, compression negotiated and
not, close codes each way, pings, the limits (1009, 1007, 1002), backpressure both ways,
shutdown (1001; 1012 on a reload), and many idle sockets held at once.

The fixture is a raw ASGI application (tests/apps/wsapp.py); tests that look only at their
own sockets and tagged lines share a server per transport (`shared`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import struct
import time
from pathlib import Path

import pytest
from helpers import Unmet, host_header, wait_until
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect, unix_connect

LIVENESS = 30


@pytest.fixture
def ws(serve):
    def _serve(*args: str, env: dict | None = None):
        return serve("wsapp:app", *args, env=env)

    return _serve


def client(server, path: str, **kw):
    """A `websockets` sync client connected to `path` on `server` (TCP or Unix)."""
    kw.setdefault("open_timeout", LIVENESS)
    kw.setdefault("close_timeout", 10)
    if server.is_unix:
        return unix_connect(server.address, f"ws://localhost{path}", **kw)
    host, port = server.address
    return connect(f"ws://{host}:{port}{path}", **kw)


# --- raw frames -------------------------------------------------------------------------------


def raw_handshake(server, path: str = "/echo", extra: str = "") -> socket.socket:
    """A raw socket past the handshake (no extensions offered)."""
    s = server.connect(LIVENESS)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host_header(server)}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, mask: bool = True) -> bytes:
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, (0x80 if mask else 0) | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(s: socket.socket) -> tuple[int, bytes]:
    """(opcode, payload) of the next frame from the server (never masked)."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            assert chunk, f"connection closed after {data!r}"
            data += chunk
        return data

    first, second = exactly(2)
    n = second & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", exactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", exactly(8))
    return first & 0x0F, exactly(n)


def close_code_of(s: socket.socket) -> int:
    """Read frames until the server's close; its code."""
    while True:
        opcode, payload = read_frame(s)
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005


# --- the handshake ----------------------------------------------------------------------------


def test_echo_text_and_binary_with_a_subprotocol_and_headers(shared):
    server = shared("wsapp:app")
    with client(server, "/echo?tag=e", subprotocols=["other", "chat"]) as c:
        assert c.subprotocol == "chat"
        assert c.response.headers["x-fixture"] == "yes"
        c.send("héllo")
        assert c.recv(LIVENESS) == "héllo"
        c.send(b"\x00\xff")
        assert c.recv(LIVENESS) == b"\x00\xff"
        big = os.urandom(300_000)
        c.send(big)
        assert c.recv(LIVENESS) == big
    server.wait_for_output(r"fixture: ws disconnect code=1000 tag=e", LIVENESS)
    # The same server still answers plain HTTP.
    resp, body = server.request("GET", "/")
    assert (resp.status, body) == (200, b"hello")


def test_the_websocket_scope(shared, transport):
    server = shared("wsapp:app")
    with client(server, "/scope?x=1", subprotocols=["chat", "v2"]) as c:
        scope = json.loads(c.recv(LIVENESS))
    assert scope["type"] == "websocket"
    assert "method" not in scope
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == "/scope"
    assert scope["query_string"] == "x=1"
    assert scope["root_path"] == ""
    assert scope["subprotocols"] == ["chat", "v2"]
    assert scope["http_version"] == "1.1"
    assert scope["extensions"] == {"websocket.http.response": {}}
    headers = dict(scope["headers"])
    assert headers["upgrade"].lower() == "websocket"
    assert "sec-websocket-key" in headers
    if transport == "tcp":
        assert scope["client"][0] == "127.0.0.1"
        assert scope["server"] == list(server.address)
    else:
        assert scope["client"] is None
        assert scope["server"] == [server.address, None]


def test_close_before_accept_is_403_and_a_denial_response_is_the_applications(shared):
    server = shared("wsapp:app")
    with pytest.raises(InvalidStatus) as denied:
        client(server, "/deny")
    assert denied.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as custom:
        client(server, "/deny-custom")
    assert custom.value.response.status_code == 401
    assert custom.value.response.headers["x-denied"] == "yes"
    assert custom.value.response.body == b"no entry"


def test_an_application_that_raises_before_accepting_gives_500_and_is_logged(shared):
    server = shared("wsapp:app")
    with pytest.raises(InvalidStatus) as failed:
        client(server, "/raise-before")
    assert failed.value.response.status_code == 500
    server.wait_for_output(r"RuntimeError: refusing by raising", LIVENESS)


def test_a_malformed_handshake_gets_400_without_reaching_the_application(shared):
    server = shared("wsapp:app")
    reply = server.raw(
        (
            f"GET /echo?tag=bad HTTP/1.1\r\nHost: {host_header(server)}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ).encode()
    )
    assert reply.startswith(b"HTTP/1.1 400"), reply


# --- closing ----------------------------------------------------------------------------------


def test_close_codes_each_way(shared):
    server = shared("wsapp:app")
    with client(server, "/close?code=4001&reason=bye") as c:
        with pytest.raises(ConnectionClosed) as closed:
            c.recv(LIVENESS)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye")
    with client(server, "/return") as c:
        with pytest.raises(ConnectionClosed) as closed:
            c.recv(LIVENESS)
    assert closed.value.rcvd.code == 1000
    with client(server, "/raise-after") as c:
        with pytest.raises(ConnectionClosed) as closed:
            c.recv(LIVENESS)
    assert closed.value.rcvd.code == 1011
    server.wait_for_output(r"RuntimeError: failing after accepting", LIVENESS)
    # The client closes with its own code; the application hears it.
    with client(server, "/echo?tag=c4000") as c:
        c.close(code=4000, reason="leaving")
    server.wait_for_output(r"fixture: ws disconnect code=4000 tag=c4000", LIVENESS)
    # A client that drops the connection without a close frame: 1006.
    s = raw_handshake(server, "/echo?tag=drop")
    s.close()
    server.wait_for_output(r"fixture: ws disconnect code=1006 tag=drop", LIVENESS)


def test_shutdown_closes_open_sockets_with_1001(ws):
    server = ws()
    with client(server, "/hold?tag=sd") as c:
        server.proc.send_signal(15)
        with pytest.raises(ConnectionClosed) as closed:
            c.recv(LIVENESS)
    assert closed.value.rcvd.code == 1001
    server.wait_for_output(r"fixture: ws disconnect code=1001 tag=sd", LIVENESS)
    # The application's disconnect handler gets to finish before the process exits.
    assert server.proc.wait(LIVENESS) == 0
    assert "fixture: ws cleanup done tag=sd" in server.output()


def started_workers(server, count: int):
    """The pids of the first `count` workers the master started, once it has."""
    pids = [int(p) for p in re.findall(r"Started worker process (\d+)", server.output())]
    return pids[:count] if len(pids) >= count else Unmet({"started": pids})


def test_a_reload_closes_with_1012_and_a_stop_with_1001(ws):
    # A worker replaced by a reload (SIGHUP at the master) tells its clients the service is
    # restarting (1012) and a new worker takes their reconnection; the master stopping the
    # service sends its workers' clients 1001.
    server = ws("--workers", "2")
    old = wait_until(lambda: started_workers(server, 2), LIVENESS, what="two workers")
    with client(server, "/hold?tag=old") as c:
        server.proc.send_signal(1)
        with pytest.raises(ConnectionClosed) as closed:
            c.recv(LIVENESS)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1012, "server restarting")
    server.wait_for_output(r"fixture: ws disconnect code=1012 tag=old", LIVENESS)

    def running(pid: int) -> bool:
        try:
            # A zombie has exited; the master reaps it shortly.
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False

    def replaced():
        alive = [pid for pid in old if running(pid)]
        return not alive or Unmet({"old workers alive": alive})

    # Only the new workers accept now.
    wait_until(replaced, LIVENESS, what="the old workers to exit")
    with client(server, "/hold?tag=new") as c:
        server.proc.send_signal(15)
        with pytest.raises(ConnectionClosed) as closed:
            c.recv(LIVENESS)
    assert closed.value.rcvd.code == 1001
    assert server.proc.wait(LIVENESS) == 0


# --- frames and limits ------------------------------------------------------------------------


def test_a_fragmented_message_is_delivered_whole(shared):
    server = shared("wsapp:app")
    s = raw_handshake(server)
    try:
        s.sendall(frame(0x1, b"frag", fin=False) + frame(0x0, b"men", fin=False))
        s.sendall(frame(0x9, b"ping!"))  # a ping between fragments is allowed
        s.sendall(frame(0x0, b"ted"))
        seen = [read_frame(s), read_frame(s)]
        assert (0xA, b"ping!") in seen, seen  # the pong
        assert (0x1, b"fragmented") in seen, seen
    finally:
        s.close()


def test_limits_and_protocol_errors_close_with_their_codes(ws):
    server = ws("--ws-max-message", "1K")
    cases = [
        (frame(0x2, b"x" * 2048), 1009),  # larger than --ws-max-message
        (frame(0x1, b"caf\xc3"), 1007),  # text that is not UTF-8
        (frame(0x1, b"hi", mask=False), 1002),  # a client frame must be masked
        (frame(0x1, b"hi", rsv=0b010), 1002),  # reserved bits without an extension
    ]
    for data, code in cases:
        s = raw_handshake(server)
        try:
            s.sendall(data)
            assert close_code_of(s) == code, data[:8]
        finally:
            s.close()
    # A message of exactly the limit goes through, whole or in fragments.
    with client(server, "/echo") as c:
        c.send(b"y" * 1024)
        assert c.recv(LIVENESS) == b"y" * 1024
        c.send([b"z" * 512, b"z" * 512])
        assert c.recv(LIVENESS) == b"z" * 1024
    # Fragments that add up to more than the limit: 1009 too.
    s = raw_handshake(server)
    try:
        s.sendall(frame(0x2, b"a" * 600, fin=False) + frame(0x0, b"b" * 600))
        assert close_code_of(s) == 1009
    finally:
        s.close()


def test_compression_negotiated_when_offered_and_not_when_off(shared):
    server = shared("wsapp:app")
    with client(server, "/echo") as c:
        extensions = c.response.headers.get("Sec-WebSocket-Extensions", "")
        assert "permessage-deflate" in extensions
        text = "ferrule " * 5000
        c.send(text)
        assert c.recv(LIVENESS) == text
    with client(server, "/echo", compression=None) as c:
        assert "Sec-WebSocket-Extensions" not in c.response.headers
        c.send("plain")
        assert c.recv(LIVENESS) == "plain"


def test_no_compression_when_turned_off(ws):
    off = ws("--ws-no-compression")
    with client(off, "/echo") as c:
        assert "Sec-WebSocket-Extensions" not in c.response.headers
        c.send("x" * 10000)
        assert c.recv(LIVENESS) == "x" * 10000


def test_pings_keep_a_live_client_and_drop_a_silent_one(ws):
    server = ws("--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.5")
    with client(server, "/echo", ping_interval=None) as c:
        time.sleep(1.5)  # several pings, each answered by the client library
        c.send("still here")
        assert c.recv(LIVENESS) == "still here"
    # A raw client that reads the pings but never answers them is closed with 1011.
    s = raw_handshake(server, "/echo?tag=silent")
    try:
        opcode, _ = read_frame(s)
        assert opcode == 0x9, "the server pings"
        assert close_code_of(s) == 1011
    finally:
        s.close()
    server.wait_for_output(r"fixture: ws disconnect code=1006 tag=silent", LIVENESS)


# --- backpressure -----------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_client_that_never_reads_holds_the_sender_not_memory(ws, transport):
    if transport == "unix":
        pytest.skip("the TCP buffers make the point; Unix sockets buffer differently")
    server = ws("--send-timeout", "3")
    before = rss_kib(server.proc.pid)
    # 2,000 messages of 64 KiB (125 MiB) to a client that reads nothing.
    s = raw_handshake(server, "/flood?n=2000")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    try:
        last = server.wait_for_output(r"fixture: flood sent=\d+", LIVENESS)
        time.sleep(1)
        sent = [int(x) for x in re.findall(r"flood sent=(\d+)", server.output())]
        assert max(sent) < 400, f"the sender should wait for the client; it sent {max(sent)}"
        grown = rss_kib(server.proc.pid) - before
        assert grown < 64 * 1024, f"RSS grew by {grown} KiB for a client that reads nothing"
        assert last
        # After --send-timeout without progress the server drops the connection, and the
        # application's waiting send raises.
        server.wait_for_output(r"fixture: flood stopped sent=\d+ ClientDisconnected", LIVENESS)
    finally:
        s.close()
    assert "flood done" not in server.output()


def test_receive_and_send_wrapped_in_tasks_as_channels_does(shared):
    server = shared("wsapp:app")
    with client(server, "/tasks") as c:
        for text in ("one", "two"):
            c.send(text)
            assert c.recv(LIVENESS) == text


def test_a_slow_application_backs_up_a_fast_client_in_order(shared):
    # The client sends 40 messages at once; the application takes one every 25 ms, so the
    # server's queue of 16 fills and the rest wait in the socket.
    server = shared("wsapp:app")
    with client(server, "/slow") as c:
        for i in range(40):
            c.send(f"m{i}")
        got = [c.recv(LIVENESS) for _ in range(40)]
    assert got == [f"m{i}" for i in range(40)]


# --- many sockets -----------------------------------------------------------------------------


def test_2000_idle_sockets_are_held_and_all_answer(ws, transport):
    if transport == "unix":
        pytest.skip("once is enough")
    server = ws()
    host, port = server.address

    async def run() -> list[str]:
        from websockets.asyncio.client import connect as aconnect

        sockets = []
        for _ in range(20):
            sockets += await asyncio.gather(
                *(
                    aconnect(f"ws://{host}:{port}/echo", open_timeout=LIVENESS, compression=None)
                    for _ in range(100)
                )
            )
        await asyncio.sleep(0.5)

        async def ask(i, c):
            await c.send(f"n{i}")
            return await asyncio.wait_for(c.recv(), LIVENESS)

        answers = await asyncio.gather(*(ask(i, c) for i, c in enumerate(sockets)))
        await asyncio.gather(*(c.close() for c in sockets))
        return answers

    answers = asyncio.run(run())
    assert answers == [f"n{i}" for i in range(2000)]

    def all_heard() -> bool | Unmet:
        heard = server.output().count("ws disconnect code=1000")
        return heard == 2000 or Unmet(f"{heard} of 2000 disconnects heard")

    wait_until(all_heard, LIVENESS, what="the application to hear every close")


# --- HTTP/2 (RFC 8441) ------------------------------------------------------------------------


def test_a_websocket_over_http2_extended_connect(shared):
    from h2_helpers import H2, Stream

    server = shared("wsapp:app")
    with H2(server) as c:
        c.wait(lambda: c.settings.get(0x8) == 1, what="SETTINGS_ENABLE_CONNECT_PROTOCOL")
        stream = c.conn.get_next_available_stream_id()
        c.streams[stream] = Stream(stream)
        fields = [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "http"),
            (":path", "/echo?tag=h2"),
            (":authority", "localhost"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "chat"),
        ]
        c.conn.send_headers(stream, fields, end_stream=False)
        c.flush()
        s = c.wait(lambda: c.streams[stream].status and c.streams[stream], what="the answer")
        assert s.status == "200", s
        assert s.header("sec-websocket-protocol") == "chat"
        assert s.header("sec-websocket-accept") is None  # RFC 8441 has no key to echo
        c.send_data(stream, frame(0x1, "über h2".encode()), end_stream=False)
        c.flush()
        c.wait(lambda: len(c.streams[stream].body) >= 2 + len("über h2".encode()))
        body = bytes(c.streams[stream].body)
        assert body == bytes([0x81, len("über h2".encode())]) + "über h2".encode()
        # The client closes; the application hears the code.
        c.send_data(stream, frame(0x8, struct.pack("!H", 4002)), end_stream=False)
        c.flush()
        server.wait_for_output(r"fixture: ws disconnect code=4002 tag=h2", LIVENESS)


def test_a_wsgi_server_offers_no_extended_connect(serve):
    from h2_helpers import H2

    server = serve("echo:app")
    with H2(server) as c:
        c.wait(lambda: 0x3 in c.settings or c.settings, what="the server's SETTINGS")
        assert c.settings.get(0x8, 0) == 0


# --- statistics -------------------------------------------------------------------------------


def test_websocket_statistics(ws, transport, tmp_path):
    from stats_helpers import Admin, admin_bind

    bind = admin_bind(transport, tmp_path)
    server = ws("--stats-bind", bind)
    admin = Admin(bind)
    with client(server, "/echo") as c:
        for text in ("a", "bb", "ccc"):
            c.send(text)
            assert c.recv(LIVENESS) == text
        stats = json.loads(admin.get("/stats.json")[2])
        assert stats["gauges"]["websockets"] == 1
        # The open socket is no request in flight.
        assert stats["gauges"]["in_flight"] == 0, stats["in_flight"]
    with client(server, "/close?code=4001"):
        pass
    # A route the application names: it is counted under its name, not its path.
    with client(server, "/echo?label=chat") as c:
        c.send("dddd")
        assert c.recv(LIVENESS) == "dddd"

    def counted():
        metrics = admin.get("/metrics")[2].decode()
        wanted = [
            'ferrule_websockets_open{route="/echo"} 0',
            'ferrule_websockets_opened_total{route="/echo"} 1',
            'ferrule_websockets_opened_total{route="/close"} 1',
            'ferrule_websocket_messages_total{route="/echo",direction="in"} 3',
            'ferrule_websocket_messages_total{route="/echo",direction="out"} 3',
            'ferrule_websocket_bytes_total{route="/echo",direction="in"} 6',
            'ferrule_websocket_bytes_total{route="chat",direction="in"} 4',
            'ferrule_websocket_closes_total{route="/echo",code="1000"} 1',
            'ferrule_websocket_closes_total{route="/close",code="4001"} 1',
            'ferrule_websocket_closes_total{route="chat",code="1000"} 1',
        ]
        missing = [w for w in wanted if w not in metrics.splitlines()]
        return not missing or Unmet(missing)

    wait_until(counted, LIVENESS, what="the WebSocket counters")
    totals = json.loads(admin.get("/stats.json")[2])["totals"]["websocket"]
    assert (totals["opened"], totals["messages_in"]) == (3, 4)
    assert sorted(totals["routes"]) == ["/close", "/echo", "chat"]
    assert totals["routes"]["chat"]["closes"] == {"1000": 1}
