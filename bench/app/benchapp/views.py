"""The five workloads: each view is as small as its job, so the server is what differs."""

import time

from django.http import HttpResponse
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


def one_mb(request):
    return HttpResponse(ONE_MB, content_type="application/octet-stream")


@csrf_exempt
def upload(request):
    return HttpResponse(str(len(request.body)), content_type="text/plain")
