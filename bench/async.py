"""Benchmark async work from sync views, and clients that give up: ferrule against gunicorn and
granian.

`make bench-async` (or `.venv/bin/python bench/async.py --help`). Two parts, in one run:

1. Fan-out (wrk -t2 -c64): a sync Django view that makes 10 concurrent 20 ms async calls. Under
   ferrule through `ferrule.gather` on the shared loop, and through `async_to_sync` (which
   ferrule also points at the shared loop); under gunicorn gthread and granian through
   `async_to_sync`, which there starts a new event loop in a new thread per call. The ideal is
   64 connections / 20 ms = 3,200 req/s, capped by 32 threads / 20 ms = 1,600.
2. Abandoned requests: /plain with wrk -c64 while 1,000 other clients (bench/abandon.py) send
   `GET /sleep` (a 50 ms view) and close their connection 5 ms later, over and over. The
   number is the req/s the staying clients get, next to the same server without the storm.

Servers, rounds, medians and logs work as in bench/run.py, whose helpers this reuses; the
tables also go to bench/_work/async.md. See bench/README.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as common  # noqa: E402  (bench/run.py: shared helpers)
from run import APP, PY, WORK, Result, ServerConfig, Workload  # noqa: E402

ABANDON = Path(__file__).resolve().parent / "abandon.py"
THREADS = "32"

FERRULE = ServerConfig(
    "ferrule", "ferrule (defaults)", [PY, "-m", "ferrule", "--bind", "127.0.0.1:{port}", APP]
)
GTHREAD = ServerConfig(
    "gunicorn-gthread",
    f"gunicorn gthread -w 1 --threads {THREADS}",
    [PY, "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads", THREADS]
    + ["-b", "127.0.0.1:{port}", APP],
)
GRANIAN = ServerConfig(
    "granian",
    f"granian --blocking-threads {THREADS}",
    [PY, "-m", "granian", "--interface", "wsgi", "--workers", "1", "--blocking-threads", THREADS]
    + ["--host", "127.0.0.1", "--port", "{port}", APP],
)

FANOUT_BODY = b"10 calls"
# (row name, label, server, path)
FANOUT = [
    ("ferrule-gather", "ferrule, ferrule.gather", FERRULE, "/fanout-ferrule"),
    ("ferrule-asgiref", "ferrule, async_to_sync (shared loop)", FERRULE, "/fanout-asgiref"),
    ("gunicorn-gthread", GTHREAD.label + ", async_to_sync", GTHREAD, "/fanout-asgiref"),
    ("granian", GRANIAN.label + ", async_to_sync", GRANIAN, "/fanout-asgiref"),
]
STORM_SERVERS = [FERRULE, GTHREAD]
PLAIN = Workload("plain", "/plain", "plain text", expect_body=b"Hello, world")


def run_fanout(name: str, server: ServerConfig, path: str, seconds: float, env, tag: str):
    w = Workload(f"fanout-{name}", path, "fan-out", expect_body=FANOUT_BODY)
    r = common.run_one(server, w, seconds, env, tag)
    r.server = name
    return r


def run_storm(server: ServerConfig, seconds: float, env, tag: str, storm: bool) -> Result:
    """/plain under wrk, with the abandoning clients running alongside when `storm`."""
    port = common.free_port()
    if not storm:
        r = common.run_one(server, PLAIN, seconds, env, tag + "-calm", port=port)
        return r
    # Start the storm just before wrk: run_one waits for the port, checks and warms up for
    # about 1.5 s, so the storm begins 2 s early and runs 2 s past the end.
    abandon = subprocess.Popen(
        [PY, str(ABANDON), "127.0.0.1", str(port), "/sleep", str(seconds + 4)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        r = common.run_one(server, PLAIN, seconds, env, tag + "-storm", port=port)
    finally:
        out, _ = abandon.communicate(timeout=seconds + 60)
    r.note = (r.note + " " + out.strip().splitlines()[-1] if out.strip() else r.note).strip()
    return r


def table(title: str, labels: dict[str, str], results: list[Result], ours: str) -> str:
    base = next((r.rps for r in results if r.server == ours), None)
    lines = [
        f"### {title}",
        "",
        f"| server | req/s median (min–max) | p99 | errors | {ours} ÷ this |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        label = labels[r.server] + (f" ({r.note})" if r.note else "")
        ratio = "—" if r.server == ours else common.fmt_ratio(base, r.rps)
        lines.append(
            f"| {label} | {common.fmt_rps_spread(r)} | {common.fmt_ms(r.p99_ms)} "
            f"| {r.errors:,} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def targets(fanout: list[Result]) -> str:
    by = {r.server: r for r in fanout}
    ours, peer = by.get("ferrule-gather"), by.get("granian")
    rows = []
    if ours and peer and ours.rps and peer.rps:
        ratio = ours.rps / peer.rps
        rows.append(
            f"| fan-out: ferrule.gather ÷ granian async_to_sync | ≥ 3.00× | {ratio:.2f}× "
            f"({common.fmt_rps(ours.rps)} vs {common.fmt_rps(peer.rps)}) "
            f"| {'PASS' if ratio >= 3 else 'MISS'} |"
        )
    else:
        rows.append(
            "| fan-out: ferrule.gather ÷ granian async_to_sync | ≥ 3.00× | — | not measured |"
        )
    p99 = ours.p99_ms if ours else None
    verdict = "not measured" if p99 is None else ("PASS" if p99 <= 60 else "MISS")
    rows.append(f"| fan-out: ferrule.gather p99 | ≤ 60 ms | {common.fmt_ms(p99)} | {verdict} |")
    head = ["### Targets", "", "| check | target | measured | result |", "|---|---|---|---|"]
    return "\n".join(head + rows) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, help="seconds of load per run (default 10)")
    p.add_argument("--rounds", type=int, metavar="N", help="runs per server (default 3)")
    p.add_argument("--quick", action="store_true", help="3 s runs, 1 round: a smoke test")
    p.add_argument("--no-build", action="store_true", help="use the ferrule already in the venv")
    p.add_argument("--only", choices=["fanout", "storm"], help="run one part only")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seconds = args.duration or (3.0 if args.quick else 10.0)
    rounds = args.rounds or (1 if args.quick else 3)
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    common.ensure_wrk()
    common.ensure_peers()
    if not args.no_build:
        common.build_ferrule()
    header = common.header(argparse.Namespace(), seconds, rounds)
    report = [header.replace("bench/run.py", "bench/async.py")]
    with tempfile.TemporaryDirectory(prefix="ferrule-bench-") as tmp:
        env = common.app_env(tmp)
        if args.only in (None, "fanout"):
            runs: dict[str, list[Result]] = {name: [] for name, *_ in FANOUT}
            for i in range(rounds):
                for name, _, server, path in common.round_order(FANOUT, i):
                    r = run_fanout(name, server, path, seconds, env, f"-r{i + 1}")
                    common.log(f"fan-out round {i + 1}: {name}: {common.fmt_rps(r.rps)} req/s")
                    runs[name].append(r)
            results = [common.summarize(runs[name]) for name, *_ in FANOUT]
            labels = {name: label for name, label, *_ in FANOUT}
            title = "Fan-out: 10 concurrent 20 ms async calls per request (wrk -t2 -c64)"
            report.append(table(title, labels, results, "ferrule-gather"))
            report.append(targets(results))
        if args.only in (None, "storm"):
            names = [f"{s.name}{suffix}" for s in STORM_SERVERS for suffix in ("", "-storm")]
            runs = {n: [] for n in names}
            for i in range(rounds):
                for server in common.round_order(STORM_SERVERS, i):
                    for storm in (False, True):
                        r = run_storm(server, seconds, env, f"-r{i + 1}", storm)
                        r.server = server.name + ("-storm" if storm else "")
                        common.log(
                            f"storm round {i + 1}: {r.server}: {common.fmt_rps(r.rps)} req/s"
                        )
                        runs[r.server].append(r)
            results = [common.summarize(runs[n]) for n in names]
            labels = {}
            for s in STORM_SERVERS:
                labels[s.name] = f"{s.label}, /plain alone"
                labels[s.name + "-storm"] = f"{s.label}, /plain with 1,000 abandoning clients"
            title = "/plain while 1,000 clients abandon 50 ms requests (wrk -t2 -c64)"
            report.append(table(title, labels, results, "ferrule-storm"))
    text = "\n".join(report)
    print(text)
    (WORK / "async.md").write_text(text)
    common.log(f"written to {WORK / 'async.md'}; logs in {WORK / 'logs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
