"""Label starvation (the hardening issue's statistics-labels item): 5,000 random paths answered
200 used to take the 200 places under `--stats-max-labels` for good, every real view after
them counted as `other` and `/metrics` grown from 86 KB to 1.1 MB. Path-made labels are now
evicted (the fewest requests first, then the least recently used), so a real view hit after
the scan gets its own label, and how many requests went to `other` and how many labels were
evicted are reported.

Every test runs over TCP and a Unix socket.
"""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor

from helpers import Conn, Unmet, build_request, host_header, wait_until

SCANNED = 5000
MAX_LABELS = 200  # the default
REAL_HITS = 20
# Fixed labels besides the capped ones: static, server, unresolved, other.
FIXED = 4


def scan(server, paths: list[str], connections: int = 4, batch: int = 50) -> None:
    """GET every path over a few keep-alive connections, `batch` pipelined requests at a time;
    each must be answered 200."""

    def one_connection(share: list[str]) -> None:
        with Conn(server, timeout=60) as conn:
            host = host_header(server)
            for i in range(0, len(share), batch):
                chunk = share[i : i + batch]
                conn.send(b"".join(build_request("GET", p, host=host) for p in chunk))
                for p in chunk:
                    resp = conn.read_response()
                    assert resp.status == 200, (p, resp.status)

    shares = [paths[i::connections] for i in range(connections)]
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(one_connection, shares))


def view_bytes(text: str) -> dict[str, int]:
    """Bytes of `/metrics` lines per `view` label value."""
    sizes: dict[str, int] = {}
    for line in text.splitlines(keepends=True):
        if m := re.search(r'view="((?:[^"\\]|\\.)*)"', line):
            sizes[m.group(1)] = sizes.get(m.group(1), 0) + len(line.encode())
    return sizes


def test_a_scanners_one_hit_paths_do_not_starve_a_real_view(statsapp):
    server, admin = statsapp()
    paths = [f"/{uuid.uuid4().hex}" for _ in range(SCANNED)]
    scan(server, paths)
    for _ in range(REAL_HITS):
        resp, _ = server.request("GET", "/real/page")
        assert resp.status == 200

    total = SCANNED + REAL_HITS

    def settled():
        snap = admin.snapshot()
        seen = {
            "requests": snap["totals"]["requests"],
            "/real": snap.requests("/real"),
            "labels": len(snap.labels),
        }
        return snap if seen["requests"] == total and seen["/real"] == REAL_HITS else Unmet(seen)

    snap = wait_until(settled, 60, interval=0.2, what=f"{total} requests, /real its own label")
    # The table is full (200 labels) and stays so: the one-hit paths churned among themselves.
    assert len(snap.labels) <= MAX_LABELS + FIXED, len(snap.labels)
    assert "/real" in snap.labels
    # Each of the 4,800 paths past the 200th evicted a one-hit path, and /real's first request
    # one more; each evicted label's one request moved into `other`.
    evicted = SCANNED - MAX_LABELS + 1
    totals = snap["totals"]
    assert totals["labels_evicted"] == evicted, totals
    assert totals["other_requests"] == evicted, totals
    assert snap.requests("other") == evicted
    assert totals["labels_overflowed"] == 0, totals
    assert sum(snap.requests(label) for label in snap.labels) == total

    metrics = admin.metrics()
    assert metrics.one("ferrule_stats_labels_evicted_total") == evicted
    assert metrics.value("ferrule_requests_total", view="/real") == REAL_HITS
    assert metrics.value("ferrule_requests_total", view="other") == evicted
    assert metrics.value("ferrule_requests_total") == total
    views = metrics.labels_of("ferrule_requests_total", "view")
    assert len(views) <= MAX_LABELS + FIXED, len(views)
    # The bound on /metrics: at most 204 views, each as big as the biggest one here (one method,
    # so every view has the same families), plus what is not per view. With the label table
    # unbounded, 5,000 views would be 25 times that.
    text = metrics.text
    per_view = view_bytes(text)
    outside = len(text.encode()) - sum(per_view.values())
    bound = (MAX_LABELS + FIXED) * max(per_view.values()) + outside
    assert len(text.encode()) <= bound, (len(text.encode()), bound)
    # ...which is about 1.1 MB: under 8 KB for each of 204 views.
    assert len(text.encode()) < 204 * 8 * 1024 + outside, len(text.encode())

    # The dashboard shows both numbers.
    status, _, page = admin.get("/")
    assert status == 200
    assert f"{evicted} under other, {evicted} labels evicted" in page.decode(), page[:2000]


def test_a_view_hit_twice_keeps_its_place_when_the_scan_comes_after(statsapp):
    server, admin = statsapp("--stats-max-labels", "20")
    for _ in range(3):
        assert server.request("GET", "/checkout")[0].status == 200
    scan(server, [f"/{uuid.uuid4().hex}" for _ in range(500)])
    assert server.request("GET", "/checkout")[0].status == 200

    def settled():
        snap = admin.snapshot()
        seen = {"requests": snap["totals"]["requests"], "/checkout": snap.requests("/checkout")}
        return snap if seen == {"requests": 504, "/checkout": 4} else Unmet(seen)

    snap = wait_until(settled, 60, interval=0.2, what="504 requests, /checkout kept")
    assert len(snap.labels) <= 20 + FIXED
    assert snap["totals"]["labels_evicted"] == 500 - 19


def test_with_workers_the_master_sums_what_each_worker_keeps(statsapp):
    # Each worker evicts on its own; the master holds each one's views by label and must drop
    # a view a worker no longer has (its requests are in that worker's `other` now), or the
    # sum would count them twice and grow with every path scanned.
    server, admin = statsapp("--workers", "2", "--stats-max-labels", "50")
    scan(server, [f"/{uuid.uuid4().hex}" for _ in range(2000)])
    for _ in range(REAL_HITS):
        assert server.request("GET", "/real")[0].status == 200
    total = 2000 + REAL_HITS

    def settled():
        snap = admin.snapshot()
        seen = {
            "requests": snap["totals"]["requests"],
            "summed": sum(snap.requests(label) for label in snap.labels),
            "/real": snap.requests("/real"),
            "labels": len(snap.labels),
        }
        want = {"requests": total, "summed": total, "/real": REAL_HITS}
        return snap if {k: seen[k] for k in want} == want else Unmet(seen)

    snap = wait_until(settled, 60, interval=0.2, what=f"{total} requests summed once")
    assert len(snap["workers"]) == 2, snap["workers"]
    assert len(snap.labels) <= 2 * 50 + FIXED, len(snap.labels)
    totals = snap["totals"]
    # Every evicted label had one request, moved into its worker's `other`.
    assert totals["other_requests"] == totals["labels_evicted"] > 0, totals
