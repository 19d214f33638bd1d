"""Large responses that leave the worker thread at once: the core alone sends them.

  /list?mb=M        M MiB (default 16) of b"x" as one bytes object in a list, with
                    Content-Length (what Django's HttpResponse becomes)
  /file?path=P      the file at P through wsgi.file_wrapper, with Content-Length
  anything else     answers `ok`

Importing it sets the `ferrule` logger to DEBUG, so tests can read the server's debug lines.
"""

import logging
import os

from _record import param

logging.getLogger("ferrule").setLevel(logging.DEBUG)

MIB = 1 << 20


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/list":
        body = b"x" * (int(param(environ, "mb", "16")) * MIB)
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/file":
        name = param(environ, "path")
        start_response("200 OK", [("Content-Length", str(os.path.getsize(name)))])
        return environ["wsgi.file_wrapper"](open(name, "rb"))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


application = app
