"""`manage.py server` serving a small Django project (tests/django_site), over TCP and Unix.

Also run on CPython 3.13 with Django 6 (`make test-py313`), so it sticks to APIs both have.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from conftest import TESTS, Server
from helpers import free_port

SITE = TESTS / "django_site"


# --- launching `manage.py` ------------------------------------------------------------------


def site_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="django_site.settings",
        DJANGO_SITE_DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def manage(args: list[str], env: dict[str, str], timeout: float = 60, site: Path = SITE):
    """Run `manage.py ARGS` of the project in `site` to completion; stdout and stderr together
    in `.stdout`."""
    return subprocess.run(
        [sys.executable, str(site / "manage.py"), *args],
        cwd=site,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=timeout,
    )


class ManagedServer(Server):
    """A `manage.py server` process; `finish()` stops it and collects all it printed."""

    def finish(self) -> int:
        """SIGTERM (SIGKILL after 30 s); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.pump.join(10)
        self.output()
        return code


def start_server(
    args: list[str], env: dict[str, str], timeout: float = 60, site: Path = SITE
) -> ManagedServer:
    """Start `manage.py server ARGS` of the project in `site` and wait for its readiness line,
    as conftest's `start()` does for `python -m ferrule`."""
    proc = subprocess.Popen(
        [sys.executable, str(site / "manage.py"), "server", *args],
        cwd=site,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    server = ManagedServer(proc)
    if server.wait_ready(timeout):
        return server
    server.finish()
    raise AssertionError("manage.py server did not become ready:\n" + "".join(server.lines))


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The project's data directory: a migrated SQLite database and a file to serve."""
    path = tmp_path_factory.mktemp("django_site")
    done = manage(["migrate", "--noinput", "-v0"], site_env(path))
    assert done.returncode == 0, done.stdout
    (path / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return path


@pytest.fixture(scope="module", params=["tcp", "unix", "asgi"])
def site(request, data_dir, tmp_path_factory):
    """The project served by `manage.py server`: on the positional ADDRPORT (port 0) for TCP,
    on `--bind unix:PATH` (which replaces the default address) for Unix; "asgi" is TCP with
    the project's `ASGI_APPLICATION` (Django's ASGI handler), every test the same."""
    extra = {}
    if request.param == "unix":
        args = ["--bind", f"unix:{tmp_path_factory.mktemp('sock') / 'django.sock'}"]
    else:
        args = ["127.0.0.1:0"]
    if request.param == "asgi":
        extra["DJANGO_SITE_ASGI"] = "1"
    server = start_server(args, site_env(data_dir, **extra))
    server.interface = "asgi" if request.param == "asgi" else "wsgi"
    yield server
    server.finish()


# --- helpers for HTTP -------------------------------------------------------------------------


def set_cookies(resp: http.client.HTTPResponse) -> dict[str, str]:
    """Each Set-Cookie header, by cookie name."""
    return {h.split("=", 1)[0]: h for h in resp.headers.get_all("Set-Cookie") or []}


def cookie_value(header: str) -> str:
    return header.split(";", 1)[0].split("=", 1)[1]


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "ferrule-" + secrets.token_hex(12)
    parts = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts += [head.encode(), value.encode(), b"\r\n"]
    for name, (filename, data) in files.items():
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts += [head.encode(), data, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


# --- the tests --------------------------------------------------------------------------------


def test_system_checks_run_before_serving(site):
    assert "System check identified no issues" in site.output()


def test_unix_bind_replaces_the_default_address(site):
    if site.is_unix:
        assert len(site.urls) == 1, site.urls
    else:
        assert site.urls == [site.url] and site.url.startswith("http://127.0.0.1:")


def test_form_post_with_csrf_saves_a_row(site):
    resp, body = site.request("GET", "/notes/")
    assert resp.status == 200
    csrf_cookie = set_cookies(resp)["csrftoken"]
    assert "SameSite=Lax" in csrf_cookie
    cookie = f"csrftoken={cookie_value(csrf_cookie)}"
    token = CSRF_INPUT.search(body.decode()).group(1)

    text = f"héllo <b>&</b> ✓ {secrets.token_hex(4)}"
    form = {"csrfmiddlewaretoken": token, "text": text}
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
    resp, _ = site.request("POST", "/notes/", urllib.parse.urlencode(form), headers)
    assert resp.status == 302
    assert resp.getheader("Location") == "/notes/"

    resp, body = site.request("GET", "/notes/", headers={"Cookie": cookie})
    assert resp.status == 200
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert f"<li>{escaped}</li>" in body.decode()


@pytest.mark.parametrize("send", ["nothing", "wrong-token"])
def test_form_post_without_valid_csrf_is_refused(site, send):
    resp, _ = site.request("GET", "/notes/")
    cookie = f"csrftoken={cookie_value(set_cookies(resp)['csrftoken'])}"
    form = {"text": "must not be saved"}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if send == "wrong-token":
        form["csrfmiddlewaretoken"] = "x" * 64
        headers["Cookie"] = cookie
    resp, body = site.request("POST", "/notes/", urllib.parse.urlencode(form), headers)
    assert resp.status == 403
    assert b"CSRF" in body
    _, body = site.request("GET", "/notes/")
    assert b"must not be saved" not in body


def test_session_persists_and_cookie_flags_survive(site):
    resp, body = site.request("GET", "/session/")
    assert resp.status == 200 and json.loads(body) == {"visits": 1}
    # Two cookies, two separate Set-Cookie headers, flags intact.
    cookies = set_cookies(resp)
    assert set(cookies) == {"sessionid", "flavour"}, resp.headers.get_all("Set-Cookie")
    session = cookies["sessionid"]
    assert re.search(r";\s*HttpOnly\b", session, re.I), session
    assert re.search(r";\s*SameSite=Lax\b", session), session
    assert re.search(r";\s*Path=/", session), session
    flavour = cookies["flavour"]
    assert flavour.startswith("flavour=oat;"), flavour
    assert re.search(r";\s*HttpOnly\b", flavour, re.I) and "SameSite=Strict" in flavour, flavour

    headers = {"Cookie": f"sessionid={cookie_value(session)}; flavour=oat"}
    resp, body = site.request("GET", "/session/", headers=headers)
    assert json.loads(body) == {"visits": 2}


def test_multipart_upload_of_20_mb(site):
    data = os.urandom(20 * 1024 * 1024)
    body, content_type = multipart({"label": "twenty ✓"}, {"file": ("big.bin", data)})
    conn = site.connection(timeout=60)
    try:
        conn.request("POST", "/upload/", body, {"Content-Type": content_type})
        resp = conn.getresponse()
        result = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, result[:2000]
    assert json.loads(result) == {
        "name": "big.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        # Django spooled it to disk rather than holding it in memory.
        "kind": "TemporaryUploadedFile",
        "label": "twenty ✓",
    }


def test_streaming_response_is_sent_while_the_view_runs(site, tmp_path):
    # The view sends line 1, then waits for the gate file before the other 99 lines: reading
    # line 1 before creating the gate proves the response is streamed, not buffered.
    gate = tmp_path / "gate"
    conn = site.connection(timeout=20)
    try:
        conn.request("GET", "/stream/?" + urllib.parse.urlencode({"gate": str(gate)}))
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Length") is None
        assert resp.getheader("Transfer-Encoding") == "chunked"
        first = resp.readline()
        gate.touch()
        rest = resp.read()
    finally:
        conn.close()
    assert first + rest == "".join(f"line {i}\n" for i in range(1, 101)).encode()


def test_error_inside_a_streaming_response_is_logged_and_truncates_it(site):
    conn = site.connection(timeout=20)
    try:
        conn.request("GET", "/stream-error/")
        # The response must not look complete. Depending on timing the connection is cut before
        # the head went out (RemoteDisconnected) or after line 1 with no terminating chunk.
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            resp = conn.getresponse()
            assert resp.status == 200
            resp.read()
    finally:
        conn.close()
    site.wait_for_output(r"RuntimeError: stream exploded after the first line")


def test_file_response(site, data_dir):
    expected = (data_dir / "blob.bin").read_bytes()
    resp, body = site.request("GET", "/file/")
    assert resp.status == 200
    assert resp.getheader("Content-Length") == str(len(expected))
    assert resp.getheader("Content-Type") == "application/octet-stream"
    assert resp.getheader("Content-Disposition") == 'attachment; filename="blob.bin"'
    assert len(body) == len(expected) and body == expected


def test_redirect(site):
    resp, body = site.request("GET", "/redirect/")
    assert resp.status == 302
    assert resp.getheader("Location") == "/notes/"
    assert body == b""


def test_not_found(site):
    resp, body = site.request("GET", "/no/such/page/")
    assert resp.status == 404
    assert b"Not Found" in body


def test_view_exception_gives_500_page_and_logs_traceback(site):
    resp, body = site.request("GET", "/boom/")
    assert resp.status == 500
    assert b"Server Error (500)" in body
    assert b"boom from a view" not in body  # DEBUG is off: no details for the client
    site.wait_for_output(r"RuntimeError: boom from a view")
    output = site.output()
    assert "Traceback (most recent call last)" in output
    assert "in boom" in output


def test_build_absolute_uri_reflects_host_and_port(site):
    resp, body = site.request("GET", "/uri/?q=1")
    assert resp.status == 200
    if site.is_unix:
        assert json.loads(body)["uri"] == "http://localhost/uri/?q=1"
    else:
        host, port = site.address
        assert json.loads(body)["uri"] == f"http://{host}:{port}/uri/?q=1"

    resp, body = site.request("GET", "/uri/?q=2", headers={"Host": "localhost:8123"})
    assert resp.status == 200
    # Django's get_port() reads SERVER_PORT: under WSGI the Host header's port, under ASGI
    # the port of the socket (the scope's "server", as the ASGI spec defines it).
    port = str(site.address[1]) if site.interface == "asgi" else "8123"
    assert json.loads(body) == {
        "uri": "http://localhost:8123/uri/?q=2",
        "host": "localhost:8123",
        "port": port,
    }


@pytest.mark.parametrize("path", ["/db/", "/db/?stream=1"])
def test_database_connections_are_closed_after_each_request(site, path):
    # With CONN_MAX_AGE=0 Django closes its connection in `request_finished`, which fires when
    # the server calls the response's close(), in the thread that ran the view. The probe
    # reports whether the raw connections the views used are closed, without going through
    # Django itself.
    for _ in range(3):
        resp, body = site.request("GET", path)
        assert resp.status == 200, body
        assert b"queried" in body
    resp, body = site.request("GET", "/_probe/db-connections")
    assert json.loads(body) == {"recorded": 3, "open": 0}


# --- the command line -------------------------------------------------------------------------


def test_help_lists_the_server_options(data_dir):
    for args in (["server", "--help"], ["help", "server"]):
        done = manage(args, site_env(data_dir))
        assert done.returncode == 0, done.stdout
        for word in ("manage.py server", "ADDRPORT", "--bind", "--threads", "--max-body-size"):
            assert word in done.stdout, (args, done.stdout)
        assert "System check" not in done.stdout


@pytest.mark.parametrize(
    ("form", "host"),
    [("{port}", "127.0.0.1"), ("0.0.0.0:{port}", "127.0.0.1"), ("[::1]:{port}", "::1")],
    ids=["bare-port", "all-ipv4", "ipv6-loopback"],
)
def test_addrport_forms(data_dir, form, host):
    if host == "::1":
        try:
            port = free_port(host)
        except OSError:
            pytest.skip("no IPv6 loopback here")
    else:
        port = free_port(host)
    server = start_server([form.format(port=port)], site_env(data_dir))
    try:
        assert any(url.endswith(f":{port}") for url in server.urls), server.urls
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.request("GET", "/uri/")
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        assert resp.status == 200
        shown = f"[{host}]" if ":" in host else host
        assert json.loads(body)["uri"] == f"http://{shown}:{port}/uri/"
    finally:
        server.finish()


def test_django_base_options_are_accepted_and_sigterm_exits_0(data_dir):
    args = ["--settings=django_site.settings", "-v", "2", "--no-color", "--traceback"]
    server = start_server([*args, "--skip-checks", "127.0.0.1:0"], site_env(data_dir))
    try:
        resp, _ = server.request("GET", "/redirect/")
        assert resp.status == 302
    finally:
        code = server.finish()
    assert "System check" not in server.output()
    assert code == 0, server.output()


def test_failing_system_check_stops_the_command(data_dir):
    done = manage(["server", "127.0.0.1:0"], site_env(data_dir, DJANGO_SITE_FAIL_CHECK="1"))
    assert done.returncode == 2, done.stdout
    assert "SystemCheckError" in done.stdout and "django_site.E001" in done.stdout, done.stdout
    assert "Ready to accept requests" not in done.stdout


def test_bad_wsgi_application_exits_nonzero_with_a_clear_message(data_dir):
    args = ["server", "--noreload", "--settings", "django_site.settings_bad_wsgi", "127.0.0.1:0"]
    done = manage(args, site_env(data_dir))
    assert done.returncode == 2, done.stdout
    assert "Ready to accept requests" not in done.stdout
    # A traceback may come first; the last line, where people look, names the problem.
    last = done.stdout.strip().splitlines()[-1]
    assert "WSGI application 'django_site.wsgi.no_such_application' could not be loaded" in last


def test_with_reload_a_bad_wsgi_application_is_served_as_an_error_until_fixed(data_dir):
    # manage.py server reloads by default, as runserver does: an application that cannot be
    # loaded keeps the server up, answering 500, so the next save can fix it.
    server = start_server(
        ["--settings", "django_site.settings_bad_wsgi", "127.0.0.1:0"], site_env(data_dir)
    )
    try:
        server.wait_for_output(r"could not import the application; it answers every request")
        resp, body = server.request("GET", "/")
        assert resp.status == 500
        assert b"Traceback" not in body, "DEBUG is off: no traceback to the client"
        assert server.proc.poll() is None
    finally:
        assert server.finish() == 0
