"""A Flask app built by a factory, served as `frameworks.flaskapp:create_app()`."""

from flask import Flask, Response, jsonify, redirect, request, send_file, url_for

from . import _common
from ._common import STREAM, blob_path, digest


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/hello")
    def hello():
        return Response("hello from flask\n", mimetype="text/plain")

    @app.post("/upload")
    def upload():
        framing = _common.framing(request.environ)
        return jsonify(**digest(request.get_data()), **framing)

    @app.post("/form")
    def form():
        files = {}
        for name, f in request.files.items():
            files[name] = {"filename": f.filename, **digest(f.read())}
        return jsonify(fields=request.form.to_dict(), files=files)

    @app.get("/file")
    def file():
        return send_file(blob_path(), mimetype="application/octet-stream")

    @app.get("/stream")
    def stream():
        return Response(iter(STREAM), mimetype="text/plain")

    @app.get("/redirect")
    def to_hello():
        return redirect(url_for("hello", _external=True))

    @app.get("/big")
    def big():
        value = request.headers.get("X-Big", "")
        return jsonify(size=len(value)), {"X-Big": value}

    @app.get("/echo/<segment>")
    def echo(segment):
        return jsonify(segment=segment, q=request.args.get("q"), path=request.path)

    @app.get("/log")
    def log():
        # Flask's default handler writes to wsgi.errors during a request.
        app.logger.error("%s", request.args["msg"])
        return "logged\n"

    @app.get("/status")
    def status():
        return "custom status\n", request.args["line"]

    @app.get("/boom")
    def boom():
        raise RuntimeError("boom from flask")

    return app
