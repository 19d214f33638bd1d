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


def db_connections(environ, start_response):
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
    body = json.dumps({"recorded": recorded, "open": still_open}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
