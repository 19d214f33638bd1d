"""Did the server close Django's database connections at the end of each request?

`record()` keeps the raw DB-API connection a view used. `db_connections` is a bare WSGI app,
outside Django, so asking does not itself fire `request_started` (which would close stale
connections of its own thread and hide a missing `close()` call): it waits until the recorded
connections are closed, up to a few seconds, and reports how many are still open.
"""

import json
import sqlite3
import threading
import time

_lock = threading.Lock()
_recorded: list[sqlite3.Connection] = []


def record(raw: sqlite3.Connection) -> None:
    with _lock:
        _recorded.append(raw)


def _is_open(raw: sqlite3.Connection) -> bool:
    try:
        raw.total_changes  # noqa: B018 (raises ProgrammingError once closed)
    except sqlite3.ProgrammingError:
        return False
    return True


def report() -> dict:
    """How many connections were recorded and how many are still open, waiting up to a few
    seconds for them to close; forgets them."""
    deadline = time.monotonic() + 5
    while True:
        with _lock:
            still_open = sum(_is_open(raw) for raw in _recorded)
            recorded = len(_recorded)
        if not still_open or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    with _lock:
        _recorded.clear()
    return {"recorded": recorded, "open": still_open}


def db_connections(environ, start_response):
    body = json.dumps(report()).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


async def asgi_db_connections(send) -> None:
    """The same probe for the ASGI application (in a thread: it may wait)."""
    import asyncio

    body = json.dumps(await asyncio.to_thread(report)).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
