"""Sleep for ?s=SECONDS (default 1), then answer `slept S`. With ?gate=PATH, wait until the
file PATH exists instead (the test decides when the request ends), then answer `passed`.

Prints `fixture: slow started tag=T` before sleeping and `fixture: slow finished tag=T`
after, so tests know a request is in flight without sleeping themselves.
"""

import time

from _record import param, record, wait_for_gate


def app(environ, start_response):
    seconds = float(param(environ, "s", "1"))
    tag = param(environ, "tag", "-")
    record(f"slow started tag={tag}")
    if gate := param(environ, "gate"):
        wait_for_gate(gate)
    else:
        time.sleep(seconds)
    record(f"slow finished tag={tag}")
    body = b"passed" if gate else f"slept {param(environ, 's', '1')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


application = app
