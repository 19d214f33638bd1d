"""What ferrule asks of the OS beyond POSIX (src/platform/), seen through a live server.

Runs twice in `make test`: on the normal build (Linux's own calls) and, from `make
test-portable`, on a build with the `portable` feature, which uses the POSIX calls macOS and
FreeBSD use wherever Linux has them too (FERRULE_EXPECT_PATHS=portable says which is meant,
so the second run cannot quietly test the first build). The rest of that run (the board with
`--workers 2`, `--max-rss`, reload) is existing tests, chosen in the Makefile.
"""

from __future__ import annotations

import fcntl
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from ferrule import _ferrule
from helpers import Unmet, wait_until

EXPECTED = os.environ.get("FERRULE_EXPECT_PATHS", "linux")


def get(server, path: str) -> str:
    resp, body = server.request("GET", path)
    assert resp.status == 200, (resp.status, body[:300])
    return body.decode()


def test_the_server_runs_the_paths_the_build_was_made_with(serve):
    assert EXPECTED == _ferrule.PLATFORM_PATHS
    server = serve("platformapp:app")
    assert get(server, "/paths") == EXPECTED


def test_the_pool_grows_for_views_that_sleep(serve, tmp_path):
    # Eight views asleep at once can only be on eight threads: the monitor woke a thread each
    # time the busy ones were blocked (by their run state, or where it is unknown by their
    # CPU clock standing still). They sleep until the test lets go of its lock.
    server = serve("platformapp:app", "--threads", "16")
    lock = tmp_path / "lock"
    results: list[str] = []

    def one(i: int) -> None:
        results.append(get(server, f"/sleep?lock={lock}&tag=t{i}"))

    def all_asleep_before_any_woke():
        out = server.output()
        asleep = out.count("platformapp sleeping")
        assert "platformapp slept" not in out, f"one woke with {asleep} asleep:\n{out}"
        return asleep == 8 or Unmet(f"{asleep} asleep")

    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        clients = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for c in clients:
            c.start()
        try:
            wait_until(all_asleep_before_any_woke, 30, what="eight views asleep at once")
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
            for c in clients:
                c.join(timeout=60)
    assert len(set(results)) == 8, results


def test_cpu_bound_views_stay_on_one_thread(serve):
    # Twelve CPU-bound views sent at once: the one busy thread uses its core, so the monitor
    # never judges it blocked and the others wait for it rather than fight it for the GIL. A
    # second thread is allowed for a tick in which other processes starved this one (without
    # a run state, a starved thread looks like a stopped clock); a pool that took CPU-bound
    # work for blocked would use a thread per request.
    server = serve("platformapp:app", "--threads", "16")
    with ThreadPoolExecutor(12) as pool:
        names = list(pool.map(lambda _: get(server, "/burn?ms=100"), range(12)))
    assert len(set(names)) <= 2, sorted(names)


def test_asgi_requests_cross_the_inbox_under_concurrency(serve):
    # Every ASGI event reaches the loop through the inbox's doorbell (an eventfd, or a pipe):
    # a lost ring would leave a request hanging, a ring never cleared would spin the loop.
    server = serve("asgiapp:app")
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: server.request("GET", "/")[0].status, range(200)))
    assert statuses == [200] * 200
