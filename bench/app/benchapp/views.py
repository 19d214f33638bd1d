"""The workloads: each view is as small as its job, so the server is what differs."""

import asyncio
import json
import time

from asgiref.sync import async_to_sync
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from benchapp.models import Item

ONE_MB = b"x" * (1024 * 1024)


def plain(request):
    return HttpResponse("Hello, world", content_type="text/plain")


def template(request):
    return render(request, "benchapp/items.html", {"items": Item.objects.all()[:20]})


def sleep(request):
    # Stands in for a 50 ms database query or HTTP call: the thread blocks without the GIL.
    time.sleep(0.05)
    return HttpResponse("slept 50 ms", content_type="text/plain")


STREAM_CHUNK = b"x" * 4096


def stream(request):
    # A body the server iterates and streams chunk by chunk (no Content-Length).
    return StreamingHttpResponse(
        (STREAM_CHUNK for _ in range(16)), content_type="application/octet-stream"
    )


def one_mb(request):
    return HttpResponse(ONE_MB, content_type="application/octet-stream")


def costs(request):
    """ferrule's FERRULE_COST_SAMPLE totals as JSON (bench/run.py --cost); 404 elsewhere."""
    try:
        from ferrule._ferrule import worker_costs
    except ImportError:  # another server, or a ferrule from before FERRULE_COST_SAMPLE
        totals = None
    else:
        totals = worker_costs()
    if totals is None:
        return HttpResponse("not sampling", status=404, content_type="text/plain")
    return HttpResponse(json.dumps(totals), content_type="application/json")


@csrf_exempt
def upload(request):
    return HttpResponse(str(len(request.body)), content_type="text/plain")


# --- fan-out: a sync view that makes 10 concurrent 20 ms async calls (bench/async.py) ---------

FANOUT_CALLS = 10
FANOUT_SECONDS = 0.02


async def _call(i):
    # Stands in for an async HTTP or database call (httpx.AsyncClient, asyncpg, an LLM client).
    await asyncio.sleep(FANOUT_SECONDS)
    return i


async def _fanout():
    return await asyncio.gather(*(_call(i) for i in range(FANOUT_CALLS)))


def fanout_asgiref(request):
    """The calls through asgiref's async_to_sync, as a sync view does under any server."""
    results = async_to_sync(_fanout)()
    return HttpResponse(f"{len(results)} calls", content_type="text/plain")


def fanout_ferrule(request):
    """The same calls through ferrule.gather on ferrule's shared event loop."""
    import ferrule

    results = ferrule.gather(*(_call(i) for i in range(FANOUT_CALLS)))
    return HttpResponse(f"{len(results)} calls", content_type="text/plain")
