"""A Falcon app, served as `frameworks.falconapp:app`."""

import falcon

from . import _common
from ._common import STREAM, blob_path, digest


class Hello:
    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "hello from falcon\n"

    # Falcon routes HEAD to on_head only.
    on_head = on_get


class Upload:
    def on_post(self, req, resp):
        framing = _common.framing(req.env)
        resp.media = {**digest(req.bounded_stream.read()), **framing}


class Form:
    def on_post(self, req, resp):
        fields, files = {}, {}
        for part in req.get_media():
            if part.filename:
                files[part.name] = {"filename": part.filename, **digest(part.stream.read())}
            else:
                fields[part.name] = part.text
        resp.media = {"fields": fields, "files": files}


class File:
    def on_get(self, req, resp):
        resp.content_type = "application/octet-stream"
        path = blob_path()
        # Falcon hands a stream with read() to wsgi.file_wrapper.
        resp.set_stream(open(path, "rb"), path.stat().st_size)

    on_head = on_get


class Stream:
    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = iter(STREAM)

    on_head = on_get


class Redirect:
    def on_get(self, req, resp):
        raise falcon.HTTPFound(req.prefix + "/hello")


class Big:
    def on_get(self, req, resp):
        value = req.get_header("X-Big", default="")
        resp.set_header("X-Big", value)
        resp.media = {"size": len(value)}


class Echo:
    def on_get(self, req, resp, segment):
        resp.media = {"segment": segment, "q": req.get_param("q"), "path": req.path}


class Log:
    def on_get(self, req, resp):
        req.log_error(req.get_param("msg") + "\n")
        resp.text = "logged\n"


class Status:
    def on_get(self, req, resp):
        resp.status = req.get_param("line")
        resp.text = "custom status\n"


class Boom:
    def on_get(self, req, resp):
        raise RuntimeError("boom from falcon")


app = falcon.App()
app.add_route("/hello", Hello())
app.add_route("/upload", Upload())
app.add_route("/form", Form())
app.add_route("/file", File())
app.add_route("/stream", Stream())
app.add_route("/redirect", Redirect())
app.add_route("/big", Big())
app.add_route("/echo/{segment}", Echo())
app.add_route("/log", Log())
app.add_route("/status", Status())
app.add_route("/boom", Boom())
