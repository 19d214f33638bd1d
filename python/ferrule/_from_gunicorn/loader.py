"""Reading a gunicorn configuration file as gunicorn does (`load`), and what its source says
beyond the values: the settings it computes (`computed_settings`), and names gunicorn ignored
that look like a misspelt setting (`near_misses`). Translating the values is
translation.py's."""

from __future__ import annotations

import ast
import difflib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import traceback

from .translation import KNOWN


class LoadError(Exception):
    """The file cannot be read or run; the message says why."""


def load(location: str) -> tuple[dict, str | None, str]:
    """Run the configuration as gunicorn does; (its namespace, its source, the name shown)."""
    # gunicorn puts its chdir (the current directory) first on sys.path before reading it.
    sys.path.insert(0, os.getcwd())
    if location.startswith("python:"):
        name = location.removeprefix("python:")
        try:
            with _stdout_to_stderr():
                module = importlib.import_module(name)
        except (Exception, SystemExit) as e:
            raise LoadError(f"cannot import {name}: {type(e).__name__}: {e}") from None
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):
            source = None
        return vars(module), source, name
    shown = location.removeprefix("file:")
    path = os.path.abspath(shown)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            source = f.read()
    except OSError as e:
        raise LoadError(f"cannot read {shown}: {type(e).__name__}: {e.strerror}") from None
    # As gunicorn.app.base.get_config_from_filename: any extension is read as Python source.
    loader = importlib.machinery.SourceFileLoader("__config__", path)
    spec = importlib.util.spec_from_file_location("__config__", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["__config__"] = module
    try:
        with _stdout_to_stderr():
            loader.exec_module(module)
    except (Exception, SystemExit) as e:
        raise LoadError(f"{shown}{_line_of(e, path)}: {type(e).__name__}: {_message(e)}") from None
    finally:
        sys.modules.pop("__config__", None)
    return vars(module), source, shown


class _stdout_to_stderr:
    """A file that prints keeps stdout for the TOML."""

    def __enter__(self):
        self.saved, sys.stdout = sys.stdout, sys.stderr

    def __exit__(self, *exc):
        sys.stdout = self.saved


def _line_of(e: BaseException, path: str) -> str:
    if isinstance(e, SyntaxError) and e.lineno:
        return f", line {e.lineno}"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
    return f", line {frames[-1].lineno}" if frames else ""


def _message(e: BaseException) -> str:
    return e.msg if isinstance(e, SyntaxError) else str(e)


def computed_settings(source: str | None, names) -> dict[str, str]:
    """The settings whose value the file computes (`cpu_count() * 2 + 1`), with the expression:
    their value here may not be their value on the server."""
    if source is None:
        return {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    found: dict[str, str] = {}
    for node in _statements(tree.body):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if not (isinstance(target, ast.Name) and target.id in names):
                continue
            if isinstance(node, ast.AugAssign):
                found[target.id] = _short_source(ast.get_source_segment(source, node))
                continue
            try:
                ast.literal_eval(value)
                found.pop(target.id, None)
            except (ValueError, TypeError, SyntaxError):
                found[target.id] = _short_source(ast.get_source_segment(source, value))
    return found


def _statements(body):
    """The statements run when the module is, not those inside its functions and classes."""
    for node in body:
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            yield from _statements(getattr(node, field, None) or [])


def _short_source(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= 80 else text[:77] + "..."


def near_misses(namespace: dict) -> list[tuple[str, str]]:
    """Names gunicorn ignored because they are not settings, but look like one
    (`keep_alive` for `keepalive`)."""
    misses = []
    for name, value in namespace.items():
        if name in KNOWN or name.startswith("_") or not name.islower():
            continue
        if callable(value) or inspect.ismodule(value):
            continue
        if close := difflib.get_close_matches(name, sorted(KNOWN), n=1, cutoff=0.8):
            misses.append((name, close[0]))
    return misses
