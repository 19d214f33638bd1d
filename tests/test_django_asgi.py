"""Django under ASGI (issue 14): `manage.py server` serves `ASGI_APPLICATION`, async views run
on the loop, and sync views and middleware run on ferrule's pool — one thread leased per
request, so thread-locals and `CONN_MAX_AGE` connections behave as under WSGI — instead of a
new thread per request (asgiref's `ThreadSensitiveContext`). Over TCP and a Unix socket.
"""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import Conn, Unmet, build_request, host_header, wait_until
from test_django import manage, site_env, start_server

LIVENESS = 30


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("django_asgi")
    done = manage(["migrate", "--noinput", "-v0"], site_env(path))
    assert done.returncode == 0, done.stdout
    return path


@pytest.fixture(scope="module", params=["tcp", "unix"])
def site(request, data_dir, tmp_path_factory):
    if request.param == "tcp":
        args = ["127.0.0.1:0"]
    else:
        args = ["--bind", f"unix:{tmp_path_factory.mktemp('sock') / 'django.sock'}"]
    # Django's handler itself: sync views without a body take the path that skips the loop
    # (test_django.py's "asgi" site has it wrapped, and takes the loop's path).
    env = site_env(data_dir, DJANGO_SITE_ASGI="bare", DJANGO_SITE_CONN_MAX_AGE="60")
    server = start_server([*args, "--noreload", "--threads", "4"], env)
    yield server
    server.finish()


def get_json(server, path: str) -> dict:
    resp, body = server.request("GET", path)
    assert resp.status == 200, (resp.status, body[:500])
    return json.loads(body)


def test_sync_views_run_on_pool_threads_that_keep_their_connection(site):
    seen = [get_json(site, "/thread/") for _ in range(10)]
    assert all(s["asgi"] for s in seen), "served through Django's ASGI handler"
    for s in seen:
        # Not asgiref's thread (ThreadPoolExecutor-…, "sync_to_async"): a thread of ferrule's
        # pool, named as the OS names it.
        assert s["thread"].startswith("ferrule-worker-"), s
    connections: dict[int, set[int]] = {}
    for s in seen:
        connections.setdefault(s["ident"], set()).add(s["connection"])
    assert all(len(c) == 1 for c in connections.values()), connections


def test_sync_views_under_load_use_at_most_the_pool_threads(site):
    with ThreadPoolExecutor(16) as pool:
        seen = list(pool.map(lambda _: get_json(site, "/thread/"), range(80)))
    threads = {s["ident"] for s in seen}
    # --threads 4: a new thread per request would have made up to 80.
    assert len(threads) <= 4, threads


def test_async_views_run_on_the_loop(site):
    assert get_json(site, "/async-sleep/?s=0.01")["thread"] == "ferrule-loop"


def test_an_async_iterator_streams_as_it_yields(site):
    with Conn(site) as c:
        c.send(build_request("GET", "/async-events/?n=3", host=host_header(site)))
        seen = c.until(b"data: 0")
        assert b"data: 2" not in seen, "the first event came with the last"
        seen = c.until(b"0\r\n\r\n")
    assert seen.count(b"data: ") == 3


def test_held_event_streams_hold_no_thread(site):
    # Three times as many event streams as pool threads, all open at once and each past its
    # first events: a stream holds no thread between its events ...
    streams = [Conn(site) for _ in range(12)]
    try:
        for i, c in enumerate(streams):
            target = f"/async-ticks/?every=0.1&tag=s{i:02}"
            c.send(build_request("GET", target, host=host_header(site)))
        for c in streams:
            c.until(b"data: 1\n")
        # ... so a sync view still finds one.
        assert get_json(site, "/thread/")["asgi"]
    finally:
        for c in streams:
            c.close()
    # The clients left: each stream stops (Django's aclosing of the iterator).
    for i in range(len(streams)):
        site.wait_for_output(rf"fixture: ticks stopped tag=s{i:02}", LIVENESS)


def test_a_client_that_leaves_cancels_the_async_view(site):
    c = Conn(site)
    c.send(build_request("GET", "/async-sleep/?s=30&tag=gone", host=host_header(site)))
    site.wait_for_output(r"fixture: async view started tag=gone", LIVENESS)
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    site.wait_for_output(r"fixture: async view cancelled tag=gone", LIVENESS)


def test_interface_wsgi_serves_the_wsgi_application(data_dir):
    env = site_env(data_dir, DJANGO_SITE_ASGI="1")
    server = start_server(["127.0.0.1:0", "--noreload", "--interface", "wsgi"], env)
    try:
        assert get_json(server, "/thread/")["asgi"] is False
    finally:
        assert server.finish() == 0


def test_interface_asgi_without_asgi_application_is_an_error(data_dir):
    done = manage(
        ["server", "--noreload", "--interface", "asgi", "127.0.0.1:0"], site_env(data_dir)
    )
    assert done.returncode == 2, done.stdout
    assert "Ready to accept requests" not in done.stdout
    assert "no ASGI_APPLICATION" in done.stdout.strip().splitlines()[-1], done.stdout


@pytest.mark.parametrize("method", ["GET", "POST"])  # GET skips the loop; a body takes it
def test_a_full_queue_answers_503_as_under_wsgi(data_dir, tmp_path, method):
    env = site_env(data_dir, DJANGO_SITE_ASGI="bare")
    server = start_server(["127.0.0.1:0", "--noreload", "--threads", "1", "--max-queue", "1"], env)
    gate = tmp_path / "gate"
    try:
        # The one thread streams a response that waits for the gate file once its first line
        # is out: while it does, one request may queue and the others are refused.
        with Conn(server) as held:
            held.send(
                build_request("GET", f"/stream/?lines=3&gate={gate}", host=host_header(server))
            )
            held.until(b"line 1")
            with ThreadPoolExecutor(3) as pool:
                body = b"x=1" if method == "POST" else None
                probes = [pool.submit(server.request, method, "/thread/", body) for _ in range(3)]

                def refused():
                    done = [p.result()[0] for p in probes if p.done()]
                    busy = [r for r in done if r.status == 503]
                    return len(busy) >= 2 or Unmet([r.status for r in done])

                wait_until(refused, LIVENESS, what="two of three requests refused")
                busy = [p.result()[0] for p in probes if p.done()]
                assert all(r.getheader("Retry-After") == "1" for r in busy if r.status == 503)
                gate.touch()
                statuses = sorted(p.result(LIVENESS)[0].status for p in probes)
            # The POST that ran is refused by CSRF, as it would be with a free thread.
            assert statuses == [200 if method == "GET" else 403, 503, 503], statuses
    finally:
        gate.touch()
        assert server.finish() == 0
