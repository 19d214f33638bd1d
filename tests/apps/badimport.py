"""An application module whose import fails: the server must exit 2 naming the error."""

import ferrule_test_no_such_module  # noqa: F401


def app(environ, start_response):  # pragma: no cover - never imported successfully
    start_response("200 OK", [])
    return [b""]
