"""WebSockets as they are deployed, against live servers and real clients (issue 14):

- behind nginx configured with the WebSockets section of docs/deploy-nginx.md as written (its
  `map` and `location /app/ws/` added to the page's TLS site block, ferrule started with the
  page's ASGI command), over the page's Unix socket and over TCP as its note describes: text
  and binary echoed, close codes both ways, and the scope the application sees (the client
  nginx forwarded, `wss`, the prefix);
- a page of ferrule's in headless Chromium over TLS, whose `new WebSocket("wss://…")` runs
  over the page's own HTTP/2 connection (RFC 8441), as the server side sees it;
- the `tls` scope extension (asgiref's www spec) of HTTP requests and WebSockets, with and
  without a client certificate.

The application is tests/apps/wsapp.py; certificates are made at test time (tls_helpers.Pki).
Over TLS the clients are websockets' asyncio ones: its sync client reads in a thread while it
writes in another, which CPython's SSL sockets are not safe for (over TLS 1.3 about one
handshake in 300 to 1,000 ended with "connection closed while reading HTTP status line",
against ferrule and against websockets' own server alike; python-socketio issue 1568 is the
same race).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import socket
import ssl

import pytest
from browser import browser_or_skip
from conftest import ROOT, start
from helpers import Unmet, wait_until
from nginx_helpers import on_this_machine, running_nginx
from test_deploy_nginx import doc_block
from tls_helpers import Pki, TlsView, tls_args
from websockets.asyncio.client import connect, unix_connect
from websockets.exceptions import ConnectionClosed

DOC = ROOT / "docs" / "deploy-nginx.md"
# The longest wait for what must happen (a message arriving, a socket opening): the machine is
# shared and loaded; a broken server fails by exceeding it, not a slow one.
LIVENESS = 30
# The documented paths the test replaces with its own.
DOC_SOCKET = "/run/mysite/ferrule.sock"


async def recv(c):
    """The next message of the asyncio client `c`, waited for up to LIVENESS."""
    return await asyncio.wait_for(c.recv(), LIVENESS)


def run(talk) -> None:
    """Run the coroutine function `talk`, a client's conversation."""
    asyncio.run(talk())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


# --- behind nginx, as docs/deploy-nginx.md says -----------------------------------------------


def doc_fence(containing: str) -> str:
    """The fenced block of docs/deploy-nginx.md that contains `containing` (the WebSockets
    section's blocks carry no `# test:` line)."""
    blocks = re.findall(r"```\w*\n(.*?)```", DOC.read_text(), re.S)
    found = [b for b in blocks if containing in b]
    assert len(found) == 1, f"{len(found)} blocks of docs/deploy-nginx.md contain {containing!r}"
    return found[0]


def websocket_site() -> str:
    """The page's nginx site with its WebSockets section added as the page says: the `map`
    outside the server blocks, `location /app/ws/` in the `listen 443` server."""
    section = doc_fence("proxy_set_header Upgrade $http_upgrade")
    upgrade_map = section[: section.index("\nserver {")]
    location = re.search(r"^( *)location /app/ws/ \{\n.*?^\1\}\n", section, re.S | re.M)
    assert location, section
    site = doc_block("nginx-site")
    anchor = "    location = /app {"
    assert site.count(anchor) == 1, site
    return upgrade_map + "\n" + site.replace(anchor, location.group(0) + "\n" + anchor)


class Deployment:
    """nginx with TLS on `port`, ferrule behind it on `transport`."""

    def __init__(self, port: int, ctx: ssl.SSLContext, server, transport: str):
        self.port = port
        self.ctx = ctx
        self.server = server
        self.transport = transport

    def client(self, path: str, source: str = "127.0.0.2", **kw):
        """A `websockets` asyncio client of `wss://localhost:PORT{path}` through nginx (to
        use with `async with`), connecting from `source` (127.0.0.2: not a trusted proxy, so
        only X-Forwarded-For names it)."""
        sock = socket.create_connection(
            ("127.0.0.1", self.port), timeout=LIVENESS, source_address=(source, 0)
        )
        kw.update(sock=sock, ssl=self.ctx, proxy=None, open_timeout=LIVENESS, close_timeout=10)
        return connect(f"wss://localhost:{self.port}{path}", **kw)


@pytest.fixture(scope="module", params=["unix", "tcp"])
def deployed(request, tmp_path_factory, pki):
    """The page's ASGI command and nginx site; over the page's Unix socket, or over TCP with
    nginx's address in --forwarded-allow-ips as the page's TCP note says."""
    transport = request.param
    tmp = tmp_path_factory.mktemp(f"ws-deploy-{transport}")
    cert = pki.server()
    command = doc_fence("mysite.asgi:application").strip()
    argv = [a.replace("mysite.asgi:application", "wsapp:app") for a in shlex.split(command)]
    assert argv[:5] == ["ferrule", "--bind", f"unix:{DOC_SOCKET}", "--unix-socket-mode", "660"]
    sock = tmp / "ferrule.sock"
    if transport == "unix":
        argv[2] = f"unix:{sock}"
    else:
        argv[2:5] = ["127.0.0.1:0", "--forwarded-allow-ips", "127.0.0.1"]
    server = start(argv[1:])
    upstream = f"unix:{sock}" if transport == "unix" else f"127.0.0.1:{server.address[1]}"
    site = on_this_machine(websocket_site().replace(f"unix:{DOC_SOCKET}", upstream), cert)
    try:
        with running_nginx(tmp, site) as port:
            yield Deployment(port, pki.context(), server, transport)
    finally:
        server.stop()


def test_text_and_binary_are_echoed_through_nginx(deployed):
    async def talk():
        async with deployed.client("/app/ws/echo?tag=nginx-echo") as c:
            for message in ("héllo", b"\x00\xff", os.urandom(300_000)):
                await c.send(message)
                assert await recv(c) == message

    run(talk)
    deployed.server.wait_for_output(r"fixture: ws disconnect code=1000 tag=nginx-echo", LIVENESS)


def test_close_codes_pass_through_nginx_both_ways(deployed):
    async def closed_by_server(path: str):
        async with deployed.client(path) as c:
            with pytest.raises(ConnectionClosed) as closed:
                await recv(c)
        assert closed.value.rcvd is not None, closed.value
        return closed.value.rcvd.code, closed.value.rcvd.reason

    async def talk():
        # The application's code and reason reach the client, and so does the one the
        # server chooses for an application that raises.
        assert await closed_by_server("/app/ws/close?code=4001&reason=bye") == (4001, "bye")
        assert (await closed_by_server("/app/ws/raise-after"))[0] == 1011
        # The client's code reaches the application.
        async with deployed.client("/app/ws/echo?tag=nginx-4000") as c:
            await c.close(code=4000, reason="leaving")

    run(talk)
    deployed.server.wait_for_output(r"fixture: ws disconnect code=4000 tag=nginx-4000", LIVENESS)


def test_the_scope_behind_nginx(deployed):
    # A client that forges its address and scheme: nginx appends its peer to the first and
    # replaces the second.
    forged = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "http"}
    origin = f"https://localhost:{deployed.port}"

    async def talk():
        path = "/app/ws/scope?x=1"
        async with deployed.client(path, origin=origin, additional_headers=forged) as c:
            return json.loads(await recv(c))

    scope = asyncio.run(talk())
    assert scope["type"] == "websocket"
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "wss"
    assert scope["client"] == ["127.0.0.2", 0]  # X-Forwarded-For names no port
    assert scope["root_path"] == "/app"
    assert scope["path"] == "/app/ws/scope"
    assert scope["raw_path"] == "/app/ws/scope"
    assert scope["query_string"] == "x=1"
    headers = dict(scope["headers"])
    assert headers["host"] == "localhost"
    assert headers["origin"] == origin
    assert headers["x-forwarded-for"] == "6.6.6.6, 127.0.0.2"
    assert headers["x-forwarded-proto"] == "https"
    assert "x-forwarded-host" not in headers
    # TLS ended at nginx: ferrule has no session to describe.
    assert scope["extensions"] == {"websocket.http.response": {}}
    if deployed.transport == "unix":
        assert scope["server"] == [deployed.server.address, None]
    else:
        assert scope["server"] == list(deployed.server.address)


# --- Chromium over TLS and HTTP/2 (RFC 8441) ---------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with browser_or_skip(800, 600) as b:
        yield b


def test_chromium_runs_a_websocket_over_the_pages_http2_connection(browser, pki, launched):
    # TCP only: Chromium does not connect to Unix sockets.
    server = launched(["--bind", "127.0.0.1:0", *tls_args(pki.server()), "wsapp:app"])
    host, port = server.address
    page = browser.page()
    try:
        # The test's CA is not one Chromium trusts; the certificate is otherwise valid for
        # 127.0.0.1.
        page.call("Security.setIgnoreCertificateErrors", ignore=True)
        # The page's script opens wss://…/scope?tag=page once loaded, sends "über h2" after
        # the scope, notes what came back and closes with 4000 (tests/apps/wsapp.py).
        page.open(f"https://{host}:{port}/page")

        def echoed():
            seen = page.evaluate("Object.assign({}, document.documentElement.dataset)")
            return seen if seen.get("state") == "echoed" else Unmet([seen, page.errors])

        seen = wait_until(echoed, LIVENESS, interval=0.05, what="the page's socket to echo")
        fetched = page.call(
            "Runtime.evaluate",
            expression="fetch('/http-scope').then(r => r.text())",
            awaitPromise=True,
            returnByValue=True,
        )
        assert "exceptionDetails" not in fetched, fetched
        http_scope = json.loads(fetched["result"]["value"])
        loaded = [
            e["params"]["response"]
            for e in page.events
            if e["method"] == "Network.responseReceived"
        ]
        handshakes = [
            e["params"]["response"]
            for e in page.events
            if e["method"] == "Network.webSocketHandshakeResponseReceived"
        ]
        errors = page.errors
    finally:
        with contextlib.suppress(Exception):
            page.call("Page.close")
        page.close()
    # The page came over HTTP/2, so Chromium had a connection to put the socket on.
    got = [(r["url"], r["protocol"]) for r in loaded]
    assert got[:1] == [(f"https://{host}:{port}/page", "h2")], got
    ws_scope = json.loads(seen["scope"])
    assert seen["echo"] == "über h2"
    # The application saw an HTTP/2 WebSocket: an extended CONNECT, not an Upgrade.
    assert ws_scope["type"] == "websocket"
    assert ws_scope["http_version"] == "2"
    assert ws_scope["scheme"] == "wss"
    assert ws_scope["path"] == "/scope"
    headers = dict(ws_scope["headers"])
    assert "upgrade" not in headers and "sec-websocket-key" not in headers, headers
    assert headers["origin"] == f"https://{host}:{port}"
    assert ws_scope["extensions"]["tls"]["tls_version"] == 0x0304
    # …on the page's own connection: the same client port as a request the page makes.
    assert http_scope["http_version"] == "2"
    assert http_scope["extensions"]["tls"]["tls_version"] == 0x0304
    assert ws_scope["client"] == http_scope["client"], (ws_scope["client"], http_scope["client"])
    # Chromium's side: a 200 to its CONNECT (RFC 8441), not a 101.
    assert [h["status"] for h in handshakes] == [200], handshakes
    assert errors == [], errors
    # The page's close code reached the application over the stream.
    server.wait_for_output(r"fixture: ws disconnect code=4000 tag=page", LIVENESS)


# --- the tls extension ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice(pki):
    return pki.client("alice")


@pytest.fixture
def mutual(pki, serve):
    """wsapp over TLS, asking for a client certificate (optional) signed by the test CA."""
    cert = pki.server()
    return serve(
        "wsapp:app", *tls_args(cert, "--ca-certs", str(pki.ca_file), "--client-cert", "optional")
    )


# IANA's numbers of the suites ferrule offers (rustls with ring): TLS 1.3's, and TLS 1.2's
# ECDHE suites.
TLS13_SUITES = {0x1301, 0x1302, 0x1303}
TLS12_SUITES = {0xC02B, 0xC02C, 0xC02F, 0xC030, 0xCCA8, 0xCCA9}


def expected_tls(client, version: int = 0x0304) -> dict:
    """The `tls` extension but its `client_cert_chain` (compared as DER by check_tls) and
    `cipher_suite` (checked by check_tls). `server_cert` is None, as docs/asgi.md says; the
    spec allows None for servers that cannot tell."""
    return {
        "server_cert": None,
        "client_cert_name": client.x509.subject.rfc4514_string() if client else None,
        "client_cert_error": None,
        "tls_version": version,
    }


def check_tls(ext: dict, client, version: int = 0x0304) -> None:
    chain = ext.pop("client_cert_chain")
    suite = ext.pop("cipher_suite")
    assert suite in (TLS13_SUITES if version == 0x0304 else TLS12_SUITES), hex(suite)
    assert ext == expected_tls(client, version)
    assert all(pem.startswith("-----BEGIN CERTIFICATE-----") for pem in chain), chain
    assert [ssl.PEM_cert_to_DER_cert(pem) for pem in chain] == (client.sent if client else [])


def ws_client(server, path: str, ctx: ssl.SSLContext):
    """A `websockets` asyncio client of `wss://…{path}` on `server` (TCP or Unix)."""
    kw = dict(ssl=ctx, server_hostname="localhost", open_timeout=LIVENESS, close_timeout=10)
    if server.is_unix:
        return unix_connect(server.address, f"wss://localhost{path}", **kw)
    return connect(f"wss://localhost:{server.address[1]}{path}", proxy=None, **kw)


@pytest.mark.parametrize("who", ["anonymous", "alice"])
def test_the_tls_extension_of_an_http_request(mutual, pki, alice, who):
    client = alice if who == "alice" else None
    for version, maximum in ((0x0304, None), (0x0303, ssl.TLSVersion.TLSv1_2)):
        view = TlsView(mutual, pki.context(client=client, maximum=maximum))
        resp, body = view.request("GET", "/http-scope")
        assert resp.status == 200, body
        scope = json.loads(body)
        assert scope["scheme"] == "https"
        check_tls(scope["extensions"]["tls"], client, version)


@pytest.mark.parametrize("who", ["anonymous", "alice"])
def test_the_tls_extension_of_a_websocket(mutual, pki, alice, who):
    client = alice if who == "alice" else None

    async def talk():
        async with ws_client(mutual, "/scope", pki.context(client=client)) as c:
            scope = json.loads(await recv(c))
            await c.send("still here")
            assert await recv(c) == "still here"
        return scope

    scope = asyncio.run(talk())
    assert scope["scheme"] == "wss"
    assert set(scope["extensions"]) == {"websocket.http.response", "tls"}
    check_tls(scope["extensions"]["tls"], client)


def test_the_client_cert_chain_holds_the_intermediates_the_client_sent(mutual, pki, tmp_path):
    ctx, sent = pki.intermediate_client(tmp_path)
    resp, body = TlsView(mutual, ctx).request("GET", "/http-scope")
    assert resp.status == 200, body
    got = json.loads(body)["extensions"]["tls"]["client_cert_chain"]
    assert [ssl.PEM_cert_to_DER_cert(pem) for pem in got] == sent
