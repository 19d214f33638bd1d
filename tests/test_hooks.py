"""`--hooks MODULE` (issue 15): functions at gunicorn's hook points, with ferrule's arguments.

`on_starting`, `when_ready` and `on_reload` run in the master (in the only process without
one), `post_worker_init` and `worker_exit` in each serving process, `pre_request(environ)` and
`post_request(environ, status, timings)` in the worker thread around each WSGI request. A hook
that raises is logged with its traceback and changes nothing; a module that cannot be imported,
or a function with gunicorn's signature, stops ferrule before anything binds.

The fixture (`tests/apps/hookapp.py`) is the app and the hooks module at once; each hook
appends a JSON line (point, pid, thread, arguments) to the file named by HOOKS_LOG.
"""

from __future__ import annotations

import json
import re
import signal

from conftest import start
from helpers import Unmet, free_port, wait_until

LIVENESS = 30


def events(log) -> list[dict]:
    """The lines written so far; a last line still being written is left for the next look."""
    if not log.exists():
        return []
    return [
        json.loads(line)
        for line in log.read_text().splitlines(keepends=True)
        if line.endswith("\n")
    ]


def points(log, point: str) -> list[dict]:
    return [e for e in events(log) if e["point"] == point]


def wait_points(log, point: str, count: int) -> list[dict]:
    def enough():
        found = points(log, point)
        return found if len(found) >= count else Unmet([e["point"] for e in events(log)])

    return wait_until(enough, LIVENESS, what=f"{count} {point} hook calls")


def test_one_process_runs_every_point_in_order(serve, tmp_path):
    log = tmp_path / "hooks.log"
    server = serve("hookapp:app", "--hooks", "hookapp", env={"HOOKS_LOG": str(log)})
    # pre_request ran before the application, on the environ it was given.
    resp, body = server.request("GET", "/")
    assert (resp.status, json.loads(body)) == (200, {"pre_request": True})
    assert server.request("GET", "/status/404")[0].status == 404
    assert server.request("GET", "/raise")[0].status == 500
    wait_points(log, "post_request", 3)
    assert server.stop() == 0

    seen = events(log)
    requests = [e for e in seen if e["point"] in ("pre_request", "post_request")]
    assert [e["point"] for e in seen if e not in requests] == [
        "on_starting",
        "post_worker_init",
        "when_ready",
        "worker_exit",
    ], seen
    assert {e["pid"] for e in seen} == {server.proc.pid}
    assert points(log, "post_worker_init")[0]["app_loaded"] is True
    # Each request's pair in order (the next request may start before the last one's
    # post_request: the client has its response by then).
    for path in ("/", "/status/404", "/raise"):
        assert [e["point"] for e in requests if e["path"] == path] == [
            "pre_request",
            "post_request",
        ], (path, requests)
    posts = points(log, "post_request")
    assert [e["status"] for e in posts] == [200, 404, 500]
    for e in posts:
        # The environ the application saw, and the worker thread that ran it.
        assert e["seen_by_pre"] and e["seen_by_app"], e
        assert re.fullmatch(r"ferrule-worker-\d+", e["thread"]), e
        assert set(e["timings"]) == {"queue", "processing"}, e
        assert all(0 <= v < LIVENESS for v in e["timings"].values()), e
    out = server.output()
    assert "The hook" not in out, out
    # /raise's own error, with its frames (before Python 3.12 they were lost on the way).
    assert 'Traceback (most recent call last):\n  File "' in out, out
    assert ", in app\n" in out and "ValueError: the view failed" in out, out


def test_a_cancelled_request_reaches_post_request_with_its_status(serve, tmp_path):
    log = tmp_path / "hooks.log"
    server = serve(
        "hookapp:app", "--hooks", "hookapp", "--timeout", "1", env={"HOOKS_LOG": str(log)}
    )
    # The view sleeps on past --timeout; post_request comes once it has returned, with the
    # 504 and the whole time the view ran (more than the timeout).
    assert server.request("GET", "/sleep?1.5")[0].status == 504
    (post,) = wait_points(log, "post_request", 1)
    assert post["status"] == 504, post
    assert post["timings"]["processing"] >= 1.25, post


def test_the_master_runs_its_points_once_and_each_worker_its_own(tmp_path):
    log = tmp_path / "hooks.log"
    bind = f"127.0.0.1:{free_port()}"
    argv = ["--bind", bind, "--workers", "2", "--hooks", "hookapp", "hookapp:app"]
    server = start(argv, env={"HOOKS_LOG": str(log)})
    try:
        master = server.proc.pid
        (ready,) = wait_points(log, "when_ready", 1)
        first = wait_points(log, "post_worker_init", 2)
        assert ready["pid"] == master
        assert points(log, "on_starting") == [
            {"point": "on_starting", "pid": master, "thread": "MainThread"}
        ]
        workers = {e["pid"] for e in first}
        assert len(workers) == 2 and master not in workers, first

        server.proc.send_signal(signal.SIGHUP)
        (reload,) = wait_points(log, "on_reload", 1)
        assert reload["pid"] == master
        wait_points(log, "post_worker_init", 4)
        # The old workers exit once the new ones serve, each running its worker_exit.
        exits = wait_points(log, "worker_exit", 2)
        assert {e["pid"] for e in exits} == workers, exits
        assert server.request("GET", "/")[0].status == 200
    finally:
        assert server.stop() == 0
    everyone = {e["pid"] for e in points(log, "post_worker_init")}
    assert {e["pid"] for e in points(log, "worker_exit")} == everyone
    # Once each, in the master: not again after the reload.
    assert [e["pid"] for e in points(log, "when_ready")] == [master]
    assert [e["pid"] for e in points(log, "on_starting")] == [master]
    assert not [e for e in events(log) if e["point"].endswith("_request") and e["pid"] == master]


def test_a_hook_that_raises_is_logged_and_changes_nothing(serve, tmp_path):
    log = tmp_path / "hooks.log"
    server = serve(
        "hookapp:app",
        "--hooks",
        "hookapp",
        env={"HOOKS_LOG": str(log), "HOOKS_RAISE": "1"},
    )
    for _ in range(3):
        resp, body = server.request("GET", "/")
        assert (resp.status, json.loads(body)) == (200, {"pre_request": True})
    wait_points(log, "post_request", 3)
    assert server.stop() == 0
    out = server.output()
    for point in ("on_starting", "post_worker_init", "when_ready", "pre_request", "post_request"):
        assert f"The hook hookapp.{point} raised an exception; ferrule carries on" in out, point
        assert f"RuntimeError: {point} hook failed on purpose" in out, point
    assert "RuntimeError: worker_exit hook failed on purpose" in out
    assert "Shutdown complete" in out


def test_gunicorn_signatures_stop_ferrule_before_it_binds(tmp_path):
    port = free_port()
    for extra in ([], ["--workers", "2"]):
        server = start(
            ["--bind", f"127.0.0.1:{port}", *extra, "--hooks", "hooks_gunicorn", "hookapp:app"],
            expect_ready=False,
        )
        assert server.proc.wait(LIVENESS) == 2, server.output()
        out = server.output()
        assert (
            "hooks_gunicorn.post_worker_init(worker) cannot be called as post_worker_init()" in out
        ), out
        assert "Listening" not in out, out


def test_a_module_that_cannot_be_imported_stops_ferrule(tmp_path):
    server = start(
        ["--bind", "127.0.0.1:0", "--hooks", "no_such_hooks", "hookapp:app"], expect_ready=False
    )
    assert server.proc.wait(LIVENESS) == 2, server.output()
    out = server.output()
    assert "cannot import the hooks module no_such_hooks" in out, out
    assert "ModuleNotFoundError: No module named 'no_such_hooks'" in out, out


def test_the_config_file_names_the_module_and_uncalled_gunicorn_hooks_are_named(tmp_path):
    config = tmp_path / "ferrule.toml"
    config.write_text('app = "hookapp:app"\nhooks = "hooks_ignored"\nbind = "127.0.0.1:0"\n')
    server = start(["--config", str(config)])
    try:
        assert server.request("GET", "/")[0].status == 200
    finally:
        assert server.stop() == 0
    out = server.output()
    assert (
        "The hooks module hooks_ignored defines post_fork (use post_worker_init: it runs in "
        "each worker once the application is loaded); ferrule never calls it"
    ) in out, out
