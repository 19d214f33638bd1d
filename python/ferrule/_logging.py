"""Default log handlers, used only when the application configured none for ferrule's loggers.

Server events go to the `ferrule` logger and access lines to `ferrule.access`; Django's
LOGGING setting (or any logging configuration) routes them like any other logger. When nothing
would show them, ferrule prints server events at INFO and access lines to stderr. Access
records carry the response's status as `record.status_code`, as Django's `django.server`
records do, so `django.utils.log.ServerFormatter` colours them too.
"""

from __future__ import annotations

import logging
import os
import sys

SERVER_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"

#: Colour the development access lines: None decides from the terminal (and `NO_COLOR`);
#: `manage.py server --no-color` / `--force-color` set it.
colour: bool | None = None

# Django's default palette (django.utils.termcolors): the status classes runserver colours.
_BOLD, _GREEN, _CYAN, _YELLOW, _RED_BOLD, _MAGENTA_BOLD = (
    "1",
    "32",
    "36",
    "33",
    "31;1",
    "35;1",
)


def _status_colour(status: int) -> str | None:
    if status < 200:
        return _BOLD
    if status == 304:
        return _CYAN
    if 300 <= status < 400:
        return _GREEN
    if status == 404:
        return _YELLOW
    if 400 <= status < 500:
        return _RED_BOLD
    if status >= 500:
        return _MAGENTA_BOLD
    return None


def _terminal_wants_colour(stream) -> bool:
    if colour is not None:
        return colour
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class DevFormatter(logging.Formatter):
    """`[14:03:07] GET /notes/ 200 1.2 KB 3.1 ms`, coloured by status like runserver's lines
    when `coloured`."""

    def __init__(self, coloured: bool):
        super().__init__("[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
        self.coloured = coloured

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        status = getattr(record, "status_code", None)
        code = _status_colour(status) if self.coloured and isinstance(status, int) else None
        return f"\x1b[{code}m{line}\x1b[0m" if code else line


def ensure_handlers(dev: bool = False) -> None:
    server = logging.getLogger("ferrule")
    if not server.hasHandlers():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(SERVER_FORMAT))
        server.addHandler(handler)
        if server.level == logging.NOTSET:
            server.setLevel(logging.INFO)
    access = logging.getLogger("ferrule.access")
    if access.handlers or not access.propagate:
        return
    if server.handlers and all(isinstance(h, logging.StreamHandler) for h in server.handlers):
        # Our own default handler (or a plain console one): print access lines bare, or in
        # development with the time of day and a colour.
        handler = logging.StreamHandler(sys.stderr)
        if dev:
            handler.setFormatter(DevFormatter(_terminal_wants_colour(sys.stderr)))
        else:
            handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.propagate = False
        if access.level == logging.NOTSET:
            access.setLevel(logging.INFO)
