"""Development reload (issue 6): `ferrule --reload APP` and `manage.py server` (reloading by
default) restart the worker when a file changes — a module it imported, a template under the
project directory — with the new worker ready before the old one goes; a save that breaks
the import keeps the master up and answers 500 until the next good save.

Each test works on its own copy of a small project in tmp_path (the server's working
directory), so the repository's files are never touched. No timing assertions: the restart
latency is measured by bench/reload.py.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TESTS, Server, ferrule_env, start_command
from helpers import Unmet, wait_until

LIVENESS = 30

APP = """
from pathlib import Path

import helper

TEMPLATE = (Path(__file__).parent / "templates" / "page.html").read_text().strip()


def application(environ, start_response):
    body = f"{helper.VERSION} {TEMPLATE}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


def save(path: Path, text: str) -> None:
    """Write as an editor does: a new file renamed over the old one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    (root / "templates").mkdir(parents=True)
    (root / "reloadapp.py").write_text(APP)
    (root / "helper.py").write_text('VERSION = "v1"\n')
    (root / "templates" / "page.html").write_text("<p>first</p>\n")
    return root


@pytest.fixture
def reloading(project, tmp_path, launched):
    def _start(*args: str):
        sock = tmp_path / "s.sock"
        return launched(
            ["--reload", "--bind", f"unix:{sock}", *args, "reloadapp:application"], cwd=project
        )

    return _start


def body(server) -> tuple[int, str]:
    try:
        resp, data = server.request("GET", "/")
    except OSError as e:
        raise AssertionError(f"GET / failed ({e!r}); the server said:\n{server.output()}") from e
    return resp.status, data.decode()


def wait_body(server, want: str) -> None:
    def wanted():
        status, text = body(server)
        return (status, text) == (200, want) or Unmet((status, text[:200]))

    wait_until(wanted, LIVENESS, what=f"the body {want!r}")


def test_a_changed_module_restarts_the_worker(reloading, project):
    server = reloading()
    assert body(server) == (200, "v1 <p>first</p>")
    first = int(server.wait_for_output(r"Worker process (\d+) is ready").group(1))
    save(project / "helper.py", 'VERSION = "v2"\n')
    server.wait_for_output(r"helper\.py changed: restarting the worker processes", LIVENESS)
    wait_body(server, "v2 <p>first</p>")
    server.wait_for_output(rf"Worker process {first} exited", LIVENESS)


def test_a_changed_template_restarts_the_worker(reloading, project):
    server = reloading()
    save(project / "templates" / "page.html", "<p>second</p>\n")
    server.wait_for_output(r"page\.html changed", LIVENESS)
    wait_body(server, "v1 <p>second</p>")


def test_excluded_and_unrelated_files_do_not_restart(reloading, project):
    server = reloading("--reload-exclude", "notes/**")
    (project / "notes").mkdir()
    (project / "notes" / "todo.py").write_text("x = 1\n")
    (project / "data.bin").write_bytes(b"\0")
    # A change that does restart, to know the two above were seen and ignored by then.
    save(project / "helper.py", 'VERSION = "v3"\n')
    wait_body(server, "v3 <p>first</p>")
    out = server.output()
    # The batch named helper.py alone: the other two files were filtered out, not merely
    # left unnamed ("... and 2 more").
    assert re.search(r"helper\.py changed: restarting", out), out
    assert "more changed" not in out and "todo.py" not in out and "data.bin" not in out, out
    assert len(re.findall(r"changed: restarting", out)) == 1, out


def test_a_syntax_error_keeps_the_master_up_until_the_fix(reloading, project):
    server = reloading()
    save(project / "helper.py", "VERSION = (\n")
    server.wait_for_output(r"could not import the application", LIVENESS)

    def error_page():
        status, text = body(server)
        return (status, text) if status == 500 else Unmet((status, text[:200]))

    status, text = wait_until(error_page, LIVENESS, what="the 500 page")
    assert "failed to import" in text and "SyntaxError" not in text, text
    assert server.proc.poll() is None
    save(project / "helper.py", 'VERSION = "fixed"\n')
    wait_body(server, "fixed <p>first</p>")


def test_a_broken_import_at_start_is_served_as_500_not_an_exit(reloading, project):
    (project / "helper.py").write_text("raise ImportError('not yet')\n")
    server = reloading()
    assert body(server)[0] == 500
    save(project / "helper.py", 'VERSION = "later"\n')
    wait_body(server, "later <p>first</p>")


# -- manage.py server ----------------------------------------------------------------------


@pytest.fixture
def site_copy(tmp_path):
    site = tmp_path / "site"
    shutil.copytree(
        TESTS / "django_site", site, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3")
    )
    return site


def manage_server(site: Path, data: Path, *args: str, env: dict | None = None) -> Server:
    """`manage.py server` on the copy, with its database migrated, once ready."""
    env = ferrule_env(
        {
            "DJANGO_SETTINGS_MODULE": "django_site.settings",
            "DJANGO_SITE_DATA_DIR": str(data),
            **(env or {}),
        }
    )
    data.mkdir(exist_ok=True)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=site, env=env, check=True)
    return start_command(
        [*manage, "server", "127.0.0.1:0", *args], env, cwd=site, timeout=LIVENESS * 2
    )


def test_manage_py_server_reloads_by_default_and_noreload_turns_it_off(site_copy, tmp_path):
    data = tmp_path / "data"
    server = manage_server(site_copy, data)
    try:
        assert server.request("GET", "/notes/")[0].status == 200
        first = int(server.wait_for_output(r"Worker process (\d+) is ready").group(1))
        views = site_copy / "django_site" / "views.py"
        save(views, views.read_text() + "\nRELOADED = True\n")
        server.wait_for_output(r"views\.py changed: restarting the worker processes", LIVENESS)
        server.wait_for_output(rf"Worker process {first} exited", LIVENESS)
        assert server.request("GET", "/notes/")[0].status == 200
    finally:
        assert server.stop(signal.SIGTERM, LIVENESS) == 0
    plain = manage_server(site_copy, data, "--noreload")
    try:
        assert plain.request("GET", "/notes/")[0].status == 200
        assert "Worker process" not in plain.output()
    finally:
        assert plain.stop(signal.SIGTERM, LIVENESS) == 0


# -- issue 12: a development server as kind as runserver ----------------------------------


def get(server, path: str) -> tuple[int, str]:
    resp, data = server.request("GET", path)
    return resp.status, data.decode(errors="replace")


def notes_ok(server):
    """For wait_until: /notes/ answers 200."""
    status, text = get(server, "/notes/")
    return status == 200 or Unmet((status, text[:200]))


def broken_page(server, marker: str) -> str:
    """Wait for the restarted worker to answer 500 (the old one answers 200 until then);
    the page."""

    def failing():
        status, text = get(server, "/notes/")
        return text if status == 500 else Unmet((status, text[:200]))

    return wait_until(failing, LIVENESS, what=f"a 500 after the {marker} error")


def logged_once_per_start(server, marker: str) -> None:
    """The error was logged when the worker started, and three requests since logged none
    of it: the count of `marker` stays that of the start."""
    at_start = server.output().count(marker)
    assert at_start >= 1, f"{marker!r} was never logged:\n{server.output()}"
    for _ in range(3):
        assert get(server, "/notes/")[0] == 500
    # Access lines come through the same log thread after each response: once this one is
    # out, whatever the three requests logged is too.
    get(server, "/notes/?flushed")
    server.wait_for_output(r"GET /notes/\?flushed 500", LIVENESS)
    assert server.output().count(marker) == at_start, server.output()


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "no-debug"])
def test_manage_py_server_serves_a_settings_or_view_syntax_error_until_the_fix(
    site_copy, tmp_path, debug
):
    server = manage_server(
        site_copy, tmp_path / "data", env={"DJANGO_SITE_DEBUG": "1" if debug else "0"}
    )
    settings = site_copy / "django_site" / "settings.py"
    views = site_copy / "django_site" / "views.py"
    good_settings, good_views = settings.read_text(), views.read_text()
    try:
        assert get(server, "/notes/")[0] == 200
        # settings.py: Django cannot start at all, so the page is ferrule's own.
        save(settings, good_settings + "\nBROKEN = (\n")
        page = broken_page(server, "settings")
        if debug:
            assert "<title>SyntaxError</title>" in page, page[:500]
            assert "settings.py" in page and "was never closed" in page, page[:2000]
            assert "Traceback" in page
        else:
            assert "failed to import" in page and "Traceback" not in page, page
            assert "SyntaxError" not in page and "settings.py" not in page, page
        logged_once_per_start(server, "was never closed")
        assert server.proc.poll() is None
        save(settings, good_settings)
        wait_until(lambda: notes_ok(server), LIVENESS, what="settings fixed")

        # A view module: Django starts, and with DEBUG its own error page shows the error.
        save(views, good_views + "\ndef broken(:\n")
        page = broken_page(server, "view")
        if debug:
            assert 'id="summary"' in page, "Django's technical 500 page: " + page[:500]
            assert "SyntaxError" in page and "views.py" in page
        else:
            assert "failed to import" in page and "Traceback" not in page, page
            assert "SyntaxError" not in page, page
        logged_once_per_start(server, "def broken(:")
        save(views, good_views)
        wait_until(lambda: notes_ok(server), LIVENESS, what="view fixed")
    finally:
        assert server.stop(signal.SIGTERM, LIVENESS) == 0
    assert "Reload abandoned" not in server.output()


def test_development_prints_a_line_per_request_and_no_access_log_silences_it(site_copy, tmp_path):
    data = tmp_path / "data"
    server = manage_server(site_copy, data, "--force-color")
    try:
        assert get(server, "/notes/")[0] == 200
        assert get(server, "/nope/")[0] == 404
        assert get(server, "/redirect/")[0] == 302
        line = r"\[\d\d:\d\d:\d\d\] GET {} {} \d+(\.\d)? (B|KB) \d+(\.\d+)? (µs|ms|s)"
        server.wait_for_output(line.format("/notes/", 200), LIVENESS)
        # Coloured as runserver colours them: a 404 yellow, a redirect green.
        server.wait_for_output("\x1b\\[33m" + line.format("/nope/", 404), LIVENESS)
        server.wait_for_output("\x1b\\[32m" + line.format("/redirect/", 302), LIVENESS)
    finally:
        assert server.stop(signal.SIGTERM, LIVENESS) == 0
    quiet = manage_server(site_copy, data, "--no-access-log")
    try:
        assert get(quiet, "/nope/")[0] == 404
        assert get(quiet, "/notes/?last")[0] == 200
    finally:
        assert quiet.stop(signal.SIGTERM, LIVENESS) == 0
    assert "GET /" not in quiet.output(), quiet.output()
