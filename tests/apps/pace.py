"""An ASGI app that keeps a request body waiting: it takes the first piece of the body, sleeps
?s=SECONDS (default 3) before taking the rest, and answers the body's length. The server's
reader waits for the application meanwhile, which `--min-rate` must not count against the
client (issue 16).

Prints `fixture: pace asleep tag=T` when it starts sleeping.
"""

import asyncio
from urllib.parse import parse_qs

from _record import record


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    query = parse_qs(scope["query_string"].decode())
    seconds = float(query.get("s", ["3"])[0])
    tag = query.get("tag", ["-"])[0]
    total = 0
    first = True
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        total += len(message["body"])
        if not message["more_body"]:
            break
        if first:
            first = False
            record(f"pace asleep tag={tag}")
            await asyncio.sleep(seconds)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": str(total).encode()})
