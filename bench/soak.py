"""Soak: mixed traffic against the demo Django site on 2 workers for a long time (default 30
minutes), watching requests, errors, memory and file descriptors.

`make soak` (or `.venv/bin/python bench/soak.py --help`). Copies the demo site (`demo/`) to a
temporary directory with production settings (DEBUG off, ALLOWED_HOSTS, STATIC_ROOT filled by
`collectstatic`, its own SQLite database), and starts `ferrule --workers 2 --stats-bind` on it.
Then --clients threads (default 8) loop over a mix until --minutes pass:

- pages: `GET /` (a template over the latest entries, from the database) and `POST /` with
  the CSRF token of the form (a new entry; 302);
- uploads: `POST /upload/` with a 100 KB or 3 MB file (the latter spooled to disk by Django);
- streaming: `GET /stream/` (100 lines over 2 s), read to the end;
- static: `GET /static/guestbook/style.css`, and again with `If-None-Match` (304);
- disconnects: `/stream/` abandoned after its first lines, and an upload whose client leaves
  half-way through the body;
- bad requests: a malformed request line (400), a bad Host (400), a head over the limits
  (431), a disallowed Host (Django's `ALLOWED_HOSTS`: 400).

Every answer is checked against the status its kind expects; anything else — another status, a
reset, a timeout — is an unexpected error. Every --sample seconds (default 10) it records the
requests served, the errors, the summed RSS and open fds of the master and workers, and
prints a line a minute. The verdict compares the peaks of the first and last quarters of the
samples after --warmup minutes (default 5): RSS may rise at most 10% (or 20 MiB), fds at most 8.
The report also goes to bench/_work/soak.md.

To find what moves a number, `SOAK_KINDS=upload,stream` runs only those kinds of the mix, and
`SOAK_SQLITE_CACHE=-64` sets SQLite's page cache (`PRAGMA cache_size`) of every connection.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as common  # noqa: E402  (bench/run.py: shared helpers)
from run import PY, ROOT, WORK  # noqa: E402

DEMO = ROOT / "demo"
SETTINGS = '''\
"""bench/soak.py: the demo site with production settings."""
from demosite.settings import *  # noqa: F403

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
STATIC_ROOT = BASE_DIR / "static-root"  # noqa: F405
DB = BASE_DIR / "soak.sqlite3"  # noqa: F405
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": DB{options}}}}}
'''
CSRF = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Tally:
    """What the clients did, by kind; shared under a lock."""

    ok: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def done(self, kind: str) -> None:
        with self.lock:
            self.ok[kind] = self.ok.get(kind, 0) + 1

    def error(self, kind: str, what: str) -> None:
        with self.lock:
            self.errors.append(f"{time.strftime('%H:%M:%S')} {kind}: {what}")

    def total(self) -> int:
        with self.lock:
            return sum(self.ok.values())


class Unexpected(Exception):
    pass


def expect(status: int, want: int | tuple[int, ...]) -> None:
    wanted = want if isinstance(want, tuple) else (want,)
    if status not in wanted:
        raise Unexpected(f"status {status}, expected {' or '.join(map(str, wanted))}")


class Client:
    """One client thread's connection (kept alive across requests, as browsers do) and its
    cookies."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body=None, headers=None) -> tuple[int, Any, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        for value in resp.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        if resp.will_close:
            self.close()
        return resp.status, resp.headers, data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def multipart(token: str, size: int) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n'
        f"{token}\r\n".encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="soak.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode(),
        os.urandom(size),
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def raw(port: int, data: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        if not read:
            return b""
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def raw_status(port: int, data: bytes) -> int:
    reply = raw(port, data)
    m = re.match(rb"HTTP/1\.1 (\d{3})", reply)
    if not m:
        raise Unexpected(f"no status line in {reply[:80]!r}")
    return int(m.group(1))


# -- the mix ---------------------------------------------------------------------------------


def form_token(c: Client, path: str) -> str:
    """GET the form at path (200) and return its CSRF token."""
    status, _, body = c.request("GET", path)
    expect(status, 200)
    token = CSRF.search(body)
    if not token:
        raise Unexpected(f"no CSRF token in {path}")
    return token.group(1).decode()


def page(c: Client, port: int) -> None:
    token = form_token(c, "/")
    form = f"csrfmiddlewaretoken={token}&name=soak&message=hello+{random.random()}"
    status, _, _ = c.request(
        "POST",
        "/",
        body=form.encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": "http://127.0.0.1/",
        },
    )
    expect(status, 302)


def upload(c: Client, port: int) -> None:
    size = random.choice([100_000, 3_000_000])
    data, ctype = multipart(form_token(c, "/upload/"), size)
    status, _, _ = c.request("POST", "/upload/", body=data, headers={"Content-Type": ctype})
    expect(status, 302)


def stream(c: Client, port: int) -> None:
    status, _, body = c.request("GET", "/stream/")
    expect(status, 200)
    lines = body.count(b"\n")
    if lines != 100:
        raise Unexpected(f"stream had {lines} lines")


def static(c: Client, port: int) -> None:
    status, headers, body = c.request("GET", "/static/guestbook/style.css")
    expect(status, 200)
    etag = headers.get("ETag")
    if not etag or not body:
        raise Unexpected("static file without ETag or body")
    status, _, _ = c.request("GET", "/static/guestbook/style.css", headers={"If-None-Match": etag})
    expect(status, 304)


def abandon_stream(c: Client, port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /stream/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        got = b""
        while b"line   2" not in got:
            chunk = s.recv(4096)
            if not chunk:
                raise Unexpected("stream closed before its second line")
            got += chunk
        if not got.startswith(b"HTTP/1.1 200"):
            raise Unexpected(f"stream answered {got[:40]!r}")


def abandon_upload(c: Client, port: int) -> None:
    head = (
        b"POST /upload/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 1000000\r\n\r\n"
    )
    raw(port, head + b"x" * 300_000, read=False)


def bad(c: Client, port: int) -> None:
    kind = random.randrange(4)
    close = b"Connection: close\r\n"
    if kind == 0:
        head = b"GET /\x01 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    elif kind == 1:
        head = b"GET / HTTP/1.1\r\nHost: a b\r\n"
    elif kind == 2:
        head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n"
    else:
        head = b"GET / HTTP/1.1\r\nHost: evil.example\r\n"
    expect(raw_status(port, head + close + b"\r\n"), 431 if kind == 2 else 400)


MIX = [
    (page, 30),
    (static, 25),
    (upload, 8),
    (stream, 5),
    (abandon_stream, 4),
    (abandon_upload, 4),
    (bad, 8),
]


def client_loop(port: int, until: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    only = os.environ.get("SOAK_KINDS", "").split(",")
    mix = [(k, w) for k, w in MIX if only == [""] or k.__name__ in only]
    kinds = [k for k, _ in mix]
    weights = [w for _, w in mix]
    c = Client(port)
    while time.monotonic() < until:
        kind = rng.choices(kinds, weights)[0]
        try:
            kind(c, port)
            tally.done(kind.__name__)
        except Unexpected as e:
            tally.error(kind.__name__, str(e))
        except (OSError, http.client.HTTPException) as e:
            tally.error(kind.__name__, repr(e))
            c.close()
    c.close()


# -- watching the server ------------------------------------------------------------------------


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


@dataclass
class Sample:
    at: float
    served: int
    errors: int
    rss: int
    fds: int
    processes: int


def sample(root: int, started: float, tally: Tally) -> Sample:
    pids = common.process_tree(root)
    with tally.lock:
        errors = len(tally.errors)
    return Sample(
        at=time.monotonic() - started,
        served=tally.total(),
        errors=errors,
        rss=sum(common.rss_bytes(p) for p in pids),
        fds=sum(fd_count(p) for p in pids),
        processes=len(pids),
    )


def prepare_site(tmp: Path) -> Path:
    site = tmp / "demo"
    shutil.copytree(DEMO, site, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3", "*.pyc"))
    options = ""
    if os.environ.get("SOAK_SQLITE_CACHE"):
        pragma = f"PRAGMA cache_size={int(os.environ['SOAK_SQLITE_CACHE'])}"
        options = f', "OPTIONS": {{"init_command": "{pragma}"}}'
    (site / "soaksettings.py").write_text(SETTINGS.format(options=options))
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="soaksettings")
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], cwd=site, env=env, check=True)
    subprocess.run(
        [PY, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=site, env=env, check=True
    )
    return site


def verdict(samples: list[Sample], warmup: float) -> tuple[bool, list[str]]:
    """RSS and fds in the last quarter of the run against the first quarter after the warm-up:
    the peaks may not rise by more than the allowance (fds move with the connections open at
    the moment of a sample, so a single sample says little)."""
    after = [s for s in samples if s.at >= warmup]
    if len(after) < 8:
        return False, ["too few samples after the warm-up; run longer"]
    quarter = len(after) // 4
    first, last = after[:quarter], after[-quarter:]
    lines = []
    rss0, rss1 = max(s.rss for s in first), max(s.rss for s in last)
    rss_ok = rss1 <= max(rss0 * 1.10, rss0 + (20 << 20))
    lines.append(
        f"RSS peak, first quarter after warm-up → last quarter: {rss0 / 2**20:.1f} → "
        f"{rss1 / 2**20:.1f} MiB ({(rss1 - rss0) / 2**20:+.1f} MiB): "
        f"{'flat' if rss_ok else 'GROWING'}"
    )
    fd0, fd1 = max(s.fds for s in first), max(s.fds for s in last)
    fds_ok = fd1 <= fd0 + 8
    lines.append(
        f"open fds peak, first quarter after warm-up → last quarter: {fd0} → {fd1}: "
        f"{'flat' if fds_ok else 'GROWING'}"
    )
    return rss_ok and fds_ok, lines


def report(args, samples: list[Sample], tally: Tally, ok: bool, lines: list[str], log: Path) -> str:
    minutes = samples[-1].at / 60 if samples else 0
    out = [
        f"## Soak: bench/soak.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"- command: `{' '.join(['.venv/bin/python', 'bench/soak.py', *sys.argv[1:]])}`",
        f"- the demo site (DEBUG off) on `ferrule --workers 2`, {args.clients} client threads, "
        f"{minutes:.1f} minutes, warm-up {args.warmup} minutes; load average at the end: "
        f"{common.load_average()}",
        "",
        "| kind | completed as expected |",
        "|---|---:|",
    ]
    out += [f"| {k} | {v:,} |" for k, v in sorted(tally.ok.items())]
    out += [
        f"| **all** | **{tally.total():,}** |",
        "",
        f"Unexpected errors: **{len(tally.errors)}**",
    ]
    out += [f"- {e}" for e in tally.errors[:20]]
    out += ["", "| minute | served | errors | RSS (MiB, master + workers) | open fds | processes |"]
    out += ["|---:|---:|---:|---:|---:|---:|"]
    last_minute = -1
    for s in samples:
        minute = int(s.at // 60)
        if minute != last_minute or s is samples[-1]:
            last_minute = minute
            out.append(
                f"| {s.at / 60:.1f} | {s.served:,} | {s.errors} | {s.rss / 2**20:.1f} | {s.fds} "
                f"| {s.processes} |"
            )
    out += ["", *[f"- {line}" for line in lines]]
    result = "PASS" if ok and not tally.errors else "FAIL"
    out += [f"- verdict: **{result}** (zero unexpected errors, RSS and fds flat after warm-up)"]
    out += [f"- server log: {log}", ""]
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30, help="how long (default 30)")
    p.add_argument("--warmup", type=float, default=5, help="minutes before flatness counts (5)")
    p.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
    p.add_argument("--sample", type=float, default=10, help="seconds between samples (10)")
    p.add_argument("--no-build", action="store_true", help="use the ferrule already in .venv")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.no_build:
        common.build_ferrule()
    WORK.mkdir(exist_ok=True)
    log = WORK / "soak-server.log"
    with tempfile.TemporaryDirectory(prefix="ferrule-soak-") as tmp:
        site = prepare_site(Path(tmp))
        port, admin = common.free_port(), common.free_port()
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="soaksettings", PYTHONPATH=str(site))
        argv_ = [PY, "-m", "ferrule", "--workers", "2", "--bind", f"127.0.0.1:{port}"]
        argv_ += ["--stats-bind", f"127.0.0.1:{admin}"]
        argv_ += ["demosite.wsgi:application"]
        with open(log, "w") as logfile:
            proc = subprocess.Popen(
                argv_, cwd=site, env=env, stdout=logfile, stderr=subprocess.STDOUT
            )
        try:
            if (problem := common.wait_for_port(port, proc)) is not None:
                print(f"the server did not start: {problem}; see {log}", file=sys.stderr)
                return 1
            tally = Tally()
            started = time.monotonic()
            until = started + args.minutes * 60
            threads = [
                threading.Thread(target=client_loop, args=(port, until, tally, i), daemon=True)
                for i in range(args.clients)
            ]
            for t in threads:
                t.start()
            samples = []
            next_print = 0.0
            while time.monotonic() < until:
                time.sleep(min(args.sample, max(0.0, until - time.monotonic())))
                s = sample(proc.pid, started, tally)
                samples.append(s)
                if s.at >= next_print:
                    next_print += 60
                    print(
                        f"[soak] {s.at / 60:5.1f} min: {s.served:,} served, {s.errors} errors, "
                        f"RSS {s.rss / 2**20:.1f} MiB, {s.fds} fds, {s.processes} processes",
                        flush=True,
                    )
            for t in threads:
                t.join(60)
            samples.append(sample(proc.pid, started, tally))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        ok, lines = verdict(samples, args.warmup * 60)
        text = report(args, samples, tally, ok, lines, log)
    print(text)
    (WORK / "soak.md").write_text(text)
    return 0 if ok and not tally.errors else 1


if __name__ == "__main__":
    sys.exit(main())
