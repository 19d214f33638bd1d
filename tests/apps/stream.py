"""A streamed response: an iterator the server must send as it is produced.

Query parameters:
  n=N, size=S    N chunks of S bytes (defaults 5 and 10); chunk i is the letter
                 chr(65 + i % 26) repeated S times
  delay=SECONDS  sleep between chunks
  gate=PATH      before each chunk after the first, wait until the file PATH exists (the
                 test decides when the rest comes)
  empties=1      yield an empty chunk before every chunk (must not end the response)
  cl=1           declare Content-Length (N * S)
  declare=L      declare Content-Length: L whatever is produced (a lying app)
  mb=M           instead: M MiB of b"x", produced lazily one MiB at a time (mb=1024 is 1 GiB)
  tag=T          names this response in the `fixture: stream ...` lines on stderr

close() prints `fixture: stream close() called tag=T`; the first chunk prints
`fixture: stream started tag=T`.
"""

import time

from _record import param, record, wait_for_gate

MIB = 1 << 20


class Body:
    def __init__(self, tag: str, chunks):
        self.tag = tag
        self.chunks = chunks
        self.started = False

    def __iter__(self):
        return self

    def __next__(self):
        if not self.started:
            self.started = True
            record(f"stream started tag={self.tag}")
        return next(self.chunks)

    def close(self):
        record(f"stream close() called tag={self.tag}")


def letters(n: int, size: int, delay: float, empties: bool, gate: str | None):
    for i in range(n):
        if delay and i:
            time.sleep(delay)
        if gate and i:
            wait_for_gate(gate)
        if empties:
            yield b""
        yield bytes([65 + i % 26]) * size


def mebibytes(m: int):
    block = b"x" * MIB
    for _ in range(m):
        yield block


def app(environ, start_response):
    tag = param(environ, "tag", "-")
    headers = [("Content-Type", "application/octet-stream")]
    mb = param(environ, "mb")
    if mb is not None:
        chunks = mebibytes(int(mb))
        length = int(mb) * MIB
    else:
        n = int(param(environ, "n", "5"))
        size = int(param(environ, "size", "10"))
        delay = float(param(environ, "delay", "0"))
        empties = param(environ, "empties") == "1"
        chunks = letters(n, size, delay, empties, param(environ, "gate"))
        length = n * size
    if param(environ, "cl") == "1":
        headers.append(("Content-Length", str(length)))
    elif param(environ, "declare") is not None:
        headers.append(("Content-Length", param(environ, "declare")))
    start_response("200 OK", headers)
    return Body(tag, chunks)


application = app
