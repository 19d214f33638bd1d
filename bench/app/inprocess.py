"""The in-process reference: the Django WSGI app called in a loop, no sockets, one thread.

`python inprocess.py WORKLOAD SECONDS` prints one JSON line {"requests": N, "seconds": S}.
It is the ceiling a server could reach if its own overhead were zero (for /sleep, one thread
sleeping 50 ms per request, i.e. about 20 req/s).
"""

import io
import json
import os
import sys
import time

import django

ONE_MB = b"x" * (1024 * 1024)
REQUESTS = {
    "plain": ("GET", "/plain", b""),
    "template": ("GET", "/template", b""),
    "sleep": ("GET", "/sleep", b""),
    "1mb": ("GET", "/1mb", b""),
    "upload": ("POST", "/upload", ONE_MB),
}


def environ(method: str, path: str, body: bytes) -> dict:
    """What a server would pass for wrk's request (headers as wrk sends them)."""
    env = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if body:
        env["CONTENT_TYPE"] = "application/octet-stream"
        env["CONTENT_LENGTH"] = str(len(body))
    return env


def main() -> None:
    workload, seconds = sys.argv[1], float(sys.argv[2])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchapp.settings")
    django.setup()
    from django.core.wsgi import get_wsgi_application

    app = get_wsgi_application()
    method, path, body = REQUESTS[workload]
    statuses: list[str] = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)
        return lambda data: None

    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        result = app(environ(method, path, body), start_response)
        try:
            for _ in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not statuses[-1].startswith("200"):
            sys.exit(f"{workload}: the app answered {statuses[-1]!r}")
        statuses.clear()
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    print(json.dumps({"requests": count, "seconds": now - start}))


if __name__ == "__main__":
    main()
