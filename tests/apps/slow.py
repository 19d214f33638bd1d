"""Sleep for ?s=SECONDS (default 1), then answer `slept S`.

Prints `fixture: slow started tag=T` before sleeping and `fixture: slow finished tag=T`
after, so tests know a request is in flight without sleeping themselves.
"""

import time

from _record import param, record


def app(environ, start_response):
    seconds = float(param(environ, "s", "1"))
    tag = param(environ, "tag", "-")
    record(f"slow started tag={tag}")
    time.sleep(seconds)
    record(f"slow finished tag={tag}")
    body = f"slept {param(environ, 's', '1')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


application = app
