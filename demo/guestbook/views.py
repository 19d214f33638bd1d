import hashlib
import time

from django.http import StreamingHttpResponse
from django.shortcuts import redirect, render

from guestbook.forms import EntryForm, UploadForm
from guestbook.models import Entry, Upload


def home(request):
    """A form that saves an Entry (with CSRF protection), and the latest entries."""
    form = EntryForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        return redirect("home")
    return render(
        request, "guestbook/home.html", {"form": form, "entries": Entry.objects.all()[:10]}
    )


def upload(request):
    """Hash an uploaded file. Django spools uploads over 2.5 MB to a temporary file."""
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        f = form.cleaned_data["file"]
        digest = hashlib.sha256()
        for chunk in f.chunks():
            digest.update(chunk)
        Upload.objects.create(filename=f.name, size=f.size, sha256=digest.hexdigest())
        return redirect("upload")
    return render(
        request, "guestbook/upload.html", {"form": form, "uploads": Upload.objects.all()[:10]}
    )


def stream(request):
    """A hundred lines, sent as they are produced."""

    def lines():
        for i in range(1, 101):
            yield f"line {i:3d} of 100\n"
            time.sleep(0.02)  # slow enough to watch it arrive

    return StreamingHttpResponse(lines(), content_type="text/plain; charset=utf-8")
