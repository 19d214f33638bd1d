"""ferrule: an application server for Django and any WSGI app, with a Rust network core."""

from ferrule._errors import ClientDisconnected, RequestCancelled, RequestTimeout
from ferrule._ferrule import __version__, cancelled, gather, wait

__all__ = [
    "ClientDisconnected",
    "RequestCancelled",
    "RequestTimeout",
    "__version__",
    "cancelled",
    "gather",
    "wait",
]
