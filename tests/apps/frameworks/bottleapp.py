"""A Bottle app, served as `frameworks.bottleapp:app`."""

import bottle
from bottle import HTTPResponse, redirect, request, response, static_file

from . import _common
from ._common import STREAM, blob_path, digest

app = bottle.Bottle()


@app.get("/hello")
def hello():
    response.content_type = "text/plain"
    return "hello from bottle\n"


@app.post("/upload")
def upload():
    framing = _common.framing(request.environ)
    return {**digest(request.body.read()), **framing}


@app.post("/form")
def form():
    files = {
        name: {"filename": f.raw_filename, **digest(f.file.read())}
        for name, f in request.files.items()
    }
    return {"fields": dict(request.forms.decode().items()), "files": files}


@app.get("/file")
def file():
    path = blob_path()
    # static_file hands the open file to wsgi.file_wrapper.
    return static_file(path.name, root=str(path.parent), mimetype="application/octet-stream")


@app.get("/stream")
def stream():
    response.content_type = "text/plain"
    return iter(STREAM)


@app.get("/redirect")
def to_hello():
    # Bottle makes the URL absolute from request.url.
    redirect("/hello")


@app.get("/big")
def big():
    value = request.headers.get("X-Big", "")
    return HTTPResponse({"size": len(value)}, headers={"X-Big": value})


@app.get("/echo/<segment>")
def echo(segment):
    return {"segment": segment, "q": request.query.getunicode("q"), "path": request.path}


@app.get("/log")
def log():
    request.environ["wsgi.errors"].write(request.query.getunicode("msg") + "\n")
    return "logged\n"


@app.get("/status")
def status():
    response.status = request.query.line
    return "custom status\n"


@app.get("/boom")
def boom():
    raise RuntimeError("boom from bottle")
