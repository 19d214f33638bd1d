"""A raw ASGI 3 application for the WebSocket tests (no framework).

  /echo           accepts (subprotocol "chat" when offered, header x-fixture: yes), echoes
                  text and bytes until the client leaves; prints
                  'fixture: ws disconnect code=C tag=T' with the disconnect's code
  /scope          accepts, sends the scope as JSON, then echoes
  /deny           closes before accepting (403)
  /deny-custom    answers with a 401 response of its own (websocket.http.response)
  /close?code=C&reason=R   accepts, then closes with C and R
  /return         accepts, then returns (the server closes with 1000)
  /raise-before   raises before accepting (500)
  /raise-after    accepts, then raises (1011)
  /flood?n=N      accepts, sends N binary messages of 64 KiB; prints 'fixture: flood sent=K'
                  every 16 and 'fixture: flood done' at the end, or 'fixture: flood stopped
                  sent=K E' when a send raises E
  /slow           accepts, then reads one message every 25 ms, sending each back
  /hold           accepts and waits for the disconnect, then half a second of cleanup
                  ('fixture: ws cleanup done tag=T'; the shutdown test)
  /tasks          echoes with receive() and send() wrapped in tasks, as Channels does
Any WebSocket path takes ?label=L: the socket's statistics route (scope["ferrule.request"].label).
WebSocket paths are routed without the scope's root_path and, under /ws/, without that too
(/app/ws/close is /close behind docs/deploy-nginx.md's `--prefix /app` and `location /app/ws/`).

HTTP:
  /http-scope     the scope of the request as JSON
  /page           an HTML page whose script, once loaded, opens a WebSocket to /scope?tag=page
                  on the page's own origin, sends "über h2" after the scope, closes with
                  4000 once it is echoed, and shows in <html data-*> what happened: state
                  (open, echoed, error, closed C), scope (the scope's JSON) and echo
Other HTTP paths answer "hello".
"""

import asyncio
import json
import sys
from urllib.parse import parse_qs

from asgiapp import text

PAGE = b"""<!doctype html>
<meta charset="utf-8">
<title>wsapp</title>
<script>
addEventListener("load", () => {
  const seen = document.documentElement.dataset;
  const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/scope?tag=page");
  ws.onopen = () => { seen.state = "open"; };
  ws.onmessage = (e) => {
    if (seen.scope === undefined) {
      seen.scope = e.data;
      ws.send("\u00fcber h2");
    } else {
      seen.echo = e.data;
      seen.state = "echoed";
      ws.close(4000, "page done");
    }
  };
  ws.onerror = () => { seen.state = "error"; };
  ws.onclose = (e) => { if (seen.state !== "echoed") seen.state = "closed " + e.code; };
});
</script>
"""


def route(scope):
    """The path a WebSocket is routed on: without the root path the application is mounted
    at (as frameworks do) and without a leading /ws (as a Channels project's ws/ patterns)."""
    path = scope["path"].removeprefix(scope["root_path"])
    return path.removeprefix("/ws") if path.startswith("/ws/") else path


def say(line):
    print(f"fixture: {line}", flush=True)
    sys.stdout.flush()


async def echo(receive, send, tag):
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            say(f"ws disconnect code={message['code']} tag={tag}")
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def websocket(scope, receive, send):
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    tag = query.get("tag", "-")
    path = route(scope)
    connect = await receive()
    assert connect["type"] == "websocket.connect", connect
    if "label" in query:
        # The route ferrule's statistics count the socket under.
        scope["ferrule.request"].label = query["label"]
    if path == "/deny":
        await send({"type": "websocket.close"})
        return
    if path == "/deny-custom":
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"x-denied", b"yes")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})
        return
    if path == "/raise-before":
        raise RuntimeError("refusing by raising")
    accept = {"type": "websocket.accept", "headers": [(b"x-fixture", b"yes")]}
    if "chat" in scope["subprotocols"]:
        accept["subprotocol"] = "chat"
    await send(accept)
    if path == "/scope":
        await send({"type": "websocket.send", "text": json.dumps(text(scope))})
        await echo(receive, send, tag)
    elif path == "/close":
        code = int(query.get("code", "1000"))
        await send({"type": "websocket.close", "code": code, "reason": query.get("reason", "")})
    elif path == "/return":
        return
    elif path == "/raise-after":
        raise RuntimeError("failing after accepting")
    elif path == "/flood":
        n = int(query.get("n", "1000"))
        chunk = b"x" * 65536
        for i in range(n):
            try:
                await send({"type": "websocket.send", "bytes": chunk})
            except OSError as e:
                say(f"flood stopped sent={i} {type(e).__name__}")
                return
            if i % 16 == 0:
                say(f"flood sent={i}")
        say("flood done")
    elif path == "/slow":
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await asyncio.sleep(0.025)
            await send({"type": "websocket.send", "text": message.get("text") or "?"})
    elif path == "/hold":
        message = await receive()
        say(f"ws disconnect code={message.get('code')} tag={tag}")
        await asyncio.sleep(0.5)  # cleanup, as a Channels consumer leaves its groups
        say(f"ws cleanup done tag={tag}")
    elif path == "/tasks":
        # As Channels does: receive() wrapped in a task.
        while True:
            message = await asyncio.ensure_future(receive())
            if message["type"] == "websocket.disconnect":
                return
            await asyncio.ensure_future(send({"type": "websocket.send", "text": message["text"]}))
    else:
        await echo(receive, send, tag)


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
    elif scope["type"] == "http":
        if scope["path"] == "/http-scope":
            body, kind = json.dumps(text(scope)).encode(), b"application/json"
        elif scope["path"] == "/page":
            body, kind = PAGE, b"text/html; charset=utf-8"
        else:
            body, kind = b"hello", b"text/plain"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", kind)],
            }
        )
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
