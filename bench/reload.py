"""Measure the development reload: from saving a view to the first response that shows it.

`make bench-reload` (or `.venv/bin/python bench/reload.py --help`). Copies the demo Django
site (`demo/`) to a temporary directory, adds a view `/version/` that returns "version 0",
migrates, and starts `manage.py server` (which reloads on changes by default). Then, --saves
times (default 20): saves `guestbook/views.py` as editors do (the new text written to a
temporary file in the same directory, then renamed over the old one) with the view returning
"version N", and polls `/version/` every --poll seconds (default 10 ms), each request on a
fresh connection, until the answer is "version N". It prints the time from the rename to that
answer (median, p90, max), and where the time went, from the server's log lines as they
arrive: the watcher noticing the change and the master starting new workers, the new worker
becoming ready, and its first answer. Last, the cost of starting a worker measured apart: a
bare `python -c pass`, a Python process that imports Django and loads the demo's WSGI
application (what a worker does before it serves), and `manage.py check` (Django's setup and
system checks, which `manage.py server` runs before serving), each --imports times.

The issue's target: under 1 s. The report also goes to bench/_work/reload.md.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as common  # noqa: E402  (bench/run.py: shared helpers)
from run import PY, ROOT, WORK  # noqa: E402

DEMO = ROOT / "demo"
VIEWS = Path("guestbook") / "views.py"
URLS = Path("guestbook") / "urls.py"
TARGET = 1.0  # seconds, the bound

VIEW = '''

def version(request):
    """bench/reload.py rewrites the text below on every save."""
    return HttpResponse("version {n}", content_type="text/plain")
'''


def view_source(original: str, n: int) -> str:
    return "from django.http import HttpResponse\n" + original + VIEW.format(n=n)


def prepare_site(tmp: Path) -> tuple[Path, str]:
    """The demo site copied into tmp, with the /version/ view and its URL, migrated; returns the
    site's directory and the original views.py text."""
    site = tmp / "demo"
    shutil.copytree(DEMO, site, ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3", "*.pyc"))
    original = (site / VIEWS).read_text()
    (site / VIEWS).write_text(view_source(original, 0))
    urls = (site / URLS).read_text()
    urls = urls.replace(
        "urlpatterns = [", 'urlpatterns = [\n    path("version/", views.version, name="version"),'
    )
    (site / URLS).write_text(urls)
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], cwd=site, check=True)
    return site, original


def save(path: Path, text: str) -> float:
    """Write text to a temporary file beside path and rename it over path, as editors do;
    returns the monotonic time of the rename."""
    tmp = path.with_name(path.name + ".bench-tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return time.monotonic()


def get(port: int, path: str) -> tuple[int, bytes] | None:
    """One request on a fresh connection: (status, body), or None when it failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class LogReader(threading.Thread):
    """Reads the server's output line by line, stamping each with the monotonic time it
    arrived, and copies it to a log file."""

    def __init__(self, stream, logfile: Path):
        super().__init__(daemon=True)
        self.stream = stream
        self.logfile = logfile
        self.lines: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        with open(self.logfile, "w") as out:
            for raw in self.stream:
                now = time.monotonic()
                line = raw.decode(errors="replace").rstrip("\n")
                out.write(f"{now:.6f} {line}\n")
                out.flush()
                with self.lock:
                    self.lines.append((now, line))

    def first_after(self, since: float, pattern: str) -> float | None:
        """The arrival time of the first line after `since` that matches the pattern."""
        rx = re.compile(pattern)
        with self.lock:
            return next((t for t, line in self.lines if t >= since and rx.search(line)), None)


def wait_for(port: int, path: str, want: bytes, timeout: float, poll: float) -> tuple[float, int]:
    """Poll until the answer is `want`: the monotonic time it arrived, and how many polls
    failed or answered something other than 200 on the way (old text does not count)."""
    deadline = time.monotonic() + timeout
    failures = 0
    while time.monotonic() < deadline:
        answer = get(port, path)
        if answer is not None and answer[0] == 200 and answer[1] == want:
            return time.monotonic(), failures
        if answer is None or answer[0] != 200:
            failures += 1
        time.sleep(poll)
    raise SystemExit(f"{path} did not answer {want!r} within {timeout:g} s")


def boot_costs(site: Path, runs: int) -> dict[str, list[float]]:
    """Wall times of a bare interpreter and of one that loads the demo's WSGI application."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="demosite.settings", PYTHONPATH=str(site))
    load = (
        "from django.core.wsgi import get_wsgi_application; get_wsgi_application(); "
        "from django.urls import resolve; resolve('/version/'); import ferrule._ferrule"
    )
    commands = {
        "python -c pass": [PY, "-c", "pass"],
        "python: Django + WSGI app": [PY, "-c", load],
        "python manage.py check (setup + system checks)": [PY, "manage.py", "check", "-v0"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            t0 = time.monotonic()
            subprocess.run(argv, cwd=site, env=env, check=True, capture_output=True)
            times[name].append(time.monotonic() - t0)
    return times


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def fmt(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:,.0f} ms"


def stats_row(name: str, values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return f"| {name} | — | — | — | — |"
    return (
        f"| {name} | {fmt(min(got))} | {fmt(statistics.median(got))} | {fmt(pct(got, 0.9))} "
        f"| {fmt(max(got))} |"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--saves", type=int, default=20, metavar="N", help="saves to time (default 20)")
    p.add_argument(
        "--poll", type=float, default=0.01, metavar="S", help="seconds between polls (0.01)"
    )
    p.add_argument(
        "--pause",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds to wait after each new answer before the next save, so that the old "
        "worker has gone (default 1)",
    )
    p.add_argument(
        "--imports", type=int, default=5, metavar="N", help="runs of each boot-cost command (5)"
    )
    p.add_argument(
        "--no-build", action="store_true", help="use the ferrule already in the venv as it is"
    )
    args = p.parse_args(argv)
    if args.saves < 1:
        p.error("--saves: must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    if not args.no_build:
        common.build_ferrule()
    load_before = common.load_average()
    rows: list[dict[str, float | None]] = []
    failures = 0
    with tempfile.TemporaryDirectory(prefix="ferrule-reload-") as tmp:
        site, original = prepare_site(Path(tmp))
        port = common.free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        argv_server = [PY, "manage.py", "server", f"127.0.0.1:{port}"]
        proc = subprocess.Popen(
            argv_server,
            cwd=site,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None  # stdout=PIPE
        reader = LogReader(proc.stdout, WORK / "logs" / "reload-server.log")
        reader.start()
        try:
            why = common.wait_for_port(port, proc)
            if why:
                raise SystemExit(f"manage.py server {why}; see {reader.logfile}")
            wait_for(port, "/version/", b"version 0", 30, args.poll)
            for n in range(1, args.saves + 1):
                saved = save(site / VIEWS, view_source(original, n))
                seen, failed = wait_for(port, "/version/", f"version {n}".encode(), 30, args.poll)
                failures += failed
                changed = reader.first_after(saved, r"changed: restarting")
                ready = reader.first_after(changed or saved, r"Worker process \d+ is ready")
                rows.append(
                    {
                        "total": seen - saved,
                        "changed": None if changed is None else changed - saved,
                        "boot": None if changed is None or ready is None else ready - changed,
                        "answer": None if ready is None else seen - ready,
                    }
                )
                common.log(f"save {n}: {fmt(seen - saved)}")
                time.sleep(args.pause)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                common.stop_server(proc)
            reader.join(5)
        common.log("boot costs")
        boots = boot_costs(site, args.imports)

    totals = [r["total"] for r in rows]
    met = max(t for t in totals if t is not None) < TARGET
    lines = [
        f"### Report: bench/reload.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"- command: `{' '.join(['.venv/bin/python', 'bench/reload.py', *sys.argv[1:]])}`",
        f"- load average before: {load_before}; after: {common.load_average()}",
        f"- {args.saves} saves of `guestbook/views.py` (temporary file renamed over it) in a "
        f"copy of demo/ served by `manage.py server` (reload on), polled every "
        f"{args.poll * 1000:g} ms on fresh connections; {failures} polls failed or answered "
        "non-200 on the way",
        "",
        "| from the save to | min | median | p90 | max |",
        "|---|---:|---:|---:|---:|",
        stats_row("**the first response with the new text**", totals),
        stats_row("the master logs the change (watcher debounce)", [r["changed"] for r in rows]),
        stats_row("… then the new worker is ready (its boot)", [r["boot"] for r in rows]),
        stats_row("… then the first new response (poll)", [r["answer"] for r in rows]),
        "",
        f"Target: every save under {TARGET:g} s: {'PASS' if met else 'MISS'} "
        f"(max {fmt(max(totals))}).",
        "",
        f"Starting a Python process, apart ({args.imports} runs each, wall time):",
        "",
        "| command | min | median | p90 | max |",
        "|---|---:|---:|---:|---:|",
        *(stats_row(name, list(values)) for name, values in boots.items()),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    (WORK / "reload.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
