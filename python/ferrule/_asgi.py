"""The Python half of ASGI (`src/asgi/`): what runs on the event loop around the application.

Requests are Rust's until the application's coroutine: `run` starts it as a task whose
done-callback is Rust's (`Done`), and `install` makes the loop read the Rust inbox's fd.
The lifespan protocol is here too (`Lifespan`): it runs once per process, so its speed does not
matter and asyncio's own queues keep it short.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import logging
from typing import Any

__all__ = ["Call", "Lifespan", "install", "is_asgi", "run"]

log = logging.getLogger("ferrule")


def is_asgi(app: Any) -> bool:
    """An ASGI 3 application: a coroutine function, or an object whose `__call__` is one
    (Django's `ASGIHandler`, Channels' routers). Anything else is taken for WSGI."""
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(app, "__call__", None)  # noqa: B004 - the method itself is what is tested
    return call is not None and inspect.iscoroutinefunction(call)


def install(loop: asyncio.AbstractEventLoop, fd: int, drain: Any) -> None:
    """Make `loop` call `drain` whenever `fd` is readable; returns once it does."""
    installed = concurrent.futures.Future()

    def add() -> None:
        try:
            loop.add_reader(fd, drain)
        except BaseException as e:  # reported to the caller, not lost on the loop
            installed.set_exception(e)
        else:
            installed.set_result(None)

    loop.call_soon_threadsafe(add)
    installed.result(timeout=30)


def run(app: Any, scope: dict, receive: Any, send: Any, done: Any, executor: Any) -> asyncio.Task:
    """On the loop: the application's task for one request, in a context where asgiref's
    thread-sensitive calls go to `executor` (the request's pool thread) rather than to a
    thread of asgiref's own."""
    context = contextvars.copy_context()
    if _executors is not None:
        context.run(setattr, _executors, "current", executor)
    task = context.run(asyncio.ensure_future, app(scope, receive, send))
    task.add_done_callback(done)
    return task


def _asgiref_executors() -> Any:
    try:
        from asgiref.sync import AsyncToSync
    except ImportError:
        return None
    return AsyncToSync.executors


_executors = _asgiref_executors()


class Call:
    """One `Executor.submit` call, run on a pool thread."""

    __slots__ = ("args", "fn", "future", "kwargs")

    def __init__(self, future: Any, fn: Any, args: tuple, kwargs: dict | None) -> None:
        self.future, self.fn, self.args, self.kwargs = future, fn, args, kwargs or {}

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as e:
            self.future.set_exception(e)
        else:
            self.future.set_result(result)


class Lifespan:
    """The lifespan protocol for one application: `startup()` and `shutdown()` are called
    from the main thread and wait for the loop. An application that raises before answering
    the startup event does not speak the protocol (Django's handler, Channels' router): it is
    logged once at debug level and ferrule goes on without it."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.state: dict = {}
        self.supported = True
        self._task: asyncio.Task | None = None
        self._inbox: asyncio.Queue | None = None
        self._answer: asyncio.Future | None = None

    def _call(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def startup(self) -> tuple[bool, str | None]:
        """(whether the application started, the message of a `lifespan.startup.failed`)."""
        return self._call(self._startup())

    def shutdown(self, timeout: float) -> None:
        if self._task is None or self._task.done() or not self.supported:
            return
        try:
            ok, message = self._call(self._shutdown(), timeout + 1)
        except concurrent.futures.TimeoutError:
            log.warning("the application's lifespan shutdown did not finish within %gs", timeout)
            return
        if not ok:
            log.error("the application's lifespan shutdown failed: %s", message)

    async def _startup(self) -> tuple[bool, str | None]:
        self._inbox = asyncio.Queue()
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        self._answer = self.loop.create_future()
        self._task = asyncio.ensure_future(self.app(scope, self._receive, self._send))
        self._task.add_done_callback(self._ended)
        await self._inbox.put({"type": "lifespan.startup"})
        return await self._answer

    async def _shutdown(self) -> tuple[bool, str | None]:
        self._answer = self.loop.create_future()
        await self._inbox.put({"type": "lifespan.shutdown"})
        return await self._answer

    async def _receive(self) -> dict:
        return await self._inbox.get()

    async def _send(self, message: dict) -> None:
        kind = message.get("type")
        answer = self._answer
        if answer is None or answer.done():
            raise RuntimeError(f"unexpected lifespan message {kind!r}")
        if kind in ("lifespan.startup.complete", "lifespan.shutdown.complete"):
            answer.set_result((True, None))
        elif kind in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
            answer.set_result((False, message.get("message") or None))
        else:
            raise ValueError(f"unknown lifespan message type {kind!r}")

    def _ended(self, task: asyncio.Task) -> None:
        answer = self._answer
        if answer is None or answer.done():
            if not task.cancelled() and task.exception() is not None:
                log.error("the application's lifespan task failed", exc_info=task.exception())
            return
        if task.cancelled():
            answer.set_result((False, "the lifespan task was cancelled"))
            return
        error = task.exception()
        if error is None:
            # Returned without answering: it does not speak the protocol.
            self.supported = False
            answer.set_result((True, None))
            return
        # Raised before answering the startup: it does not speak the protocol.
        self.supported = False
        log.debug("the application does not support the ASGI lifespan protocol: %r", error)
        answer.set_result((True, None))
