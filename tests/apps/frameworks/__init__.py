"""One real application per framework, each with the same routes, for test_frameworks.py.

Every module answers:
  GET/HEAD /hello          a short text/plain body
  POST /upload             {"size", "sha256"} of the body, read the framework's way, and
                           `_common.framing()`: CONTENT_LENGTH and Transfer-Encoding
  POST /form               a multipart form: {"fields": {...}, "files": {name: {"filename",
                           "size", "sha256"}}}
  GET/HEAD /file           the blob (`_common.blob()`) through the framework's file response
                           (wsgi.file_wrapper underneath)
  GET/HEAD /stream         `_common.STREAM` from a generator, without Content-Length
  GET /redirect            302 to /hello as an absolute URL the framework builds
  GET /big                 {"size": len(X-Big)}, and X-Big echoed as a response header
  GET /echo/<segment>      {"segment", "q", "path"} as the framework decodes them
  GET /log?msg=TEXT        TEXT written to wsgi.errors the framework's way
  GET /status?line=L       the status line L, as the app gives it
  GET /boom                raises RuntimeError("boom from <framework>")
"""
