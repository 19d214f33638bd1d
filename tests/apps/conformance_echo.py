"""Echo what the server handed the application, for the conformance corpus.

The JSON answer has `method`, `raw_uri` (RAW_URI), `request_uri` (REQUEST_URI), `path`
(PATH_INFO), `query` (QUERY_STRING), `protocol` (SERVER_PROTOCOL), `headers` (every `HTTP_*`
key, plus CONTENT_TYPE and CONTENT_LENGTH, as the environ has them) and `body` (base64).

Every call prints `fixture: conformance called METHOD RAW_URI` (`ascii()` of the target) to
stderr before anything else, so a test can tell which requests reached the application.
"""

import base64
import json

from _record import record

WSGI_HEADER_KEYS = ("CONTENT_TYPE", "CONTENT_LENGTH")


def app(environ, start_response):
    record(f"conformance called {environ['REQUEST_METHOD']} {ascii(environ.get('RAW_URI'))}")
    body = environ["wsgi.input"].read()
    headers = {
        key: value
        for key, value in environ.items()
        if key.startswith("HTTP_") or key in WSGI_HEADER_KEYS
    }
    answer = {
        "method": environ["REQUEST_METHOD"],
        "raw_uri": environ.get("RAW_URI"),
        "request_uri": environ.get("REQUEST_URI"),
        "path": environ.get("PATH_INFO"),
        "query": environ.get("QUERY_STRING"),
        "protocol": environ.get("SERVER_PROTOCOL"),
        "headers": headers,
        "body": base64.b64encode(body).decode("ascii"),
    }
    out = json.dumps(answer).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))]
    )
    return [out]
