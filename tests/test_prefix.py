"""The URL prefix (issue 3, "URL prefix"): `--prefix`, Django's FORCE_SCRIPT_NAME,
`--prefix-redirect` and a trusted proxy's X-Forwarded-Prefix.

Inside the prefix the application sees `SCRIPT_NAME=/app` and the rest in `PATH_INFO`; outside
it the server answers itself (404 page or 308) and the application is never called.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys

import pytest
from conftest import ferrule_env
from helpers import Conn, echo


@pytest.mark.parametrize(
    ("target", "path_info", "query"),
    [
        ("/app", "", ""),
        ("/app/", "/", ""),
        ("/app/notes/?x=1&y=%20", "/notes/", "x=1&y=%20"),
        ("/%61pp/caf%C3%A9", "/caf\u00c3\u00a9", ""),
    ],
)
def test_prefix_splits_script_name_and_path_info(serve, target, path_info, query):
    server = serve("echo:app", "--prefix", "/app/")
    env = echo(server, path=target)["environ"]
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == path_info
    assert env["QUERY_STRING"] == query


@pytest.mark.parametrize("target", ["/", "/application", "/x/y?a=1&b=%22q%22", "/APP/x"])
def test_outside_the_prefix_gets_a_404_page_linking_under_it(serve, target):
    server = serve("echo:app", "--prefix", "/app", env={"ECHO_TRACE": "1"})
    resp, body = server.request("GET", target)
    assert resp.status == 404
    assert resp.getheader("Content-Type") == "text/html; charset=utf-8"
    assert resp.getheader("Location") is None
    page = body.decode()
    assert "<code>/app</code>" in page
    href = re.search(r'<a href="([^"]*)">', page).group(1)
    assert html.unescape(href) == "/app" + target
    # The application never saw it.
    echo(server, path="/app/after")
    server.wait_for_output(r"echo called GET /after")
    assert server.output().count("echo called") == 1


def test_request_text_is_escaped_in_the_404_page(serve):
    server = serve("echo:app", "--prefix", "/app")
    resp, body = server.request("GET", "/\"onclick='alert(1)'?a=1&b=2")
    assert resp.status == 404
    page = body.decode()
    assert "onclick='" not in page and '"onclick' not in page
    assert "&quot;onclick=&#39;alert(1)&#39;?a=1&amp;b=2" in page


def test_prefix_redirect_answers_308_keeping_the_query(serve):
    server = serve("echo:app", "--prefix", "/app", "--prefix-redirect")
    # Head and body in one write: the server answers without reading the body and closes, and
    # a client that sends the body separately (http.client) may find the socket gone (EPIPE).
    with Conn(server) as c:
        resp = c.request("POST", "/notes/?page=2&q=a%20b", body=b"x=1")
    assert resp.status == 308
    assert resp.header("Location") == "/app/notes/?page=2&q=a%20b"
    assert echo(server, path="/app/notes/")["environ"]["PATH_INFO"] == "/notes/"


def test_forwarded_prefix_comes_before_the_prefix(serve):
    server = serve("echo:app", "--prefix", "/app", "--prefix-redirect")
    headers = {"X-Forwarded-Prefix": "/outer"}
    env = echo(server, path="/app/x", headers=headers)["environ"]
    assert env["SCRIPT_NAME"] == "/outer/app"
    assert env["PATH_INFO"] == "/x"
    resp, _ = server.request("GET", "/x", headers=headers)
    assert resp.status == 308
    assert resp.getheader("Location") == "/outer/app/x"


def test_forwarded_prefix_without_a_prefix_keeps_the_whole_path(serve):
    server = serve("echo:app")
    env = echo(server, path="/x/y", headers={"X-Forwarded-Prefix": "/outer/"})["environ"]
    assert env["SCRIPT_NAME"] == "/outer"
    assert env["PATH_INFO"] == "/x/y"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("app", "it must start with '/'"),
        ("/a/../b", "'..' segments"),
        ("/a%20b", "must not be percent-encoded"),
    ],
)
def test_bad_prefix_exits_2_naming_it(value, why):
    proc = subprocess.run(
        [sys.executable, "-m", "ferrule", "--bind", "127.0.0.1:0", "--prefix", value, "echo:app"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=ferrule_env(),
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"invalid value '{value}' for '--prefix'" in proc.stderr
    assert why in proc.stderr


# --- Django --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def django_data(tmp_path_factory):
    from test_django import manage, site_env

    path = tmp_path_factory.mktemp("django_prefix")
    done = manage(["migrate", "--noinput", "-v0"], site_env(path))
    assert done.returncode == 0, done.stdout
    return path


@pytest.fixture(scope="module", params=["tcp", "unix"])
def django_transport(request):
    return request.param


@pytest.fixture(scope="module", params=["--prefix", "FORCE_SCRIPT_NAME"])
def site(request, django_data, django_transport, tmp_path_factory):
    """The Django site under /app, set by `--prefix` or by FORCE_SCRIPT_NAME in settings."""
    from test_django import site_env, start_server

    if django_transport == "tcp":
        args = ["127.0.0.1:0"]
    else:
        args = ["--bind", f"unix:{tmp_path_factory.mktemp('sock') / 'dj.sock'}"]
    if request.param == "--prefix":
        args += ["--prefix", "/app"]
        env = site_env(django_data)
    else:
        env = site_env(django_data, DJANGO_SITE_FORCE_SCRIPT_NAME="/app/")
    server = start_server(args, env)
    server.prefix_from = request.param
    yield server
    server.finish()


def get_json(server, target, headers=None):
    resp, body = server.request("GET", target, headers=headers)
    assert resp.status == 200, (resp.status, body[:500])
    return json.loads(body)


def test_django_reverse_and_paths_carry_the_prefix(site):
    seen = get_json(site, "/app/whoami/")
    assert seen["reverse"] == "/app/whoami/"
    assert seen["path"] == "/app/whoami/"
    assert seen["path_info"] == "/whoami/"
    assert seen["absolute"].endswith("/app/whoami/")


def test_django_redirect_carries_the_prefix(site):
    resp, _ = site.request("GET", "/app/to-whoami/")
    assert resp.status == 302
    assert resp.getheader("Location") == "/app/whoami/"


def test_django_page_outside_the_prefix_is_the_server_404(site):
    resp, body = site.request("GET", "/whoami/")
    assert resp.status == 404
    assert resp.getheader("Content-Type") == "text/html; charset=utf-8"
    assert 'href="/app/whoami/"' in body.decode()


def test_django_under_a_forwarded_prefix(site):
    # A proxy that mounts the site at /site sends X-Forwarded-Prefix: /site. SCRIPT_NAME is
    # then /site/app; with FORCE_SCRIPT_NAME, Django builds URLs from the setting instead.
    seen = get_json(site, "/app/whoami/", {"X-Forwarded-Prefix": "/site"})
    assert seen["path_info"] == "/whoami/"
    if site.prefix_from == "--prefix":
        assert seen["reverse"] == "/site/app/whoami/"
    else:
        assert seen["reverse"] == "/app/whoami/"
