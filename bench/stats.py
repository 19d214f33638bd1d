"""Benchmark what statistics cost: ferrule with the admin listener on and scraped, against off.

`make bench-stats` (or `.venv/bin/python bench/stats.py --help`). The plain-text workload of
bench/run.py (/plain, wrk -t2 -c64) against ferrule with its defaults, twice per round:

- off: no `--stats-bind` (statistics are still recorded: they always are);
- on: `--stats-bind 127.0.0.1:PORT`, and a scraper in this process fetching `/metrics`,
  `/stats.json` and the dashboard `/` once a second for the whole run, as a Prometheus server
  and a person with the page open would.

The issue's target: the difference stays within 3% of throughput. Servers, rounds (interleaved,
the order rotated each round), medians and logs work as in bench/run.py, whose helpers this
reuses; the tables also go to bench/_work/stats.md. See bench/README.md.
"""

from __future__ import annotations

import http.client
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as common  # noqa: E402  (bench/run.py: shared helpers)
from run import APP, PY, Result, ServerConfig  # noqa: E402

PLAIN = common.WORKLOADS["plain"]
# The bound on what the admin listener, scraped every second, may cost.
TARGET = 0.03
SCRAPE_PATHS = ("/metrics", "/stats.json", "/")
SCRAPE_INTERVAL = 1.0

OFF = "off"
ON = "on"
LABELS = {
    OFF: "ferrule (defaults), no --stats-bind",
    ON: "ferrule (defaults), --stats-bind, scraped every second",
}


class Scraper(threading.Thread):
    """Fetches every SCRAPE_PATHS from the admin port once per SCRAPE_INTERVAL until stopped.

    Until the first answer the server may not be up yet: refusals then are not failures.
    """

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.rounds = 0
        self.failures: list[str] = []
        self.millis: list[float] = []  # per round, all paths
        self.sizes: dict[str, int] = {}
        self._done = threading.Event()

    def fetch(self, path: str) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise OSError(f"{path} answered {resp.status}")
        return body

    def run(self) -> None:
        up = False
        while not self._done.is_set():
            start = time.monotonic()
            try:
                for path in SCRAPE_PATHS:
                    self.sizes[path] = len(self.fetch(path))
            except (OSError, http.client.HTTPException) as e:
                if up:
                    self.failures.append(str(e))
                self._done.wait(0.05 if not up else SCRAPE_INTERVAL)
                continue
            up = True
            self.rounds += 1
            took = time.monotonic() - start
            self.millis.append(took * 1000)
            self._done.wait(max(0.0, SCRAPE_INTERVAL - took))

    def stop(self) -> None:
        self._done.set()
        self.join()

    def problem(self) -> str:
        """What went wrong, or "" when every scrape was answered."""
        if not self.rounds:
            return "the scraper never got an answer"
        if self.failures:
            return f"{len(self.failures)} scrapes failed (first: {self.failures[0]})"
        return ""


def ferrule(port_admin: int | None) -> ServerConfig:
    argv = [PY, "-m", "ferrule", "--bind", "127.0.0.1:{port}"]
    if port_admin is not None:
        argv += ["--stats-bind", f"127.0.0.1:{port_admin}"]
    return ServerConfig(ON if port_admin else OFF, LABELS[ON if port_admin else OFF], argv + [APP])


def run_once(
    kind: str, seconds: float, env: dict[str, str], tag: str
) -> tuple[Result, Scraper | None]:
    if kind == OFF:
        return common.run_one(ferrule(None), PLAIN, seconds, env, tag), None
    admin = common.free_port()
    scraper = Scraper(admin)
    scraper.start()
    try:
        r = common.run_one(ferrule(admin), PLAIN, seconds, env, tag)
    finally:
        scraper.stop()
    if scraper.problem():
        # A run whose scrapes failed measured something else than the target: keep its
        # number out of the median.
        r.note = f"not counted: {r.note} {scraper.problem()}".replace("  ", " ")
        r.rps = None
    return r, scraper


def scrape_summary(scrapers: list[Scraper]) -> str:
    rounds = sum(s.rounds for s in scrapers)
    if not rounds:
        return "No scrape was answered.\n"
    millis = [m for s in scrapers for m in s.millis]
    sizes = {}
    for s in scrapers:
        sizes.update(s.sizes)
    each = ", ".join(f"`{p}` {n / 1024:,.0f} KiB" for p, n in sizes.items())
    return (
        f"The scraper fetched {rounds} times in all (each time {', '.join(SCRAPE_PATHS)}, "
        f"one after the other), taking {statistics.median(millis):.1f} ms a time (median) "
        f"while the server was under load; the last sizes: {each}.\n"
    )


def table(seconds: float, results: dict[str, Result]) -> str:
    off, on = results[OFF], results[ON]
    title = (
        f"### /plain with and without the admin listener (wrk -t2 -c{PLAIN.connections} "
        f"-d{seconds:g}s)"
    )
    lines = common.on_off_rows(title, LABELS, off, on)
    if off.rps and on.rps:
        change = (on.rps - off.rps) / off.rps
        measured = f"{change:+.1%} ({common.fmt_rps(on.rps)} vs {common.fmt_rps(off.rps)})"
        verdict = "PASS" if change >= -TARGET else "MISS"
    else:
        measured, verdict = "—", "not measured"
    lines += [
        "",
        "### Targets",
        "",
        "| check | target | measured | result |",
        "|---|---|---|---|",
        "| /plain: req/s with --stats-bind scraped every second, against without "
        f"| ≥ −{TARGET:.0%} "
        f"| {measured} | {verdict} |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    # More rounds than the other scripts: the difference sought (3%) is well inside one
    # run's noise (±20% on this machine), so only medians over many interleaved runs see it.
    args = common.on_off_args(__doc__.split("\n\n")[0], argv)
    scrapers: list[Scraper] = []

    def run(kind: str, seconds: float, env: dict[str, str], tag: str) -> Result:
        r, scraper = run_once(kind, seconds, env, tag)
        if scraper is not None:
            scrapers.append(scraper)
        return r

    header, results = common.on_off_rounds("bench/stats.py", args, run)
    report = [header, table(args.seconds, results), scrape_summary(scrapers)]
    common.write_report("stats.md", "\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
