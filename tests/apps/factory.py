"""An application factory, served as `factory:create()`."""


def create():
    def app(environ, start_response):
        body = b"made by create()"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "16")])
        return [body]

    return app
