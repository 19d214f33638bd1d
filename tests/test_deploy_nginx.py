"""docs/deploy-nginx.md, run as written: nginx with TLS in front, ferrule behind it on a Unix
socket, the Django test site under /app with its static files served by ferrule.

The ferrule command and the nginx site block are taken from the page (the fenced blocks that
start with `# test: NAME`); only the socket path, the certificate paths, the listen addresses
and the project name are replaced.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shlex
import ssl
import subprocess
import sys
import urllib.parse

import pytest
from conftest import ROOT, TESTS, start
from nginx_helpers import NGINX, on_this_machine, running_nginx
from test_django import multipart
from tls_helpers import Pki

DOC = ROOT / "docs" / "deploy-nginx.md"
SITE = TESTS / "django_site"

pytestmark = pytest.mark.skipif(
    not os.path.exists(NGINX), reason="nginx is not installed (.ci/run installs it)"
)


def doc_block(name: str) -> str:
    """The fenced block of docs/deploy-nginx.md whose first line is `# test: NAME`."""
    blocks = re.findall(r"```\w*\n(.*?)```", DOC.read_text(), re.S)
    for block in blocks:
        first, _, rest = block.partition("\n")
        if first.strip() == f"# test: {name}":
            return rest
    raise AssertionError(f"docs/deploy-nginx.md has no block marked '# test: {name}'")


class Deployment:
    def __init__(self, port: int, ctx: ssl.SSLContext, server):
        self.port = port
        self.ctx = ctx
        self.server = server

    def request(
        self, method: str, path: str, body=None, headers=None, source: str = "127.0.0.1"
    ) -> tuple[http.client.HTTPResponse, bytes, http.client.HTTPSConnection]:
        conn = http.client.HTTPSConnection(
            "localhost", self.port, context=self.ctx, timeout=60, source_address=(source, 0)
        )
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp, resp.read(), conn

    def get(self, path: str, **kw):
        resp, body, conn = self.request("GET", path, **kw)
        conn.close()
        return resp, body


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    data, static_root = tmp / "data", tmp / "static"
    data.mkdir()
    pki = Pki(tmp)
    cert = pki.server()
    env = {
        "DJANGO_SETTINGS_MODULE": "django_site.settings_static",
        "DJANGO_SITE_DATA_DIR": str(data),
        "DJANGO_SITE_STATIC_ROOT": str(static_root),
        "PYTHONPATH": str(SITE),
    }
    for command in (["migrate", "--noinput", "-v0"], ["collectstatic", "--noinput", "-v0"]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=SITE,
            env={**os.environ, **env},
            check=True,
            timeout=120,
        )

    sock = tmp / "ferrule.sock"
    argv = shlex.split(doc_block("ferrule-command"))
    assert argv[0] == "ferrule"
    argv = [
        a.replace("/run/mysite/ferrule.sock", str(sock)).replace("mysite.", "django_site.")
        for a in argv[1:]
    ]
    server = start(argv, env=env, cwd=SITE)

    site = on_this_machine(
        doc_block("nginx-site").replace("/run/mysite/ferrule.sock", str(sock)), cert
    )
    try:
        with running_nginx(tmp, site) as port:
            yield Deployment(port, pki.context(), server)
    finally:
        server.stop()


def test_pages_see_https_the_client_address_and_the_prefix(deployed):
    # The client connects from 127.0.0.2, which is not a trusted proxy: X-Forwarded-For from
    # nginx is what tells ferrule, and Django, who the client is.
    resp, body = deployed.get("/app/whoami/", source="127.0.0.2")
    assert resp.status == 200, body
    who = json.loads(body)
    assert who["is_secure"] is True
    assert who["remote_addr"] == "127.0.0.2"
    assert who["script_name"] == "/app"
    assert who["path"] == "/app/whoami/"
    assert who["path_info"] == "/whoami/"
    assert who["reverse"] == "/app/whoami/"
    assert who["absolute"] == "https://localhost/app/whoami/"
    assert who["static_url"] == "/app/static/"


def test_a_spoofed_forwarded_header_does_not_reach_django(deployed):
    resp, body = deployed.get(
        "/app/whoami/",
        source="127.0.0.2",
        headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil.example"},
    )
    assert resp.status == 200, body
    who = json.loads(body)
    # nginx appends its peer: "6.6.6.6, 127.0.0.2"; the rightmost untrusted hop wins.
    assert who["remote_addr"] == "127.0.0.2"
    assert who["host"] == "localhost"


def test_redirects_carry_the_prefix(deployed):
    resp, _ = deployed.get("/app/to-whoami/")
    assert resp.status == 302
    assert resp.getheader("Location") == "/app/whoami/"
    resp, _ = deployed.get("/app")
    assert resp.status == 308
    assert resp.getheader("Location").endswith("/app/")


def test_static_files_are_served_by_ferrule_under_the_prefix(deployed):
    resp, body = deployed.get("/app/static/django_site/app.css")
    assert resp.status == 200, deployed.server.output()
    assert body == (SITE / "django_site" / "static" / "django_site" / "app.css").read_bytes()
    assert resp.getheader("Content-Type").startswith("text/css")
    etag = resp.getheader("ETag")
    assert etag and resp.getheader("Last-Modified")
    resp, body = deployed.get("/app/static/django_site/app.css", headers={"If-None-Match": etag})
    assert resp.status == 304 and body == b""
    resp, _ = deployed.get("/app/static/django_site/missing.css")
    assert resp.status == 404


def test_a_20_mb_upload(deployed):
    payload = os.urandom(20 * 1024 * 1024)
    body, ctype = multipart({"label": "big"}, {"file": ("big.bin", payload)})
    resp, data, conn = deployed.request(
        "POST", "/app/upload/", body=body, headers={"Content-Type": ctype}
    )
    conn.close()
    assert resp.status == 200, data[:300]
    got = json.loads(data)
    assert got["size"] == len(payload)
    assert got["sha256"] == hashlib.sha256(payload).hexdigest()


def test_a_streamed_response_reaches_the_client_while_the_view_runs(deployed, tmp_path):
    # Line 1 must arrive before the gate file exists, through nginx (proxy_buffering off).
    gate = tmp_path / "gate"
    conn = http.client.HTTPSConnection("localhost", deployed.port, context=deployed.ctx, timeout=20)
    try:
        conn.request("GET", "/app/stream/?" + urllib.parse.urlencode({"gate": str(gate)}))
        resp = conn.getresponse()
        assert resp.status == 200
        first = resp.readline()
        gate.touch()
        rest = resp.read()
    finally:
        conn.close()
    assert first + rest == "".join(f"line {i}\n" for i in range(1, 101)).encode()
