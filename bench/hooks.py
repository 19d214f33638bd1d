"""Benchmark what per-request hooks cost: /plain with `--hooks` (`pre_request` and
`post_request`) against without.

`make bench-hooks` (or `.venv/bin/python bench/hooks.py --help`). The plain-text workload of
bench/run.py (/plain, wrk -t2 -c64, a CPU-bound Django view whose worker thread is the limit)
against ferrule with its defaults, twice per round: without `--hooks`, and with
`--hooks benchhooks` (bench/app/benchhooks.py: a `pre_request` that sets one environ key and
an empty `post_request`). The cost per request is the difference of the two medians' time per
request (1/req/s), which on this one-thread-bound view is the worker thread's extra time.

Servers, rounds (interleaved, the order rotated each round), medians and logs work as in
bench/run.py, whose helpers this reuses; the table also goes to bench/_work/hooks.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as common  # noqa: E402  (bench/run.py: shared helpers)
from run import APP, PY, Result, ServerConfig  # noqa: E402

PLAIN = common.WORKLOADS["plain"]
OFF, ON = "off", "on"
LABELS = {
    OFF: "ferrule (defaults), no --hooks",
    ON: "ferrule (defaults), --hooks with pre_request and post_request",
}


def ferrule(kind: str) -> ServerConfig:
    argv = [PY, "-m", "ferrule", "--bind", "127.0.0.1:{port}"]
    if kind == ON:
        argv += ["--hooks", "benchhooks"]
    return ServerConfig(kind, LABELS[kind], argv + [APP])


def table(seconds: float, results: dict[str, Result]) -> str:
    off, on = results[OFF], results[ON]
    title = (
        f"### /plain with and without per-request hooks (wrk -t2 -c{PLAIN.connections} "
        f"-d{seconds:g}s)"
    )
    lines = common.on_off_rows(title, LABELS, off, on)
    if off.rps and on.rps:
        micros = 1e6 / on.rps - 1e6 / off.rps
        lines += ["", f"Cost per request with both hooks: {micros:+.1f} µs (from the medians)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = common.on_off_args(__doc__.split("\n\n")[0], argv)

    def run(kind: str, seconds: float, env: dict[str, str], tag: str) -> Result:
        return common.run_one(ferrule(kind), PLAIN, seconds, env, tag)

    header, results = common.on_off_rounds("bench/hooks.py", args, run)
    common.write_report("hooks.md", "\n".join([header, table(args.seconds, results)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
