"""A WSGI app and a `--hooks` module in one, for tests/test_hooks.py.

Every hook appends one JSON line to the file named by HOOKS_LOG: the point, the process and
thread, and what it was given. `HOOKS_RAISE=1` makes every hook raise after recording.
"""

import json
import os
import threading
import time

LOG = os.environ.get("HOOKS_LOG", "")


def record(point, **extra):
    line = {"point": point, "pid": os.getpid(), "thread": threading.current_thread().name}
    line.update(extra)
    with open(LOG, "a") as f:
        f.write(json.dumps(line) + "\n")
    if os.environ.get("HOOKS_RAISE"):
        raise RuntimeError(f"{point} hook failed on purpose")


def on_starting():
    record("on_starting")


def when_ready():
    record("when_ready")


def on_reload():
    record("on_reload")


def post_worker_init():
    record("post_worker_init", app_loaded="app" in globals())


def worker_exit():
    record("worker_exit")


def pre_request(environ):
    environ["hookapp.pre_request"] = time.monotonic()
    record("pre_request", path=environ["PATH_INFO"])


def post_request(environ, status, timings):
    record(
        "post_request",
        path=environ["PATH_INFO"],
        status=status,
        timings=timings,
        seen_by_pre="hookapp.pre_request" in environ,
        seen_by_app=environ.get("hookapp.app"),
    )


def app(environ, start_response):
    environ["hookapp.app"] = True
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise ValueError("the view failed")
    if path == "/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or "0.2"))
    if path.startswith("/status/"):
        status = path.rsplit("/", 1)[1] + " Whatever"
    else:
        status = "200 OK"
    body = json.dumps({"pre_request": "hookapp.pre_request" in environ}).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [body]
