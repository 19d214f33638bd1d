"""`manage.py server [addr:]port [OPTIONS]`: serve this project with ferrule.

Every server option is defined once, in Rust; this command declares none. It strips Django's
own base options, runs the system checks as `runserver` does, and hands the rest of the
command line to `ferrule._ferrule.main`, which takes the WSGI application from
`WSGI_APPLICATION`. `settings.FERRULE`, when present, goes along as JSON: ferrule checks its
keys against the options and uses its values for those the command line leaves unset. Worker
processes run `manage.py` again through `ferrule._manage`, which catches what fails before
this command is reached (broken settings).
"""

from __future__ import annotations

import json
import os
import sys
import traceback

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, SystemCheckError
from django.core.management.color import color_style, no_style
from django.db import connections

from ferrule import _ferrule, _logging, _manage

# Django's base options (see BaseCommand.create_parser); --settings and --pythonpath have
# already been applied by manage.py by the time a command runs.
FLAGS = {"--traceback", "--no-color", "--force-color", "--skip-checks"}
VALUED = {"--settings", "--pythonpath", "--verbosity", "-v"}


def split_base_options(args: list[str]) -> tuple[dict[str, str | bool], list[str]]:
    """Separate Django's base options from the server's arguments.

    Anything after `--` is the server's, untouched.
    """
    base: dict[str, str | bool] = {}
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--":
            rest.append(arg)
            rest.extend(it)
            break
        name, eq, value = arg.partition("=")
        if arg in FLAGS:
            base[arg] = True
        elif name in VALUED and eq:
            base[name] = value
        elif arg in VALUED:
            base[arg] = next(it, "")
        elif arg.startswith("-v") and arg[2:].isdigit():  # -v2
            base["-v"] = arg[2:]
        else:
            rest.append(arg)
    return base, rest


class Command(BaseCommand):
    help = "Serve this project with ferrule. `manage.py server --help` lists the options."
    # The checks run in serve(), before the server starts, as runserver runs them.
    requires_system_checks: list[str] = []

    def run_from_argv(self, argv: list[str]) -> None:
        base, rest = split_base_options(argv[2:])
        if base.get("--force-color"):
            self.style = color_style(force_color=True)
            _logging.colour = True
        elif base.get("--no-color"):
            self.style = no_style()
            self.stderr.style_func = None
            _logging.colour = False
        try:
            code = self.serve(self._prog(argv), rest, checks=not base.get("--skip-checks"))
        except CommandError as e:
            if base.get("--traceback"):
                raise
            # SystemCheckError takes care of its own formatting.
            if isinstance(e, SystemCheckError):
                self.stderr.write(str(e), lambda x: x)
            else:
                self.stderr.write(f"{e.__class__.__name__}: {e}")
            # Each is a start-up failure, which ferrule ends with 2 wherever it is found.
            sys.exit(2)
        sys.exit(code)

    def print_help(self, prog_name: str, subcommand: str) -> None:
        _ferrule.main([f"{prog_name} {subcommand}", "--help"], django=True)

    def handle(self, *args, **options):
        raise CommandError(
            "the server command forwards its command line to ferrule; "
            "run it as `manage.py server [addr:]port [OPTIONS]`"
        )

    def serve(self, prog: str, args: list[str], checks: bool) -> int:
        # ferrule validates the options first, then calls back for the checks, so a bad
        # option is reported before (and without) a page of check output.
        _manage.server_started()
        # A worker whose settings no longer import shows the traceback only if the settings
        # the server started with had DEBUG on.
        os.environ[_manage.DEBUG_ENV] = "1" if settings.DEBUG else "0"
        return _ferrule.main(
            [prog, *args],
            django=True,
            before_serve=self.run_checks if checks else None,
            config=self.ferrule_settings(),
            worker_command=_manage.worker_command(),
        )

    @staticmethod
    def ferrule_settings() -> str | None:
        """`settings.FERRULE` as JSON, or None when the project has none."""
        value = getattr(settings, "FERRULE", None)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise CommandError(
                f"settings.FERRULE must be a dict, not {type(value).__name__}", returncode=2
            )
        # Paths (BASE_DIR / "static") and other objects become their str(); ferrule judges
        # the values.
        return json.dumps(value, default=str)

    def run_checks(self, reload: bool) -> None:
        self.stdout.write("Performing system checks...\n\n")
        try:
            self.check(display_num_errors=True)
            self.check_migrations()
        except CommandError:
            raise
        except Exception as e:
            if not reload:
                self.stderr.write(traceback.format_exc(), lambda x: x)
                raise CommandError(
                    f"the system checks could not run: {_summary(e)} (the traceback is above)"
                ) from e
            # The checks import the URLconf and its views: the workers will show the same
            # error as a page, and the next save that fixes it restarts them.
            self.stderr.write(
                f"The system checks could not run: {_summary(e)}\n"
                "Serving the error until a change fixes it."
            )
        finally:
            # The checks may have connected; the server's threads open their own.
            for conn in connections.all(initialized_only=True):
                conn.close()
        self.stdout.flush()

    @staticmethod
    def _prog(argv: list[str]) -> str:
        prog = os.path.basename(argv[0])
        if prog == "__main__.py":
            prog = "python -m django"
        return f"{prog} {argv[1]}"


def _summary(e: BaseException) -> str:
    """`SyntaxError: invalid syntax (views.py, line 5)`: an exception in one line."""
    return f"{type(e).__name__}: {e}"
