"""Default log handlers, used only when the application configured none for ferrule's loggers.

Server events go to the `ferrule` logger and access lines to `ferrule.access`; Django's
LOGGING setting (or any logging configuration) routes them like any other logger. When nothing
would show them, ferrule prints server events at INFO and access lines to stderr.
"""

import logging
import sys

SERVER_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"


def ensure_handlers() -> None:
    server = logging.getLogger("ferrule")
    if not server.hasHandlers():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(SERVER_FORMAT))
        server.addHandler(handler)
        if server.level == logging.NOTSET:
            server.setLevel(logging.INFO)
    access = logging.getLogger("ferrule.access")
    if access.handlers or not access.propagate:
        return
    if server.handlers and all(isinstance(h, logging.StreamHandler) for h in server.handlers):
        # Our own default handler (or a plain console one): print access lines bare.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.propagate = False
        if access.level == logging.NOTSET:
            access.setLevel(logging.INFO)
