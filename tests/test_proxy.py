"""Trusted proxies: which peers may send X-Forwarded-* and Forwarded, which family is read
(`--forwarded-headers`), what they change in the environ, and what is refused (issue 3,
"Proxies").

The echo app reports the environ (one server per option set and transport serves the tests
that only read it, `shared`). Over TCP the client is 127.0.0.1, trusted by default; over a
Unix socket the peer is always trusted. Django's view of it (`request.is_secure()`,
`REMOTE_ADDR`) is checked against `manage.py server`, and real nginx in front at the end.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import pytest
import requests
from conftest import ROOT, ferrule_env
from helpers import Conn, echo
from nginx_helpers import running_nginx

FORWARDING = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
    "HTTP_X_FORWARDED_SSL",
    "HTTP_FORWARDED",
)

EVERY_HEADER = {
    "X-Forwarded-For": "6.6.6.6, 203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "example.com:8443",
    "X-Forwarded-Port": "8443",
    "X-Forwarded-Prefix": "/outer",
    "X-Forwarded-Ssl": "on",
    "Forwarded": 'for="[2001:db8::17]:4711";proto=https;host=example.com',
}


# REMOTE_ADDR of a direct client: the TCP tests connect from 127.0.0.1, and a Unix-socket peer
# is reported as 127.0.0.1 too.
PEER = "127.0.0.1"


X_FAMILY = [h for h in FORWARDING if h != "HTTP_FORWARDED"]


def test_trusted_peer_sets_client_scheme_host_port_and_prefix(shared):
    server = shared("echo:app")
    env = echo(server, path="/p/q?x=1", headers=EVERY_HEADER)["environ"]
    # Walking X-Forwarded-For from the right, 203.0.113.7 is the first address that is not a
    # trusted proxy. Forwarded is not read by default (--forwarded-headers x-forwarded).
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert "REMOTE_PORT" not in env
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTPS"] == "on"
    assert env["HTTP_HOST"] == "example.com:8443"
    assert env["SERVER_NAME"] == "example.com"
    assert env["SERVER_PORT"] == "8443"
    assert env["SCRIPT_NAME"] == "/outer"
    assert env["PATH_INFO"] == "/p/q"
    # Trusted headers stay, for applications that read them themselves; the family not read
    # is removed as an untrusted peer's would be.
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"
    assert "HTTP_FORWARDED" not in env


def test_rfc7239_forwarded_alone(shared):
    server = shared("echo:app", "--forwarded-headers", "forwarded")
    headers = {
        "Forwarded": 'for=203.0.113.9;proto=http, For="[2001:db8::17]:4711";PROTO=HTTPS;'
        'host="example.com:8443"'
    }
    env = echo(server, headers=headers)["environ"]
    assert env["REMOTE_ADDR"] == "2001:db8::17"
    assert env["REMOTE_PORT"] == "4711"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "example.com:8443"
    assert env["SERVER_PORT"] == "8443"


@pytest.mark.parametrize("hidden", ["unknown", '"_hidden"'])
def test_unknown_or_obfuscated_client_keeps_the_peer_address(shared, hidden):
    server = shared("echo:app", "--forwarded-headers", "forwarded")
    env = echo(server, headers={"Forwarded": f"for={hidden};proto=https"})["environ"]
    assert env["REMOTE_ADDR"] == PEER
    assert env["wsgi.url_scheme"] == "https"


def test_no_forwarding_headers_leave_the_connection_as_it_is(shared):
    server = shared("echo:app")
    env = echo(server, path="/x")["environ"]
    assert env["REMOTE_ADDR"] == PEER
    assert env["wsgi.url_scheme"] == "http"
    assert "HTTPS" not in env
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/x"


def test_untrusted_peer_headers_are_removed(shared, transport):
    if transport == "unix":
        pytest.skip("a Unix-socket peer is always trusted")
    server = shared("echo:app", "--forwarded-allow-ips", "10.9.9.9")
    env = echo(server, path="/p", headers=EVERY_HEADER)["environ"]
    for key in FORWARDING:
        assert key not in env, key
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"].isdigit()
    assert env["wsgi.url_scheme"] == "http"
    assert "HTTPS" not in env
    host, port = server.address
    assert env["HTTP_HOST"] == f"{host}:{port}"
    assert env["SERVER_PORT"] == str(port)
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/p"


def test_unix_socket_peers_are_trusted_whatever_the_list(shared, transport):
    if transport == "tcp":
        pytest.skip("only a Unix-socket peer is trusted without being listed")
    server = shared("echo:app", "--forwarded-allow-ips", "10.9.9.9")
    env = echo(server, headers=EVERY_HEADER)["environ"]
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"


@pytest.mark.parametrize(
    ("allow", "client"),
    [
        # 127.0.0.1 (TCP) is trusted; 203.0.113.7 is not, so it is the client.
        ("127.0.0.1", "203.0.113.7"),
        # A CIDR that also covers 203.0.113.7: it is a proxy too, so the next one left.
        ("127.0.0.0/8,203.0.113.0/24", "6.6.6.6"),
        # Every address is trusted: the leftmost.
        ("*", "1.1.1.1"),
    ],
)
def test_chain_walks_from_the_right_past_trusted_proxies(shared, allow, client):
    server = shared("echo:app", "--forwarded-allow-ips", allow)
    xff = "1.1.1.1, 6.6.6.6, 203.0.113.7"
    env = echo(server, headers={"X-Forwarded-For": xff})["environ"]
    assert env["REMOTE_ADDR"] == client


# --- Which family is read: the spoofing scenario for each kind of proxy ----------------------
#
# Issue 3 review: a trusted proxy writes one family and passes the client's own headers of the
# other family through. Reading both let the client pick its REMOTE_ADDR, scheme and host.


def test_default_ignores_a_clients_forwarded_behind_an_x_forwarded_proxy(shared):
    # What nginx with `$proxy_add_x_forwarded_for` and `X-Forwarded-Proto $scheme` sends when
    # the client added its own Forwarded header.
    server = shared("echo:app")
    headers = {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "http",
        "Forwarded": "for=6.6.6.6;proto=https;host=evil.example",
    }
    env = echo(server, headers=headers)["environ"]
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "http"
    assert "evil" not in env["HTTP_HOST"]
    assert "HTTP_FORWARDED" not in env


def test_forwarded_ignores_a_clients_x_forwarded_behind_an_rfc7239_proxy(shared):
    # What HAProxy with `option forwarded` sends when the client added X-Forwarded-* itself.
    server = shared("echo:app", "--forwarded-headers", "forwarded")
    headers = {
        "Forwarded": "for=203.0.113.7;proto=http",
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Ssl": "on",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Port": "444",
        "X-Forwarded-Prefix": "/evil",
    }
    env = echo(server, path="/p", headers=headers)["environ"]
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "http"
    assert "HTTPS" not in env
    assert "evil" not in env["HTTP_HOST"]
    assert env["SERVER_PORT"] != "444"
    assert env["SCRIPT_NAME"] == ""
    for key in X_FAMILY:
        assert key not in env, key
    assert env["HTTP_FORWARDED"] == "for=203.0.113.7;proto=http"


def test_both_reads_both_families_when_they_agree(shared):
    server = shared("echo:app", "--forwarded-headers", "both")
    headers = {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Prefix": "/outer",
        "Forwarded": 'for="203.0.113.7:4711";proto=https;host=example.com',
    }
    env = echo(server, path="/p", headers=headers)["environ"]
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["REMOTE_PORT"] == "4711"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "example.com"
    assert env["SCRIPT_NAME"] == "/outer"
    assert env["HTTP_FORWARDED"] and env["HTTP_X_FORWARDED_FOR"]


def test_forwarded_headers_is_validated(launched):
    proc = subprocess.run(
        [sys.executable, "-m", "ferrule", "--forwarded-headers", "xff", "echo:app"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=ferrule_env(),
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert "invalid value 'xff' for '--forwarded-headers" in proc.stderr
    assert "x-forwarded" in proc.stderr and "both" in proc.stderr


def test_scheme_lists_use_the_rightmost_entry(shared):
    # A proxy that appends (HAProxy `add-header`) after a client's own value, or after the
    # proxy before it: the entry the proxy next to ferrule wrote counts, as for the host.
    server = shared("echo:app")
    lists = [("https, http", "http"), ("http, https", "https"), ("ftp, https", "https")]
    for value, scheme in lists:
        env = echo(server, headers={"X-Forwarded-Proto": value})["environ"]
        assert env["wsgi.url_scheme"] == scheme, value
    # Two header lines are one list (RFC 9110): the client's line first, the proxy's last.
    with Conn(server) as c:
        lines = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Proto", "http")]
        resp = c.request("GET", "/", headers=lines)
    assert resp.status == 200, resp.body
    assert resp.json()["environ"]["wsgi.url_scheme"] == "http"


@pytest.mark.parametrize(
    ("args", "headers", "reason"),
    [
        (
            ["--forwarded-headers", "both"],
            {"X-Forwarded-Proto": "https", "Forwarded": "proto=http"},
            "disagree about the scheme",
        ),
        (
            ["--forwarded-headers", "both"],
            {"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=203.0.113.7"},
            "name different clients",
        ),
        (
            ["--forwarded-headers", "both"],
            {"X-Forwarded-Host": "a.example", "Forwarded": "host=b.example"},
            "disagree about the host",
        ),
        ([], {"X-Forwarded-Proto": "http", "X-Forwarded-Ssl": "on"}, "disagree about the scheme"),
        ([], {"X-Forwarded-Proto": "https, ftp"}, "must be http or https"),
        ([], {"X-Forwarded-Host": "evil.example/x"}, "not a valid host"),
        ([], {"X-Forwarded-Port": "eighty"}, "not a port number"),
        ([], {"X-Forwarded-Prefix": "/a/../b"}, "not a valid path prefix"),
        (["--forwarded-headers", "forwarded"], {"Forwarded": 'for="1.2.3.4'}, "not closed"),
    ],
)
def test_bad_or_conflicting_headers_get_400_and_never_reach_the_app(serve, args, headers, reason):
    server = serve("echo:app", *args, env={"ECHO_TRACE": "1"})
    resp, body = server.request("GET", "/refused", headers=headers)
    assert resp.status == 400
    assert reason in body.decode()
    # The app runs for the next request, and did not for the refused one.
    echo(server, path="/after")
    server.wait_for_output(r"echo called GET /after")
    assert "echo called GET /refused" not in server.output()


def test_ipv6_loopback_is_trusted_by_default(launched):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    server = launched(["--bind", "[::1]:0", "echo:app"])
    env = echo(server, headers={"X-Forwarded-For": "203.0.113.7"})["environ"]
    assert env["REMOTE_ADDR"] == "203.0.113.7"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["--forwarded-allow-ips", "127.0.0.1,proxy.internal"],
            "invalid value 'proxy.internal' for '--forwarded-allow-ips'",
        ),
        (["--forwarded-allow-ips", "10.0.0.0/33"], "invalid value '10.0.0.0/33'"),
    ],
)
def test_bad_allow_list_entry_exits_2_naming_it(args, needle):
    proc = subprocess.run(
        [sys.executable, "-m", "ferrule", "--bind", "127.0.0.1:0", *args, "echo:app"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=ferrule_env(),
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr


# --- Django --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def django_data(tmp_path_factory):
    from test_django import manage, site_env

    path = tmp_path_factory.mktemp("django_proxy")
    done = manage(["migrate", "--noinput", "-v0"], site_env(path))
    assert done.returncode == 0, done.stdout
    return path


@pytest.fixture
def django(django_data, transport, tmp_path):
    """django(*args) -> a `manage.py server` on TCP port 0 or a Unix socket."""
    from test_django import site_env, start_server

    servers = []

    def _start(*args: str):
        bind = ["127.0.0.1:0"] if transport == "tcp" else ["--bind", f"unix:{tmp_path / 'dj.sock'}"]
        server = start_server([*bind, *args], site_env(django_data))
        servers.append(server)
        return server

    yield _start
    for s in servers:
        s.finish()


def whoami(server, headers=None) -> dict:
    resp, body = server.request("GET", "/whoami/", headers=headers)
    assert resp.status == 200, (resp.status, body[:500])
    return json.loads(body)


def test_django_trusts_a_trusted_proxy(django):
    server = django()
    seen = whoami(server, {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"})
    assert seen["is_secure"] is True
    assert seen["remote_addr"] == "203.0.113.7"
    assert seen["absolute"].startswith("https://")
    plain = whoami(server)
    assert plain["is_secure"] is False
    assert plain["remote_addr"] == "127.0.0.1"


def test_django_ignores_an_untrusted_peer(django, transport):
    if transport == "unix":
        pytest.skip("a Unix-socket peer is always trusted")
    server = django("--forwarded-allow-ips", "10.9.9.9")
    seen = whoami(
        server,
        {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Host": "testserver",
        },
    )
    assert seen["is_secure"] is False
    assert seen["remote_addr"] == "127.0.0.1"
    assert seen["host"].startswith("127.0.0.1:")
    assert seen["forwarded_proto"] is None


# --- nginx, configured as docs/proxies.md says ----------------------------------------------


def documented_header_lines() -> str:
    """The `proxy_http_version` and `proxy_set_header` lines of the first nginx example in
    docs/proxies.md, so the test runs the configuration the page shows."""
    text = (ROOT / "docs" / "proxies.md").read_text()
    block = re.search(r"```nginx\n(.*?)```", text, re.S).group(1)
    lines = [
        line.strip()
        for line in block.splitlines()
        if line.strip().startswith(("proxy_set_header", "proxy_http_version"))
    ]
    assert any("X-Forwarded-For" in line for line in lines), block
    return "\n".join(lines)


# The test client is on loopback; ferrule trusts only its Unix-socket peer (nginx), so that the
# chain rule stops at the client's address as it would for a remote client.
BEHIND_NGINX = ["--forwarded-allow-ips", "10.255.255.1", "--unix-socket-mode", "666"]


@pytest.fixture
def nginx_in_front(tmp_path, launched):
    """nginx on a TCP port with two upstreams on Unix sockets: ferrule with `--prefix /app`
    behind `location /` (path passed through), and ferrule without a prefix behind
    `location /site/` (nginx strips /site and sends X-Forwarded-Prefix)."""
    prefixed = tmp_path / "prefixed.sock"
    plain = tmp_path / "plain.sock"
    launched(["--bind", f"unix:{prefixed}", *BEHIND_NGINX, "--prefix", "/app", "echo:app"])
    launched(["--bind", f"unix:{plain}", *BEHIND_NGINX, "echo:app"])
    headers = documented_header_lines().replace("\n", "\n            ")
    block = f"""
        server {{
            listen 127.0.0.1:{{port}};
            location / {{
                proxy_pass http://unix:{prefixed}:;
                {headers}
            }}
            location /site/ {{
                proxy_pass http://unix:{plain}:/;
                {headers}
                proxy_set_header X-Forwarded-Prefix /site;
            }}
        }}
    """
    with running_nginx(tmp_path, block) as port:
        yield f"http://127.0.0.1:{port}"


SPOOFED = {
    "X-Forwarded-For": "6.6.6.6",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Port": "444",
    "X-Forwarded-Prefix": "/evil",
    "X-Forwarded-Ssl": "on",
    "Forwarded": "for=6.6.6.6;proto=https;host=evil.example",
}


def test_nginx_as_documented_passes_the_client_and_drops_spoofed_headers(nginx_in_front):
    r = requests.get(f"{nginx_in_front}/app/notes/?x=1", headers=SPOOFED, timeout=10)
    assert r.status_code == 200, r.text
    env = r.json()["environ"]
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "127.0.0.1"
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/notes/"
    assert env["QUERY_STRING"] == "x=1"
    for key in ("HTTP_FORWARDED", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_SSL"):
        assert key not in env, key


def test_nginx_outside_the_prefix_gets_the_page(nginx_in_front):
    r = requests.get(f"{nginx_in_front}/notes/?x=1", timeout=10)
    assert r.status_code == 404
    assert 'href="/app/notes/?x=1"' in r.text


def test_nginx_stripping_its_prefix_sends_x_forwarded_prefix(nginx_in_front):
    r = requests.get(f"{nginx_in_front}/site/notes/", headers=SPOOFED, timeout=10)
    assert r.status_code == 200, r.text
    env = r.json()["environ"]
    assert env["SCRIPT_NAME"] == "/site"
    assert env["PATH_INFO"] == "/notes/"
    assert env["REMOTE_ADDR"] == "127.0.0.1"


# --- A proxy that writes only RFC 7239 Forwarded ----------------------------------------------


@pytest.fixture
def rfc7239_proxy(tmp_path, launched):
    """nginx writing Forwarded the way HAProxy's `option forwarded` does (its element appended
    to the client's header, `for` and `proto`), passing every X-Forwarded-* header through
    untouched, in front of ferrule started with `--forwarded-headers forwarded`."""
    sock = tmp_path / "rfc.sock"
    launched(
        ["--bind", f"unix:{sock}", *BEHIND_NGINX, "--forwarded-headers", "forwarded", "echo:app"]
    )
    block = f"""
        map $http_forwarded $forwarded_chain {{
            ""      "for=$remote_addr;proto=$scheme";
            default "$http_forwarded, for=$remote_addr;proto=$scheme";
        }}
        server {{
            listen 127.0.0.1:{{port}};
            location / {{
                proxy_pass http://unix:{sock}:;
                proxy_http_version 1.1;
                proxy_set_header Forwarded $forwarded_chain;
            }}
        }}
    """
    with running_nginx(tmp_path, block) as port:
        yield f"http://127.0.0.1:{port}"


def test_rfc7239_proxy_client_cannot_choose_its_address_with_x_forwarded(rfc7239_proxy):
    r = requests.get(f"{rfc7239_proxy}/p", headers=SPOOFED, timeout=10)
    assert r.status_code == 200, r.text
    env = r.json()["environ"]
    # The client's own element is left of the one nginx appended, so the chain rule skips it;
    # its X-Forwarded-* headers went through nginx and are removed.
    assert env["HTTP_FORWARDED"] == (
        "for=6.6.6.6;proto=https;host=evil.example, for=127.0.0.1;proto=http"
    )
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert "HTTPS" not in env
    assert "evil" not in env["HTTP_HOST"]
    assert env["SCRIPT_NAME"] == ""
    for key in X_FAMILY:
        assert key not in env, key


def test_rfc7239_proxy_without_client_headers(rfc7239_proxy):
    env = requests.get(f"{rfc7239_proxy}/p", timeout=10).json()["environ"]
    assert env["HTTP_FORWARDED"] == "for=127.0.0.1;proto=http"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
