"""`ferrule from-gunicorn ARGV`: its arguments, its usage text and its exit codes. Each step
(loading, translating, printing) is another module's."""

from __future__ import annotations

import sys

from .loader import LoadError, computed_settings, load, near_misses
from .output import render, report
from .translation import KNOWN, translate
from .values import BadValue

USAGE = """\
usage: ferrule from-gunicorn PATH [--app MODULE:CALLABLE]

Print the ferrule configuration (TOML) equivalent to the gunicorn configuration file PATH
(`python:module.name` for a module), and on stderr every setting it has no equivalent for.

  --app MODULE:CALLABLE  the application, which gunicorn takes from its command line
                         (default: the file's wsgi_app)

  ferrule from-gunicorn gunicorn.conf.py --app mysite.wsgi > ferrule.toml
  ferrule check-config ferrule.toml
"""


def parse_args(argv: list[str]) -> tuple[str | None, str | None]:
    """(PATH, --app); PATH None for --help. Raises ValueError with what is wrong."""
    location = app = None
    args = iter(argv)
    for arg in args:
        if arg in ("-h", "--help"):
            return None, None
        if arg == "--app":
            app = next(args, None)
            if app is None:
                raise ValueError("--app needs a value (MODULE:CALLABLE)")
        elif arg.startswith("--app="):
            app = arg.removeprefix("--app=")
        elif arg.startswith("-") and arg != "-":
            raise ValueError(f"unexpected argument '{arg}'")
        elif location is None:
            location = arg
        else:
            raise ValueError(f"unexpected argument '{arg}' (one PATH only)")
    if location is None:
        raise ValueError("no PATH: name the gunicorn configuration file")
    return location, app


def main(argv: list[str]) -> int:
    """`ferrule from-gunicorn ARGV`; the exit code."""
    try:
        location, app = parse_args(argv)
    except ValueError as e:
        print(f"error: {e}\n\n{USAGE.splitlines()[0]}", file=sys.stderr)
        return 2
    if location is None:
        sys.stdout.write(USAGE)
        return 0
    try:
        namespace, source, shown = load(location)
        settings = {k: v for k, v in namespace.items() if k in KNOWN}
        t = translate(settings, computed_settings(source, settings), app)
    except LoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BadValue as e:
        print(f"error: {shown}: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(render(t, shown))
    sys.stderr.write(report(t, shown, near_misses(namespace)))
    return 0
