"""The probes on the admin listener (issue 6): `/healthz` answers while the process runs,
`/readyz` while it serves and not once it drains, for load balancers and Kubernetes.

A single process here; with `--workers` the master answers both for its workers (see the
supervisor's tests). Every test runs over TCP and a Unix socket: the admin listener listens on
the same kind of socket as the application's.
"""

from __future__ import annotations

import signal

from helpers import Conn, Truncated, Unmet, build_request, host_header, wait_until
from stats_helpers import Admin

LIVENESS = 20


def probe(admin: Admin, path: str, method: str = "GET"):
    conn = admin.connection()
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), resp.headers
    finally:
        conn.close()


def test_healthz_and_readyz_while_serving(statsapp):
    server, admin = statsapp()
    status, body, headers = probe(admin, "/healthz")
    assert (status, body) == (200, "ok\n")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    status, body, _ = probe(admin, "/readyz")
    assert (status, body) == (200, "ready\n")
    # Probes send HEAD sometimes, and query strings (`?verbose`) are ignored.
    assert probe(admin, "/readyz", "HEAD")[:2] == (200, "")
    assert probe(admin, "/healthz?verbose=1")[:2] == (200, "ok\n")
    # The application is served meanwhile, and the probes are not counted as its requests.
    resp, _ = server.request("GET", "/work")
    assert resp.status == 200
    snap = admin.settled({"/work": 1})
    assert "/healthz" not in snap.labels and "/readyz" not in snap.labels


def test_readyz_says_draining_while_shutdown_waits_for_a_request(statsapp):
    server, admin = statsapp()
    held = Conn(server, timeout=LIVENESS + 10)
    held.send(build_request("GET", "/wait?ms=60000&tag=held", host=host_header(server)))
    try:
        server.wait_for_output(r"fixture: wait started tag=held", LIVENESS)
        assert probe(admin, "/readyz")[0] == 200
        server.proc.send_signal(signal.SIGTERM)

        def not_ready():
            p = probe(admin, "/readyz")
            return p if p[0] != 200 else Unmet(p[:2])

        status, body, _ = wait_until(
            not_ready, LIVENESS, what="/readyz to stop answering 200 after SIGTERM"
        )
        assert status == 503, (status, body)
        assert body.startswith("not ready: draining"), body
        # Still alive, and the statistics stay up while the server drains.
        assert probe(admin, "/healthz")[:2] == (200, "ok\n")
        flight = [f for f in admin.snapshot()["in_flight"] if f["path"] == "/wait"]
        assert flight and flight[0]["state"] == "asleep", flight
        assert server.proc.poll() is None
        # A second signal ends the wait: the held request is cancelled.
        server.proc.send_signal(signal.SIGTERM)
        try:
            resp = held.read_response()
            assert resp.status == 503, (resp.status, resp.body)
        except (Truncated, ConnectionResetError, TimeoutError):
            pass
    finally:
        held.close()
    assert server.proc.wait(timeout=LIVENESS) in (0, 1)
