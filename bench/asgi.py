"""ASGI: ferrule (WSGI and ASGI) against uvicorn, granian, daphne and hypercorn (issue 14).

`.venv/bin/python bench/asgi.py` (`--rounds`, `--duration`, `--servers`, `--rows`). Every
server runs as one process on the Django test project in tests/django_site (its SQLite database
migrated in a temporary directory and seeded with 20 notes, CONN_MAX_AGE=60). Rows (slug: what):

  thread       /thread/: a sync view making one SQLite query (Django's sync views run on a
               thread under ASGI: a ferrule pool thread, asgiref's executor elsewhere)
  async-sleep  /async-sleep/?s=0: the cheapest async view, asyncio.sleep(0), a JSON answer
  async-orm    /async-notes/: an async view querying with the ORM's async API (acount() and an
               `async for` over the latest 5 notes)
  sleep-c1000  /async-sleep/?s=0.05 at 1,000 connections: an async view awaiting 50 ms
  sse          /async-ticks/: 1,000 clients each holding a server-sent-events stream from an
               async StreamingHttpResponse (one event a second); how many streams the server
               holds, the events/s delivered, and the server's RSS growth per stream
  ws-echo      tests/apps/wsapp.py `/echo` (raw ASGI, no Django): 64 clients each send a short
               text message and await its echo, over and over; messages/s and the p99 round trip

HTTP rows are loaded with `wrk -t1 --timeout 10s --latency` (64 connections unless the row says
otherwise); the SSE and WebSocket rows with asyncio clients in this process. For each row and
round a fresh server is started on a free port, checked with one request (or one echo), warmed
up for 1 s, measured for --duration seconds and stopped. The servers are interleaved, their
order rotated each round; the table shows each server's median (min–max) and ferrule-ASGI's
ratios to the best peer and to ferrule-WSGI. ferrule-WSGI skips the SSE row: Django consumes an
async streaming body whole under WSGI, so nothing would be held.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import http.client
import importlib.metadata
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as common  # noqa: E402  (bench/run.py: shared helpers)
from run import PY, ROOT, WORK, Result  # noqa: E402

DJANGO_DIR = ROOT / "tests" / "django_site"
APPS_DIR = ROOT / "tests" / "apps"
DJANGO_ASGI = "django_site.asgi:django_application"  # Django's ASGIHandler itself
WS_APP = "wsapp:app"
CONNECTIONS = 64
WS_MESSAGE = "x" * 32
SSE_STREAMS = 1000
# Seconds a stream may take to deliver its first event and still count as held when the
# measurement starts: long enough for a server that accepts slowly, short of a stuck one.
SSE_OPEN_TIMEOUT = 20


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    slug: str  # in the log file names, and for --rows
    path: str  # the HTTP path, or the WebSocket path for the echo row
    kind: str = "http"  # "http" (wrk), "sse" (held event streams) or "ws" (echo clients)
    connections: int = CONNECTIONS
    wsgi: bool = True  # whether ferrule-wsgi runs it


ROWS = [
    Row("/thread/", "thread", "/thread/"),
    Row("/async-sleep/?s=0", "async-sleep", "/async-sleep/?s=0"),
    Row("/async-notes/ (async ORM)", "async-orm", "/async-notes/"),
    Row("/async-sleep/?s=0.05, c1000", "sleep-c1000", "/async-sleep/?s=0.05", connections=1000),
    Row("SSE, 1,000 held (events/s)", "sse", "/async-ticks/?every=1", "sse", SSE_STREAMS, False),
    Row("websocket echo (msg/s)", "ws-echo", "/echo", "ws"),
]


@dataclasses.dataclass
class Run(Result):
    held: int | None = None  # SSE: streams that delivered an event during the measurement
    rss_growth: int | None = None  # SSE: bytes the server grew by with every stream open


@dataclasses.dataclass(frozen=True)
class Server:
    name: str
    dist: str  # the pip distribution providing it ("" for ferrule)
    django: list[str]  # argv serving the Django project ("{port}" replaced)
    ws: list[str] | None  # argv serving wsapp:app, None when it serves no WebSocket
    asgi: bool = True  # DJANGO_SITE_ASGI=bare: ASGI_APPLICATION is Django's handler itself

    def argv(self, row: Row, port: int) -> list[str]:
        argv = self.ws if row.kind == "ws" else self.django
        return [a.replace("{port}", str(port)) for a in argv]


BIND = "127.0.0.1:{port}"
UVICORN = [PY, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}"]
UVICORN += ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
GRANIAN = [PY, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}"]
GRANIAN += ["--workers", "1"]
DAPHNE = [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "-v", "0"]
HYPERCORN = [PY, "-m", "hypercorn", "-b", BIND, "-w", "1", "-k", "uvloop"]
MANAGE_SERVER = [PY, "manage.py", "server", BIND, "--noreload", "--no-access-log"]

SERVERS = {
    s.name: s
    for s in [
        Server("ferrule-wsgi", "", MANAGE_SERVER, None, asgi=False),
        Server(
            "ferrule-asgi",
            "",
            MANAGE_SERVER,
            [PY, "-m", "ferrule", "--bind", BIND, "--no-access-log", WS_APP],
        ),
        # Not run unless named in --servers: the SSE row's thread bound lifted, to show what a
        # held stream costs once ferrule holds them all (1,100: the row's 1,000 and a margin).
        Server(
            "ferrule-asgi-t1100",
            "",
            [*MANAGE_SERVER, "--threads", "1100"],
            [PY, "-m", "ferrule", "--bind", BIND, "--no-access-log", WS_APP],
        ),
        Server("uvicorn", "uvicorn", [*UVICORN, DJANGO_ASGI], [*UVICORN, WS_APP]),
        Server("granian", "granian", [*GRANIAN, DJANGO_ASGI], [*GRANIAN, WS_APP]),
        Server("daphne", "daphne", [*DAPHNE, DJANGO_ASGI], [*DAPHNE, WS_APP]),
        Server("hypercorn", "hypercorn", [*HYPERCORN, DJANGO_ASGI], [*HYPERCORN, WS_APP]),
    ]
}
PIP = {
    "uvicorn": "uvicorn[standard]",
    "granian": "granian",
    "daphne": "daphne",
    "hypercorn": "hypercorn",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def available(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """The servers that are (or could be pip-installed), and why the others are skipped."""
    missing = [n for n in names if SERVERS[n].dist and not common._installed(SERVERS[n].dist)]
    for name in missing:
        log(f"installing {PIP[name]}")
        subprocess.run([PY, "-m", "pip", "install", "-q", PIP[name]], check=False)
    skipped = {}
    for name in missing:
        if not common._installed(SERVERS[name].dist):
            skipped[name] = f"pip could not install {PIP[name]}"
            log(f"skipping {name}: {skipped[name]}")
    return [n for n in names if n not in skipped], skipped


def django_env(tmp: str, asgi: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="django_site.settings",
        DJANGO_SITE_DATA_DIR=tmp,
        DJANGO_SITE_CONN_MAX_AGE="60",
        PYTHONPATH=str(DJANGO_DIR),
        PYTHONUNBUFFERED="1",
    )
    env.pop("DJANGO_SITE_ASGI", None)
    if asgi:
        env["DJANGO_SITE_ASGI"] = "bare"
    return env


def ws_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(APPS_DIR), PYTHONUNBUFFERED="1")
    return env


# --- the loads ---------------------------------------------------------------------------------


def check_http(port: int, row: Row, asgi: bool) -> str | None:
    """None if one GET answers 200 (and /thread/ says it ran under the expected interface)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", row.path)
        resp = conn.getresponse()
        body = resp.read()
    except OSError as e:
        return f"check request failed: {e!r}"
    finally:
        conn.close()
    if resp.status != 200:
        return f"check request answered {resp.status}: {body[:200]!r}"
    if row.path == "/thread/" and json.loads(body)["asgi"] != asgi:
        return f"/thread/ ran under the wrong interface: {body[:200]!r}"
    return None


def wrk(port: int, row: Row, seconds: float, stem: str) -> Run:
    url = f"http://127.0.0.1:{port}{row.path}"
    # --timeout 10s: at 1,000 connections a server answering a few hundred requests a second
    # keeps each waiting longer than wrk's default 2 s, which would drop them from the p99.
    argv = ["wrk", "-t1", f"-c{row.connections}", "--timeout", "10s", "--latency"]
    subprocess.run([*argv, "-d1s", url], capture_output=True, check=False)  # warm-up
    out = subprocess.run([*argv, f"-d{seconds:g}s", url], capture_output=True, text=True).stdout
    (WORK / "logs" / f"{stem}.wrk").write_text(out)
    result = Run(stem, row.name)
    common.parse_wrk(out, result)
    return result


def p99(samples: list[float]) -> float | None:
    if len(samples) < 100:
        return None
    return statistics.quantiles(samples, n=100)[98]


async def ws_load(port: int, path: str, seconds: float) -> tuple[int, int, list[float]]:
    """Messages echoed by CONNECTIONS clients in `seconds` (each sends one, awaits its echo,
    again), the clients that failed, and each message's round trip in ms."""
    from websockets.asyncio.client import connect

    uri = f"ws://127.0.0.1:{port}{path}"
    counts = [0] * CONNECTIONS
    rtts: list[float] = []
    conns = await asyncio.gather(
        *(connect(uri, compression=None, max_queue=None) for _ in range(CONNECTIONS))
    )
    deadline = time.monotonic() + seconds

    async def client(i: int) -> None:
        ws = conns[i]
        while time.monotonic() < deadline:
            sent = time.perf_counter()
            await ws.send(WS_MESSAGE)
            if await ws.recv() != WS_MESSAGE:
                raise RuntimeError("echo differs from the message sent")
            rtts.append((time.perf_counter() - sent) * 1000)
            counts[i] += 1

    results = await asyncio.gather(*(client(i) for i in range(CONNECTIONS)), return_exceptions=True)
    failed = sum(isinstance(r, BaseException) for r in results)
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    return sum(counts), failed, rtts


def websocket(port: int, row: Row, seconds: float, stem: str) -> Run:
    result = Run(stem, row.name)
    try:
        asyncio.run(ws_load(port, row.path, 1))  # check and warm-up
        start = time.monotonic()
        messages, failed, rtts = asyncio.run(ws_load(port, row.path, seconds))
        elapsed = time.monotonic() - start
    except Exception as e:  # noqa: BLE001  (any failure is the run's note)
        result.note = f"websocket clients failed: {e!r}"
        return result
    result.rps = messages / elapsed
    result.p99_ms = p99(rtts)
    result.errors = failed
    if failed:
        result.note = f"{failed} clients failed"
    return result


def tree_rss(pid: int) -> int:
    """Bytes: granian and hypercorn run the application in a child process."""
    return sum(common.rss_bytes(p) for p in common.process_tree(pid))


async def sse_load(port: int, row: Row, seconds: float, pid: int) -> Run:
    """Open row.connections event streams, give them SSE_OPEN_TIMEOUT s to deliver a first
    event, then count the events each delivers in `seconds` and sample the server's RSS."""
    request = f"GET {row.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    counts = [0] * row.connections
    first = [asyncio.Event() for _ in range(row.connections)]
    writers: list[asyncio.StreamWriter] = []

    async def stream(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"answered {head[:40]!r}")
        tail = b""  # an event's "data:" may be split between two reads
        while chunk := await reader.read(65536):
            seen = tail + chunk
            counts[i] += seen.count(b"data:")
            tail = seen[-4:]
            first[i].set()

    before = tree_rss(pid)
    tasks = [asyncio.create_task(stream(i)) for i in range(row.connections)]
    try:
        waits = [asyncio.create_task(e.wait()) for e in first]
        await asyncio.wait(waits, timeout=SSE_OPEN_TIMEOUT)
        for w in waits:
            w.cancel()
        start, counted = time.monotonic(), list(counts)
        await asyncio.sleep(seconds / 2)
        during = tree_rss(pid)
        await asyncio.sleep(seconds / 2)
        elapsed = time.monotonic() - start
        delivered = [c - s for c, s in zip(counts, counted, strict=True)]
    finally:
        for t in tasks:
            t.cancel()
        failures = await asyncio.gather(*tasks, return_exceptions=True)
        for w in writers:
            w.transport.abort()
    result = Run("", row.name)
    result.held = sum(d > 0 for d in delivered)
    result.rps = sum(delivered) / elapsed
    result.rss_growth = during - before
    errors = [f for f in failures if not isinstance(f, asyncio.CancelledError)]
    result.errors = len(errors)
    if errors:
        result.note = f"{len(errors)} streams failed, e.g. {errors[0]!r}"
    return result


def sse(port: int, row: Row, seconds: float, pid: int) -> Run:
    try:
        return asyncio.run(sse_load(port, row, seconds, pid))
    except Exception as e:  # noqa: BLE001  (any failure is the run's note)
        return Run("", row.name, note=f"event-stream clients failed: {e!r}")


def run_one(server: Server, row: Row, seconds: float, tmp: str, tag: str) -> Run:
    port = common.free_port()
    stem = f"asgi-{row.slug}-{server.name}{tag}"
    if row.kind == "ws":
        cwd, env = APPS_DIR, ws_env()
    else:
        cwd, env = DJANGO_DIR, django_env(tmp, server.asgi)
    with open(WORK / "logs" / f"{stem}.log", "wb") as out:
        proc = subprocess.Popen(
            server.argv(row, port),
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        problem = common.wait_for_port(port, proc)
        if problem is None and row.kind == "http":
            problem = check_http(port, row, server.asgi)
        if problem:
            return Run(server.name, row.name, note=problem)
        if row.kind == "ws":
            result = websocket(port, row, seconds, stem)
        elif row.kind == "sse":
            result = sse(port, row, seconds, proc.pid)
        else:
            result = wrk(port, row, seconds, stem)
    finally:
        common.stop_server(proc)
    result.server = server.name
    return result


# --- the table ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Summary:
    """A server's runs of one row: common.summarize's medians, plus the SSE row's held streams
    (median, min, max) and RSS growth (median)."""

    result: Result
    held: tuple[int, int, int] | None = None
    rss_growth: float | None = None


def summarize(runs: list[Run]) -> Summary:
    summary = Summary(common.summarize(runs))
    held = [r.held for r in runs if r.held is not None]
    if held:
        summary.held = (int(statistics.median(held)), min(held), max(held))
    growth = [r.rss_growth for r in runs if r.rss_growth is not None]
    if growth:
        summary.rss_growth = statistics.median(growth)
    return summary


def fmt(s: Summary | None, row: Row) -> str:
    if s is None:
        return "—"
    r = s.result
    if r.rps is None:
        return "failed"
    cell = f"{r.rps:,.0f}"
    if r.runs > 1 and r.rps_min is not None:
        cell += f" ({r.rps_min:,.0f}–{r.rps_max:,.0f})"
    if r.p99_ms is not None:
        cell += f", p99 {common.fmt_ms(r.p99_ms)}"
    if s.held is not None:
        mid, low, high = s.held
        cell += f"; {mid:,}" + (f" ({low:,}–{high:,})" if low != high else "")
        cell += f" of {row.connections:,} held"
        if s.rss_growth is not None:
            cell += f", RSS +{s.rss_growth / 2**20:,.0f} MiB"
            if mid:
                cell += f" ({s.rss_growth / mid / 1024:,.0f} KiB per held)"
    if r.errors:
        cell += f" [{r.errors} err]"
    if r.timeouts:
        cell += f" [{r.timeouts} timeouts]"
    return cell


def ratio(a: Result | None, b: Result | None) -> str:
    if not a or not b or not a.rps or not b.rps:
        return "—"
    return f"{a.rps / b.rps:.2f}×"


def table(names: list[str], rows: list[Row], summary: dict[tuple[str, str], Summary]) -> str:
    peers = [n for n in names if not n.startswith("ferrule")]
    head = ["row", *names, "ferrule-asgi ÷ best peer", "ferrule-asgi ÷ ferrule-wsgi"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for row in rows:
        summaries = {n: summary.get((row.name, n)) for n in names}
        cells = {n: s.result if s else None for n, s in summaries.items()}
        measured = [cells[p] for p in peers if cells[p] and cells[p].rps]
        best = max(measured, key=lambda r: r.rps, default=None)
        mine = cells.get("ferrule-asgi")
        vs_best = ratio(mine, best) + (f" ({best.server})" if best else "")
        line = [row.name, *(fmt(summaries[n], row) for n in names), vs_best]
        line.append(ratio(mine, cells.get("ferrule-wsgi")))
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5, help="seconds per measurement")
    default = [n for n in SERVERS if n != "ferrule-asgi-t1100"]
    parser.add_argument("--servers", default=",".join(default))
    parser.add_argument("--rows", default=",".join(r.slug for r in ROWS), help="row slugs")
    args = parser.parse_args()
    wanted = args.rows.split(",")
    unknown = set(wanted) - {r.slug for r in ROWS}
    if unknown:
        parser.error(f"unknown --rows {', '.join(sorted(unknown))}")
    rows = [r for r in ROWS if r.slug in wanted]
    # 1,000 connections, held on both ends in this machine's processes, and the servers
    # (children) inherit the limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    while common.other_maturin():
        log("waiting for another maturin run to finish (it may reinstall ferrule)")
        time.sleep(10)
    common.ensure_wrk()
    names, skipped = available(args.servers.split(","))
    summary: dict[tuple[str, str], Summary] = {}
    with tempfile.TemporaryDirectory(prefix="ferrule-asgi-bench-") as tmp:
        env = django_env(tmp, False)
        subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=DJANGO_DIR, env=env, check=True)
        seed = "from django_site.models import Note; "
        seed += "Note.objects.bulk_create(Note(text=f'note {i}') for i in range(20))"
        shell = [PY, "manage.py", "shell", "-c", seed]
        # stdout: Django 5.2's shell says what it imported, which is not the report's.
        subprocess.run(shell, cwd=DJANGO_DIR, env=env, check=True, stdout=subprocess.DEVNULL)
        for row in rows:
            runners = [
                n
                for n in names
                if (row.kind != "ws" or SERVERS[n].ws is not None) and (row.wsgi or SERVERS[n].asgi)
            ]
            runs: dict[str, list[Run]] = {n: [] for n in runners}
            for r in range(args.rounds):
                for name in common.round_order(runners, r):
                    tag = f"-r{r + 1}" if args.rounds > 1 else ""
                    result = run_one(SERVERS[name], row, args.duration, tmp, tag)
                    runs[name].append(result)
                    rps = f"{result.rps:,.0f}/s" if result.rps is not None else "—"
                    if result.p99_ms is not None:
                        rps += f" p99 {common.fmt_ms(result.p99_ms)}"
                    if result.held is not None:
                        rps += f" held {result.held}"
                    log(f"{row.name:28} round {r + 1} {name:13} {rps} {result.note}")
            for name, results in runs.items():
                summary[(row.name, name)] = summarize(results)

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dists = ["django", "ferrule", *(SERVERS[n].dist for n in names if SERVERS[n].dist)]
    versions = ", ".join(f"{d} {importlib.metadata.version(d)}" for d in dists)
    print(f"### Report: bench/asgi.py, {stamp}\n")
    command = " ".join([".venv/bin/python bench/asgi.py", *sys.argv[1:]])
    print(f"- command: `{command}` (commit {commit})")
    print(f"- machine: {os.cpu_count()} CPUs, shared with other work; {versions}")
    print(f"- one process per server; {args.rounds} rounds, interleaved, order rotated each round;")
    print(f"  each cell the median (min–max) of {args.duration:g} s runs after a 1 s warm-up")
    print(f"- HTTP rows: wrk -t1 -c{CONNECTIONS} (or the row's), 2xx/3xx req/s and wrk's p99;")
    print(f"  WebSocket row: {CONNECTIONS} python-websockets clients (in the benchmark's process)")
    print(f"  echoing {len(WS_MESSAGE)} bytes, messages/s and the p99 round trip; SSE row:")
    print(f"  {SSE_STREAMS:,} asyncio streams, events/s delivered in the run, streams that")
    print("  delivered one, and the server's RSS growth (with its children) divided by those")
    notes = [(k, s.result.note) for k, s in summary.items() if s.result.note]
    for (row, name), note in notes:
        print(f"- {row} {name}: {note}")
    print()
    print(table(names, rows, summary))


if __name__ == "__main__":
    main()
