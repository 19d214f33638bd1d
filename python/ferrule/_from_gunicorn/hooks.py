"""gunicorn's server hooks: those ferrule has too (`HOOKS`: gunicorn's signature, ferrule's,
and what changes) and those it has not (`NO_HOOK`: what to do instead), and `HOOKS_MODULE`, the
module a translated file names. The functions themselves are not rewritten: output.py's report
tells the user how."""

from __future__ import annotations

#: The module named by `hooks = ...` when the gunicorn file defines hooks.
HOOKS_MODULE = "ferrule_hooks"

_MASTER = "runs in the master, or in the single process without workers"

# gunicorn's hooks that ferrule has: gunicorn's signature, ferrule's, and what changes.
HOOKS: dict[str, tuple[str, str, str]] = {
    "on_starting": ("on_starting(server)", "on_starting()", f"{_MASTER}; no server object"),
    "when_ready": ("when_ready(server)", "when_ready()", f"{_MASTER}; no server object"),
    "on_reload": (
        "on_reload(server)",
        "on_reload()",
        "runs in the master only, on SIGHUP (a single process never calls it); no server object",
    ),
    "post_worker_init": (
        "post_worker_init(worker)",
        "post_worker_init()",
        "runs in each worker after the import; worker.pid is os.getpid()",
    ),
    "worker_exit": ("worker_exit(server, worker)", "worker_exit()", "runs in each worker"),
    "pre_request": (
        "pre_request(worker, req)",
        "pre_request(environ)",
        "in the worker thread, before each WSGI request; req.method and req.path are "
        'environ["REQUEST_METHOD"] and environ["PATH_INFO"]',
    ),
    "post_request": (
        "post_request(worker, req, environ, resp)",
        "post_request(environ, status, timings)",
        "in the worker thread, after each WSGI request; resp.status is status, an int, "
        "and timings a dict",
    ),
}

_FORKED = "ferrule starts workers as new processes, not forks: move it to post_worker_init()"
_DIRTY_HOOK = "gunicorn's dirty arbiters have no ferrule equivalent"

# gunicorn's hooks that ferrule does not have, and what to do instead.
NO_HOOK: dict[str, str] = {
    "pre_fork": _FORKED,
    "post_fork": _FORKED,
    "pre_exec": "ferrule does not re-execute itself; SIGHUP starts workers with new code",
    "worker_int": "no equivalent; cleanup when a worker stops goes in worker_exit()",
    "worker_abort": "no equivalent: a worker past worker_timeout is killed, and the master "
    "logs the requests it had in flight",
    "child_exit": "no equivalent in the master; for prometheus_client's multiprocess mode, "
    "call mark_process_dead(os.getpid()) in worker_exit()",
    "nworkers_changed": "no equivalent",
    "on_exit": "no equivalent",
    "ssl_context": "ferrule's TLS is set by certfile, keyfile, ca_certs, client_cert and "
    'tls_min (tls_min = "1.3" is this hook\'s usual job)',
    "on_dirty_starting": _DIRTY_HOOK,
    "dirty_post_fork": _DIRTY_HOOK,
    "dirty_worker_init": _DIRTY_HOOK,
    "dirty_worker_exit": _DIRTY_HOOK,
}
