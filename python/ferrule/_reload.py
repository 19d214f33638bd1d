"""Development reload, the worker's side: which files to watch, and what to serve when the
application failed to import.

With ``--reload`` the master watches the project directory itself (templates, ``.env`` and
locale files included, by its globs: a Django project's template and locale directories under
it are covered that way, nothing here lists them). A worker adds what the directory watch
cannot know about: the source files of the modules it imported, wherever they live
(:func:`module_files`), or, when the import failed, the files named by the error
(:func:`error_files`) while it serves :func:`error_app` until the next good save. The
standard library and installed packages are never watched: they do not change while you work,
and there are thousands of them.
"""

from __future__ import annotations

import html
import os
import site
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

__all__ = ["error_app", "error_files", "module_files"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_PLAIN_500 = (
    b"<!doctype html>\n<html><head><meta charset='utf-8'>"
    b"<title>500 Internal Server Error</title></head>\n"
    b"<body><h1>Internal Server Error</h1>\n"
    b"<p>The application failed to import; see the server log.</p></body></html>\n"
)


def _installed_dirs() -> tuple[str, ...]:
    """The standard library, site-packages (of the virtualenv, the base interpreter and the
    user), and ferrule's own package: directories whose files never reload the application."""
    dirs: set[str] = set()
    bases = [
        {},
        {"base": sys.base_prefix, "platbase": sys.base_exec_prefix},
        {"base": sys.prefix, "platbase": sys.exec_prefix},
    ]
    for base in bases:
        paths = sysconfig.get_paths(vars=base)
        dirs.update(paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib"))
    dirs.update(getattr(site, "getsitepackages", list)())
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user_site:
        dirs.add(user_site)
    dirs.add(os.path.dirname(__file__))
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs if d)


def _source(path: str | None) -> str | None:
    """The file to watch for a module loaded from `path`: its source rather than bytecode;
    None for anything that is not a file on disk (frozen, built-in, inside a zip)."""
    if not path:
        return None
    if path.endswith((".pyc", ".pyo")):
        import importlib.util

        try:
            path = importlib.util.source_from_cache(path)
        except ValueError:  # a sourceless .pyc beside where the .py would be
            path = path[:-1]
    path = os.path.abspath(path)
    return path if os.path.isfile(path) else None


def _project_file(path: str | None, installed: tuple[str, ...]) -> str | None:
    source = _source(path)
    if source is None or os.path.realpath(source).startswith(installed):
        return None
    return source


def _module_origin(module: ModuleType) -> str | None:
    spec = getattr(module, "__spec__", None)
    if spec is not None and not spec.has_location:  # built-in, frozen, namespace package
        return None
    path = getattr(module, "__file__", None)
    return path if isinstance(path, str) else None


def module_files() -> list[str]:
    """The source files of the modules imported so far, outside the standard library,
    site-packages and ferrule itself: absolute paths, sorted. Modules loaded from bytecode
    give their source file when it exists; extension modules built in the project (a
    Cython ``.so``) are listed as they are."""
    installed = _installed_dirs()
    files = set()
    for module in list(sys.modules.values()):
        source = _project_file(_module_origin(module), installed) if module else None
        if source:
            files.add(source)
    return sorted(files)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from or while handling, once each."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]


def error_files(exc: BaseException) -> list[str]:
    """The project files an import error names, so their next save reloads: the file of a
    `SyntaxError` (which never runs, so no traceback frame is in it), the module an
    `ImportError` was raised in, and the files of the traceback's frames, for `exc` and the
    exceptions it was chained to. The standard library, site-packages and ferrule itself are
    left out."""
    installed = _installed_dirs()
    names: list[str | None] = []
    for e in _chain(exc):
        if isinstance(e, SyntaxError):
            names.append(e.filename)
        if isinstance(e, ImportError):
            names.append(e.path)
        names += [frame.filename for frame in traceback.extract_tb(e.__traceback__)]
    files = {_project_file(name, installed) for name in names}
    return sorted(f for f in files if f)


def _django_debug() -> bool:
    """Whether Django is configured with DEBUG on; False when there is no Django. When the
    settings themselves fail to import, the DEBUG of the settings ``manage.py server``
    started with (its master passes it down in the environment)."""
    if "django" not in sys.modules and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return False
    try:
        from django.conf import settings

        return bool(settings.DEBUG)
    except Exception:
        from ferrule._manage import DEBUG_ENV

        return os.environ.get(DEBUG_ENV) == "1"


def _settings_configured() -> bool:
    try:
        from django.conf import settings

        settings.DEBUG  # noqa: B018 - reading a setting imports the settings module
    except Exception:
        return False
    return True


class _NoMatch:
    """A stand-in for ``request.resolver_match``. Django's debug page names the view that
    raised, resolving the path when the request has none; with the URLconf itself failing to
    import, that raises the same error again and Django's page fails too."""

    _func_path = ""


def _technical_500(exc: BaseException, environ: dict[str, Any]) -> tuple[bytes, str]:
    """Django's DEBUG error page for `exc`, for the request in `environ`."""
    from django.views import debug

    try:
        from django.core.handlers.wsgi import WSGIRequest

        request = WSGIRequest(environ)
        request.resolver_match = _NoMatch()
        response = debug.technical_500_response(request, type(exc), exc, exc.__traceback__)
        return response.content, response["Content-Type"]
    except Exception:
        # A half-configured Django (an app's models failed to import) may not build a
        # request; the report without request details still shows the error.
        reporter = debug.ExceptionReporter(None, type(exc), exc, exc.__traceback__)
        return reporter.get_traceback_html().encode(), "text/html; charset=utf-8"


_TRACEBACK_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>{title}</title>
<style>
body{{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1e293b;background:#fff}}
header{{background:#fde68a;padding:12px 24px;border-bottom:1px solid #e2c25a}}
h1{{font-size:20px;margin:0 0 4px}}header p{{margin:2px 0;color:#57420b}}
main{{padding:12px 24px}}pre{{background:#f8fafc;border:1px solid #e2e8f0;padding:10px;
overflow:auto;font:12px/1.4 ui-monospace,monospace}}.where{{font-weight:600}}
</style></head><body>
<header><h1>{title}</h1><p>{message}</p>{where}</header>
<main>{source}<h2>Traceback</h2><pre>{traceback}</pre>
<p>You see this page because the project could not start while the server reloads on
changes, and <code>DEBUG</code> was on in the settings the server started with. Fix the error
and save: the server restarts by itself.</p></main></body></html>
"""


def traceback_page(exc: BaseException) -> bytes:
    """ferrule's own page for an error that keeps the project from starting, where Django
    cannot render its own (the settings do not import): the exception, where it happened
    (for a syntax error, the line and a caret under the offending place) and the traceback.
    Everything from the error is escaped."""
    where, source = "", ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f"<p class='where'>{html.escape(exc.filename)}, line {exc.lineno}</p>"
        if exc.text:
            caret = " " * max((exc.offset or 1) - 1, 0) + "^"
            source = f"<pre>{html.escape(exc.text.rstrip())}\n{caret}</pre>"
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            where = (
                f"<p class='where'>{html.escape(last.filename)}, line {last.lineno}, "
                f"in {html.escape(last.name)}</p>"
            )
    message = str(exc) if not isinstance(exc, SyntaxError) else (exc.msg or str(exc))
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return _TRACEBACK_PAGE.format(
        title=html.escape(type(exc).__name__),
        message=html.escape(message),
        where=where,
        source=source,
        traceback=html.escape("".join(lines)),
    ).encode()


def error_app(exc: BaseException) -> WSGIApp:
    """A WSGI application answering every request with a 500, for a worker whose application
    failed to import during development. With Django's DEBUG on the page is Django's
    technical 500 page for `exc`, or ferrule's own page with the traceback when the settings
    cannot be imported (Django cannot render its page without them); otherwise (DEBUG off,
    or not Django) it only says that the application failed to import and to see the server
    log: the traceback is never shown."""
    debug = _django_debug()
    django_page = debug and _settings_configured()

    def failed_to_import(
        environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        body, content_type = _PLAIN_500, "text/html; charset=utf-8"
        if django_page:
            try:
                body, content_type = _technical_500(exc, environ)
            except Exception as render_error:
                body = _PLAIN_500.replace(
                    b"</p>",
                    b" (Django's error page failed too: "
                    + html.escape(repr(render_error)).encode()
                    + b")</p>",
                )
        elif debug:
            body = traceback_page(exc)
        start_response(
            "500 Internal Server Error",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]

    return failed_to_import
