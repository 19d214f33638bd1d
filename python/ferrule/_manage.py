"""The worker processes of ``manage.py server``: ``python -m ferrule._manage LAUNCH ARGS``.

The master of ``manage.py server`` starts its workers through this module rather than by
running ``manage.py`` again directly. It runs ``manage.py`` (or ``-m django``, or
``django-admin``) as ``__main__`` with the same arguments, so the project's own start-up
code runs as it always does, and the server command takes over from there. What it adds is
the failure before the server command runs: a syntax error in ``settings.py``, an installed
app whose models cannot be imported, settings Django refuses. Django reports those from
``manage.py`` itself and the process would exit, so the master could only restart it again
and again. Here the failure is handed to the server instead, which serves an error page
until the next save fixes it (development reload) or reports it to the master and exits.
"""

from __future__ import annotations

import os
import runpy
import sys

__all__ = ["DEBUG_ENV", "main", "server_started", "worker_command"]

#: Set by the master of ``manage.py server`` to the ``DEBUG`` its settings had ("1" or "0"):
#: a worker whose settings cannot be imported has no other way to know whether to show the
#: traceback.
DEBUG_ENV = "FERRULE_DJANGO_DEBUG"

_started = False


def server_started() -> None:
    """Called by the server command as it hands over to ferrule: from here on, a failure is
    the server's to report, not this module's."""
    global _started
    _started = True


def _launcher() -> list[str] | None:
    """How this process's ``__main__`` was started: ``["-m", "package"]`` or
    ``[script]``; None when it cannot be told (an interactive or ``-c`` session)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        # `python -m django` runs django.__main__; run_module wants the package.
        name = spec.name
        if name == "__main__" or name.endswith(".__main__"):
            name = spec.parent or name
        return ["-m", name]
    script = sys.argv[0] if sys.argv else ""
    if script and script != "-c" and os.path.isfile(script):
        return [script]
    return None


def worker_command() -> list[str] | None:
    """The command line that starts a worker of this ``manage.py server``: the interpreter
    with its ``-W`` and ``-X`` options (as Django's autoreloader keeps them), this module, how
    ``manage.py`` was started and its arguments. None when that cannot be told; the master
    then runs the process's own command line again."""
    launcher = _launcher()
    if launcher is None or not sys.executable:
        return None
    xoptions = [
        f"-X{key}" if value is True else f"-X{key}={value}"
        for key, value in getattr(sys, "_xoptions", {}).items()
    ]
    return [
        sys.executable,
        *(f"-W{option}" for option in sys.warnoptions),
        *xoptions,
        "-m",
        __name__,
        *launcher,
        *sys.argv[1:],
    ]


def _run(launch: list[str]) -> list[str]:
    """Run ``manage.py`` as ``__main__``; returns its arguments (after the program)."""
    if launch[0] == "-m":
        module, args = launch[1], launch[2:]
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script, args = launch[0], launch[1:]
        sys.argv = [script, *args]
        # As `python manage.py` would have it: the script's directory first on the path.
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        runpy.run_path(script, run_name="__main__")
    return args


def _settings_error(code: object) -> BaseException:
    """The error behind ``manage.py`` exiting before the server started: Django prints the
    message of settings it refuses and exits, so ask the settings again for the exception."""
    try:
        import django
        from django.conf import settings

        settings.INSTALLED_APPS  # noqa: B018 - reading it imports the settings module
        django.setup()
    except Exception as e:
        return e
    return RuntimeError(
        f"manage.py exited with status {code} before the server started; see the log above"
    )


def main() -> None:
    launch = sys.argv[1:]
    if not launch or launch == ["-m"]:
        sys.exit("usage: python -m ferrule._manage (manage.py | -m package) ARGS")
    args = launch[2:] if launch[0] == "-m" else launch[1:]
    failure: BaseException
    try:
        args = _run(launch)
        return
    except SystemExit as e:
        if _started or e.code in (0, None):
            raise
        failure = _settings_error(e.code)
    except BaseException as e:
        if _started or isinstance(e, KeyboardInterrupt):
            raise
        failure = _from_manage_py(e)
    sys.exit(_serve_failure(args, failure))


def _from_manage_py(e: BaseException) -> BaseException:
    """`e` with its traceback starting in manage.py: this module's frames and runpy's are
    not the user's business."""
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") in (__name__, "runpy"):
        tb = tb.tb_next
    return e.with_traceback(tb)


def _serve_failure(args: list[str], failure: BaseException) -> int:
    """Hand the failure to ferrule: a reloading worker serves it as an error page, any other
    reports it and exits."""
    from ferrule import _ferrule
    from ferrule.management.commands.server import split_base_options

    # args: the subcommand ("server"), then its options and Django's.
    _, server_args = split_base_options(args[1:])
    prog = f"{os.path.basename(sys.argv[0])} {args[0] if args else 'server'}"
    return _ferrule.main([prog, *server_args], django=True, failure=failure)


if __name__ == "__main__":
    # Run as the imported module, not as `__main__`: the server command reaches
    # `server_started` through `ferrule._manage`, and runpy lends `__main__` to manage.py.
    from ferrule._manage import main as run_worker

    run_worker()
