"""Idle WebSockets: the server's memory per open connection (issue 14).

`.venv/bin/python bench/ws_idle.py [--count N] [--servers ferrule,uvicorn,...]`. Each server
serves tests/apps/wsapp.py (`/echo`, raw ASGI) as one process; a client in another process
opens N WebSockets (in batches), has each echo one message, then holds them all idle. The
server's RSS (from /proc) before the first connection and with all N open gives the cost per
connection. Run with the client offering permessage-deflate (what browsers do) and without.

The file-descriptor limit is raised to the hard limit (`ulimit -Hn`) here and in the client;
the servers inherit it. 10,000 sockets need 10,000 descriptors on each side, and as many
ephemeral ports of 127.0.0.1 (net.ipv4.ip_local_port_range is 28,000 wide by default).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as common  # noqa: E402  (bench/run.py: shared helpers)
from run import PY, ROOT, WORK  # noqa: E402

APPS = ROOT / "tests" / "apps"
SERVERS = {
    "ferrule": [PY, "-m", "ferrule", "--bind", "127.0.0.1:{port}", "--no-access-log", "wsapp:app"],
    "uvicorn": [PY, "-m", "uvicorn", "--port", "{port}", "--no-access-log", "wsapp:app"],
    "granian": [PY, "-m", "granian", "--interface", "asgi", "--port", "{port}", "wsapp:app"],
    "daphne": [PY, "-m", "daphne", "-p", "{port}", "-v", "0", "wsapp:app"],
    "hypercorn": [PY, "-m", "hypercorn", "-b", "127.0.0.1:{port}", "wsapp:app"],
}

# The client: open `count` sockets 200 at a time, one echo each, then report and hold.
CLIENT = textwrap.dedent(
    """
    import asyncio, resource, sys
    from websockets.asyncio.client import connect

    async def main(port, count, compress):
        kw = {} if compress else {"compression": None}
        sockets = []
        while len(sockets) < count:
            batch = min(200, count - len(sockets))
            sockets += await asyncio.gather(*(
                connect(f"ws://127.0.0.1:{port}/echo", open_timeout=60, ping_interval=None, **kw)
                for _ in range(batch)
            ))
            print(f"opened {len(sockets)}", flush=True)
        for s in sockets:
            await s.send("hello")
            assert await s.recv() == "hello"
        print("open", flush=True)
        await asyncio.sleep(3600)

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"))
    """
)


def rss_kib(pid: int) -> int:
    """RSS of `pid` and its children (granian and hypercorn run the app in a child)."""
    total = 0
    for p in common.process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def measure(name: str, count: int, compress: bool) -> tuple[int, int] | str:
    """RSS in KiB before and with `count` sockets open, or why they could not be opened."""
    port = common.free_port()
    argv = [a.replace("{port}", str(port)) for a in SERVERS[name]]
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    with open(WORK / "logs" / f"ws-idle-{name}.log", "wb") as out:
        server = subprocess.Popen(argv, cwd=APPS, stdout=out, stderr=subprocess.STDOUT)
    client = None
    try:
        why = common.wait_for_port(port, server)
        if why is not None:
            return why
        time.sleep(1)
        before = rss_kib(server.pid)
        client = subprocess.Popen(
            [PY, "-c", CLIENT, str(port), str(count), "1" if compress else "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        opened = "0"
        for line in client.stdout or ():
            if line.startswith("opened "):
                opened = line.split()[1]
            elif line.strip() == "open":
                break
        else:
            # The client's error is on stderr, the server's log in bench/_work/logs.
            return f"the client opened {opened} of {count:,} sockets, then failed"
        time.sleep(2)
        return before, rss_kib(server.pid)
    finally:
        for p in (client, server):
            if p is not None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--servers", default=",".join(SERVERS))
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < args.count + 100:
        parser.error(f"--count {args.count} needs more file descriptors than `ulimit -Hn` {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    names = [n for n in args.servers.split(",") if n]
    columns = ["server", "client compression", "RSS before", f"RSS with {args.count:,} open"]
    print("| " + " | ".join([*columns, "per socket"]) + " |")
    print("|---|---|---:|---:|---:|")
    for compress in (True, False):
        for name in names:
            got = measure(name, args.count, compress)
            on = "offered" if compress else "none"
            if isinstance(got, str):
                print(f"| {name} | {on} | — | {got} | — |", flush=True)
                continue
            before, after = got
            per = (after - before) / args.count
            print(
                f"| {name} | {on} | {before / 1024:.0f} MiB | {after / 1024:.0f} MiB "
                f"| {per:.1f} KiB |",
                flush=True,
            )


if __name__ == "__main__":
    main()
