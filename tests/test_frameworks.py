"""Real Flask, Falcon, Pyramid and Bottle apps (tests/apps/frameworks/) on ferrule, each request
also sent to gunicorn serving the same app, for teams that arrive from gunicorn.

Where the answers are the same, the test says so by comparing them (`same()`); where ferrule
answers differently on purpose, the test asserts both answers and the comment says why
(docs/frameworks.md lists them). One ferrule per framework serves the whole module over TCP
and one over a Unix socket (`shared`: the tests only send requests), and one gunicorn per
framework over TCP. Flask and Pyramid are served through their app factories
(`module:create_app()`), as both servers load them.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
from conftest import TESTS, Server, ferrule_env, start_command
from helpers import Conn, free_port

FRAMEWORKS = {
    "flask": "frameworks.flaskapp:create_app()",
    "falcon": "frameworks.falconapp:app",
    "pyramid": "frameworks.pyramidapp:create_app()",
    "bottle": "frameworks.bottleapp:app",
}
HOST = "app.example:8080"
# Bottle answers a redirect with 303 to HTTP/1.1 clients, the others with 302.
REDIRECT_STATUS = {"flask": 302, "falcon": 302, "pyramid": 302, "bottle": 303}
# Headers that say which server answered, or when (ferrule adds X-Request-Id, README
# "Request ids and the access log"); everything else must match.
SERVER_OWN = {"date", "server", "connection", "keep-alive", "x-request-id"}


def load_common():
    path = TESTS / "apps" / "frameworks" / "_common.py"
    spec = importlib.util.spec_from_file_location("frameworks_common", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = load_common()


@pytest.fixture(scope="module")
def gunicorns():
    """gunicorn(framework) -> a Server for gunicorn serving that framework's app, started on
    first use and shared by the module."""
    servers: dict[str, Server] = {}

    def _gunicorn(framework: str) -> Server:
        if framework not in servers:
            port = free_port()
            argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}"]
            argv += ["--workers", "1", "--no-control-socket", FRAMEWORKS[framework]]
            server = start_command(argv, ferrule_env(), expect_ready=False)
            servers[framework] = server
            server.urls.append(f"http://127.0.0.1:{port}")
            server.wait_for_output(r"Booting worker with pid", timeout=60)
        return servers[framework]

    yield _gunicorn
    for server in servers.values():
        server.stop()


@pytest.fixture(params=list(FRAMEWORKS))
def framework(request) -> str:
    return request.param


@pytest.fixture
def ferrule(shared, framework) -> Server:
    return shared(FRAMEWORKS[framework])


@pytest.fixture
def gunicorn(gunicorns, framework) -> Server:
    return gunicorns(framework)


def ask(server: Server, method: str, target: str, **kw):
    """One request on a fresh connection, with the same Host whichever server it goes to."""
    kw.setdefault("host", HOST)
    with Conn(server, timeout=30) as c:
        return c.request(method, target, **kw)


def view(resp) -> dict:
    """What a client can tell from a response, less what names the server or the time."""
    headers = sorted((k.lower(), v) for k, v in resp.headers if k.lower() not in SERVER_OWN)
    return {"status": resp.status, "headers": headers, "body": resp.body}


def same(ferrule: Server, gunicorn: Server, method: str, target: str, **kw):
    """Send one request to both; assert the answers match; return ferrule's."""
    ours, theirs = ask(ferrule, method, target, **kw), ask(gunicorn, method, target, **kw)
    assert view(ours) == view(theirs)
    return ours


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[str, bytes]:
    """(Content-Type, body) of a multipart/form-data form, as a browser sends it."""
    boundary = "----ferrule-frameworks-7MA4YWxkTrZu0gW"
    parts = []
    for name, value in fields.items():
        head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(head.encode() + value.encode())
    for name, (filename, data) in files.items():
        head = (
            f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data)
    body = b"".join(f"--{boundary}\r\n".encode() + p + b"\r\n" for p in parts)
    return f"multipart/form-data; boundary={boundary}", body + f"--{boundary}--\r\n".encode()


# -- responses ----------------------------------------------------------------------------


def test_get_and_head_answer_the_same_head(ferrule, gunicorn, framework):
    get = same(ferrule, gunicorn, "GET", "/hello")
    assert (get.status, get.body) == (200, f"hello from {framework}\n".encode())
    head = same(ferrule, gunicorn, "HEAD", "/hello")
    assert head.body == b""
    assert head.header("Content-Length") == str(len(get.body))


def test_file_response_goes_through_file_wrapper(ferrule, gunicorn):
    resp = same(ferrule, gunicorn, "GET", "/file")
    assert resp.status == 200
    assert resp.body == common.blob()
    head = same(ferrule, gunicorn, "HEAD", "/file")
    assert (head.body, head.header("Content-Length")) == (b"", str(common.BLOB_SIZE))


def test_streaming_generator_is_sent_chunked(ferrule, gunicorn):
    resp = same(ferrule, gunicorn, "GET", "/stream")
    assert (resp.status, resp.chunked) == (200, True)
    assert resp.body == b"".join(common.STREAM)
    head = same(ferrule, gunicorn, "HEAD", "/stream")
    assert (head.status, head.body) == (200, b"")


# -- request bodies -----------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_upload_is_read_whole(ferrule, gunicorn, framework, chunked):
    body = bytes(range(256)) * 800  # 200 KiB
    ours = ask(ferrule, "POST", "/upload", body=body, chunked=chunked)
    theirs = ask(gunicorn, "POST", "/upload", body=body, chunked=chunked)
    if not chunked:
        assert view(ours) == view(theirs)
    elif framework == "bottle":
        # Bottle sees HTTP_TRANSFER_ENCODING=chunked and parses chunk framing again out of
        # the body both servers already decoded: its own 400, from both.
        assert (ours.status, view(ours)) == (400, view(theirs))
        return
    else:
        # Divergence: gunicorn gives a chunked body no CONTENT_LENGTH, and Falcon then reads
        # nothing; ferrule gives it the length it counted (README "WSGI details"). Flask
        # (werkzeug) and Pyramid (WebOb) read it whole from both, by wsgi.input_terminated.
        read = b"" if framework == "falcon" else body
        expected = {**common.digest(read), "content_length": None, "transfer_encoding": "chunked"}
        assert theirs.json() == expected
    assert ours.status == 200, ours.body[:300]
    assert ours.json() == {
        **common.digest(body),
        "content_length": str(len(body)),
        "transfer_encoding": "chunked" if chunked else None,
    }


def test_multipart_upload(ferrule, gunicorn):
    # 150 KiB: Bottle keeps a part in memory up to 100 KiB and refuses one of exactly 100 KiB
    # plus the other fields ("Memory limit reached"), from either server.
    data = bytes(range(256)) * 600
    content_type, body = multipart(
        {"title": "caf\xe9 \u2603", "empty": ""}, {"upload": ("r\xe9sum\xe9.bin", data)}
    )
    headers = [("Content-Type", content_type)]
    resp = same(ferrule, gunicorn, "POST", "/form", body=body, headers=headers)
    assert resp.status == 200, resp.body[:300]
    assert resp.json() == {
        "fields": {"title": "caf\xe9 \u2603", "empty": ""},
        "files": {"upload": {"filename": "r\xe9sum\xe9.bin", **common.digest(data)}},
    }


# -- URLs, headers, proxies ---------------------------------------------------------------


def test_non_ascii_path_and_query(ferrule, gunicorn, framework):
    resp = same(ferrule, gunicorn, "GET", "/echo/caf%C3%A9%20%E2%98%83?q=%C3%BCber+alles")
    got = resp.json()
    assert (got["segment"], got["q"]) == ("caf\xe9 \u2603", "\xfcber alles")


def test_raw_utf8_in_the_path_is_taken_as_if_percent_encoded(ferrule, gunicorn):
    # Divergence: RFC 9112 allows only ASCII in a request target; gunicorn answers 400
    # "Invalid HTTP request line", ferrule (hyper) takes the bytes as they came. (In a raw
    # query the frameworks disagree among themselves: Falcon reads it as latin-1.)
    target = "/echo/caf\xc3\xa9"  # sent as latin-1: the UTF-8 bytes of café
    assert ask(ferrule, "GET", target).json()["segment"] == "caf\xe9"
    assert ask(gunicorn, "GET", target).status == 400


@pytest.mark.parametrize(
    "target",
    ['/echo/x?q=a"b', "/echo/a{b}|c^d?q=`x`", '/echo/"quoted"?q={1}', "/echo/x?q=<b>"],
)
def test_raw_characters_clients_send_are_served_as_gunicorn_serves_them(ferrule, gunicorn, target):
    # hyper's URI parser refuses some of these; listen/target.rs encodes them for it and
    # gives the application the target as sent.
    same(ferrule, gunicorn, "GET", target)


def test_redirect_behind_a_trusted_proxy(ferrule, gunicorn, framework):
    # From loopback and from a Unix-socket peer, ferrule believes X-Forwarded-* (default
    # --forwarded-allow-ips); gunicorn believes the same peers, for the scheme only.
    headers = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "public.example")]
    ours = ask(ferrule, "GET", "/redirect", headers=headers)
    assert (ours.status, ours.header("Location")) == (
        REDIRECT_STATUS[framework],
        "https://public.example/hello",
    )
    theirs = ask(gunicorn, "GET", "/redirect", headers=headers)
    if framework == "bottle":
        # Bottle reads X-Forwarded-Host itself.
        assert view(ours) == view(theirs)
    else:
        # Divergence (docs/proxies.md): ferrule applies a trusted X-Forwarded-Host to
        # HTTP_HOST; gunicorn leaves it to the app (werkzeug's ProxyFix and the like).
        assert theirs.header("Location") == f"https://{HOST}/hello"


def test_redirect_ignores_forwarding_headers_from_an_untrusted_peer(serve, transport, framework):
    if transport == "unix":
        pytest.skip("a Unix-socket peer is always trusted (docs/proxies.md)")
    server = serve(FRAMEWORKS[framework], "--forwarded-allow-ips", "10.0.0.1")
    headers = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example")]
    resp = ask(server, "GET", "/redirect", headers=headers)
    # Divergence for Bottle: under gunicorn it reads the client's X-Forwarded-Host and -Proto
    # itself and redirects to https://evil.example/hello; ferrule removed them.
    assert (resp.status, resp.header("Location")) == (
        REDIRECT_STATUS[framework],
        f"http://{HOST}/hello",
    )


def test_large_request_and_response_headers(ferrule, gunicorn):
    # 8,181 bytes: "X-Big: " + value + CRLF is 8,190, the limit both servers default to.
    value = "v" * 8181
    resp = same(ferrule, gunicorn, "GET", "/big", headers=[("X-Big", value)])
    assert (resp.status, resp.json(), resp.header("X-Big")) == (200, {"size": 8181}, value)


def test_a_header_over_the_limit_is_refused(ferrule, gunicorn):
    headers = [("X-Big", "v" * 8182)]
    # 431 from both (the pages differ: each server writes its own).
    assert ask(ferrule, "GET", "/big", headers=headers).status == 431
    assert ask(gunicorn, "GET", "/big", headers=headers).status == 431


# -- errors and loading -------------------------------------------------------------------


def test_wsgi_errors_reaches_the_log(ferrule, gunicorn, framework, transport):
    marker = f"wsgi-errors-{framework}-{transport}"
    for server in (ferrule, gunicorn):
        resp = ask(server, "GET", f"/log?msg={marker}")
        assert resp.status == 200, resp.body[:300]
        server.wait_for_output(marker, timeout=30)


def test_an_exception_is_a_500_with_the_traceback_in_the_log(ferrule, gunicorn, framework):
    resp = ask(ferrule, "GET", "/boom")
    assert resp.status == 500
    ferrule.wait_for_output(f"RuntimeError: boom from {framework}", timeout=30)
    theirs = ask(gunicorn, "GET", "/boom")
    if framework == "pyramid":
        # Pyramid lets the exception reach the server, and each server writes its own page:
        # ferrule's is text/plain, gunicorn's HTML.
        assert theirs.status == 500
    else:
        assert view(resp) == view(theirs)


def test_the_reason_phrase_is_the_applications(ferrule, gunicorn):
    resp = same(ferrule, gunicorn, "GET", "/status?line=419+Page+Expired")
    assert (resp.status, resp.reason) == (419, "Page Expired")


def test_a_factory_with_arguments_is_refused(launched, tmp_path):
    # Divergence: gunicorn evaluates literal arguments (`module:create_app('x')`); ferrule
    # calls a factory only without arguments, and says how to do the rest.
    server = launched(
        ["--bind", f"unix:{tmp_path / 's'}", "frameworks.flaskapp:create_app('x')"],
        expect_ready=False,
    )
    assert server.proc.wait(60) == 2, server.output()
    assert "a factory is called without arguments" in server.output()
