"""A real nginx started by a test, on a free loopback port, in the test's tmp_path."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest
from helpers import Unmet, free_port, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def proxy_to_unix(sock: Path, directives: str = "", http: str = "") -> str:
    """An http block for `running_nginx`: nginx on `{port}` passing every request to the
    Unix socket `sock` over keep-alive HTTP/1.1, with extra `directives` in its location and
    `http` directives beside it."""
    return f"""
        {http}
        upstream app {{ server unix:{sock}; keepalive 8; }}
        server {{
            listen 127.0.0.1:{{port}};
            location / {{
                proxy_pass http://app;
                proxy_http_version 1.1;
                proxy_set_header Connection "";
                {directives}
            }}
        }}
    """


def on_this_machine(site: str, cert) -> str:
    """A site block from docs/deploy-nginx.md made to run here: its listeners on loopback (the
    TLS one on the port `running_nginx` fills in) and the test's certificate (a
    `tls_helpers.Issued`) for the documented paths."""
    return (
        site.replace("listen 443 ssl", "listen 127.0.0.1:{port} ssl")
        .replace("listen 80;", f"listen 127.0.0.1:{free_port()};")
        .replace("/etc/ssl/mysite/fullchain.pem", str(cert.cert))
        .replace("/etc/ssl/mysite/privkey.pem", str(cert.key))
    )


@contextlib.contextmanager
def running_nginx(tmp_path: Path, http_block: str):
    """nginx with `http_block` inside `http { }`, where `{port}` stands for a free loopback
    port; yields that port once nginx listens. Skips the test when nginx is not installed
    (.ci/run installs it)."""
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (.ci/run installs it)")
    port = free_port()
    head = textwrap.dedent(
        f"""\
        daemon off;
        {"user root;" if os.geteuid() == 0 else ""}
        pid {tmp_path}/nginx.pid;
        error_log {tmp_path}/error.log;
        events {{ worker_connections 256; }}
        http {{
            access_log off;
            client_body_temp_path {tmp_path}/body;
            proxy_temp_path {tmp_path}/proxy;
        """
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(head + http_block.replace("{port}", str(port)) + "\n}\n")
    nginx = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: (
                nginx.poll() is not None
                or port_open(port)
                or Unmet(f"nginx running, nothing listening on port {port}")
            ),
            timeout=10,
            what="nginx to listen",
        )
        assert nginx.poll() is None, (tmp_path / "error.log").read_text()
        yield port
    finally:
        nginx.terminate()
        nginx.wait(10)
