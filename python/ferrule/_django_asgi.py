"""Django under ASGI at the speed of WSGI: one trip to a pool thread per request.

Django's ``ASGIHandler`` runs its middleware chain in async mode: every middleware that is not
async-native (``SessionMiddleware``, ``CsrfViewMiddleware``, most third-party ones) is called
through ``sync_to_async`` twice, a sync view once more, the response's ``close()`` once more —
a dozen trips between the event loop and a thread for one request, each a few dozen
microseconds of asgiref's bookkeeping and two thread wake-ups. That, not the thread per
request, is why Django under any ASGI server runs at a fraction of its WSGI speed.

When ferrule serves a Django project as ASGI, an HTTP request runs the way WSGI runs it: the
body is read on the loop (``receive``), then the request-started signal, the request object,
the *sync* middleware chain (Django's own ``BaseHandler.load_middleware(is_async=False)``,
which adapts async-only middleware with ``async_to_sync``), the view, the response and its
``close()`` all run in one call on the request's pool thread. An async view runs on the loop
through ``async_to_sync``, as under ferrule's WSGI mode, the thread waiting for it — which
costs no concurrency: under Django's own path the request holds its leased thread from the
request-started signal to the end anyway. The response goes to the core from the thread
(ferrule's ``send`` needs no loop for it), a sync streaming one as it is produced, the thread
sleeping while the client is slower (Django's own ASGI path reads a sync iterator whole into a
list before sending any of it). A response over an async iterator (server-sent events, a long
poll) goes back to the loop for Django's ``send_response``, and the thread goes back to the
pool: a thousand open event streams hold no thread between their events. This is Django's own
code in the mode Django supports for every middleware under WSGI.

For an application that is Django's handler itself (or a Channels router whose ``http`` is),
a request without a body does not touch the loop at all: a pool thread builds its scope and
calls :func:`direct` (``src/asgi/dispatch.rs``).
"""

from __future__ import annotations

import asyncio
import functools
import io
from typing import Any

from asgiref.sync import AsyncToSync, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import FileResponse
from django.urls import set_script_prefix

from ferrule import _ferrule
from ferrule._errors import ClientDisconnected

__all__ = ["direct", "direct_handler", "install"]

_INSTALLED = "_ferrule_sync_path"


def install() -> bool:
    """Route ``ASGIHandler``'s HTTP requests through one pool-thread call; idempotent."""
    handle = ASGIHandler.handle
    if getattr(handle, _INSTALLED, False):
        return True

    async def handle_sync_on_pool(self: Any, scope: dict, receive: Any, send: Any) -> None:
        current = getattr(AsyncToSync.executors, "current", None)
        if type(current) is not _ferrule.Executor:  # not a request served by ferrule
            return await handle(self, scope, receive, send)
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return None
        try:
            response = await sync_to_async(_serve, thread_sensitive=True)(
                self, _sync_chain(self), scope, body_file, send, current
            )
            if response is not None:
                # A response over an async iterator: sent from the loop, with no thread.
                current.release()
                await _send_from_loop(self, response, scope, receive, send)
        finally:
            body_file.close()
        return None

    setattr(handle_sync_on_pool, _INSTALLED, True)
    handle_sync_on_pool.__wrapped__ = handle  # type: ignore[attr-defined]
    handle_sync_on_pool.__doc__ = handle.__doc__
    ASGIHandler.handle = handle_sync_on_pool  # type: ignore[method-assign]
    return True


def direct_handler(app: Any) -> Any:
    """The Django ``ASGIHandler`` that serves every HTTP request of ``app``, or None: ``app``
    itself, or the ``"http"`` entry of a Channels ``ProtocolTypeRouter``. For such an
    application a request without a body skips the loop altogether (:func:`direct`); anything
    wrapped around the handler (an ASGI middleware) rules that out, since it would be skipped
    too."""
    if not getattr(ASGIHandler.handle, _INSTALLED, False):
        return None
    if isinstance(app, ASGIHandler):
        return app
    mapping = getattr(app, "application_mapping", None)  # channels.routing.ProtocolTypeRouter
    if isinstance(mapping, dict) and isinstance(mapping.get("http"), ASGIHandler):
        return mapping["http"]
    return None


def direct(handler: Any, scope: dict, send: Any) -> Any:
    """On a pool thread, for a request without a body: serve it as the sync path does, with
    no trip through the loop. Returns None once the response is sent; for a response over an
    async iterator, the ASGI application that sends it, which ferrule runs on the loop as the
    request's task (the thread is free meanwhile)."""
    response = _serve(handler, _sync_chain(handler), scope, io.BytesIO(), send, None)
    if response is None:
        return None
    return functools.partial(_send_from_loop, handler, response)


async def _send_from_loop(
    handler: Any, response: Any, scope: dict, receive: Any, send: Any
) -> None:
    """Send a response over an async iterator as Django's ``ASGIHandler.handle`` does: stop
    iterating as soon as the client leaves (``receive`` says so at once, even between events),
    then close the response on a pool thread."""
    sending = asyncio.ensure_future(handler.send_response(response, send))
    leaving = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((sending, leaving), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sending, leaving):
            task.cancel()
        outcome, _ = await asyncio.gather(sending, leaving, return_exceptions=True)
        await sync_to_async(response.close, thread_sensitive=True)()
    # A client that left is no error, as for Django.
    if isinstance(outcome, Exception) and not isinstance(outcome, ClientDisconnected):
        raise outcome


async def _disconnected(receive: Any) -> None:
    """Returns when the client has gone (or the response is complete)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _sync_chain(handler: Any) -> Any:
    """A handler with the project's middleware loaded in sync mode, one per ASGI handler."""
    chain = handler.__dict__.get("_ferrule_sync_chain")
    if chain is None:
        chain = BaseHandler()
        chain.load_middleware(is_async=False)
        handler._ferrule_sync_chain = chain
    return chain


def _serve(handler: Any, chain: Any, scope: dict, body_file: Any, send: Any, executor: Any) -> Any:
    """On the request's pool thread: what ``ASGIHandler.handle`` does, in sync mode. Returns
    the response when its content is an async iterator (for the loop to send), None once it
    was sent and closed — and then the thread goes back to the pool at once, while the
    request's task finishes on the loop."""
    set_script_prefix(get_script_prefix(scope))
    signals.request_started.send(sender=handler.__class__, scope=scope)
    request, response = handler.create_request(scope, body_file)
    if request is not None:
        response = chain.get_response(request)
        response._handler_class = handler.__class__
        if isinstance(response, FileResponse):
            response.block_size = handler.chunk_size
    if response.streaming and getattr(response, "is_async", False):
        return response
    try:
        _push(send, _start(response))
        if response.streaming:
            # A sync iterator streams from this thread as it yields, with the socket's
            # backpressure, as under WSGI (Django's own ASGI path reads it all into a list).
            for part in response.streaming_content:
                if part:
                    _push(send, {"type": "http.response.body", "body": part, "more_body": True})
            _push(send, {"type": "http.response.body", "body": b"", "more_body": False})
        else:
            _push(send, {"type": "http.response.body", "body": response.content})
    except ClientDisconnected:
        pass  # as Django ignores a client that left while it responded
    finally:
        response.close()
    if executor is not None:
        executor.release()
    return None


def _start(response: Any) -> dict:
    """``http.response.start`` for a Django response, its headers and cookies encoded as
    ``ASGIHandler.send_response`` encodes them."""
    headers = []
    for name, value in response.items():
        if isinstance(name, str):
            name = name.encode("ascii")
        if isinstance(value, str):
            value = value.encode("latin1")
        headers.append((bytes(name), bytes(value)))
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.OutputString().encode("ascii")))
    return {"type": "http.response.start", "status": response.status_code, "headers": headers}


def _push(send: Any, message: dict) -> None:
    """``send`` from a pool thread: ferrule's ``send`` completes at once unless the client
    is slower than the response, and then this thread sleeps until there is room."""
    sent = send(message)
    if type(sent) is not _ferrule.Ready:
        _ferrule.wait(sent)
