import asyncio
import hashlib
import threading
import time
from pathlib import Path

import ferrule
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import FileResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from django_site import probes
from django_site.forms import NoteForm
from django_site.models import Note


def notes(request):
    """GET: the form and the latest notes. POST (CSRF-protected): save one, redirect back."""
    form = NoteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        return redirect("/notes/")
    return render(request, "notes.html", {"form": form, "notes": Note.objects.all()[:5]})


def session(request):
    """Count visits in the session and set a cookie with explicit flags."""
    request.session["visits"] = request.session.get("visits", 0) + 1
    response = JsonResponse({"visits": request.session["visits"]})
    response.set_cookie("flavour", "oat", httponly=True, samesite="Strict")
    return response


@csrf_exempt
def upload(request):
    """Size and SHA-256 of the uploaded file named "file"."""
    f = request.FILES["file"]
    digest = hashlib.sha256()
    for chunk in f.chunks():
        digest.update(chunk)
    return JsonResponse(
        {
            "name": f.name,
            "size": f.size,
            "sha256": digest.hexdigest(),
            "kind": type(f).__name__,
            "label": request.POST.get("label"),
        }
    )


def stream(request):
    """`lines` lines; with `gate=PATH`, the rest only once PATH exists, so the client can prove
    it received the first line before the view finished."""
    count = int(request.GET.get("lines", "100"))
    gate = request.GET.get("gate")

    def lines():
        yield "line 1\n"
        if gate:
            deadline = time.monotonic() + 10
            while not Path(gate).exists():
                if time.monotonic() > deadline:
                    yield "gate timed out: the first line was not delivered while streaming\n"
                    return
                time.sleep(0.01)
        for i in range(2, count + 1):
            yield f"line {i}\n"

    return StreamingHttpResponse(lines(), content_type="text/plain")


def stream_error(request):
    def lines():
        yield "first\n"
        raise RuntimeError("stream exploded after the first line")

    return StreamingHttpResponse(lines(), content_type="text/plain")


def file(request):
    path = settings.DATA_DIR / "blob.bin"
    return FileResponse(path.open("rb"), as_attachment=True, filename="blob.bin")


def redirect_to_notes(request):
    return redirect("/notes/")


def boom(request):
    raise RuntimeError("boom from a view")


def uri(request):
    return JsonResponse(
        {
            "uri": request.build_absolute_uri(),
            "host": request.get_host(),
            "port": request.get_port(),
        }
    )


def db(request):
    """Run a query and hand the raw connection to `probes`, which tells whether it got closed.
    With `stream=1` the query runs inside the streamed body."""

    def query() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        probes.record(connection.connection)
        return "queried\n"

    if request.GET.get("stream"):

        def body():
            yield query()

        return StreamingHttpResponse(body(), content_type="text/plain")
    return JsonResponse({"result": query()})


def whoami(request):
    """How the request looks to Django behind a proxy or under a URL prefix."""
    return JsonResponse(
        {
            "is_secure": request.is_secure(),
            "host": request.get_host(),
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "forwarded_proto": request.META.get("HTTP_X_FORWARDED_PROTO"),
            "script_name": request.META.get("SCRIPT_NAME"),
            "path": request.path,
            "path_info": request.path_info,
            "reverse": reverse("whoami"),
            "absolute": request.build_absolute_uri(),
            # Django prefixes a relative STATIC_URL with the script prefix on first access;
            # ferrule must not have read it at start-up.
            "static_url": settings.STATIC_URL,
        }
    )


def to_whoami(request):
    """Redirect by view name, so the Location carries the script prefix."""
    return redirect("whoami")


async def async_where(request):
    """An async view, served under WSGI: the loop and thread it runs on, and the thread a
    thread-sensitive sync_to_async call inside it runs on."""
    sync_thread = await sync_to_async(threading.get_ident, thread_sensitive=True)()
    return JsonResponse(
        {
            "loop": id(asyncio.get_running_loop()),
            "thread": threading.current_thread().name,
            "sync_thread": sync_thread,
            "wsgi_thread": request.META.get("django_site.wsgi_thread"),
        }
    )


def wait_where(request):
    """A sync view that waits on a coroutine with ferrule.wait: where the coroutine ran, and
    where a thread-sensitive sync_to_async call inside it ran."""

    async def where():
        sync_thread = await sync_to_async(threading.get_ident, thread_sensitive=True)()
        return id(asyncio.get_running_loop()), threading.current_thread().name, sync_thread

    loop, thread, sync_thread = ferrule.wait(where())
    return JsonResponse(
        {
            "loop": loop,
            "thread": thread,
            "sync_thread": sync_thread,
            "wsgi_thread": threading.get_ident(),
        }
    )


def thread(request):
    """A sync view: the thread it runs on and the database connection it used (under ASGI, a
    ferrule pool thread leased for the request, and one connection per thread kept with
    CONN_MAX_AGE)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse(
        {
            "asgi": hasattr(request, "scope"),
            "thread": threading.current_thread().name,
            "ident": threading.get_ident(),
            "connection": id(connection.connection),
        }
    )


async def async_sleep(request):
    """An async view that sleeps ?s= seconds; says when it was cancelled (the client left)."""
    tag = request.GET.get("tag", "-")
    print(f"fixture: async view started tag={tag}", flush=True)
    try:
        await asyncio.sleep(float(request.GET.get("s", "1")))
    except asyncio.CancelledError:
        print(f"fixture: async view cancelled tag={tag}", flush=True)
        raise
    return JsonResponse({"slept": True, "thread": threading.current_thread().name})


async def async_events(request):
    """Server-sent events from an async iterator, 50 ms apart (?n= of them)."""

    async def events():
        for i in range(int(request.GET.get("n", "3"))):
            yield f"data: {i}\n\n"
            await asyncio.sleep(0.05)

    return StreamingHttpResponse(events(), content_type="text/event-stream")


async def async_notes(request):
    """An async view using the ORM's async API: the number of notes and the latest ?n= of them
    (the ASGI benchmark's async ORM row)."""
    count = await Note.objects.acount()
    latest = [note.text async for note in Note.objects.all()[: int(request.GET.get("n", "5"))]]
    return JsonResponse({"count": count, "latest": latest})


async def async_ticks(request):
    """Server-sent events held open: one every ?every= seconds (default 1), ?n= of them (default
    3600), for the ASGI benchmark's held-streams row. With ?tag=, prints 'fixture: ticks
    stopped tag=T' when the stream ends."""
    every = float(request.GET.get("every", "1"))
    tag = request.GET.get("tag")

    async def events():
        try:
            for i in range(int(request.GET.get("n", "3600"))):
                yield f"data: {i}\n\n"
                await asyncio.sleep(every)
        finally:
            if tag:
                print(f"fixture: ticks stopped tag={tag}", flush=True)

    return StreamingHttpResponse(events(), content_type="text/event-stream")
