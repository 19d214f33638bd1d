"""A raw ASGI 3 application for the ASGI tests (no framework), and what it saw.

  /            "hello" (one body message)
  /scope       the scope as JSON (bytes as latin-1 text, the request object left out)
  /echo        the request body back, read in as many receive() calls as it came in;
               the number of http.request messages in X-Messages
  /stream?n=N  N chunks of 1 KiB, more_body true until the last
  /slow-read   reads the body one message at a time, sleeping 50 ms between
  /disconnect  waits on receive() after the body; prints 'fixture: asgi disconnect tag=T' when
               it sees http.disconnect, and tries a send after it
  /sleep?s=S   asyncio.sleep(S) then "slept"
  /raise       raises before responding
  /noresponse  returns without responding
  /pathsend    http.response.pathsend of this file
  /state       the lifespan state's 'started' value
  /sse?n=N     N server-sent events, 50 ms apart
  /status?code=C  an empty response with status C
  /trailers    a streamed body announced with trailers=True, then two http.response.trailers
               messages (x-checksum twice, then x-status); ?missing=1 returns without them

Lifespan: startup puts {'started': True} in the state, unless ASGIAPP_LIFESPAN=fail (startup
fails with a message) or =none (raises at the first event, like Django's handler).
"""

import asyncio
import json
import os
from urllib.parse import parse_qs

from _record import record


def text(scope):
    """The scope as JSON-ready data: bytes as latin-1 text, the request object and state left
    out (wsapp.py sends it too)."""

    def plain(v):
        if isinstance(v, bytes):
            return v.decode("latin-1")
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items() if k not in ("ferrule.request", "state")}
        return v

    return plain(scope)


async def respond(send, status, body, headers=()):
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def lifespan(scope, receive, send):
    mode = os.environ.get("ASGIAPP_LIFESPAN", "ok")
    message = await receive()
    assert message["type"] == "lifespan.startup"
    if mode == "none":
        raise RuntimeError("lifespan is not supported here")
    if mode == "fail":
        await send({"type": "lifespan.startup.failed", "message": "the database is not there"})
        return
    scope["state"]["started"] = True
    await send({"type": "lifespan.startup.complete"})
    message = await receive()
    assert message["type"] == "lifespan.shutdown"
    record("asgi lifespan shutdown")
    await send({"type": "lifespan.shutdown.complete"})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    # Routed as frameworks do: without the root path the application is mounted at.
    path = scope["path"].removeprefix(scope["root_path"])
    query = parse_qs(scope["query_string"].decode())
    tag = query.get("tag", ["-"])[0]
    if path == "/":
        return await respond(send, 200, b"hello")
    if path.startswith("/scope"):
        return await respond(send, 200, json.dumps(text(scope)).encode())
    if path == "/echo":
        chunks, messages = [], 0
        while True:
            message = await receive()
            assert message["type"] == "http.request", message
            messages += 1
            chunks.append(message["body"])
            if not message["more_body"]:
                break
        return await respond(send, 200, b"".join(chunks), [(b"x-messages", str(messages).encode())])
    if path == "/stream":
        n = int(query.get("n", ["10"])[0])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(n):
            await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": i < n - 1})
        return
    if path == "/slow-read":
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
            await asyncio.sleep(0.05)
        return await respond(send, 200, str(total).encode())
    if path == "/disconnect":
        message = await receive()
        record(f"asgi body tag={tag} type={message['type']}")
        message = await receive()
        record(f"asgi disconnect tag={tag} type={message['type']}")
        try:
            await respond(send, 200, b"too late")
        except OSError as e:
            record(f"asgi send failed tag={tag} exc={type(e).__name__}")
        return
    if path == "/sleep":
        await asyncio.sleep(float(query.get("s", ["1"])[0]))
        return await respond(send, 200, b"slept")
    if path == "/raise":
        raise ValueError("the ASGI fixture raised before responding")
    if path == "/noresponse":
        return
    if path == "/pathsend":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": os.path.abspath(__file__)})
        return
    if path == "/state":
        return await respond(send, 200, json.dumps(scope.get("state")).encode())
    if path == "/sse":
        n = int(query.get("n", ["3"])[0])
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for i in range(n):
            event = f"data: {i}\n\n".encode()
            await send({"type": "http.response.body", "body": event, "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/status":
        return await respond(send, int(query["code"][0]), b"")
    if path == "/trailers":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"trailer", b"x-checksum, x-status"),
                ],
                "trailers": True,
            }
        )
        await send({"type": "http.response.body", "body": b"part one, ", "more_body": True})
        await send({"type": "http.response.body", "body": b"part two"})
        if "missing" in query:
            return
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"x-checksum", b"abc123"), (b"x-checksum", b"def456")],
                "more_trailers": True,
            }
        )
        await send({"type": "http.response.trailers", "headers": [(b"x-status", b"0")]})
        return
    return await respond(send, 404, b"not found")


application = app
