"""A fixture for the supervisor tests: says which process answered, and misbehaves on demand.

  /            "pid PID VERSION" (VERSION from the file in $PROCAPP_VERSION_FILE, read at import)
  /slow?secs=S sleeps S seconds in small steps (cancellable), then answers; with `tag=T` it
  first records `procapp slow started tag=T`
  /leak?mb=N   keeps N more megabytes alive for the life of the process
  /stuck       sleeps an hour in one C call that cancellation cannot interrupt
  /thread      the name Python gives the thread that runs the request
  /touch?path=P  creates the file P (the --umask test) and answers its mode in octal
  /ids         "UID GID GROUPS" of the process (the --user test), groups comma-separated

With PROCAPP_FAIL_IMPORT=1 the module raises at import; with PROCAPP_IMPORT_GATE=PATH it waits
at import until the file PATH exists; with PROCAPP_FIRST_HANGS=PATH the first process to import
hangs there and the others raise.
"""

import os
import threading
import time
from urllib.parse import parse_qs

if os.environ.get("PROCAPP_FAIL_IMPORT") == "1":
    raise RuntimeError("procapp was told to fail at import")
if _first := os.environ.get("PROCAPP_FIRST_HANGS"):
    # The first process to import hangs in its import; every later one fails.
    try:
        os.close(os.open(_first, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        raise RuntimeError("procapp was told to fail at import") from None
    time.sleep(3600)
if _gate := os.environ.get("PROCAPP_IMPORT_GATE"):
    from _record import wait_for_gate

    wait_for_gate(_gate)

_version_file = os.environ.get("PROCAPP_VERSION_FILE")
VERSION = open(_version_file).read().strip() if _version_file else "v0"  # noqa: SIM115
_kept: list[bytearray] = []


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/slow":
        deadline = time.monotonic() + float(query.get("secs", ["1"])[0])
        if tag := query.get("tag", [None])[0]:
            from _record import record

            record(f"procapp slow started tag={tag}")
        while time.monotonic() < deadline:
            time.sleep(0.01)
    elif path == "/leak":
        block = bytearray(int(query.get("mb", ["1"])[0]) << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1  # touch every page so it is resident
        _kept.append(block)
    elif path == "/stuck":
        time.sleep(3600)
    body = f"pid {os.getpid()} {VERSION}".encode()
    if path == "/thread":
        body = threading.current_thread().name.encode()
    if path == "/ids":
        groups = ",".join(str(g) for g in sorted(os.getgroups()))
        body = f"{os.getuid()} {os.getgid()} {groups}".encode()
    if path == "/touch":
        created = query["path"][0]
        with open(created, "w"):
            pass
        body = oct(os.stat(created).st_mode & 0o777).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
