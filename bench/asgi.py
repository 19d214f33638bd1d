"""ASGI: ferrule (WSGI and ASGI) against uvicorn, granian, daphne and hypercorn (issue 14).

`.venv/bin/python bench/asgi.py` (`--rounds`, `--duration`, `--servers`). Every server runs as
one process on the Django test project in tests/django_site (its SQLite database migrated in a
temporary directory, CONN_MAX_AGE=60). Rows:

  /thread/             a sync view making one SQLite query (Django's sync views run on a thread
                       under ASGI: a ferrule pool thread, asgiref's executor elsewhere)
  /async-sleep/?s=0    the cheapest async view: asyncio.sleep(0), a JSON answer
  websocket echo       tests/apps/wsapp.py `/echo` (raw ASGI, no Django): 64 clients each send
                       a short text message and await its echo, over and over; messages/s

HTTP rows are loaded with `wrk -t1 -c64`; the WebSocket row with an asyncio `websockets` client
in this process. For each row and round a fresh server is started on a free port, checked with
one request (or one echo), warmed up for 1 s, measured for --duration seconds and stopped. The
servers are interleaved, their order rotated each round; the table shows each server's median
(min–max) and ferrule-ASGI's ratios to the best peer and to ferrule-WSGI.
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


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    slug: str  # in the log file names
    path: str  # the HTTP path, or the WebSocket path for the echo row
    websocket: bool = False


ROWS = [
    Row("/thread/", "thread", "/thread/"),
    Row("/async-sleep/?s=0", "async-sleep", "/async-sleep/?s=0"),
    Row("websocket echo (msg/s)", "ws-echo", "/echo", websocket=True),
]


@dataclasses.dataclass(frozen=True)
class Server:
    name: str
    dist: str  # the pip distribution providing it ("" for ferrule)
    django: list[str]  # argv serving the Django project ("{port}" replaced)
    ws: list[str] | None  # argv serving wsapp:app, None when it serves no WebSocket
    asgi: bool = True  # DJANGO_SITE_ASGI=bare: ASGI_APPLICATION is Django's handler itself

    def argv(self, row: Row, port: int) -> list[str]:
        argv = self.ws if row.websocket else self.django
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


def wrk(port: int, row: Row, seconds: float, stem: str) -> Result:
    url = f"http://127.0.0.1:{port}{row.path}"
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", url]
    subprocess.run([*argv[:3], "-d1s", url], capture_output=True, check=False)  # warm-up
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    (WORK / "logs" / f"{stem}.wrk").write_text(out)
    result = Result(stem, row.name)
    common.parse_wrk(out, result)
    return result


async def ws_load(port: int, path: str, seconds: float) -> tuple[int, int]:
    """Messages echoed by CONNECTIONS clients in `seconds` (each sends one, awaits its echo,
    again), and the clients that failed."""
    from websockets.asyncio.client import connect

    uri = f"ws://127.0.0.1:{port}{path}"
    counts = [0] * CONNECTIONS
    conns = await asyncio.gather(
        *(connect(uri, compression=None, max_queue=None) for _ in range(CONNECTIONS))
    )
    deadline = time.monotonic() + seconds

    async def client(i: int) -> None:
        ws = conns[i]
        while time.monotonic() < deadline:
            await ws.send(WS_MESSAGE)
            if await ws.recv() != WS_MESSAGE:
                raise RuntimeError("echo differs from the message sent")
            counts[i] += 1

    results = await asyncio.gather(*(client(i) for i in range(CONNECTIONS)), return_exceptions=True)
    failed = sum(isinstance(r, BaseException) for r in results)
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    return sum(counts), failed


def websocket(port: int, row: Row, seconds: float, stem: str) -> Result:
    result = Result(stem, row.name)
    try:
        asyncio.run(ws_load(port, row.path, 1))  # check and warm-up
        start = time.monotonic()
        messages, failed = asyncio.run(ws_load(port, row.path, seconds))
        elapsed = time.monotonic() - start
    except Exception as e:  # noqa: BLE001  (any failure is the run's note)
        result.note = f"websocket clients failed: {e!r}"
        return result
    result.rps = messages / elapsed
    result.errors = failed
    if failed:
        result.note = f"{failed} clients failed"
    return result


def run_one(server: Server, row: Row, seconds: float, tmp: str, tag: str) -> Result:
    port = common.free_port()
    stem = f"asgi-{row.slug}-{server.name}{tag}"
    if row.websocket:
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
        if problem is None and not row.websocket:
            problem = check_http(port, row, server.asgi)
        if problem:
            return Result(server.name, row.name, note=problem)
        if row.websocket:
            result = websocket(port, row, seconds, stem)
        else:
            result = wrk(port, row, seconds, stem)
    finally:
        common.stop_server(proc)
    result.server = server.name
    return result


# --- the table ---------------------------------------------------------------------------------


def fmt(r: Result | None) -> str:
    if r is None:
        return "—"
    if r.rps is None:
        return "failed"
    cell = f"{r.rps:,.0f}"
    if r.runs > 1 and r.rps_min is not None:
        cell += f" ({r.rps_min:,.0f}–{r.rps_max:,.0f})"
    if r.errors:
        cell += f" [{r.errors} err]"
    return cell


def ratio(a: Result | None, b: Result | None) -> str:
    if not a or not b or not a.rps or not b.rps:
        return "—"
    return f"{a.rps / b.rps:.2f}×"


def table(names: list[str], summary: dict[tuple[str, str], Result]) -> str:
    peers = [n for n in names if not n.startswith("ferrule")]
    head = ["row", *names, "ferrule-asgi ÷ best peer", "ferrule-asgi ÷ ferrule-wsgi"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for row in ROWS:
        cells = {n: summary.get((row.name, n)) for n in names}
        measured = [cells[p] for p in peers if cells[p] and cells[p].rps]
        best = max(measured, key=lambda r: r.rps, default=None)
        mine = cells.get("ferrule-asgi")
        vs_best = ratio(mine, best) + (f" ({best.server})" if best else "")
        line = [row.name, *(fmt(cells[n]) for n in names), vs_best]
        line.append(ratio(mine, cells.get("ferrule-wsgi")))
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5, help="seconds per measurement")
    parser.add_argument("--servers", default=",".join(SERVERS))
    args = parser.parse_args()

    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    while common.other_maturin():
        log("waiting for another maturin run to finish (it may reinstall ferrule)")
        time.sleep(10)
    common.ensure_wrk()
    names, skipped = available(args.servers.split(","))
    summary: dict[tuple[str, str], Result] = {}
    with tempfile.TemporaryDirectory(prefix="ferrule-asgi-bench-") as tmp:
        migrate = [PY, "manage.py", "migrate", "-v", "0"]
        subprocess.run(migrate, cwd=DJANGO_DIR, env=django_env(tmp, False), check=True)
        for row in ROWS:
            runners = [n for n in names if SERVERS[n].ws is not None or not row.websocket]
            runs: dict[str, list[Result]] = {n: [] for n in runners}
            for r in range(args.rounds):
                for name in common.round_order(runners, r):
                    tag = f"-r{r + 1}" if args.rounds > 1 else ""
                    result = run_one(SERVERS[name], row, args.duration, tmp, tag)
                    runs[name].append(result)
                    rps = f"{result.rps:,.0f}/s" if result.rps is not None else "—"
                    log(f"{row.name:24} round {r + 1} {name:13} {rps} {result.note}")
            for name, results in runs.items():
                summary[(row.name, name)] = common.summarize(results)

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
    print(f"- HTTP rows: wrk -t1 -c{CONNECTIONS}, 2xx/3xx req/s; WebSocket row: {CONNECTIONS}")
    print(
        f"  python-websockets clients (in the benchmark's process) echoing {len(WS_MESSAGE)} bytes"
    )
    notes = [(k, r.note) for k, r in summary.items() if r.note]
    for (row, name), note in notes:
        print(f"- {row} {name}: {note}")
    print()
    print(table(names, summary))


if __name__ == "__main__":
    main()
