"""Benchmark ferrule against gunicorn, granian and uWSGI on the same Django app, in one run.

`make bench` (or `.venv/bin/python bench/run.py --help`). For every workload and every server
config it starts a fresh server (one process/worker each, or --workers N each) on the app in
bench/app, waits for the port, warms up for 1 s, loads it with wrk, samples the peak RSS of the
server's process tree (master and workers) and kills it. It does so for --rounds rounds,
interleaving the servers and rotating their order each round, and prints one markdown table
per workload with each server's median req/s (and min–max), and ferrule's ratio to each peer
and to the in-process reference (the app called in a loop, no sockets). The same text goes to
bench/_work/last.md. See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import http.client
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
APP_DIR = BENCH / "app"
WORK = BENCH / "_work"
UPLOAD_LUA = BENCH / "upload.lua"
PY = sys.executable
APP = "benchapp.wsgi:application"
ONE_MB = 1024 * 1024

# --cost: ferrule measures the application's CPU time in one request of this many.
COST_SAMPLE = 16

# ferrule's default --threads (see the contract); the /sleep target is 0.95 × threads / 0.05 s.
FERRULE_DEFAULT_THREADS = 32
SLEEP_SECONDS = 0.05


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    path: str
    description: str
    connections: int = 64
    method: str = "GET"
    # What a correct server answers, checked once before the load (body, or its length).
    expect_body: bytes | None = None
    expect_length: int | None = None


WORKLOADS = {
    w.name: w
    for w in [
        Workload("plain", "/plain", 'plain text "Hello, world"', expect_body=b"Hello, world"),
        Workload("template", "/template", "template over 20 ORM rows (SQLite)"),
        Workload(
            "sleep",
            "/sleep",
            "time.sleep(0.05), I/O-bound",
            connections=256,
            expect_body=b"slept 50 ms",
        ),
        Workload("1mb", "/1mb", "1 MB response", expect_length=ONE_MB),
        Workload(
            "stream",
            "/stream",
            "StreamingHttpResponse, 16 chunks of 4 KB",
            expect_length=16 * 4096,
        ),
        Workload(
            "upload", "/upload", "1 MB POST body", method="POST", expect_body=str(ONE_MB).encode()
        ),
    ]
}


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    name: str
    label: str  # "{workers}" is replaced by the number of processes
    argv: list[str]  # "{port}" and "{workers}" are replaced by the port and the processes
    # Inserted before the application argument when --workers is more than 1.
    workers_argv: tuple[str, ...] = ()
    # The pip distribution that provides it.
    dist: str = ""

    def command(self, port: int, workers: int) -> list[str]:
        argv = list(self.argv)
        if workers > 1 and self.workers_argv:
            argv[-1:-1] = self.workers_argv
        return [a.replace("{port}", str(port)).replace("{workers}", str(workers)) for a in argv]

    def describe(self, workers: int) -> str:
        label = self.label.replace("{workers}", str(workers))
        if workers > 1 and self.workers_argv:
            label += " " + " ".join(self.workers_argv).replace("{workers}", str(workers))
        return label


SERVERS = {
    s.name: s
    for s in [
        ServerConfig(
            "ferrule",
            "ferrule (defaults)",
            [PY, "-m", "ferrule", "--bind", "127.0.0.1:{port}", APP],
            # One process is ferrule without --workers (no master); N > 1: a master and N workers.
            workers_argv=("--workers", "{workers}"),
        ),
        ServerConfig(
            "gunicorn-sync",
            "gunicorn sync -w {workers}",
            [PY, "-m", "gunicorn", "-w", "{workers}", "-k", "sync", "-b", "127.0.0.1:{port}", APP],
            dist="gunicorn",
        ),
        ServerConfig(
            "gunicorn-gthread",
            "gunicorn gthread -w {workers} --threads 32",
            [PY, "-m", "gunicorn", "-w", "{workers}", "-k", "gthread", "--threads", "32"]
            + ["-b", "127.0.0.1:{port}", APP],
            dist="gunicorn",
        ),
    ]
    + [
        ServerConfig(
            name,
            "granian --interface wsgi --workers {workers}" + "".join(f" {a}" for a in extra),
            [PY, "-m", "granian", "--interface", "wsgi", "--workers", "{workers}"]
            + ["--host", "127.0.0.1", "--port", "{port}", *extra, APP],
            dist="granian",
        )
        for name, extra in [
            ("granian", []),
            ("granian-bt1", ["--blocking-threads", "1"]),
            ("granian-bt32", ["--blocking-threads", "32"]),
        ]
    ]
    + [
        # uWSGI's own HTTP parser on the socket (--http11-socket: keep-alive, as the others do;
        # no separate router process), a master (as in production), --die-on-term so that
        # SIGTERM stops it rather than reloading, no per-request log line (the others log none
        # by default either), and the app imported in the master before the fork (uWSGI's
        # default; --lazy-apps would not).
        ServerConfig(
            name,
            "uWSGI --http11-socket --processes {workers}" + "".join(f" {a}" for a in extra),
            [str(Path(PY).parent / "uwsgi"), "--master", "--processes", "{workers}", *extra]
            + ["--http11-socket", "127.0.0.1:{port}", "--listen", "1024", "--die-on-term"]
            + ["--disable-logging", "--need-app", "--virtualenv", sys.prefix, "--module", APP],
            dist="uwsgi",
        )
        for name, extra in [
            ("uwsgi", []),
            ("uwsgi-t32", ["--threads", "32"]),
        ]
    ]
}


@dataclasses.dataclass
class Result:
    server: str
    workload: str
    rps: float | None = None  # successful (2xx/3xx) responses per second
    p99_ms: float | None = None
    errors: int = 0  # wrk connect/read/write errors + non-2xx/3xx responses
    timeouts: int = 0
    peak_rss: int | None = None  # bytes, summed over the process tree
    # With several worker processes: how wrk's connections were split between them, sampled
    # once halfway through the run (e.g. "40/24"; one entry per round when summarized).
    split: str = ""
    note: str = ""
    # --cost: CPU time per request in µs (medians when summarized). `thread_us` is the busiest
    # thread's (the Python thread where one runs the application), named `thread`; `all_us`
    # every thread's of the process tree; for ferrule, `app_us` the application's part of its
    # worker threads' time and `own_us` the rest (`worker_us` less `app_us`).
    thread: str = ""
    thread_us: float | None = None
    all_us: float | None = None
    worker_us: float | None = None
    app_us: float | None = None
    own_us: float | None = None
    # Over the rounds, when this Result summarizes several runs (rps and p99_ms are medians).
    runs: int = 1
    rps_min: float | None = None
    rps_max: float | None = None


def summarize(runs: list[Result]) -> Result:
    """One Result per server and workload from its runs over the rounds: the median req/s (and
    its min and max) and median p99 over the runs that measured one, the errors and timeouts
    summed, the largest peak RSS, and the notes of the runs that had one."""
    rps = [r.rps for r in runs if r.rps is not None]
    p99 = [r.p99_ms for r in runs if r.p99_ms is not None]
    rss = [r.peak_rss for r in runs if r.peak_rss]
    notes = []
    for i, r in enumerate(runs, 1):
        if r.note:
            notes.append(r.note if len(runs) == 1 else f"round {i}: {r.note}")

    def median_of(field: str) -> float | None:
        values = [getattr(r, field) for r in runs if getattr(r, field) is not None]
        return statistics.median(values) if values else None

    return Result(
        runs[0].server,
        runs[0].workload,
        thread=runs[0].thread,
        **{f: median_of(f) for f in ("thread_us", "all_us", "worker_us", "app_us", "own_us")},
        rps=statistics.median(rps) if rps else None,
        p99_ms=statistics.median(p99) if p99 else None,
        errors=sum(r.errors for r in runs),
        timeouts=sum(r.timeouts for r in runs),
        peak_rss=max(rss) if rss else None,
        note="; ".join(notes),
        runs=len(runs),
        rps_min=min(rps) if rps else None,
        rps_max=max(rps) if rps else None,
        split=" · ".join(r.split for r in runs if r.split),
    )


def round_order(servers: list[str], round_index: int) -> list[str]:
    """The servers rotated by round_index places, so that no server always goes first."""
    k = round_index % len(servers)
    return servers[k:] + servers[:k]


# --- setup -------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def ensure_peers(servers: list[str] | None = None) -> None:
    """pip-install the peers among `servers` that are missing (gunicorn and granian when not
    given). uWSGI builds from source: about a minute on 2 cores, with a C compiler and the
    Python headers."""
    if servers is None:
        wanted = {"gunicorn", "granian"}
    else:
        wanted = {SERVERS[s].dist for s in servers if SERVERS[s].dist}
    missing = sorted(d for d in wanted if not _installed(d))
    if missing:
        log(f"installing {' '.join(missing)} into {sys.prefix}")
        subprocess.run([PY, "-m", "pip", "install", "-q", *missing], check=True)


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("wrk is not installed: run `sudo apt-get install -y wrk` (or run this as root)")
    log("installing wrk from Debian")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


def build_ferrule() -> None:
    """`make build` (the release wheel, installed) into this venv, after any other maturin run
    has finished: the benchmarks measure what users install, built by the compile the tests
    use."""
    deadline = time.monotonic() + 20 * 60
    while other_maturin():
        if time.monotonic() > deadline:
            sys.exit("another maturin has been running for 20 minutes; try again later")
        log("another maturin is running; waiting for it to finish")
        time.sleep(10)
    log("building ferrule in release mode (make build: the wheel, installed)")
    # make prints to stdout too; keep stdout for the tables.
    subprocess.run(
        ["make", "--no-print-directory", "build", f"VENV={sys.prefix}"],
        cwd=ROOT,
        stdout=sys.stderr,
        check=True,
    )


def other_maturin() -> bool:
    """Whether a maturin runs outside this process's own ancestry (a shell that started us may
    mention maturin in its command line)."""
    found = subprocess.run(["pgrep", "-f", "maturin"], capture_output=True, text=True).stdout
    ours, pid = set(), os.getpid()
    while pid > 1:
        ours.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return any(int(p) not in ours for p in found.split())


def seed_database(env: dict[str, str]) -> None:
    subprocess.run([PY, "seed.py"], cwd=APP_DIR, env=env, check=True)


def app_env(tmp: str, **extra: str) -> dict[str, str]:
    """The environment the bench app runs in, its database created and seeded in `tmp`."""
    env = dict(os.environ)
    env.update(
        BENCH_DB=str(Path(tmp) / "bench.sqlite3"),
        DJANGO_SETTINGS_MODULE="benchapp.settings",
        PYTHONPATH=str(APP_DIR),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    seed_database(env)
    return env


def thread_times(root: int) -> dict[tuple[int, int], tuple[str, int]]:
    """Every thread of root's process tree: (pid, tid) -> (name, ns on a CPU so far), from
    /proc/PID/task/TID/schedstat (its first field, in nanoseconds)."""
    times = {}
    for pid in process_tree(root):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    name = f.read().strip()
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    ns = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            times[(pid, int(tid))] = (name, ns)
    return times


def worker_costs(port: int) -> dict | None:
    """ferrule's FERRULE_COST_SAMPLE totals, from the bench app's /costs view."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/costs")
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    return json.loads(body) if resp.status == 200 else None


def record_costs(
    result: Result,
    requests: int,
    before: dict[tuple[int, int], tuple[str, int]],
    after: dict[tuple[int, int], tuple[str, int]],
    costs: tuple[dict | None, dict | None],
) -> None:
    """--cost: the CPU time per request of the threads over the measured run; for ferrule, its
    worker threads' split into the application's part and its own (src/wsgi/cost.rs says how
    the clock reads are accounted for)."""
    if requests <= 0:
        return
    # A thread started during the run counts from zero; one that exited during it is not seen
    # (its time is lost), so a pool that shrinks mid-run is under-counted.
    used = {k: (name, ns - before.get(k, (name, 0))[1]) for k, (name, ns) in after.items()}
    if not used:
        return
    name, busiest = max(used.values(), key=lambda v: v[1])
    result.thread = name
    result.thread_us = busiest / requests / 1000
    result.all_us = sum(ns for _, ns in used.values()) / requests / 1000
    first, last = costs
    if first is None or last is None:
        return
    sampled = last["sampled"] - first["sampled"]
    if sampled <= 0:
        return
    clock = last["clock_cost_ns"]
    workers = sum(ns for n, ns in used.values() if n.startswith("ferrule-worker"))
    # Each sampled request's application part holds about one clock read; the threads' time
    # holds all of a sample's reads.
    app_ns = (last["app_ns"] - first["app_ns"]) / sampled - clock
    reads_ns = sampled * last["reads_per_sample"] * clock
    result.worker_us = (workers - reads_ns) / requests / 1000
    result.app_us = app_ns / 1000
    result.own_us = result.worker_us - result.app_us


# --- one server under load ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> str | None:
    """None once the port accepts a connection, else why it never did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with code {proc.returncode} before accepting connections"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return None
        except OSError:
            time.sleep(0.05)
    return f"did not accept connections within {timeout:.0f} s"


def process_tree(root: int) -> list[int]:
    """root and all its descendants, from the ppid in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def connection_split(root: int, port: int) -> list[int]:
    """How many established TCP connections to `port` each process of root's tree holds, most
    first (processes with none left out). From /proc: the socket inodes in each process's fd
    table, matched against /proc/net/tcp{,6} rows whose local port is `port`. Threads of one
    process share its fd table; the listening socket is not counted (not established)."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for row in f:
                    cols = row.split()
                    local, state, inode = cols[1], cols[3], cols[9]
                    if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                        established.add(inode)
        except OSError:
            continue
    counts = []
    for pid in process_tree(root):
        held = set()
        try:
            for fd in os.scandir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in established:
                    held.add(target[8:-1])
        except OSError:
            continue
        if held:
            counts.append(len(held))
    return sorted(counts, reverse=True)


class RssSampler(threading.Thread):
    """The peak of the summed VmRSS of a process tree, sampled every 100 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, sum(rss_bytes(p) for p in process_tree(self.pid)))
            self._done.wait(0.1)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the whole process group, SIGKILL it if it is still there after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure no worker of the group outlives it.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def check_response(port: int, w: Workload) -> str | None:
    """None if one request answers as it should, else what was wrong."""
    body = b"x" * ONE_MB if w.method == "POST" else None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(w.method, w.path, body=body)
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException) as e:
        return f"check request failed: {e!r}"
    finally:
        conn.close()
    if resp.status != 200:
        return f"check request answered {resp.status}"
    if w.expect_body is not None and data != w.expect_body:
        return f"check request answered {data[:40]!r}"
    if w.expect_length is not None and len(data) != w.expect_length:
        return f"check request answered {len(data)} bytes"
    return None


def wrk_argv(port: int, w: Workload, seconds: float) -> list[str]:
    argv = ["wrk", "-t2", f"-c{w.connections}", f"-d{seconds:g}s", "--latency"]
    if w.method == "POST":
        argv += ["-s", str(UPLOAD_LUA)]
    return [*argv, f"http://127.0.0.1:{port}{w.path}"]


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(out: str, result: Result) -> None:
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not m:
        result.note = "wrk printed no summary"
        return
    requests = int(m.group(1))
    seconds = float(m.group(2)) * _UNITS[m.group(3)] / 1000
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = int(non2xx.group(1)) if non2xx else 0
    result.rps = (requests - bad) / seconds if seconds else 0.0
    result.errors = bad
    sock = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        result.errors += sum(int(sock.group(i)) for i in (1, 2, 3))
        result.timeouts = int(sock.group(4))
    if requests == 0:
        # wrk counts a timeout only when the late response does arrive before the run ends.
        result.note = f"no response within the {seconds:g} s run"
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    if p99 and requests - result.timeouts > 0:
        result.p99_ms = float(p99.group(1)) * _UNITS[p99.group(2)]


def run_one(
    server: ServerConfig,
    w: Workload,
    seconds: float,
    env: dict[str, str],
    tag: str = "",
    port: int | None = None,
    workers: int = 1,
    cost: bool = False,
) -> Result:
    result = Result(server.name, w.name)
    port = port or free_port()
    argv = server.command(port, workers)
    stem = f"{w.name}-{server.name}{tag}"
    logfile = WORK / "logs" / f"{stem}.log"
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            argv, cwd=APP_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    sampler = RssSampler(proc.pid)
    sampler.start()
    try:
        failure = wait_for_port(port, proc) or check_response(port, w)
        if failure:
            tail = logfile.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            result.note = f"{failure}; log: {tail[0][:120]}"
            return result
        subprocess.run(wrk_argv(port, w, 1), capture_output=True, timeout=60)  # warm-up
        cmd = wrk_argv(port, w, seconds)
        splitter = None
        if workers > 1:

            def sample_split() -> None:
                result.split = "/".join(map(str, connection_split(proc.pid, port))) or "none"

            splitter = threading.Timer(seconds / 2, sample_split)
            splitter.start()
        costs_before = worker_costs(port) if cost else None
        times_before = thread_times(proc.pid) if cost else {}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        if cost:
            times_after = thread_times(proc.pid)
            costs_after = worker_costs(port)
            served = re.search(r"(\d+) requests in", done.stdout)
            record_costs(
                result,
                int(served.group(1)) if served else 0,
                times_before,
                times_after,
                (costs_before, costs_after),
            )
        if splitter is not None:
            splitter.join()
        (WORK / "logs" / f"{stem}.wrk").write_text(done.stdout + done.stderr)
        parse_wrk(done.stdout, result)
        if proc.poll() is not None:
            result.note = (result.note + f" server exited with code {proc.returncode}").strip()
    finally:
        result.peak_rss = sampler.stop() or None
        stop_server(proc)
    return result


def run_inprocess(w: Workload, seconds: float, env: dict[str, str]) -> Result:
    result = Result("in-process", w.name)
    done = subprocess.run(
        [PY, "inprocess.py", w.name, str(seconds)],
        cwd=APP_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if done.returncode != 0:
        result.note = (done.stderr.strip().splitlines() or ["failed"])[-1][:160]
        return result
    data = json.loads(done.stdout.strip().splitlines()[-1])
    result.rps = data["requests"] / data["seconds"]
    result.thread = "the loop"
    result.thread_us = result.all_us = data["cpu_ns"] / data["requests"] / 1000
    result.app_us = data["app_ns"] / 1000
    return result


# --- report ------------------------------------------------------------------------------------


def fmt_rps(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def fmt_rps_spread(r: Result) -> str:
    """The median req/s, and its min–max over the rounds when there were several runs."""
    if r.runs < 2 or r.rps_min is None or r.rps_max is None:
        return fmt_rps(r.rps)
    return f"{fmt_rps(r.rps)} ({fmt_rps(r.rps_min)}–{fmt_rps(r.rps_max)})"


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.1f} ms"


def fmt_ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None:
        return "—"
    if theirs == 0:
        return "∞" if ours > 0 else "—"
    return f"{ours / theirs:.2f}×"


def table(
    w: Workload,
    seconds: float,
    rounds: int,
    results: list[Result],
    reference: Result | None,
    workers: int = 1,
) -> str:
    ours = next((r.rps for r in results if r.server == "ferrule"), None)
    over = f", {rounds} rounds" if rounds > 1 else ""
    rps_head, p99_head = ("req/s", "p99")
    if rounds > 1:
        rps_head, p99_head = "req/s median (min–max)", "p99 median"
    split_head, split_rule = ("", "")
    if workers > 1:
        split_head, split_rule = " connections per worker |", "---|"
    lines = [
        f"### /{w.name} — {w.description} (wrk -t2 -c{w.connections} -d{seconds:g}s{over})",
        "",
        f"| server | {rps_head} | {p99_head} | errors | timeouts | peak RSS | ferrule ÷ this "
        f"|{split_head}",
        f"|---|---:|---:|---:|---:|---:|---:|{split_rule}",
    ]
    for r in results:
        label = SERVERS[r.server].describe(workers)
        if r.note:
            label += f" ({r.note})"
        rss = f"{r.peak_rss / 2**20:,.0f} MiB" if r.peak_rss else "—"
        ratio = "—" if r.server == "ferrule" else fmt_ratio(ours, r.rps)
        split = f" {r.split or '—'} |" if workers > 1 else ""
        lines.append(
            f"| {label} | {fmt_rps_spread(r)} | {fmt_ms(r.p99_ms)} | {r.errors:,} | {r.timeouts:,} "
            f"| {rss} | {ratio} |{split}"
        )
    if reference is not None:
        label = "in-process reference (1 thread, no sockets)"
        if reference.note:
            label += f" ({reference.note})"
        ratio = fmt_ratio(ours, reference.rps)
        split = " — |" if workers > 1 else ""
        lines.append(f"| {label} | {fmt_rps(reference.rps)} | — | — | — | — | {ratio} |{split}")
    return "\n".join(lines) + "\n"


def fmt_us(v: float | None) -> str:
    return "—" if v is None else f"{v:,.1f}"


def cost_table(w: Workload, results: list[Result], reference: Result | None) -> str:
    """--cost: CPU time per request, by thread, over the measured runs (medians)."""
    lines = [
        f"#### /{w.name}: CPU time per request, µs (medians)",
        "",
        "| server | busiest thread | all threads | ferrule's worker threads | the application "
        "| ferrule's own in the worker |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = [*results, *([reference] if reference is not None else [])]
    for r in rows:
        label = "in-process reference" if r.server == "in-process" else SERVERS[r.server].name
        busiest = f"{fmt_us(r.thread_us)} ({r.thread})" if r.thread else fmt_us(r.thread_us)
        lines.append(
            f"| {label} | {busiest} | {fmt_us(r.all_us)} | {fmt_us(r.worker_us)} "
            f"| {fmt_us(r.app_us)} | {fmt_us(r.own_us)} |"
        )
    return "\n".join(lines) + "\n"


# Issue 18's targets: with one process each, ferrule ahead of granian with one blocking thread
# (its fastest configuration for CPU-bound views), and near the in-process reference.
RATIO_TARGETS = [
    ("plain", "granian-bt1", 1.10),
    ("plain", "in-process", 0.95),
    ("template", "granian-bt1", 1.05),
]
# The worker thread's own CPU time per /plain request, µs (--cost).
OWN_TARGET_US = 3.0


def target_checks(
    all_results: dict[str, list[Result]],
    workers: int = 1,
    references: dict[str, Result] | None = None,
) -> str:
    def rps(workload: str, server: str) -> float | None:
        reference = (references or {}).get(workload)
        for r in [*all_results.get(workload, []), *([reference] if reference else [])]:
            if r.server == server:
                return r.rps
        return None

    if workers > 1:
        return worker_target_checks(all_results, workers)
    rows = []
    for workload, other, target in RATIO_TARGETS:
        ours, peer = rps(workload, "ferrule"), rps(workload, other)
        if ours is None or not peer:
            verdict, measured = "not measured", "—"
        else:
            measured = f"{ours / peer:.2f}× ({fmt_rps(ours)} vs {fmt_rps(peer)})"
            verdict = "PASS" if ours >= target * peer else "MISS"
        rows.append(
            f"| /{workload}: ferrule ÷ {other} | ≥ {target:.2f}× | {measured} | {verdict} |"
        )
    own = next((r.own_us for r in all_results.get("plain", []) if r.server == "ferrule"), None)
    if own is not None:
        verdict = "PASS" if own <= OWN_TARGET_US else "MISS"
        rows.append(
            f"| /plain: ferrule's own CPU time in the worker thread | ≤ {OWN_TARGET_US:g} µs "
            f"| {own:.1f} µs | {verdict} |"
        )
    goal = 0.95 * FERRULE_DEFAULT_THREADS / SLEEP_SECONDS
    ours = rps("sleep", "ferrule")
    measured = "—" if ours is None else f"{fmt_rps(ours)} req/s"
    verdict = "not measured" if ours is None else ("PASS" if ours >= goal else "MISS")
    rows.append(
        f"| /sleep at 256 connections: ferrule req/s | ≥ 0.95 × {FERRULE_DEFAULT_THREADS} / "
        f"{SLEEP_SECONDS:g} s = {goal:,.0f} | {measured} | {verdict} |"
    )
    head = ["### Targets", "", "| check | target | measured | result |", "|---|---|---|---|"]
    return "\n".join(head + rows) + "\n"


def worker_target_checks(all_results: dict[str, list[Result]], workers: int) -> str:
    """Issue 6's goal with N processes each: ferrule ahead of every peer on /plain and
    /template, and at least 1.2x the best granian configuration."""
    rows = []
    for workload in ("plain", "template"):
        results = [r for r in all_results.get(workload, []) if r.rps is not None]
        ours = next((r.rps for r in results if r.server == "ferrule"), None)
        for check, target, peers in (
            ("best peer", 1.0, [r for r in results if r.server != "ferrule"]),
            ("best granian", 1.2, [r for r in results if r.server.startswith("granian")]),
        ):
            if ours is None or not peers:
                rows.append(
                    f"| /{workload}: ferrule ÷ {check} | ≥ {target:.2f}× | — | not measured |"
                )
                continue
            best = max(peers, key=lambda r: r.rps or 0.0)
            ratio = ours / best.rps if best.rps else float("inf")
            measured = f"{ratio:.2f}× ({fmt_rps(ours)} vs {best.server} {fmt_rps(best.rps)})"
            verdict = "PASS" if ratio >= target else "MISS"
            rows.append(
                f"| /{workload}: ferrule ÷ {check} | ≥ {target:.2f}× | {measured} | {verdict} |"
            )
    head = [
        f"### Targets ({workers} processes each)",
        "",
        "| check | target | measured | result |",
        "|---|---|---|---|",
    ]
    return "\n".join(head + rows) + "\n"


def header(args: argparse.Namespace, seconds: float, rounds: int) -> str:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    argv = " ".join(sys.argv[1:])
    workers = getattr(args, "workers", 1)
    processes = (
        "one process/worker each"
        if workers == 1
        else f"{workers} worker processes each (plus the master where the server has one)"
    )
    load = load_average()
    return "\n".join(
        [
            f"## ferrule benchmark, {now}",
            "",
            f"- command: `.venv/bin/python bench/run.py{' ' + argv if argv else ''}`"
            f" (commit {commit or 'none'})",
            f"- machine: {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}",
            f"- Python {platform.python_version()}, Django {version('django')}, "
            f"ferrule {version('ferrule')}, gunicorn {version('gunicorn')}, "
            f"granian {version('granian')}, uWSGI {version('uwsgi')}, "
            f"wrk {wrk[1] if len(wrk) > 1 else '?'}",
            f"- load: wrk -t2 --latency, {seconds:g} s per run after a 1 s warm-up, a fresh server "
            f"per run, {processes}; req/s counts 2xx/3xx responses only; peak RSS is "
            "the summed VmRSS of the server's process tree (master and workers)",
            f"- load average at the start: {load}",
            f"- {rounds} round{'s' if rounds != 1 else ''} per workload, the servers interleaved "
            "and their order rotated each round; req/s and p99 are the medians over the rounds, "
            "errors and timeouts their sums, peak RSS the largest; the in-process reference "
            "runs once"
            if rounds > 1
            else "- 1 round: one run per server and workload",
            "",
        ]
    )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    try:
        with open("/proc/loadavg") as f:
            return ", ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


# --- two settings of ferrule compared (bench/stats.py, bench/hooks.py) ------------------------


def on_off_rows(title: str, labels: dict[str, str], off: Result, on: Result) -> list[str]:
    """A markdown table of one workload's runs without ("off") and with ("on") a setting."""
    lines = [
        title,
        "",
        "| server | req/s median (min–max) | p99 median | errors | on ÷ off |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, r in (("off", off), ("on", on)):
        label = labels[kind] + (f" ({r.note})" if r.note else "")
        ratio = "—" if kind == "off" else fmt_ratio(on.rps, off.rps)
        lines.append(
            f"| {label} | {fmt_rps_spread(r)} | {fmt_ms(r.p99_ms)} | {r.errors:,} | {ratio} |"
        )
    return lines


def on_off_rounds(
    script: str, args: argparse.Namespace, run: Callable[[str, float, dict[str, str], str], Result]
) -> tuple[str, dict[str, Result]]:
    """Run `run(kind, seconds, env, tag)` for "off" and "on", interleaved over `args.rounds`
    rounds on a freshly seeded app: the report's header and each setting's summary."""
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    ensure_wrk()
    if not args.no_build:
        build_ferrule()
    header_text = header(argparse.Namespace(), args.seconds, args.rounds)
    runs: dict[str, list[Result]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="ferrule-bench-") as tmp:
        # One request in COST_SAMPLE has its application time measured (src/wsgi/cost.rs).
        env = app_env(tmp, **({"FERRULE_COST_SAMPLE": str(COST_SAMPLE)} if args.cost else {}))
        for i in range(args.rounds):
            for kind in round_order(["off", "on"], i):
                r = run(kind, args.seconds, env, f"-r{i + 1}")
                r.server = kind
                log(f"round {i + 1}: {kind}: {fmt_rps(r.rps)} req/s {r.note}")
                runs[kind].append(r)
    summaries = {kind: summarize(rs) for kind, rs in runs.items()}
    return header_text.replace("bench/run.py", script), summaries


def write_report(name: str, text: str) -> None:
    """Print a script's report and keep it in bench/_work/NAME."""
    print(text)
    (WORK / name).write_text(text)
    log(f"written to {WORK / name}; logs in {WORK / 'logs'}")


def on_off_args(description: str, argv: list[str] | None) -> argparse.Namespace:
    """The options of a script comparing two settings: --duration, --rounds (default 5: the
    differences sought are well inside one run's noise), --quick, --no-build."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--duration", type=float, help="seconds of load per run (default 10)")
    p.add_argument("--rounds", type=int, metavar="N", help="runs of each setting (default 5)")
    p.add_argument("--quick", action="store_true", help="3 s runs, 1 round: a smoke test")
    p.add_argument("--no-build", action="store_true", help="use the ferrule already in the venv")
    args = p.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        p.error("--rounds: must be at least 1")
    args.seconds = args.duration or (3.0 if args.quick else 10.0)
    args.rounds = args.rounds or (1 if args.quick else 5)
    return args


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, help="seconds of load per run (default 10)")
    p.add_argument(
        "--quick", action="store_true", help="3 s runs and --rounds 1 (unless given), a smoke test"
    )
    p.add_argument(
        "--rounds",
        type=int,
        metavar="N",
        help="runs per server and workload, interleaved; the table shows medians (default 3)",
    )
    p.add_argument(
        "--only", metavar="WORKLOAD", help=f"comma-separated subset of: {','.join(WORKLOADS)}"
    )
    p.add_argument(
        "--servers", metavar="A,B", help=f"comma-separated subset of: {','.join(SERVERS)}"
    )
    p.add_argument(
        "--no-build", action="store_true", help="use the ferrule already in the venv as it is"
    )
    p.add_argument(
        "--baseline",
        action="append",
        metavar="[NAME=]PYTHON",
        help="also run ferrule from another checkout's virtualenv (its python), as the server "
        "'ferrule-NAME' (default NAME: baseline), to compare versions in one run; repeatable",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes per server: ferrule --workers N, gunicorn -w N, granian --workers "
        "N, uWSGI --processes N (default 1; ferrule then runs without a master)",
    )
    p.add_argument(
        "--cost",
        action="store_true",
        help="also report the CPU time per request of each server's threads, and ferrule's "
        "worker thread split into the application's part and its own (FERRULE_COST_SAMPLE)",
    )
    args = p.parse_args(argv)
    for given in args.baseline or []:
        name, _, python = given.rpartition("=")
        server = f"ferrule-{name or 'baseline'}"
        SERVERS[server] = ServerConfig(
            server,
            f"ferrule ({name or 'baseline'}: {python})",
            [python, "-m", "ferrule", "--bind", "127.0.0.1:{port}", APP],
            workers_argv=("--workers", "{workers}"),
        )
    if args.rounds is not None and args.rounds < 1:
        p.error("--rounds: must be at least 1")
    if args.workers < 1:
        p.error("--workers: must be at least 1")
    for attr, known in (("only", WORKLOADS), ("servers", SERVERS)):
        value = getattr(args, attr)
        names = value.split(",") if value else list(known)
        unknown = [n for n in names if n not in known]
        if unknown:
            p.error(f"--{attr}: unknown {', '.join(unknown)} (choose from {', '.join(known)})")
        setattr(args, attr, names)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seconds = args.duration or (3.0 if args.quick else 10.0)
    rounds = args.rounds or (1 if args.quick else 3)
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    ensure_wrk()
    ensure_peers(args.servers)
    if "ferrule" in args.servers and not args.no_build:
        build_ferrule()

    with tempfile.TemporaryDirectory(prefix="ferrule-bench-") as tmp:
        # One request in COST_SAMPLE has its application time measured (src/wsgi/cost.rs).
        env = app_env(tmp, **({"FERRULE_COST_SAMPLE": str(COST_SAMPLE)} if args.cost else {}))
        report = [header(args, seconds, rounds)]
        all_results: dict[str, list[Result]] = {}
        references: dict[str, Result] = {}
        for name in args.only:
            w = WORKLOADS[name]
            runs: dict[str, list[Result]] = {server: [] for server in args.servers}
            for i in range(rounds):
                where = f"/{w.name} round {i + 1}/{rounds}"
                tag = f"-r{i + 1}" if rounds > 1 else ""
                for server in round_order(args.servers, i):
                    log(f"{where}: {server}")
                    r = run_one(
                        SERVERS[server], w, seconds, env, tag, workers=args.workers, cost=args.cost
                    )
                    log(f"{where}: {server}: {fmt_rps(r.rps)} req/s {r.note}".rstrip())
                    runs[server].append(r)
            results = [summarize(runs[server]) for server in args.servers]
            log(f"/{w.name}: in-process reference")
            reference = run_inprocess(w, seconds, env)
            all_results[name] = results
            references[name] = reference
            report.append(table(w, seconds, rounds, results, reference, args.workers))
            if args.cost:
                report.append(cost_table(w, results, reference))
        report.append(target_checks(all_results, args.workers, references))

    text = "\n".join(report)
    print(text)
    (WORK / "last.md").write_text(text)
    log(f"written to {WORK / 'last.md'}; server logs in {WORK / 'logs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
