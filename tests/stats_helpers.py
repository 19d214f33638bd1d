"""Reading ferrule's admin listener (`--stats-bind`, issue 5) the way its users do: `/stats.json`
as JSON, `/metrics` as Prometheus text (parsed here, checked by promtool in the tests), `/`
as a page.

conftest.py owns the server process; this module only reads what it exposes.
"""

from __future__ import annotations

import http.client
import json
import re
from concurrent.futures import ThreadPoolExecutor

from conftest import UnixHTTPConnection
from helpers import free_port

METRIC_TYPES = {
    "ferrule_request_queue_seconds": "histogram",
    "ferrule_request_processing_seconds": "histogram",
    "ferrule_request_asleep_seconds": "histogram",
    "ferrule_requests_total": "counter",
    "ferrule_requests_cancelled_total": "counter",
    "ferrule_request_bytes_total": "counter",
    "ferrule_response_bytes_total": "counter",
    "ferrule_threads": "gauge",
    "ferrule_threads_busy": "gauge",
    "ferrule_queue_depth": "gauge",
    "ferrule_connections": "gauge",
    "ferrule_requests_in_flight": "gauge",
    "ferrule_uptime_seconds": "gauge",
    "process_resident_memory_bytes": "gauge",
}


def admin_bind(transport: str, tmp_path) -> str:
    """A `--stats-bind` value for the transport: a free TCP port or a socket in tmp_path."""
    if transport == "unix":
        return f"unix:{tmp_path / 'admin.sock'}"
    return f"127.0.0.1:{free_port()}"


class Admin:
    """A client of the admin listener at a `--stats-bind` address."""

    def __init__(self, bind: str):
        self.bind = bind

    @property
    def origin(self) -> str:
        """The URL a browser opens (TCP only)."""
        assert not self.bind.startswith("unix:"), "a browser cannot open a Unix socket"
        return f"http://{self.bind}"

    def connection(self, timeout: float = 30) -> http.client.HTTPConnection:
        if self.bind.startswith("unix:"):
            return UnixHTTPConnection(self.bind[len("unix:") :], timeout=timeout)
        host, port = self.bind.rsplit(":", 1)
        return http.client.HTTPConnection(host, int(port), timeout=timeout)

    def get(self, path: str) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = self.connection()
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def snapshot(self) -> Snapshot:
        status, headers, body = self.get("/stats.json")
        assert status == 200, (status, body[:300])
        assert headers["Content-Type"].startswith("application/json"), headers["Content-Type"]
        return Snapshot(json.loads(body))

    def settled(self, counts: dict[str, int], timeout: float = 20) -> Snapshot:
        """The first snapshot in which each label of `counts` has that many requests, both
        since start and in its 1-minute window.

        A request is recorded once its response is complete, which may be a moment after the
        client has read it; the windows and the timeline are fed by a once-a-second tick, so
        a request shows in them up to a second later still."""
        from helpers import Unmet, wait_until

        def ready():
            snap = self.snapshot()
            have = {label: (snap.requests(label), snap.window_requests(label)) for label in counts}
            if have == {k: (n, n) for k, n in counts.items()}:
                return snap
            return Unmet({"(since start, 1-minute window)": have, "labels": snap.labels})

        return wait_until(ready, timeout, interval=0.1, what=f"the stats to hold {counts}")

    def metrics_text(self) -> str:
        status, headers, body = self.get("/metrics")
        assert status == 200, (status, body[:300])
        assert headers["Content-Type"].startswith("text/plain"), headers["Content-Type"]
        return body.decode()

    def metrics(self) -> Metrics:
        return Metrics(self.metrics_text())


class Snapshot:
    """`/stats.json`, with lookups by label."""

    def __init__(self, data: dict):
        self.data = data

    def __getitem__(self, key: str):
        return self.data[key]

    @property
    def labels(self) -> list[str]:
        return [v["label"] for v in self.data["views"]]

    def view(self, label: str) -> dict:
        for v in self.data["views"]:
            if v["label"] == label:
                return v
        raise AssertionError(f"no view labelled {label!r} in /stats.json: {self.labels}")

    def method(self, label: str, method: str = "GET") -> dict:
        view = self.view(label)
        for m in view["methods"]:
            if m["method"] == method:
                return m
        seen = [m["method"] for m in view["methods"]]
        raise AssertionError(f"no {method} under {label!r} in /stats.json: {seen}")

    def window(self, label: str, minutes: int = 1) -> dict:
        for w in self.view(label)["windows"]:
            if w["minutes"] == minutes:
                return w
        raise AssertionError(f"no {minutes}-minute window for {label!r}")

    def window_requests(self, label: str, minutes: int = 1) -> int:
        """Requests under `label` in a window; 0 when the label is not there yet."""
        if label not in self.labels:
            return 0
        return self.window(label, minutes)["requests"]

    def requests(self, label: str) -> int:
        """Requests under `label` since start, over every method; 0 for an unknown label."""
        if label not in self.labels:
            return 0
        return sum(m["processing"]["count"] for m in self.view(label)["methods"])


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
LABEL_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def unescape(value: str) -> str:
    """A label value as Prometheus' text format escapes it (`\\\\`, `\\"`, `\\n`)."""
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


class Metrics:
    """The Prometheus text format, parsed: samples, and the TYPE and HELP of each family."""

    def __init__(self, text: str):
        self.text = text
        self.types: dict[str, str] = {}
        self.helps: dict[str, str] = {}
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(None, 3)
                self.types[name] = kind.strip()
                continue
            if line.startswith("# HELP "):
                parts = line.split(None, 3)
                self.helps[parts[2]] = parts[3] if len(parts) > 3 else ""
                continue
            if line.startswith("#"):
                continue
            m = SAMPLE.match(line)
            assert m, f"not a Prometheus sample line: {line!r}"
            labels = {}
            rest = m.group(2) or ""
            pos = 0
            while pos < len(rest):
                pair = LABEL_PAIR.match(rest, pos)
                assert pair and pair.end() > pos, f"bad labels in {line!r}"
                labels[pair.group(1)] = unescape(pair.group(2))
                pos = pair.end()
            self.samples.append((m.group(1), labels, float(m.group(3))))

    def find(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        """Samples of `name` whose labels include `labels`."""
        return [
            (ls, v)
            for n, ls, v in self.samples
            if n == name and all(ls.get(k) == want for k, want in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the matching samples (0 when there are none)."""
        return sum(v for _, v in self.find(name, **labels))

    def one(self, name: str, **labels: str) -> float:
        """The value of the one sample that matches."""
        found = self.find(name, **labels)
        assert len(found) == 1, f"{len(found)} samples of {name} with {labels}: {found}"
        return found[0][1]

    def bucket(self, name: str, le: float, **labels: str) -> float:
        """A histogram's cumulative count at the bound `le` (summed over matching series)."""
        total, seen = 0.0, False
        for ls, v in self.find(name + "_bucket", **labels):
            if float(ls["le"]) == le:
                total += v
                seen = True
        assert seen, f"no {name}_bucket with le={le} and {labels}"
        return total

    def labels_of(self, name: str, label: str) -> set[str]:
        return {ls[label] for n, ls, _ in self.samples if n == name and label in ls}


def fire(server, paths: list[str], concurrency: int = 8, headers=None) -> list[int]:
    """GET each path on its own connection, `concurrency` at a time; the statuses in order."""

    def one(path: str) -> int:
        resp, _ = server.request("GET", path, headers=headers)
        return resp.status

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, paths))
