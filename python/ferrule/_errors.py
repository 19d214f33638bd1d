"""The exceptions a cancelled request raises in application code."""


class RequestCancelled(Exception):
    """The request was cancelled: its client left, its `--timeout` expired, or the server is
    shutting down. Raised by `ferrule.wait`, `ferrule.gather` and `async_to_sync` calls made
    for the request, and injected into its thread after `--cancel-grace`."""


class ClientDisconnected(RequestCancelled, ConnectionError):
    """The client closed the connection (or reset the HTTP/2 stream) before the response was
    complete. A `ConnectionError` (an `OSError`) too, as the ASGI spec asks of a `send()` to a
    client that is gone."""


class RequestTimeout(RequestCancelled):
    """The request ran longer than `--timeout`."""
