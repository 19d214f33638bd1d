"""A WSGI app with known delays, for the statistics tests (issue 5): what `/stats.json` and
`/metrics` report must match what these views are known to do.

Routes:
  /work            time.sleep(0.05): 50 ms of processing, none asleep
  /wait?ms=N       ferrule.wait(asyncio.sleep(N / 1000)), default 30 ms: asleep that long (and
                   so processing too); records `wait started` with ?tag=T
  /both            time.sleep(0.05), then ferrule.wait(asyncio.sleep(0.03)): 80 ms, 30 asleep
  /label/NAME      sets environ["ferrule.request"].label = NAME (URL-decoded)
  /status/CODE     answers with that status
  /id              JSON: environ["ferrule.request"].id and HTTP_X_REQUEST_ID
  /block?ms=N      time.sleep(N / 1000) (default 100), or with ?gate=PATH until the file PATH
                   exists; records `block started` and `block finished` with ?tag=T (see
                   _record.py)
  /big             a 100,000-byte body
  /api/..., /other/..., anything else: a short text answer
"""

import asyncio
import json
import time
from urllib.parse import unquote

import ferrule
from _record import param, record, wait_for_gate

BIG = 100_000
WORK_SECONDS = 0.05
WAIT_SECONDS = 0.03

REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    418: "I'm a teapot",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def answer(start_response, body: bytes, status: str = "200 OK", ctype: str = "text/plain"):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/work":
        time.sleep(WORK_SECONDS)
        return answer(start_response, b"worked")
    if path == "/wait":
        ms = param(environ, "ms")
        if ms is not None:
            record(f"wait started tag={param(environ, 'tag', '-')}")
        ferrule.wait(asyncio.sleep(float(ms) / 1000 if ms else WAIT_SECONDS))
        return answer(start_response, b"waited")
    if path == "/both":
        time.sleep(WORK_SECONDS)
        ferrule.wait(asyncio.sleep(WAIT_SECONDS))
        return answer(start_response, b"both")
    if path.startswith("/label/"):
        name = unquote(path[len("/label/") :])
        environ["ferrule.request"].label = name
        return answer(start_response, name.encode())
    if path.startswith("/status/"):
        code = int(path[len("/status/") :])
        status = f"{code} {REASONS.get(code, 'Whatever')}"
        if code in (204, 304):
            start_response(status, [])
            return []
        return answer(start_response, f"status {code}".encode(), status)
    if path == "/id":
        body = {
            "id": environ["ferrule.request"].id,
            "header": environ.get("HTTP_X_REQUEST_ID"),
        }
        return answer(start_response, json.dumps(body).encode(), ctype="application/json")
    if path == "/block":
        ms = float(param(environ, "ms", "100"))
        tag = param(environ, "tag", "-")
        record(f"block started tag={tag}")
        if gate := param(environ, "gate"):
            wait_for_gate(gate)
        else:
            time.sleep(ms / 1000)
        record(f"block finished tag={tag}")
        return answer(start_response, f"blocked {ms:g} ms".encode())
    if path == "/big":
        return answer(start_response, b"b" * BIG, ctype="application/octet-stream")
    return answer(start_response, f"path {path}".encode())


application = app
