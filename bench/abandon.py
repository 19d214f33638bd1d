"""Clients that give up: each of N connections sends a request and closes before the answer.

`python bench/abandon.py HOST PORT PATH SECONDS [CLIENTS] [WAIT_MS]` keeps CLIENTS (default
1000) such clients busy for SECONDS: connect, send `GET PATH`, wait WAIT_MS (default 5), close,
repeat. Prints how many requests it abandoned. bench/async.py runs it next to wrk to measure
what abandoned requests cost the clients that stay.
"""

from __future__ import annotations

import asyncio
import sys
import time


async def client(host: str, port: int, request: bytes, wait: float, until: float, count: list):
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        try:
            writer.write(request)
            await writer.drain()
            await asyncio.sleep(wait)
            count[0] += 1
        except OSError:
            pass
        finally:
            writer.close()


async def main(host: str, port: int, path: str, seconds: float, clients: int, wait_ms: float):
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    until = time.monotonic() + seconds
    count = [0]
    await asyncio.gather(
        *(client(host, port, request, wait_ms / 1000, until, count) for _ in range(clients))
    )
    print(f"abandoned {count[0]} requests")


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 4:
        sys.exit(__doc__)
    asyncio.run(
        main(
            args[0],
            int(args[1]),
            args[2],
            float(args[3]),
            int(args[4]) if len(args) > 4 else 1000,
            float(args[5]) if len(args) > 5 else 5.0,
        )
    )
