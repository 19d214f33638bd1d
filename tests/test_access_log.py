"""The access log names the client, not the proxy in front of it (issue 3 review: every line
behind nginx showed the proxy, `127.0.0.1` or `-`).

The host field is the client a trusted proxy forwarded (`X-Forwarded-For`, or `Forwarded:
for=` with `--forwarded-headers forwarded`), else the peer's address, `-` on a Unix socket.
Over TCP the test client is 127.0.0.1, trusted by default; a Unix-socket peer is always trusted.
Each test asks for a path of its own and reads that path's line, so the tests with the same
options share a server per transport (`shared`).
"""

from __future__ import annotations

import re

import pytest
from helpers import echo


def host_field(server, path: str) -> str:
    """The first field of the access line for GET `path`."""
    line = server.wait_for_output(rf'"GET {re.escape(path)} HTTP/1\.1" \d{{3}} ').string
    m = re.search(r"(\S+) - - \[\d\d/\w{3}/\d{4}:[\d:]+ \+0000\] \"GET ", line)
    assert m, line
    return m.group(1)


def test_a_trusted_proxy_client_is_logged(shared):
    server = shared("echo:app", "--access-log")
    echo(server, path="/xff", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7"})
    # The chain rule's client, as REMOTE_ADDR: 6.6.6.6 was written by the client itself.
    assert host_field(server, "/xff") == "203.0.113.7"


def test_a_forwarded_client_is_logged(serve):
    server = serve("echo:app", "--access-log", "--forwarded-headers", "forwarded")
    headers = {"Forwarded": 'for="[2001:db8::17]:4711";proto=https'}
    echo(server, path="/rfc", headers=headers)
    assert host_field(server, "/rfc") == "2001:db8::17"


def test_an_untrusted_peer_is_logged_as_itself(serve, transport):
    if transport == "unix":
        pytest.skip("a Unix-socket peer is always trusted")
    server = serve("echo:app", "--access-log", "--forwarded-allow-ips", "10.9.9.9")
    env = echo(server, path="/spoof", headers={"X-Forwarded-For": "203.0.113.7"})["environ"]
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert host_field(server, "/spoof") == "127.0.0.1"


def test_the_family_not_read_does_not_reach_the_log(shared):
    # With the default --forwarded-headers x-forwarded, a Forwarded header is removed even
    # from a trusted proxy: it names neither REMOTE_ADDR nor the logged host.
    server = shared("echo:app", "--access-log")
    env = echo(server, path="/rfc-ignored", headers={"Forwarded": "for=6.6.6.6"})["environ"]
    assert "HTTP_FORWARDED" not in env
    peer = "-" if server.is_unix else "127.0.0.1"
    assert host_field(server, "/rfc-ignored") == peer


def test_without_forwarding_headers_the_peer_is_logged(shared):
    server = shared("echo:app", "--access-log")
    echo(server, path="/direct")
    assert host_field(server, "/direct") == ("-" if server.is_unix else "127.0.0.1")


def test_an_unknown_forwarded_client_logs_the_peer(shared):
    server = shared("echo:app", "--access-log")
    echo(server, path="/unknown", headers={"X-Forwarded-For": "unknown"})
    assert host_field(server, "/unknown") == ("-" if server.is_unix else "127.0.0.1")


def test_a_refused_request_logs_the_peer(shared):
    # The headers could not be believed, so nobody was named: the line shows the peer.
    server = shared("echo:app", "--access-log")
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "gopher"}
    resp, _ = server.request("GET", "/refused", headers=headers)
    assert resp.status == 400
    assert host_field(server, "/refused") == ("-" if server.is_unix else "127.0.0.1")


def test_a_static_file_logs_the_client(serve, tmp_path):
    # Static files are answered after the forwarding headers are read, by the core.
    root = tmp_path / "static"
    root.mkdir()
    (root / "a.txt").write_text("a")
    server = serve("echo:app", "--access-log", "--static", f"/s={root}")
    resp, body = server.request("GET", "/s/a.txt", headers={"X-Forwarded-For": "203.0.113.7"})
    assert (resp.status, body) == (200, b"a")
    assert host_field(server, "/s/a.txt") == "203.0.113.7"
