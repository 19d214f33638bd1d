"""Send a file with environ['wsgi.file_wrapper'].

Query parameters:
  path=PATH      the file to send (required)
  cl=size        declare Content-Length as the file's size; cl=N declares N (the server must
                 then send exactly N bytes)
  nofileno=1     wrap the file in an object with read() and close() but no fileno(), so the
                 server has to fall back to iterating it
  blksize=N      pass a block size to the wrapper

Closing the file prints `fixture: filewrap close() called` (the server must close the
wrapper, which closes the file).
"""

import io
import os

from _record import param, record


class RecordingFile(io.FileIO):
    def close(self):
        if not self.closed:
            record("filewrap close() called")
        super().close()


class NoFileno:
    """A file-like object with no fileno(), like a BytesIO or a storage backend's stream."""

    def __init__(self, f):
        self._f = f

    def read(self, size=-1):
        return self._f.read(size)

    def close(self):
        self._f.close()


def app(environ, start_response):
    path = param(environ, "path")
    f = RecordingFile(path, "rb")
    headers = [("Content-Type", "application/octet-stream")]
    cl = param(environ, "cl")
    if cl is not None:
        headers.append(("Content-Length", str(os.path.getsize(path)) if cl == "size" else cl))
    start_response("200 OK", headers)
    filelike = NoFileno(f) if param(environ, "nofileno") == "1" else f
    blksize = param(environ, "blksize")
    wrapper = environ["wsgi.file_wrapper"]
    if blksize is not None:
        return wrapper(filelike, int(blksize))
    return wrapper(filelike)


application = app
