"""Shared by the fixture apps: make `close()` and other events visible to the tests, and
answer plain text.

Each event is printed to stderr (the server's output, which tests read with
`wait_for_output`) and, when FERRULE_TEST_CLOSE_LOG names a file, appended to it.
"""

import os
import sys
import time


def record(event: str) -> None:
    line = f"fixture: {event}"
    # One write() per line, so that log lines written concurrently cannot split it.
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    path = os.environ.get("FERRULE_TEST_CLOSE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def query(environ) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)


def param(environ, name: str, default: str | None = None) -> str | None:
    values = query(environ).get(name)
    return values[-1] if values else default


def wait_for_gate(path: str, limit: float = 60.0) -> None:
    """Block until the file `path` exists (the test creates it to let the request go on), or
    `limit` seconds have passed, so that a test that never opens the gate cannot leave a
    thread behind for ever. Polled every 10 ms: a file has no event to wait on here."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def answer_text(start_response, body: str | None) -> list[bytes]:
    """A `text/plain` answer of `body` with its Content-Length; `None` is a 404."""
    if body is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
