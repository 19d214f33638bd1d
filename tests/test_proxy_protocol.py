"""`--proxy-protocol` (issue 15): behind a TCP load balancer, the PROXY protocol header names
the client, which becomes REMOTE_ADDR/REMOTE_PORT and the access log's address.

A real haproxy (Debian's, installed by .ci/run) relays in TCP mode with `send-proxy` (version
1) and `send-proxy-v2`, to ferrule over TCP and over a Unix socket. The client connects from
127.0.0.5 (all of 127/8 is loopback), so its address differs from haproxy's own. Raw sockets
then send what no balancer would: malformed, truncated and slow headers, a header from a peer
not in --forwarded-allow-ips, and a version 2 header before a TLS handshake.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import struct
import subprocess
import time

import pytest
from conftest import start
from helpers import free_port, wait_until
from tls_helpers import Pki, tls_args

CLIENT = "127.0.0.5"
LIVENESS = 30
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

pytestmark = pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy is not installed")


def http_get(sock: socket.socket, path: str, headers: str = "") -> dict:
    """One keep-alive GET on `sock` to echo:app; the environ it saw."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the response head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed inside the body"
        body += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)["environ"]


def v2_header(src: str, sport: int, dst: str = "127.0.0.1", dport: int = 443) -> bytes:
    addresses = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


def closed_without_answer(sock: socket.socket) -> bool:
    """The server closes the connection without sending a byte."""
    sock.settimeout(LIVENESS)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def ferrule_pp(tmp_path, launched):
    """ferrule(transport, *args) with --proxy-protocol, serving echo:app; (server, upstream)
    where upstream is what haproxy's `server` line names."""

    def _start(transport: str, *args: str):
        if transport == "unix":
            sock = tmp_path / "ferrule.sock"
            bind, upstream = f"unix:{sock}", str(sock)
        else:
            port = free_port()
            bind, upstream = f"127.0.0.1:{port}", f"127.0.0.1:{port}"
        argv = ["--bind", bind, "--proxy-protocol", "--access-log", *args, "echo:app"]
        server = launched(argv)
        return server, upstream

    return _start


@pytest.fixture
def haproxy(tmp_path):
    """haproxy(upstream, send) -> the port of a TCP-mode haproxy relaying to `upstream` with
    `send` (send-proxy or send-proxy-v2); stopped at teardown."""
    procs: list[subprocess.Popen] = []

    def _start(upstream: str, send: str) -> int:
        port = free_port()
        config = tmp_path / f"haproxy-{len(procs)}.cfg"
        config.write_text(
            f"""
global
    maxconn 100
defaults
    mode tcp
    timeout connect 10s
    timeout client 60s
    timeout server 60s
frontend in
    bind 127.0.0.1:{port}
    default_backend ferrule
backend ferrule
    server f1 {upstream} {send}
"""
        )
        check = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        log = tmp_path / f"haproxy-{len(procs)}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                ["haproxy", "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT
            )
        procs.append(proc)

        def listening():
            assert proc.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_until(listening, LIVENESS, what="haproxy listening")
        return port

    yield _start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def from_client(port: int) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(LIVENESS)
    sock.bind((CLIENT, 0))
    sock.connect(("127.0.0.1", port))
    return sock


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_haproxy_names_the_client(ferrule_pp, haproxy, transport, send):
    # All of 127/8 trusted: haproxy is, and the client's own address too, yet a client the
    # header names is never believed about itself.
    server, upstream = ferrule_pp(transport, "--forwarded-allow-ips", "127.0.0.0/8")
    port = haproxy(upstream, send)
    with from_client(port) as sock:
        client_port = sock.getsockname()[1]
        for i in range(3):  # one connection, one header, every request on it
            env = http_get(sock, f"/pp/{i}")
            assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == (CLIENT, str(client_port)), env
        # The client is no trusted proxy: what it says of itself is removed.
        env = http_get(sock, "/spoof", "X-Forwarded-For: 198.51.100.9\r\n")
        assert env["REMOTE_ADDR"] == CLIENT and "HTTP_X_FORWARDED_FOR" not in env, env
    server.wait_for_output(rf"{CLIENT} .*GET /spoof", timeout=LIVENESS)


def test_bad_headers_close_the_connection_and_the_server_goes_on(ferrule_pp):
    server, _ = ferrule_pp("tcp", "--header-timeout", "1")
    cases = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # no header at all
        b"PROXY TCP4 203.0.113.7 10.0.0.1 51234\r\n",  # a field missing
        b"PROXY TCP4 203.0.113.7 10.0.0.1 99999 443\r\n",  # a port out of range
        b"PROXY TCP4 " + b"1" * 200 + b"\r\n",  # no CRLF within 107 bytes
        v2_header("203.0.113.7", 1)[:20],  # version 2 cut short
        V2_SIGNATURE + bytes([0x21, 0x11, 0xFF, 0xFF]),  # 65535 address bytes announced
        V2_SIGNATURE + bytes([0x23, 0x11, 0, 12]) + bytes(12),  # an unknown command
    ]
    for wire in cases:
        with socket.create_connection(server.address, timeout=LIVENESS) as sock:
            sock.sendall(wire)
            if wire.startswith(V2_SIGNATURE) and len(wire) < 28 and wire[12] == 0x21:
                sock.shutdown(socket.SHUT_WR)  # truncated: the client stops sending
            assert closed_without_answer(sock), wire
    # A header that never completes ends at --header-timeout.
    with socket.create_connection(server.address, timeout=LIVENESS) as sock:
        sock.sendall(b"PROXY TCP4 203.0.")
        started = time.monotonic()
        assert closed_without_answer(sock)
        assert time.monotonic() - started >= 0.9, "closed before --header-timeout"
    # A good header still works, and the refusals were logged (the first one at once).
    with socket.create_connection(server.address, timeout=LIVENESS) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 4242 80\r\n")
        assert http_get(sock, "/after")["REMOTE_ADDR"] == "203.0.113.7"
    server.wait_for_output(
        r"Closed the connection from 127\.0\.0\.1:\d+ \(--proxy-protocol\): no PROXY "
    )
    assert server.proc.poll() is None


def test_a_peer_not_allowed_is_closed_even_with_a_good_header(ferrule_pp):
    server, _ = ferrule_pp("tcp", "--forwarded-allow-ips", "10.1.2.3")
    with socket.create_connection(server.address, timeout=LIVENESS) as sock:
        sock.sendall(
            b"PROXY TCP4 203.0.113.7 127.0.0.1 4242 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert closed_without_answer(sock)
    server.wait_for_output(r"the peer is not in --forwarded-allow-ips")


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_local_and_unknown_headers_keep_the_peer(ferrule_pp, transport):
    server, _ = ferrule_pp(transport)
    for header in (V2_SIGNATURE + bytes([0x20, 0x00, 0, 0]), b"PROXY UNKNOWN\r\n"):
        with server.connect(LIVENESS) as sock:
            sock.sendall(header)
            env = http_get(sock, "/health")
            assert env["REMOTE_ADDR"] == "127.0.0.1"
            if transport == "tcp":
                assert env["REMOTE_PORT"] == str(sock.getsockname()[1])
            else:
                assert "REMOTE_PORT" not in env
        # Over a Unix socket too, a header that names a client makes it REMOTE_ADDR.
        with server.connect(LIVENESS) as sock:
            sock.sendall(v2_header("198.51.100.30", 6000))
            assert http_get(sock, "/named")["REMOTE_ADDR"] == "198.51.100.30"


def test_the_header_comes_before_the_tls_handshake(ferrule_pp, tmp_path):
    (tmp_path / "pki").mkdir()
    pki = Pki(tmp_path / "pki")
    server, _ = ferrule_pp("tcp", *tls_args(pki.server()))
    raw = socket.create_connection(server.address, timeout=LIVENESS)
    raw.sendall(v2_header("198.51.100.20", 5555))
    with pki.context().wrap_socket(raw, server_hostname="localhost") as tls:
        assert isinstance(tls, ssl.SSLSocket)
        env = http_get(tls, "/secure")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("198.51.100.20", "5555"), env
    assert env["wsgi.url_scheme"] == "https"


def test_proxy_protocol_is_off_by_default(tmp_path):
    server = start(["--bind", "127.0.0.1:0", "echo:app"])
    try:
        # The header is then just bytes before a request: not HTTP, so 400.
        with socket.create_connection(server.address, timeout=LIVENESS) as sock:
            sock.sendall(
                b"PROXY TCP4 203.0.113.7 127.0.0.1 4242 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            assert sock.recv(100).startswith(b"HTTP/1.1 400")
    finally:
        server.stop()
