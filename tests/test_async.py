"""Sync views waiting on async work (issue 4): `ferrule.wait`, `ferrule.gather`, asgiref's
`async_to_sync` and Django's async views on the process's shared event loop, and what a
client that leaves does to a request blocked in them.

Server tests run over TCP and a Unix socket; the fixture app is tests/apps/asyncapp.py, which
reports in its responses and, for what happens after the client is gone, in `fixture:` lines;
tests that look only at their own answers and tagged lines share a server per transport
(`shared`). The tests at the top call the functions in this process, outside any ferrule
worker thread.
"""

from __future__ import annotations

import asyncio
import json
import signal
import traceback
from concurrent.futures import ThreadPoolExecutor

import ferrule
import pytest
from conftest import TESTS
from helpers import Conn, build_request, echo, host_header

SITE = TESTS / "django_site"


# --- outside a worker thread: a private loop --------------------------------------------------


async def double(x, delay=0.0):
    await asyncio.sleep(delay)
    return 2 * x


async def explode_here():
    await asyncio.sleep(0)
    raise ValueError("from the coroutine")


def test_wait_outside_a_worker_runs_on_a_private_loop():
    assert ferrule.wait(double(21)) == 42
    assert ferrule.cancelled() is False


def test_wait_outside_a_worker_reraises_with_the_coroutine_in_the_traceback():
    with pytest.raises(ValueError, match="from the coroutine") as info:
        ferrule.wait(explode_here())
    assert "explode_here" in "".join(traceback.format_tb(info.value.__traceback__))


def test_wait_outside_a_worker_times_out_with_the_builtin_timeout_error():
    cancelled = []

    async def slow():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(TimeoutError):
        ferrule.wait(slow(), timeout=0.01)
    assert cancelled == [True]


def test_gather_outside_a_worker_keeps_the_order_and_returns_exceptions():
    assert ferrule.gather(double(1, 0.03), double(2, 0.01), double(3)) == [2, 4, 6]
    assert ferrule.gather() == []
    results = ferrule.gather(double(1), explode_here(), return_exceptions=True)
    assert results[0] == 2 and isinstance(results[1], ValueError)


def test_wait_in_a_thread_with_a_running_loop_is_refused():
    async def inside():
        # The coroutine handed over is closed, so no "never awaited" warning (an error here).
        ferrule.wait(double(1))

    with pytest.raises(RuntimeError, match="await the awaitable directly"):
        asyncio.run(inside())


def test_wait_on_something_not_awaitable_is_a_type_error():
    with pytest.raises(TypeError):
        ferrule.wait(42)


# --- in a worker thread: the shared loop ------------------------------------------------------


def get(server, path: str):
    resp, body = server.request("GET", path)
    assert resp.status == 200, (resp.status, body[:1000])
    return json.loads(body)


def test_wait_returns_the_result_from_the_shared_loop(shared):
    server = shared("asyncapp:app")
    got = get(server, "/wait?v=hello")
    assert got["value"] == "hello"
    assert got["thread"] == "ferrule-loop"


def test_wait_reraises_with_the_coroutine_in_the_traceback(shared):
    server = shared("asyncapp:app")
    got = get(server, "/raise")
    assert got["type"] == "ValueError"
    assert "explode_in_coroutine" in got["traceback"], got["traceback"]
    assert "raised inside the coroutine" in got["traceback"]


def test_timeout_cancels_the_coroutine_then_raises_timeout_error(shared):
    server = shared("asyncapp:app")
    got = get(server, "/timeout?t=0.05&tag=t1")
    assert got == {"type": "TimeoutError", "builtin": True}
    # wait_for waits for the cancellation to finish before raising.
    cancelled = server.wait_for_output(r"fixture: coroutine cancelled tag=t1")
    raised = server.wait_for_output(r"fixture: view timed out tag=t1")
    lines = server.output().splitlines()
    assert lines.index(cancelled.string.rstrip("\n")) < lines.index(raised.string.rstrip("\n"))


def test_gather_returns_results_in_order(shared):
    server = shared("asyncapp:app")
    assert get(server, "/gather") == ["a", "b", "c"]
    assert get(server, "/gather?exc=1") == ["a", "KeyError: 'the second one failed'", "c"]


def test_gather_cancels_the_others_when_one_fails(shared):
    server = shared("asyncapp:app")
    assert get(server, "/gather-fail?tag=g1") == {"type": "KeyError"}
    server.wait_for_output(r"fixture: coroutine cancelled tag=g1")


def test_cancelled_is_false_in_a_request_nobody_cancelled(shared):
    server = shared("asyncapp:app")
    assert get(server, "/cancelled") == {"cancelled": False}


@pytest.mark.parametrize("via", ["wait", "gather", "a2s"])
def test_time_blocked_counts_as_the_request_asleep(shared, via):
    server = shared("asyncapp:app")
    # A lower bound only: the thread slept at least as long as the coroutine did.
    assert get(server, f"/asleep?via={via}&s=0.1")["asleep"] >= 0.09
    assert get(server, "/asleep?via=none")["asleep"] == 0


def test_many_threads_wait_at_once(serve):
    # Each wait returns only once all 20 are waiting at the same moment: waits that ran one
    # after another would each give up after 30 s and answer false (issue 13: this test
    # used to pass whatever the overlap).
    server = serve("asyncapp:app", "--threads", "32")
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: get(server, "/together?n=20&tag=t"), range(20)))
    assert results == [{"together": True}] * 20


def test_wait_and_async_to_sync_share_one_loop_across_requests(serve):
    server = serve("asyncapp:app", "--threads", "4")
    seen = [get(server, "/loop") for _ in range(3)]
    loops = {s["wait"]["loop"] for s in seen} | {s["a2s"]["loop"] for s in seen}
    assert len(loops) == 1, seen
    for s in seen:
        assert s["wait"]["thread"] == s["a2s"]["thread"] == "ferrule-loop"
        assert s["worker"] != s["wait"]["ident"]


def test_thread_sensitive_calls_inside_wait_run_on_the_waiting_thread(shared):
    server = shared("asyncapp:app")
    got = get(server, "/sensitive")
    worker = got["worker"]
    assert got["wait"] == [worker, worker]
    assert got["gather"] == [worker, worker, [worker, worker]]
    assert got["unsensitive"] != worker


def test_shutdown_cancels_tasks_left_on_the_loop(serve):
    server = serve("asyncapp:app")
    assert get(server, "/background?tag=bg") == {"started": True}
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    out = server.output()
    assert "fixture: coroutine cancelled tag=bg" in out
    assert "Shutdown complete" in out
    assert "Traceback" not in out and "Task was destroyed" not in out, out


# --- a client that leaves ---------------------------------------------------------------------


@pytest.mark.parametrize("via", ["wait", "gather", "a2s"])
def test_client_leaving_cancels_the_wait_and_the_coroutine(serve, via):
    server = serve("asyncapp:app")
    tag = f"gone-{via}"
    c = Conn(server)
    c.send(build_request("GET", f"/hang?via={via}&tag={tag}", host=host_header(server)))
    server.wait_for_output(f"fixture: coroutine started tag={tag}")
    c.close()
    server.wait_for_output(f"fixture: coroutine cancelled tag={tag}")
    server.wait_for_output(f"fixture: view raised ClientDisconnected via={via} tag={tag}")
    # Later in the same request: cancelled() is true and a new wait raises at once.
    server.wait_for_output(f"fixture: cancelled\\(\\) is True tag={tag}")
    server.wait_for_output(f"fixture: second wait raised ClientDisconnected tag={tag}")
    assert f"coroutine started tag={tag}-again" not in server.output()
    # The thread is free again, and asyncio logged nothing about the abandoned task.
    assert get(server, "/wait?v=after")["value"] == "after"
    out = server.output()
    for noise in ("never retrieved", "InvalidStateError", "never awaited"):
        assert noise not in out, out


@pytest.mark.parametrize("via", ["wait", "a2s"])
def test_timeout_cancels_the_wait_and_answers_504(serve, via):
    server = serve("asyncapp:app", "--timeout", "0.5")
    tag = f"late-{via}"
    resp, _ = server.request("GET", f"/hang?via={via}&tag={tag}")
    assert resp.status == 504
    server.wait_for_output(f"fixture: coroutine cancelled tag={tag}")
    server.wait_for_output(f"fixture: view raised RequestTimeout via={via} tag={tag}")


def test_forced_shutdown_cancels_the_wait_and_the_loop_stops_cleanly(serve):
    server = serve("asyncapp:app", "--graceful-timeout", "0.5")
    c = Conn(server)
    c.send(build_request("GET", "/hang?via=wait&tag=stop", host=host_header(server)))
    server.wait_for_output("fixture: coroutine started tag=stop")
    server.proc.send_signal(signal.SIGTERM)
    # At the graceful timeout the request is cancelled, unwinds, and the process exits 0.
    assert server.proc.wait(timeout=30) == 0
    c.close()
    out = server.output()
    assert "fixture: coroutine cancelled tag=stop" in out
    assert "fixture: view raised RequestCancelled via=wait tag=stop" in out
    assert "Shutdown complete" in out
    assert "Task was destroyed" not in out and "did not finish" not in out, out


# --- Django -----------------------------------------------------------------------------------


@pytest.fixture
def django_site(serve, tmp_path):
    env = {"DJANGO_SETTINGS_MODULE": "django_site.settings", "DJANGO_SITE_DATA_DIR": str(tmp_path)}
    return serve("django_site.wsgi:application", "--threads", "4", env=env, cwd=SITE)


def test_django_async_view_runs_on_the_shared_loop(django_site):
    seen = [echo(django_site, path="/async-where/") for _ in range(3)]
    waited = echo(django_site, path="/wait-where/")
    assert {s["loop"] for s in seen} == {waited["loop"]}, (seen, waited)
    assert {s["thread"] for s in seen} == {waited["thread"]} == {"ferrule-loop"}


@pytest.mark.parametrize("path", ["/async-where/", "/wait-where/"])
def test_django_thread_sensitive_calls_come_back_to_the_worker_thread(django_site, path):
    for _ in range(3):
        got = echo(django_site, path=path)
        assert got["wsgi_thread"] is not None
        assert got["sync_thread"] == got["wsgi_thread"], got
