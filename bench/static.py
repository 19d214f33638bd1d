"""Benchmark static files and HTTP/2 over TLS: ferrule against nginx, granian and WhiteNoise.

`make bench-static` (or `.venv/bin/python bench/static.py --help`). Two parts, in one run:

1. Static files (wrk -t2 -c64): a 10 KB and a 1 MB file under /static/, served by ferrule
   (`--static`), by nginx directly (the physical reference: `sendfile`, one worker process), by
   granian's static mount, and by WhiteNoise in the Django app under gunicorn (sync, one
   worker) — one process each.
2. HTTP/2 over TLS (h2load -c32 -m10): ferrule and granian on the Django app's /plain and on the
   10 KB static file, with the same self-signed EC certificate.

Servers, rounds, medians and logs work as in bench/run.py (whose helpers this reuses); the
tables also go to bench/_work/static.md. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as common  # noqa: E402  (bench/run.py: shared helpers)
from run import APP, APP_DIR, PY, WORK, Result, ServerConfig, Workload  # noqa: E402

STATIC = WORK / "static"
TLS = WORK / "tls"
FILES = {"10k.bin": 10 * 1024, "1m.bin": 1024 * 1024}

WORKLOADS = {
    "10k": Workload("10k", "/static/10k.bin", "10 KB static file", expect_length=10 * 1024),
    "1m": Workload("1m", "/static/1m.bin", "1 MB static file", expect_length=1024 * 1024),
}


def nginx_conf(port: int) -> Path:
    """An nginx config serving STATIC at /static/ with one worker, written into WORK."""
    conf = WORK / f"nginx-{port}.conf"
    temp = WORK / "nginx-temp"
    temp.mkdir(parents=True, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"""{user}worker_processes 1;
daemon off;
pid {WORK}/nginx-{port}.pid;
error_log {WORK}/logs/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ application/octet-stream bin; }}
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /static/ {{ alias {STATIC}/; }}
    }}
}}
"""
    )
    return conf


STATIC_SERVERS = {
    s.name: s
    for s in [
        ServerConfig(
            "ferrule",
            "ferrule --static",
            [PY, "-m", "ferrule", "--bind", "127.0.0.1:{port}", "--static", f"/static/={STATIC}"]
            + [APP],
        ),
        ServerConfig("nginx", "nginx (1 worker, sendfile)", ["nginx", "-c", "{nginx_conf}"]),
        ServerConfig(
            "granian",
            "granian --static-path-mount",
            [PY, "-m", "granian", "--interface", "wsgi", "--workers", "1"]
            + ["--host", "127.0.0.1", "--port", "{port}", "--static-path-route", "/static"]
            + ["--static-path-mount", str(STATIC), APP],
        ),
        ServerConfig(
            "whitenoise",
            "WhiteNoise under gunicorn sync -w 1",
            [PY, "-m", "gunicorn", "-w", "1", "-k", "sync", "-b", "127.0.0.1:{port}"]
            + ["benchapp.whitenoise_wsgi:application"],
        ),
    ]
}

H2_SERVERS = {
    s.name: s
    for s in [
        ServerConfig(
            "ferrule",
            "ferrule (TLS, HTTP/2 by ALPN)",
            [PY, "-m", "ferrule", "--bind", "127.0.0.1:{port}", "--static", f"/static/={STATIC}"]
            + ["--certfile", str(TLS / "cert.pem"), "--keyfile", str(TLS / "key.pem"), APP],
        ),
        ServerConfig(
            "granian",
            "granian --http 2 (TLS)",
            [PY, "-m", "granian", "--interface", "wsgi", "--workers", "1", "--http", "2"]
            + ["--host", "127.0.0.1", "--port", "{port}", "--static-path-route", "/static"]
            + ["--static-path-mount", str(STATIC)]
            + ["--ssl-certificate", str(TLS / "cert.pem"), "--ssl-keyfile", str(TLS / "key.pem")]
            + ["--ssl-protocol-min", "tls1.2", APP],
        ),
    ]
}

H2_PATHS = {"plain": "/plain", "10k": "/static/10k.bin"}


# --- setup -------------------------------------------------------------------------------------


def ensure_tools() -> None:
    common.ensure_wrk()
    common.ensure_peers()
    if not common._installed("whitenoise"):
        common.log(f"installing whitenoise into {sys.prefix}")
        subprocess.run([PY, "-m", "pip", "install", "-q", "whitenoise"], check=True)
    missing = [
        pkg
        for tool, pkg in (("nginx", "nginx"), ("h2load", "nghttp2-client"))
        if not shutil.which(tool)
    ]
    if missing:
        if os.geteuid() != 0:
            sys.exit(
                f"missing {' '.join(missing)}: run `sudo apt-get install -y {' '.join(missing)}`"
            )
        common.log(f"installing {' '.join(missing)} from Debian")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)


def make_files() -> None:
    STATIC.mkdir(parents=True, exist_ok=True)
    for name, size in FILES.items():
        path = STATIC / name
        if not path.exists() or path.stat().st_size != size:
            path.write_bytes(os.urandom(size))
    TLS.mkdir(parents=True, exist_ok=True)
    if not (TLS / "cert.pem").exists():
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
            + ["-nodes", "-days", "30", "-subj", "/CN=localhost", "-addext"]
            + ["subjectAltName=DNS:localhost,IP:127.0.0.1"]
            + ["-keyout", str(TLS / "key.pem"), "-out", str(TLS / "cert.pem")],
            check=True,
            capture_output=True,
        )


def concrete(server: ServerConfig, port: int) -> ServerConfig:
    """The server's argv with the port (and nginx's config file) filled in."""
    conf = str(nginx_conf(port)) if server.name == "nginx" else ""
    argv = [a.replace("{port}", str(port)).replace("{nginx_conf}", conf) for a in server.argv]
    return ServerConfig(server.name, server.label, argv)


def run_static(server: ServerConfig, w: Workload, seconds: float, env: dict, tag: str) -> Result:
    # nginx's config file must name the port, so pick it here rather than in run_one.
    port = common.free_port()
    return common.run_one(concrete(server, port), w, seconds, env, tag, port=port)


_H2_DONE = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded")
_H2_TIME = re.compile(r"finished in ([\d.]+)s")


def run_h2(server: ServerConfig, name: str, seconds: float, env: dict, tag: str) -> Result:
    result = Result(server.name, f"h2-{name}")
    port = common.free_port()
    fixed = concrete(server, port)
    logfile = WORK / "logs" / f"h2-{name}-{server.name}{tag}.log"
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            fixed.argv,
            cwd=APP_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sampler = common.RssSampler(proc.pid)
    sampler.start()
    try:
        failure = common.wait_for_port(port, proc)
        if failure:
            result.note = failure
            return result
        url = f"https://127.0.0.1:{port}{H2_PATHS[name]}"
        argv = ["h2load", "-t2", "-c32", "-m10", "-D", f"{seconds:g}", "--warm-up-time", "1", url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
        (WORK / "logs" / f"h2-{name}-{server.name}{tag}.h2load").write_text(
            done.stdout + done.stderr
        )
        counts, took = _H2_DONE.search(done.stdout), _H2_TIME.search(done.stdout)
        if not counts or not took:
            result.note = "h2load printed no summary"
            return result
        total, succeeded = int(counts.group(1)), int(counts.group(4))
        result.rps = succeeded / float(took.group(1))
        result.errors = total - succeeded
        if "h2" not in done.stdout.split("Application protocol:")[-1][:8]:
            result.note = "did not negotiate h2"
    finally:
        result.peak_rss = sampler.stop() or None
        common.stop_server(proc)
    return result


# --- report ------------------------------------------------------------------------------------


def table(title: str, labels: dict[str, str], results: list[Result]) -> str:
    ours = next((r.rps for r in results if r.server == "ferrule"), None)
    lines = [
        f"### {title}",
        "",
        "| server | req/s median (min–max) | p99 | errors | peak RSS | ferrule ÷ this |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        label = labels[r.server] + (f" ({r.note})" if r.note else "")
        rss = f"{r.peak_rss / 2**20:,.0f} MiB" if r.peak_rss else "—"
        ratio = "—" if r.server == "ferrule" else common.fmt_ratio(ours, r.rps)
        lines.append(
            f"| {label} | {common.fmt_rps_spread(r)} | {common.fmt_ms(r.p99_ms)} | {r.errors:,} "
            f"| {rss} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def targets(static: dict[str, list[Result]]) -> str:
    def rps(server: str) -> float | None:
        return next((r.rps for r in static.get("10k", []) if r.server == server), None)

    rows = []
    for peer, goal in (("nginx", 0.8), ("whitenoise", 5.0)):
        ours, theirs = rps("ferrule"), rps(peer)
        if ours is None or not theirs:
            measured, verdict = "—", "not measured"
        else:
            measured = f"{ours / theirs:.2f}× ({common.fmt_rps(ours)} vs {common.fmt_rps(theirs)})"
            verdict = "PASS" if ours >= goal * theirs else "MISS"
        label = STATIC_SERVERS[peer].label
        rows.append(f"| 10 KB: ferrule ÷ {label} | ≥ {goal:.2f}× | {measured} | {verdict} |")
    head = ["### Targets", "", "| check | target | measured | result |", "|---|---|---|---|"]
    return "\n".join(head + rows) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, help="seconds of load per run (default 10)")
    p.add_argument("--rounds", type=int, metavar="N", help="runs per server (default 3)")
    p.add_argument("--quick", action="store_true", help="3 s runs, 1 round: a smoke test")
    p.add_argument("--no-build", action="store_true", help="use the ferrule already in the venv")
    p.add_argument("--no-h2", action="store_true", help="skip the HTTP/2 over TLS part")
    p.add_argument(
        "--servers", metavar="A,B", help=f"subset of: {','.join(STATIC_SERVERS)} (default all)"
    )
    args = p.parse_args(argv)
    args.servers = args.servers.split(",") if args.servers else list(STATIC_SERVERS)
    unknown = [s for s in args.servers if s not in STATIC_SERVERS]
    if unknown:
        p.error(f"--servers: unknown {', '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seconds = args.duration or (3.0 if args.quick else 10.0)
    rounds = args.rounds or (1 if args.quick else 3)
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    ensure_tools()
    make_files()
    if "ferrule" in args.servers and not args.no_build:
        common.build_ferrule()
    report = [
        common.header(argparse.Namespace(), seconds, rounds).replace(
            "bench/run.py", "bench/static.py"
        )
    ]
    with tempfile.TemporaryDirectory(prefix="ferrule-bench-") as tmp:
        env = common.app_env(tmp, BENCH_STATIC_DIR=str(STATIC))
        static: dict[str, list[Result]] = {}
        for name, w in WORKLOADS.items():
            runs: dict[str, list[Result]] = {s: [] for s in args.servers}
            for i in range(rounds):
                for s in common.round_order(args.servers, i):
                    r = run_static(STATIC_SERVERS[s], w, seconds, env, f"-r{i + 1}")
                    common.log(f"{name} round {i + 1}: {s}: {common.fmt_rps(r.rps)} req/s {r.note}")
                    runs[s].append(r)
            static[name] = [common.summarize(runs[s]) for s in args.servers]
            labels = {s: STATIC_SERVERS[s].label for s in args.servers}
            report.append(table(f"{w.path} — {w.description} (wrk -t2 -c64)", labels, static[name]))
        report.append(targets(static))
        h2_servers = [s for s in H2_SERVERS if s in args.servers]
        for name in [] if args.no_h2 else H2_PATHS:
            runs = {s: [] for s in h2_servers}
            for i in range(rounds):
                for s in common.round_order(h2_servers, i):
                    r = run_h2(H2_SERVERS[s], name, seconds, env, f"-r{i + 1}")
                    common.log(
                        f"h2 {name} round {i + 1}: {s}: {common.fmt_rps(r.rps)} req/s {r.note}"
                    )
                    runs[s].append(r)
            results = [common.summarize(runs[s]) for s in h2_servers]
            labels = {s: H2_SERVERS[s].label for s in h2_servers}
            title = f"HTTP/2 over TLS: {H2_PATHS[name]} (h2load -t2 -c32 -m10)"
            report.append(table(title, labels, results))
    text = "\n".join(report)
    print(text)
    (WORK / "static.md").write_text(text)
    common.log(f"written to {WORK / 'static.md'}; logs in {WORK / 'logs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
