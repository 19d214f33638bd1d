"""An application that says when it is called, for tests proving static files never reach it.

Every call prints `fixture: staticprobe called METHOD PATH`.
  /block?until=FILE  prints `fixture: staticprobe blocking`, then holds its thread until FILE
                     exists (at most 60 s), and answers `released`
  anything else      answers `app: PATH`
"""

import os
import time

from _record import param, record


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    record(f"staticprobe called {environ['REQUEST_METHOD']} {path}")
    if path == "/block":
        until = param(environ, "until")
        record("staticprobe blocking")
        deadline = time.monotonic() + 60
        while not os.path.exists(until) and time.monotonic() < deadline:
            time.sleep(0.01)
        body = b"released"
    else:
        body = f"app: {path}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


application = app
