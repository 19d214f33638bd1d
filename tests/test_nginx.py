"""ferrule behind a real nginx, over a Unix socket: the deployment the README describes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import textwrap
import time

import pytest
import requests
from conftest import start

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = pytest.mark.skipif(
    not shutil.which("nginx") and not os.path.exists(NGINX),
    reason="nginx is not installed (.ci/run installs it)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def behind_nginx(tmp_path):
    sock = tmp_path / "ferrule.sock"
    server = start(["--bind", f"unix:{sock}", "--unix-socket-mode", "666", "echo:app"])
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        textwrap.dedent(
            f"""
            daemon off;
            {"user root;" if os.geteuid() == 0 else ""}
            pid {tmp_path}/nginx.pid;
            error_log {tmp_path}/error.log;
            events {{ worker_connections 256; }}
            http {{
                access_log off;
                client_body_temp_path {tmp_path}/body;
                proxy_temp_path {tmp_path}/proxy;
                client_max_body_size 50m;
                upstream app {{ server unix:{sock}; keepalive 8; }}
                server {{
                    listen 127.0.0.1:{port};
                    location / {{
                        proxy_pass http://app;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_set_header Host $http_host;
                        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                    }}
                }}
            }}
            """
        )
    )
    nginx = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert nginx.poll() is None, (tmp_path / "error.log").read_text()
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", server
    nginx.terminate()
    nginx.wait(10)
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
