"""ferrule: an application server for Django and any WSGI app, with a Rust network core."""

from ferrule._errors import ClientDisconnected, QueueFull, RequestCancelled, RequestTimeout
from ferrule._ferrule import __version__, cancelled, gather, wait

__all__ = [
    "ClientDisconnected",
    "QueueFull",
    "RequestCancelled",
    "RequestTimeout",
    "__version__",
    "cancelled",
    "gather",
    "wait",
]
