"""Finding the functions of a `--hooks` module (the Rust core calls them; see docs/hooks.md).

The points are gunicorn's, the arguments ferrule's own: gunicorn passes its server, worker
and request objects, which ferrule does not have. A function whose signature cannot take
ferrule's arguments (one copied from a `gunicorn.conf.py`, say) stops ferrule at start-up
with a message naming it, rather than failing at every call.
"""

from __future__ import annotations

import importlib
import inspect

# Each point ferrule calls, with the arguments it passes.
POINTS = {
    "on_starting": (),
    "when_ready": (),
    "on_reload": (),
    "post_worker_init": (),
    "worker_exit": (),
    "pre_request": ("environ",),
    "post_request": ("environ", "status", "timings"),
}

# gunicorn's hooks that have no counterpart here, and why.
UNCALLED = {
    "pre_fork": "ferrule's workers are started as new processes, never forked from the master",
    "post_fork": "use post_worker_init: it runs in each worker once the application is loaded",
    "child_exit": "the master logs each worker's exit",
    "worker_int": "use worker_exit: it runs in each worker that stops cleanly",
    "worker_abort": "a worker's stuck request is cancelled, not the worker aborted",
    "nworkers_changed": "SIGTTIN and SIGTTOU change the count; the master logs each change",
    "on_exit": "use worker_exit in the workers; the master has no such point",
    "pre_exec": "ferrule re-executes nothing on reload",
    "ssl_context": (
        "TLS is configured by --certfile, --keyfile, --ca-certs, --client-cert and --tls-min"
    ),
}


class SignatureError(ValueError):
    """A hook function that cannot take ferrule's arguments (the message says which)."""


def load(name: str) -> tuple[dict, list[str]]:
    """The hook functions of module `name`, by point, and the names in it of gunicorn
    hooks ferrule never calls (each with why). Raises SignatureError naming the function
    whose signature does not fit."""
    module = importlib.import_module(name)
    found = {}
    for point, args in POINTS.items():
        func = getattr(module, point, None)
        if func is None:
            continue
        if not callable(func):
            raise SignatureError(f"{name}.{point} is {type(func).__name__}, not a function")
        try:
            inspect.signature(func).bind(*args)
        except TypeError:
            expected = f"{point}({', '.join(args)})"
            raise SignatureError(
                f"{name}.{point}{_signature(func)} cannot be called as {expected}: ferrule "
                "passes its own arguments, not gunicorn's (see docs/hooks.md)"
            ) from None
        except ValueError:
            pass  # No signature to check (a builtin): the call will tell.
        found[point] = func
    ignored = [
        f"{hook} ({why})" for hook, why in UNCALLED.items() if callable(getattr(module, hook, None))
    ]
    return found, ignored


def _signature(func) -> str:
    try:
        return str(inspect.signature(func))
    except (TypeError, ValueError):
        return "(...)"
