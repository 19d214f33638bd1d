"""A Pyramid app from a Configurator, served as `frameworks.pyramidapp:create_app()`."""

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPFound
from pyramid.response import FileResponse, Response

from . import _common
from ._common import STREAM, blob_path, digest


def hello(request):
    return Response("hello from pyramid\n", content_type="text/plain")


def upload(request):
    framing = _common.framing(request.environ)
    return {**digest(request.body), **framing}


def form(request):
    fields, files = {}, {}
    for name, value in request.POST.items():
        if hasattr(value, "file"):
            files[name] = {"filename": value.filename, **digest(value.file.read())}
        else:
            fields[name] = value
    return {"fields": fields, "files": files}


def file(request):
    # With the request, FileResponse uses wsgi.file_wrapper.
    return FileResponse(str(blob_path()), request=request, content_type="application/octet-stream")


def stream(request):
    return Response(app_iter=iter(STREAM), content_type="text/plain")


def to_hello(request):
    return HTTPFound(request.route_url("hello"))


def big(request):
    value = request.headers.get("X-Big", "")
    request.response.headers["X-Big"] = value
    return {"size": len(value)}


def echo(request):
    return {
        "segment": request.matchdict["segment"],
        "q": request.GET.get("q"),
        "path": request.path_info,
    }


def log(request):
    request.environ["wsgi.errors"].write(request.GET["msg"] + "\n")
    return Response("logged\n", content_type="text/plain")


def status(request):
    return Response("custom status\n", status=request.GET["line"], content_type="text/plain")


def boom(request):
    raise RuntimeError("boom from pyramid")


ROUTES = [
    ("hello", "/hello", hello, "GET", None),
    ("upload", "/upload", upload, "POST", "json"),
    ("form", "/form", form, "POST", "json"),
    ("file", "/file", file, "GET", None),
    ("stream", "/stream", stream, "GET", None),
    ("redirect", "/redirect", to_hello, "GET", None),
    ("big", "/big", big, "GET", "json"),
    ("echo", "/echo/{segment}", echo, "GET", "json"),
    ("log", "/log", log, "GET", None),
    ("status", "/status", status, "GET", None),
    ("boom", "/boom", boom, "GET", None),
]


def create_app():
    with Configurator() as config:
        for name, pattern, view, method, renderer in ROUTES:
            config.add_route(name, pattern)
            # request_method="GET" admits HEAD too.
            config.add_view(view, route_name=name, request_method=method, renderer=renderer)
        return config.make_wsgi_app()
