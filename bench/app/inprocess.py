"""The in-process reference: the Django WSGI app called in a loop, no sockets, one thread.

`python inprocess.py WORKLOAD SECONDS` prints one JSON line {"requests": N, "seconds": S,
"cpu_ns": C, "app_ns": A}. It is the ceiling a server could reach if its own overhead were zero
(for /sleep, one thread sleeping 50 ms per request, i.e. about 20 req/s). `cpu_ns` is the
thread's CPU time over the loop; `app_ns` the CPU time per request of the application's call and
close(), measured as ferrule measures it with FERRULE_COST_SAMPLE (src/wsgi/cost.rs): one
request in 16, less one clock read.
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
    "stream": ("GET", "/stream", b""),
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

    clock = time.thread_time_ns
    reads = 2000
    first = clock()
    for _ in range(reads):
        last = clock()
    clock_cost = (last - first) / reads
    sampled = app_ns = 0

    count = 0
    start = time.perf_counter()
    cpu_start = clock()
    deadline = start + seconds
    while True:
        sample = count % 16 == 0
        env = environ(method, path, body)
        if sample:
            entered = clock()
        result = app(env, start_response)
        if sample:
            app_ns += clock() - entered
        try:
            for _ in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                if sample:
                    entered = clock()
                close()
                if sample:
                    app_ns += clock() - entered
        if sample:
            sampled += 1
        if not statuses[-1].startswith("200"):
            sys.exit(f"{workload}: the app answered {statuses[-1]!r}")
        statuses.clear()
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    cpu_ns = clock() - cpu_start
    result = {"requests": count, "seconds": now - start, "cpu_ns": cpu_ns}
    result["app_ns"] = app_ns / sampled - clock_cost
    print(json.dumps(result))


if __name__ == "__main__":
    main()
