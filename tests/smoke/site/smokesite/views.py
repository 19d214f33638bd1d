"""The page tests/smoke/smoke.py reads, then edits to see the development reload."""

from django.http import HttpResponse

MESSAGE = "hello from django"


def page(request):
    return HttpResponse(MESSAGE, content_type="text/plain")
