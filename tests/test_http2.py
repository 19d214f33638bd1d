"""HTTP/2: negotiated by ALPN on TLS and by prior knowledge (h2c) on cleartext, with real
clients (httpx with h2, h2load) and with the `h2` package where a test needs to see frames
(SETTINGS, GOAWAY). Bodies both ways, streamed and file_wrapper responses, HEAD, the limits
(--h2-max-concurrent-streams, --h2-max-header-list-size, rapid reset), `--http 1|2`, idle
connections and graceful shutdown. Over TCP and a Unix socket where the client can; the tests
that only send requests share a server per app, options, mode and transport (`shared`).
"""

import hashlib
import re
import signal
import ssl
import subprocess

import h2.errors
import h2.settings
import httpx
import pytest
from h2_helpers import H2
from helpers import Conn, Unmet, wait_until
from tls_helpers import Pki, TlsView, tls_args


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def cert(pki):
    return pki.server()


def client(server, ctx: ssl.SSLContext | None = None, **kw) -> tuple[httpx.Client, str]:
    """An httpx client speaking HTTP/2 to `server` and the base URL to use: over TLS with
    ALPN when `ctx` is given, else h2c with prior knowledge (no HTTP/1 allowed)."""
    tls = ctx is not None
    options = {"http2": True, "http1": tls, "verify": ctx if tls else True}
    if server.is_unix:
        transport = httpx.HTTPTransport(uds=server.address, **options)
        base = "https://localhost" if tls else "http://localhost"
    else:
        transport = httpx.HTTPTransport(**options)
        port = server.address[1]
        base = f"https://localhost:{port}" if tls else f"http://127.0.0.1:{port}"
    return httpx.Client(transport=transport, timeout=30, **kw), base


@pytest.fixture(params=["tls", "h2c"])
def mode(request) -> str:
    return request.param


@pytest.fixture
def h2_serve(shared, mode, pki, cert):
    """h2_serve(app, *args) -> (Server, httpx client, base URL), over TLS or h2c. The server
    is shared by the module's tests with the same app, options, mode and transport: these
    tests only send requests and read their answers."""
    clients = []

    def _serve(app: str, *args: str):
        extra = tls_args(cert) if mode == "tls" else []
        server = shared(app, *extra, *args)
        c, base = client(server, pki.context() if mode == "tls" else None)
        clients.append(c)
        return server, c, base

    yield _serve
    for c in clients:
        c.close()


# -- requests and responses ---------------------------------------------------------------


def test_get_over_http2(h2_serve, mode):
    server, c, base = h2_serve("echo:app")
    r = c.get(f"{base}/some/path?x=1&y=%20")
    assert r.status_code == 200
    assert r.http_version == "HTTP/2"
    env = r.json()["environ"]
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/some/path"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    # The request target is the origin form, as an HTTP/1 client sends it.
    assert env["RAW_URI"] == env["REQUEST_URI"] == "/some/path?x=1&y=%20"
    # :authority stands in for Host.
    host = base.split("://", 1)[1]
    assert env["HTTP_HOST"] == host
    assert env["SERVER_NAME"] == host.rsplit(":", 1)[0]
    assert env["wsgi.url_scheme"] == ("https" if mode == "tls" else "http")
    assert (env.get("HTTPS") == "on") == (mode == "tls")


def test_many_requests_share_one_connection(h2_serve):
    server, c, base = h2_serve("echo:app")
    ports = set()
    for i in range(20):
        env = c.get(f"{base}/{i}").json()["environ"]
        assert env["PATH_INFO"] == f"/{i}"
        ports.add(env.get("REMOTE_PORT"))
    assert len(ports) == 1


def test_uploads_over_http2(h2_serve):
    server, c, base = h2_serve("echo:app")
    for size in (0, 10, 100_000, 3 << 20):  # the last one is spooled to a file
        body = bytes(i % 251 for i in range(size))
        r = c.post(f"{base}/up", content=body)
        assert r.status_code == 200
        got = r.json()
        assert (got["body_len"], got["body_sha256"]) == (size, hashlib.sha256(body).hexdigest())
        assert got["environ"].get("CONTENT_LENGTH", "0") == str(size)

    def pieces():
        for _ in range(64):
            yield b"z" * 4096

    # No Content-Length: the body ends with END_STREAM; the server counts it.
    got = c.post(f"{base}/gen", content=pieces()).json()
    assert got["body_len"] == 64 * 4096
    assert got["environ"]["CONTENT_LENGTH"] == str(64 * 4096)


def test_body_over_the_limit_gets_413_and_the_connection_lives(h2_serve):
    server, c, base = h2_serve("echo:app", "--max-body-size", "1K")
    r = c.post(f"{base}/", content=b"x" * 5000)
    assert r.status_code == 413
    assert "connection" not in r.headers
    assert c.get(f"{base}/after").status_code == 200


def test_streamed_response_over_http2(h2_serve):
    server, c, base = h2_serve("stream:app")
    with c.stream("GET", f"{base}/?n=40&size=1000&empties=1") as r:
        assert r.http_version == "HTTP/2"
        data = b"".join(r.iter_bytes())
    assert data == b"".join(bytes([65 + i % 26]) * 1000 for i in range(40))
    r = c.get(f"{base}/?mb=4")
    assert len(r.content) == 4 << 20


def test_file_wrapper_over_http2(h2_serve, tmp_path):
    payload = bytes(range(256)) * 4096 + b"end"
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    server, c, base = h2_serve("filewrap:app")
    r = c.get(f"{base}/", params={"path": str(path), "cl": "size"})
    assert r.status_code == 200 and r.http_version == "HTTP/2"
    assert r.content == payload
    assert r.headers["content-length"] == str(len(payload))
    server.wait_for_output("filewrap close\\(\\) called")


def test_head_over_http2(h2_serve):
    server, c, base = h2_serve("echo:app")
    r = c.head(f"{base}/head")
    assert r.status_code == 200
    assert r.content == b""
    assert int(r.headers["content-length"]) > 0
    assert c.get(f"{base}/after").status_code == 200


def test_header_list_over_the_limit_gets_431(h2_serve):
    server, c, base = h2_serve("echo:app", "--h2-max-header-list-size", "2K")
    # Each field is well under --limit-request-field-size; together they exceed 2 KiB.
    assert c.get(f"{base}/", headers={"x-a": "a" * 900}).status_code == 200
    r = c.get(f"{base}/", headers={f"x-{i}": "a" * 900 for i in range(3)})
    assert r.status_code == 431
    assert c.get(f"{base}/after").status_code == 200


# -- h2load --------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["https", "h2c"])
def test_h2load_all_requests_succeed(launched, cert, scheme):
    args = tls_args(cert) if scheme == "https" else []
    server = launched(["--bind", "127.0.0.1:0", *args, "echo:app"])
    url = f"{'https' if scheme == 'https' else 'http'}://127.0.0.1:{server.address[1]}/load"
    out = subprocess.run(
        ["h2load", "-n", "600", "-c", "6", "-m", "10", url],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert re.search(r"Application protocol: h2c?\b", out), out
    m = re.search(
        r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out
    )
    assert m, out
    assert m.groups() == ("600", "600", "600", "0"), out
    assert "status codes: 600 2xx" in out, out


# -- frames: SETTINGS, GOAWAY, rapid reset ------------------------------------------------


def settings_of(raw: H2) -> dict:
    return raw.wait(lambda: raw.settings, what="the server's SETTINGS")


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_settings_advertise_the_limits(serve, pki, cert, tls):
    args = tls_args(cert) if tls else []
    server = serve(
        "echo:app", *args, "--h2-max-concurrent-streams", "7", "--h2-max-header-list-size", "32K"
    )
    raw = H2(server, pki.context() if tls else None, timeout=15)
    try:
        got = settings_of(raw)
    finally:
        raw.close()
    assert got[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 7
    assert got[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] == 32 * 1024


def test_default_limits(shared):
    raw = H2(shared("echo:app"), timeout=15)
    try:
        got = settings_of(raw)
    finally:
        raw.close()
    assert got[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 100
    assert got[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] == 64 * 1024


def test_rapid_reset_gets_goaway(shared):
    server = shared("echo:app")
    raw = H2(server, timeout=15)
    try:
        # Open and cancel streams in one burst, faster than the server accepts them
        # (CVE-2023-44487); past 20 such streams the server gives up on the connection.
        for _ in range(200):
            stream = raw.request("/", authority="x", flush=False)
            raw.reset(stream, h2.errors.ErrorCodes.NO_ERROR, flush=False)
        raw.flush()
        ended = raw.wait(lambda: raw.goaway, what="GOAWAY")
    finally:
        raw.close()
    assert ended.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert server.request("GET", "/")[0].status == 200


def test_idle_connection_gets_goaway(serve):
    server = serve("echo:app", "--keep-alive", "1")
    raw = H2(server, timeout=15)
    try:
        assert raw.response(raw.request("/")).ended
        ended = raw.wait(lambda: raw.goaway, what="GOAWAY")
    finally:
        raw.close()
    assert ended.error_code == h2.errors.ErrorCodes.NO_ERROR


def test_graceful_shutdown_sends_goaway_and_finishes_the_stream(serve):
    server = serve("slow:app")
    raw = H2(server, timeout=15)
    try:
        stream = raw.request("/?s=1&tag=h2")
        server.wait_for_output("slow started tag=h2")
        server.proc.send_signal(signal.SIGTERM)
        raw.wait(lambda: raw.goaway, what="GOAWAY")
        # All of the response comes after the GOAWAY.
        assert raw.streams[stream].status is None, raw
        response = raw.response(stream)
        assert response.ended, raw
    finally:
        raw.close()
    assert (response.status, response.body) == ("200", b"slept 1")
    assert server.proc.wait(30) == 0


# -- --http 1 and --http 2 ----------------------------------------------------------------


def test_a_preface_that_stalls_is_closed_after_header_timeout(serve):
    server = serve("echo:app", "--header-timeout", "1")
    with Conn(server) as c:
        c.send(b"PRI * HTTP/2.0\r\n")  # the first half of the preface, and nothing more
        assert c.closed_by_server(timeout=20)
    assert server.request("GET", "/")[0].status == 200


def test_http1_mode_refuses_h2c_prior_knowledge(serve):
    server = serve("echo:app", "--http", "1")
    reply = server.raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    # Answered as HTTP/1 (an error status) or closed; never an HTTP/2 SETTINGS frame.
    assert reply == b"" or re.match(rb"HTTP/1\.1 (400|505) ", reply), reply[:200]
    assert server.request("GET", "/")[0].status == 200


def test_http1_mode_over_tls_negotiates_http11(serve, pki, cert):
    server = serve("echo:app", *tls_args(cert), "--http", "1")
    with TlsView(server, pki.context(alpn=["h2", "http/1.1"])).connect() as s:
        assert s.selected_alpn_protocol() == "http/1.1"
    with pytest.raises(ssl.SSLError):
        TlsView(server, pki.context(alpn=["h2"])).connect().close()
    c, base = client(server, pki.context())
    with c:
        r = c.get(f"{base}/")
    assert (r.status_code, r.http_version) == (200, "HTTP/1.1")


def test_http2_mode_speaks_only_http2(serve, pki, cert, mode):
    args = tls_args(cert) if mode == "tls" else []
    server = serve("echo:app", *args, "--http", "2")
    ctx = pki.context() if mode == "tls" else None
    c, base = client(server, ctx)
    with c:
        assert c.get(f"{base}/").http_version == "HTTP/2"
    if mode == "tls":
        with pytest.raises(ssl.SSLError):
            TlsView(server, pki.context(alpn=["http/1.1"])).connect().close()
    else:
        reply = server.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert not reply.startswith(b"HTTP/1.1"), reply[:200]


def test_auto_mode_still_serves_http1(shared, pki, cert, mode):
    args = tls_args(cert) if mode == "tls" else []
    server = shared("echo:app", *args)
    view = TlsView(server, pki.context(alpn=["http/1.1"])) if mode == "tls" else server
    resp, data = view.request("GET", "/one")
    assert resp.status == 200 and resp.version == 11


def test_concurrent_streams_on_one_connection(serve, pki, cert, mode):
    # One thread drives the client: httpcore's HTTP/2 connection is not safe to share between
    # threads (it takes a stream id and sends its HEADERS without one lock, so two threads can
    # send ids out of order, which RFC 9113 makes a connection error; seen as a flaky GOAWAY).
    args = tls_args(cert) if mode == "tls" else []
    server = serve("slow:app", *args, "--threads", "8")
    raw = H2(server, pki.context() if mode == "tls" else None, timeout=15)
    try:
        streams = [raw.request(f"/?s=0.2&tag=c{i}") for i in range(8)]
        raw.wait(lambda: all(raw.streams[s].ended for s in streams), timeout=30, what="eight ends")
        bodies = [raw.streams[s].body for s in streams]
    finally:
        raw.close()
    assert bodies == [b"slept 0.2"] * 8

    def all_finished():
        out = server.output()
        slow = [ln for ln in out.splitlines() if "fixture: slow" in ln]
        return out.count("slow finished") == 8 or Unmet(slow)

    # All eight ran at once: each was started before any finished.
    wait_until(all_finished, 5, what="all finished")
    lines = [ln for ln in server.output().splitlines() if "fixture: slow" in ln]
    first_end = next(i for i, ln in enumerate(lines) if "finished" in ln)
    assert sum("started" in ln for ln in lines[:first_end]) == 8, lines
