"""The worker's side of development reload (issue 6), without a server: which files a worker
asks the master to watch, and what it serves when the application failed to import.

Django cases run in a subprocess: settings are configured once per process."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ferrule import _reload

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A temporary import root; modules imported from it are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]
    importlib.invalidate_caches()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_module_files_lists_the_project_and_not_the_standard_library_or_packages(project):
    init = write(project / "shop" / "__init__.py", "from . import views\n")
    views = write(project / "shop" / "views.py", "import json\nimport django\n")
    write(project / "shop" / "unused.py", "")
    importlib.import_module("shop")

    files = _reload.module_files()
    assert str(init) in files
    assert str(views) in files
    assert str(project / "shop" / "unused.py") not in files
    for module in (json, pytest, importlib, _reload):
        assert module.__file__ not in files, module.__name__
    assert not any("site-packages" in f for f in files), files
    assert files == sorted(files)


def test_module_files_gives_the_source_of_a_module_loaded_from_bytecode(project):
    source = write(project / "compiled.py", "x = 1\n")
    import py_compile

    cached = py_compile.compile(str(source))
    module = importlib.import_module("compiled")
    module.__file__ = cached
    assert str(source) in _reload.module_files()


def test_error_files_names_the_file_with_a_syntax_error(project):
    write(project / "site_pkg" / "__init__.py", "from . import broken\n")
    broken = write(project / "site_pkg" / "broken.py", "def f(:\n    pass\n")
    with pytest.raises(SyntaxError) as info:
        importlib.import_module("site_pkg")
    files = _reload.error_files(info.value)
    assert str(broken) in files
    assert str(project / "site_pkg" / "__init__.py") in files
    assert not any(f.startswith("<") or "importlib" in f for f in files), files


def test_error_files_follows_the_traceback_and_chained_errors(project):
    failing = write(project / "failing.py", "import json\nvalue = 1 / 0\n")
    wrapper = write(
        project / "wrapper.py",
        """
        try:
            import failing
        except ZeroDivisionError as e:
            raise RuntimeError("could not load") from e
        """,
    )
    with pytest.raises(RuntimeError) as info:
        importlib.import_module("wrapper")
    files = [f for f in _reload.error_files(info.value) if f != __file__]
    assert files == sorted([str(failing), str(wrapper)])


def call(app, path="/shop/"):
    from wsgiref.util import setup_testing_defaults

    environ = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    got = {}

    def start_response(status, headers, exc_info=None):
        got["status"], got["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    assert got["headers"]["Content-Length"] == str(len(body))
    return got["status"], got["headers"], body


def test_error_app_without_django_never_shows_the_traceback(monkeypatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    try:
        raise SyntaxError("secret detail", ("/app/views.py", 3, 1, "def f(:\n"))
    except SyntaxError as e:
        app = _reload.error_app(e)
    status, headers, body = call(app)
    assert status == "500 Internal Server Error"
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"failed to import; see the server log" in body
    assert b"secret detail" not in body
    assert b"views.py" not in body


# Run in a fresh interpreter: configure Django (or not), fail to import an app, and report
# what the error app answers.
PROBE = """
import json, os, sys
from wsgiref.util import setup_testing_defaults
mode = sys.argv[1]
if mode == "configure":
    from django.conf import settings
    settings.configure(DEBUG=sys.argv[2] == "on", ALLOWED_HOSTS=["*"], SECRET_KEY="k")
    import django
    django.setup()
from ferrule import _reload
try:
    exec(compile("def view(:\\n    pass\\n", "/project/shop/views.py", "exec"))
except SyntaxError as e:
    app = _reload.error_app(e)
environ = {"PATH_INFO": "/shop/", "HTTP_ACCEPT": "text/html"}
setup_testing_defaults(environ)
got = {}
def start_response(status, headers, exc_info=None):
    got.update(status=status, headers=dict(headers))
body = b"".join(app(environ, start_response)).decode()
print(json.dumps(dict(got, body=body)))
"""


def probe(*args: str, settings: str | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS / "django_site"), *sys.path]))
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if settings:
        env["DJANGO_SETTINGS_MODULE"] = settings
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def test_error_app_with_django_debug_shows_the_technical_500_page():
    got = probe("configure", "on")
    assert got["status"] == "500 Internal Server Error"
    assert got["headers"]["Content-Type"].startswith("text/html")
    body = got["body"]
    assert "SyntaxError" in body
    assert "invalid syntax (views.py, line 1)" in body
    assert "DEBUG = True" in body  # Django's footer explaining why the page is shown
    assert "failed to import" not in body


@pytest.mark.parametrize(
    "args, settings",
    [
        (("configure", "off"), None),
        # The test project's settings: DEBUG = False.
        (("env",), "django_site.settings"),
        # Settings that cannot even be imported.
        (("env",), "django_site.no_such_settings"),
    ],
    ids=["debug-off", "settings-module", "broken-settings"],
)
def test_error_app_with_django_debug_off_never_shows_the_traceback(args, settings):
    got = probe(*args, settings=settings)
    assert got["status"] == "500 Internal Server Error"
    assert "failed to import; see the server log" in got["body"]
    assert "views.py" not in got["body"]
