"""The exceptions a cancelled request raises in application code, and the one a request's sync
code raises under ASGI when the thread pool is full."""


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


class QueueFull(RuntimeError):
    """Under ASGI, a request's sync code could not run: every pool thread is taken and the
    queue is full (`--max-queue`). Raised by `sync_to_async` calls; when it ends the request's
    task before a response, ferrule answers 503 with `Retry-After`, as under WSGI."""
