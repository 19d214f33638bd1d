"""Echo the request back as JSON: the environ and what the body looked like.

Query parameters:
  read=read|read-none|read-neg|chunks|readline|readline-size|readlines|iter|cl|skip
      how the body is read from wsgi.input (default `read`, i.e. read());
      `chunks` and `readline-size` use n=N (default 8192); `skip` does not read it at all
  status=...     the response status (default "200 OK")
  hdr=Name:Value add a response header (repeatable)
  nocl=1         return the body without Content-Length (as two chunks)
  errors=TEXT    write TEXT and a newline to wsgi.errors

The JSON has `environ` (str values as they are, anything else as repr), `types` (the type
name of every value), `body_len`, `body_sha256`, `body` (latin-1, only when <= 64 KiB) and
`reads` (how many calls the read loop made), `non_str_keys` and `capabilities` (the methods
wsgi.input and wsgi.errors have, and whether wsgi.file_wrapper is callable). With
ECHO_TRACE=1 in the server's environment, each call prints `fixture: echo called METHOD PATH`
to stderr.
"""

import hashlib
import json
import os

from _record import param, query, record

MAX_ECHOED_BODY = 64 * 1024
INPUT_METHODS = ("read", "readline", "readlines", "__iter__")
ERRORS_METHODS = ("write", "writelines", "flush")


def read_body(environ, how: str, n: int):
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    kept = bytearray()
    total = 0
    calls = 0

    def take(data: bytes) -> None:
        nonlocal total
        assert isinstance(data, bytes), f"wsgi.input returned {type(data).__name__}"
        digest.update(data)
        total += len(data)
        if len(kept) <= MAX_ECHOED_BODY:
            kept.extend(data)

    if how == "read":
        take(stream.read())
        calls = 1
    elif how == "read-none":
        take(stream.read(None))
        calls = 1
    elif how == "read-neg":
        take(stream.read(-1))
        calls = 1
    elif how == "cl":
        # What Django's LimitedStream does: never read past CONTENT_LENGTH.
        length = int(environ.get("CONTENT_LENGTH") or 0)
        take(stream.read(length))
        calls = 1
    elif how == "chunks":
        while True:
            calls += 1
            data = stream.read(n)
            assert len(data) <= n, f"read({n}) returned {len(data)} bytes"
            if not data:
                break
            take(data)
    elif how == "readline":
        while True:
            calls += 1
            line = stream.readline()
            if not line:
                break
            take(line)
    elif how == "readline-size":
        while True:
            calls += 1
            line = stream.readline(n)
            assert len(line) <= n, f"readline({n}) returned {len(line)} bytes"
            if not line:
                break
            take(line)
    elif how == "readlines":
        calls = 1
        for line in stream.readlines():
            take(line)
    elif how == "iter":
        for line in stream:
            calls += 1
            take(line)
    elif how == "skip":
        pass
    else:
        raise ValueError(f"unknown read method {how!r}")
    # After the end, every method must keep returning b"".
    if how != "skip":
        assert stream.read() == b"", "read() after EOF returned data"
        assert stream.read(1) == b"", "read(1) after EOF returned data"
        assert stream.readline() == b"", "readline() after EOF returned data"
    return total, digest.hexdigest(), bytes(kept), calls


def describe(value):
    return value if isinstance(value, str) else repr(value)


def app(environ, start_response):
    if os.environ.get("ECHO_TRACE"):
        record(f"echo called {environ['REQUEST_METHOD']} {environ.get('PATH_INFO')}")
    how = param(environ, "read", "read")
    n = int(param(environ, "n", "8192"))
    errors_text = param(environ, "errors")
    if errors_text is not None:
        environ["wsgi.errors"].write(errors_text + "\n")
        environ["wsgi.errors"].flush()
    total, sha, kept, calls = read_body(environ, how, n)
    inp, err = environ["wsgi.input"], environ["wsgi.errors"]
    result = {
        "environ": {k: describe(v) for k, v in environ.items()},
        "types": {k: type(v).__name__ for k, v in environ.items()},
        "body_len": total,
        "body_sha256": sha,
        "body": kept.decode("latin-1") if total <= MAX_ECHOED_BODY else None,
        "reads": calls,
        "non_str_keys": [repr(k) for k in environ if not isinstance(k, str)],
        "capabilities": {
            "wsgi.input": [m for m in INPUT_METHODS if callable(getattr(inp, m, None))],
            "wsgi.errors": [m for m in ERRORS_METHODS if callable(getattr(err, m, None))],
            "wsgi.file_wrapper": callable(environ.get("wsgi.file_wrapper")),
        },
    }
    body = json.dumps(result, sort_keys=True).encode()
    headers = [("Content-Type", "application/json")]
    for h in query(environ).get("hdr", []):
        name, _, value = h.partition(":")
        headers.append((name, value))
    nocl = param(environ, "nocl") == "1"
    if not nocl:
        headers.append(("Content-Length", str(len(body))))
    start_response(param(environ, "status", "200 OK"), headers)
    if nocl:
        half = len(body) // 2
        return [body[:half], body[half:]]
    return [body]


application = app
