"""A plain WSGI app (no framework) that tests/smoke/smoke.py serves with `ferrule hello:app`."""


def app(environ, start_response):
    body = b"hello from wsgi"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
