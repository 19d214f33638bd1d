"""A one-file Django project for the cancellation tests: views that block, spin, poll and
stream until their request is cancelled, recording what happened to them.

Every event is recorded with `_record.record` (stderr, and the file FERRULE_TEST_CLOSE_LOG
names) as `fixture: EVENT tag=T ...`, so a test asserts what the application saw, not only
what the client got. Views take ?tag=T.

  /gate      records `called`, then waits until the file ?gate=PATH exists; answers `passed`
  /cpu       records `started`, then spins in pure Python until an exception stops it,
             recording `interrupted exc=NAME cancelled=REASON`, which it re-raises; with
             ?for=SECONDS it gives up after that long and records `cpu ran out`
  /poll      reads the body, records `started body=N`, then polls
             `request.META["ferrule.disconnected"]()` until it is true and records
             `saw cancel reason=REASON id=ID` (as the docs tell a view to do)
  /stream    a streamed response, one chunk every 10 ms until cancelled; records `streaming`
             at the first chunk and `stream closed` when Django closes the generator
  /quick     records `called`, answers at once with `ferrule.request`'s attributes as JSON

Django's `request_finished` records `request_finished tag=T` for every request, its
`got_request_exception` (what Sentry listens to) `got_request_exception tag=T`, and
`CancelledRequestMiddleware` (the one docs/cancellation.md shows) records
`middleware caught NAME tag=T` when a view stops with a cancellation exception; with
CANCELAPP_BARE=1 it is left out, and the exception goes down Django's error path.
"""

import json
import os
import threading
import time

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="cancelapp-" + "x" * 40,
    # CANCELAPP_BARE=1: no middleware, so a cancellation reaches Django's error path.
    MIDDLEWARE=[]
    if os.environ.get("CANCELAPP_BARE")
    else [f"{__name__}.CancelledRequestMiddleware"],
    INSTALLED_APPS=[],
    USE_TZ=True,
)
django.setup()

import ferrule  # noqa: E402
from _record import record  # noqa: E402
from django.core.signals import got_request_exception, request_finished  # noqa: E402
from django.http import HttpResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

# Bounds on every wait, so that a broken server cannot leave a thread spinning forever.
LIMIT = 60.0

current = threading.local()


def tag_of(request) -> str:
    current.tag = request.GET.get("tag", "-")
    return current.tag


def reason(request) -> str:
    return str(request.META["ferrule.request"].cancelled)


def on_finished(sender, **kwargs):
    record(f"request_finished tag={getattr(current, 'tag', '-')}")


request_finished.connect(on_finished)


def on_exception(sender, **kwargs):
    record(f"got_request_exception tag={getattr(current, 'tag', '-')}")


got_request_exception.connect(on_exception)


class CancelledRequestMiddleware:
    """A view stopped by a cancellation gets a response nobody reads, instead of going down
    Django's 500 path (an error log line, a mail to ADMINS)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, ferrule.RequestCancelled):
            record(f"middleware caught {type(exception).__name__} tag={current.tag}")
            return HttpResponse(status=499)
        return None


def gate(request):
    tag = tag_of(request)
    record(f"called tag={tag}")
    gate_file = request.GET["gate"]
    deadline = time.monotonic() + LIMIT
    while not os.path.exists(gate_file) and time.monotonic() < deadline:
        time.sleep(0.01)
    return HttpResponse(b"passed")


def cpu(request):
    tag = tag_of(request)
    record(f"started tag={tag}")
    deadline = time.monotonic() + float(request.GET.get("for", LIMIT))
    n = 0
    try:
        while time.monotonic() < deadline:
            n += 1
    except ferrule.RequestCancelled as e:
        record(f"interrupted tag={tag} exc={type(e).__name__} cancelled={reason(request)}")
        raise
    record(f"cpu ran out tag={tag}")
    return HttpResponse(b"done")


def poll(request):
    tag = tag_of(request)
    body = request.body
    record(f"started tag={tag} body={len(body)}")
    disconnected = request.META["ferrule.disconnected"]
    deadline = time.monotonic() + LIMIT
    while not disconnected() and time.monotonic() < deadline:
        time.sleep(0.01)
    ident = request.META["ferrule.request"].id
    record(f"saw cancel tag={tag} reason={reason(request)} id={ident}")
    return HttpResponse(b"nobody reads this")


def stream(request):
    tag = tag_of(request)

    def chunks():
        deadline = time.monotonic() + LIMIT
        try:
            record(f"streaming tag={tag}")
            while time.monotonic() < deadline:
                yield b"x" * 100
                time.sleep(0.01)
        finally:
            record(f"stream closed tag={tag} cancelled={reason(request)}")

    return StreamingHttpResponse(chunks(), content_type="application/octet-stream")


def quick(request):
    record(f"called tag={tag_of(request)}")
    r = request.META["ferrule.request"]
    seen = {
        "id": r.id,
        "method": r.method,
        "path": r.path,
        "cancelled": r.cancelled,
        "asleep": r.asleep,
        "disconnected": request.META["ferrule.disconnected"](),
        "repr": repr(r),
    }
    return HttpResponse(json.dumps(seen).encode(), content_type="application/json")


urlpatterns = [
    path("gate", gate),
    path("cpu", cpu),
    path("poll", poll),
    path("stream", stream),
    path("quick", quick),
]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
