"""Views for the held replies of a saturated pool (src/pool/outbox.rs).

- `/cpu?i=N`: about 1 ms of pure-Python CPU work, then `N DONE`, DONE being
  `time.monotonic()` when the view returned (the clock is shared by every process here);
- `/long?gate=PATH`: pure-Python CPU work, holding the GIL between bytecodes, until the file
  PATH exists (at most 60 s). It records `heldapp long started at T` first.
"""

import os
import time

from _record import answer_text, param, record


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/cpu":
        end = time.thread_time() + 0.001
        while time.thread_time() < end:
            pass
        body = f"{param(environ, 'i', '-')} {time.monotonic()!r}"
    elif path == "/long":
        gate = param(environ, "gate")
        record(f"heldapp long started at {time.monotonic()!r}")
        deadline = time.monotonic() + 60
        while not os.path.exists(gate) and time.monotonic() < deadline:
            for _ in range(10_000):
                pass
        body = "long done"
    else:
        body = None
    return answer_text(start_response, body)
