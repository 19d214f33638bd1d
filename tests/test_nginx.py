"""ferrule behind a real nginx, over a Unix socket: the deployment the README describes."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests
from conftest import start
from nginx_helpers import proxy_to_unix, running_nginx


@pytest.fixture
def behind_nginx(tmp_path):
    sock = tmp_path / "ferrule.sock"
    server = start(["--bind", f"unix:{sock}", "--unix-socket-mode", "666", "echo:app"])
    block = proxy_to_unix(
        sock,
        directives="""
                proxy_set_header Host $http_host;
                proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;""",
        http="client_max_body_size 50m;",
    )
    try:
        with running_nginx(tmp_path, block) as port:
            yield f"http://127.0.0.1:{port}", server
    finally:
        server.stop()


def test_requests_pass_through_nginx_over_a_unix_socket(behind_nginx):
    base, server = behind_nginx
    with requests.Session() as s:
        for i in range(20):  # nginx reuses its upstream connections (keepalive 8)
            r = s.get(f"{base}/hello/{i}?x=1", timeout=10)
            assert r.status_code == 200
            env = r.json()["environ"]
            assert env["PATH_INFO"] == f"/hello/{i}"
            assert env["QUERY_STRING"] == "x=1"
            assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
            assert env["REMOTE_ADDR"] == "127.0.0.1"
            assert "REMOTE_PORT" not in env
            assert env["SERVER_PORT"] == base.rsplit(":", 1)[1]


def test_large_upload_through_nginx(behind_nginx):
    base, _ = behind_nginx
    body = bytes(range(256)) * (8 * 1024 * 4)  # 8 MiB, past the in-memory threshold
    r = requests.post(f"{base}/upload", data=body, timeout=30)
    assert r.status_code == 200
    data = r.json()
    assert data["body_len"] == len(body)
    assert data["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_chunked_upload_through_nginx(behind_nginx):
    base, _ = behind_nginx

    def gen():
        for _ in range(10):
            yield b"x" * 1000

    r = requests.post(f"{base}/chunked", data=gen(), timeout=30)
    assert r.status_code == 200
    assert json.loads(r.content)["body_len"] == 10_000
