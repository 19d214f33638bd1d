"""ferrule: an application server for Django and any WSGI app, with a Rust network core."""

from ferrule._ferrule import __version__

__all__ = ["__version__"]
