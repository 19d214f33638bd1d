"""Django's static and media files served by the core under `manage.py server` (issue 3).

The project is tests/django_site with `django_site.settings_static`: staticfiles installed,
STATICFILES_DIRS in tests/static_fixtures/django (one under a `vendor` prefix), an app
`static/` directory, and STATIC_ROOT/MEDIA_ROOT/DEBUG from the environment. Over TCP and Unix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_django import SITE, manage, site_env, start_server

FIXTURES = Path(__file__).resolve().parent / "static_fixtures" / "django"
APP_STATIC = SITE / "django_site" / "static"
FERRULE_404 = b"There is no file at this URL."
DJANGO_404 = b"<h1>Not Found</h1>"


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = site_env(tmp_path)
    env["DJANGO_SETTINGS_MODULE"] = "django_site.settings_static"
    env.update({f"DJANGO_SITE_{k}": v for k, v in extra.items()})
    return env


@pytest.fixture
def run(transport, tmp_path):
    """run(env, *args) -> a started `manage.py server`, stopped at teardown."""
    servers = []

    def _run(env: dict[str, str], *args: str):
        if transport == "tcp":
            bind = ["127.0.0.1:0"]
        else:
            bind = ["--bind", f"unix:{tmp_path / f'django{len(servers)}.sock'}"]
        server = start_server([*bind, *args], env)
        servers.append(server)
        return server

    yield _run
    for s in servers:
        s.finish()


def get(server, path: str, headers: dict | None = None):
    resp, body = server.request("GET", path, headers=headers)
    return resp.status, resp.headers, body


def test_static_root_with_manifest_names(run, tmp_path):
    static_root = tmp_path / "static_root"
    env = env_for(tmp_path, STATIC_ROOT=str(static_root), MANIFEST="1")
    done = manage(["collectstatic", "--noinput", "-v0"], env)
    assert done.returncode == 0, done.stdout
    paths = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    hashed = paths["django_site/app.css"]
    assert hashed != "django_site/app.css"

    server = run(env)
    app_css = (APP_STATIC / "django_site" / "app.css").read_bytes()
    status, h, body = get(server, f"/static/{hashed}")
    assert (status, body) == (200, app_css)
    assert h["Cache-Control"] == "public, max-age=31536000, immutable"
    assert h["Content-Type"] == "text/css; charset=utf-8"
    status, h, body = get(server, "/static/django_site/app.css")
    assert (status, body) == (200, app_css)
    assert h["Cache-Control"] == "public, max-age=3600"
    status, _, body = get(server, f"/static/{paths['vendor/lib.js']}")
    assert (status, body) == (200, (FIXTURES / "vendor" / "lib.js").read_bytes())
    etag = h["ETag"]
    assert get(server, "/static/django_site/app.css", {"If-None-Match": etag})[0] == 304
    status, _, body = get(server, "/static/missing.css")
    assert status == 404 and FERRULE_404 in body
    out = server.output()
    assert f"Serving static files at /static/ from {static_root} (STATIC_ROOT)\n" in out, out


def test_debug_falls_back_to_the_finders_in_order(run, tmp_path):
    static_root = tmp_path / "static_root"
    (static_root / "django_site").mkdir(parents=True)
    (static_root / "django_site" / "order.txt").write_bytes(b"from STATIC_ROOT\n")
    server = run(env_for(tmp_path, STATIC_ROOT=str(static_root), DEBUG="1"))
    for path, want in [
        # STATIC_ROOT first
        ("django_site/order.txt", b"from STATIC_ROOT\n"),
        # then STATICFILES_DIRS (FileSystemFinder), including a prefixed one
        ("site.css", (FIXTURES / "assets" / "site.css").read_bytes()),
        ("vendor/lib.js", (FIXTURES / "vendor" / "lib.js").read_bytes()),
        # then the apps' static/ directories (AppDirectoriesFinder)
        ("django_site/app.css", (APP_STATIC / "django_site" / "app.css").read_bytes()),
    ]:
        status, h, body = get(server, f"/static/{path}")
        assert (status, body) == (200, want), path
        # While DEBUG is on, browsers revalidate every time.
        assert h["Cache-Control"] == "public, max-age=0"
    for path in ["lib.js", "nope.css", "vendor/site.css"]:
        status, _, body = get(server, f"/static/{path}")
        assert status == 404 and FERRULE_404 in body, path
    out = server.output()
    line = next(x for x in out.splitlines() if "Serving static files at /static/" in x)
    assert f"from {static_root} (STATIC_ROOT), then {FIXTURES / 'assets'} (STATICFILES_DIRS)," in (
        line
    )
    assert f"{FIXTURES / 'vendor'} (STATICFILES_DIRS, as vendor/)" in line
    assert f"{APP_STATIC} (app django_site)" in line


def test_finder_order_without_static_root(run, tmp_path):
    # STATICFILES_DIRS before the app directories, as Django's finders search.
    server = run(env_for(tmp_path, DEBUG="1"))
    status, _, body = get(server, "/static/django_site/order.txt")
    assert (status, body) == (200, b"from STATICFILES_DIRS\n")


def test_finders_need_debug_or_the_option(run, tmp_path):
    static_root = tmp_path / "static_root"
    static_root.mkdir()
    env = env_for(tmp_path, STATIC_ROOT=str(static_root))
    server = run(env)
    status, _, body = get(server, "/static/site.css")
    assert status == 404 and FERRULE_404 in body
    server.finish()
    server = run(env, "--static-finders")
    status, h, body = get(server, "/static/site.css")
    assert (status, body) == (200, (FIXTURES / "assets" / "site.css").read_bytes())
    assert h["Cache-Control"] == "public, max-age=3600"


def test_nothing_configured_means_no_mount(run, tmp_path):
    server = run(env_for(tmp_path))  # no STATIC_ROOT, DEBUG off
    status, _, body = get(server, "/static/site.css")
    assert status == 404 and DJANGO_404 in body  # Django's own 404 page
    assert "Serving static files" not in server.output()


def test_no_static_leaves_static_url_to_django(run, tmp_path):
    server = run(env_for(tmp_path, DEBUG="1"), "--no-static")
    status, _, body = get(server, "/static/site.css")
    assert status == 404 and FERRULE_404 not in body
    assert "Serving static files" not in server.output()


def test_media_only_with_the_option(run, tmp_path):
    media = tmp_path / "media"
    (media / "uploads").mkdir(parents=True)
    (media / "uploads" / "photo.0123456789ab.txt").write_bytes(b"an upload")
    page = b"<!doctype html><script>fetch('/admin/')</script>"
    (media / "uploads" / "page.html").write_bytes(page)
    (media / "uploads" / "image.svg").write_bytes(b"<svg onload='alert(1)'/>")
    static_root = tmp_path / "static_root"
    static_root.mkdir()
    (static_root / "site.css").write_bytes(b"body {}")
    env = env_for(tmp_path, MEDIA_ROOT=str(media), STATIC_ROOT=str(static_root))
    server = run(env)
    status, _, body = get(server, "/media/uploads/photo.0123456789ab.txt")
    assert status == 404 and DJANGO_404 in body
    server.finish()
    server = run(env, "--media", "--static-max-age", "120")
    status, h, body = get(server, "/media/uploads/photo.0123456789ab.txt")
    assert (status, body) == (200, b"an upload")
    # A user picks upload names: one that looks hashed is not trusted to be immutable.
    assert h["Cache-Control"] == "public, max-age=120"
    status, _, body = get(server, "/media/uploads/other.txt")
    assert status == 404 and FERRULE_404 in body
    # An uploaded page or SVG is served as what it is, but sandboxed: no script runs on the
    # site's origin. Every media answer says so, and none sniffs.
    for path, status in [
        ("uploads/page.html", 200),
        ("uploads/image.svg", 200),
        ("uploads/photo.0123456789ab.txt", 200),
        ("uploads/other.txt", 404),
    ]:
        got, h, _ = get(server, f"/media/{path}")
        assert got == status, path
        assert h["Content-Security-Policy"] == "sandbox", path
        assert h["X-Content-Type-Options"] == "nosniff", path
    # Static files are the site's own: not sandboxed.
    status, h, _ = get(server, "/static/site.css")
    assert status == 200 and h["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in h
    assert f"Serving static files at /media/ from {media} (MEDIA_ROOT)" in server.output()


def test_absolute_static_url_is_served_as_is(run, tmp_path):
    server = run(env_for(tmp_path, DEBUG="1", STATIC_URL="/assets/v1/"))
    status, _, body = get(server, "/assets/v1/site.css")
    assert (status, body) == (200, (FIXTURES / "assets" / "site.css").read_bytes())


def test_a_full_static_url_is_not_served(run, tmp_path):
    server = run(env_for(tmp_path, DEBUG="1", STATIC_URL="https://cdn.example.com/static/"))
    status, _, body = get(server, "/static/site.css")
    assert status == 404 and FERRULE_404 not in body
    assert "STATIC_URL is a full URL ('https://cdn.example.com/static/')" in server.output()


def test_a_missing_static_root_is_a_warning_not_a_mount(run, tmp_path):
    missing = tmp_path / "not_collected_yet"
    server = run(env_for(tmp_path, STATIC_ROOT=str(missing)))
    out = server.output()
    assert f"not serving STATIC_ROOT '{missing}' at /static/" in out, out
    assert "collectstatic" in out
    status, _, body = get(server, "/static/site.css")
    assert status == 404 and DJANGO_404 in body
