"""The Python half of the asyncio bridge (`src/bridge/`): the event-loop thread, timeouts,
`gather`, and the private loop used outside a ferrule worker thread.

Waiting, cancellation and the asgiref hookup are Rust's; what is here runs on the loop thread
(or, outside a worker, in the calling thread) and never on a worker thread that is waiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any


async def with_timeout(awaitable: Awaitable[Any], timeout: float) -> Any:
    """Await `awaitable`; after `timeout` seconds cancel it, wait for it to finish cancelling,
    and raise the builtin `TimeoutError` (on 3.10 too, where asyncio's is another class)."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError as e:
        # wait_for raises its own from the CancelledError it cancelled the awaitable with; a
        # TimeoutError the awaitable raised by itself goes through unchanged.
        if isinstance(e.__cause__, asyncio.CancelledError):
            raise TimeoutError(f"the awaitable did not finish within {timeout:g} s") from None
        raise


async def gather(awaitables: Iterable[Awaitable[Any]], return_exceptions: bool) -> list[Any]:
    """`asyncio.gather`, except that when one awaitable fails (and `return_exceptions` is
    false) the others are cancelled and waited for, as a TaskGroup does: nothing keeps
    running for a view that has moved on."""
    pending = list(awaitables)
    tasks: list[asyncio.Future[Any]] = []
    try:
        while pending:
            tasks.append(asyncio.ensure_future(pending.pop(0)))
        return await asyncio.gather(*tasks, return_exceptions=return_exceptions)
    except BaseException:
        for aw in pending:
            close(aw)
        for task in tasks:
            task.cancel()
        if tasks:
            # gather() already retrieved their exceptions, so none is logged as lost.
            await asyncio.wait(tasks)
        raise


def close(awaitable: object) -> None:
    """Close a coroutine that will never run, so Python does not warn that it was never
    awaited."""
    if inspect.iscoroutine(awaitable):
        awaitable.close()


def prepare(
    awaitables: tuple[Awaitable[Any], ...],
    gathering: bool,
    return_exceptions: bool,
    timeout: float | None,
) -> Awaitable[Any]:
    """The one awaitable a `wait()` or `gather()` call stands for."""
    aw = gather(awaitables, return_exceptions) if gathering else awaitables[0]
    return aw if timeout is None else with_timeout(aw, timeout)


def start(
    waiter: Any,
    awaitables: tuple[Awaitable[Any], ...],
    gathering: bool,
    return_exceptions: bool,
    timeout: float | None,
) -> None:
    """On the loop thread, for a worker thread that waits: run the work as a task whose
    done-callback is `waiter` (Rust's, so the waiting side runs no Python)."""
    if waiter.abandoned:
        # The request was cancelled before the loop got here.
        for aw in awaitables:
            close(aw)
        return
    asgiref = sys.modules.get("asgiref.sync")
    if asgiref is not None:
        # This runs in the context the task inherits (a copy of the waiting thread's).
        asgiref.AsyncToSync.executors.current = WorkerExecutor(waiter)
    try:
        task = asyncio.ensure_future(prepare(awaitables, gathering, return_exceptions, timeout))
    except BaseException as e:
        waiter.fail(e)
        return
    waiter.started(task)


class WorkerExecutor(concurrent.futures.Executor):
    """asgiref's `AsyncToSync.executors.current` for the work of one wait: a thread-sensitive
    `sync_to_async` call in it runs on the waiting worker thread, as under `async_to_sync`
    (and so Django's async ORM uses the request's database connection), instead of on
    asgiref's one process-wide sync thread."""

    def __init__(self, waiter: Any) -> None:
        self._waiter = waiter

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if not self._waiter.call((future, fn, args, kwargs)):
            raise RuntimeError(
                "a thread-sensitive call outlived the ferrule.wait() it was made under"
            )
        return future


def run_call(call: tuple[Any, ...]) -> None:
    """On the waiting worker thread: run one call `WorkerExecutor` queued."""
    future, fn, args, kwargs = call
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
    except BaseException as e:
        future.set_exception(e)
    else:
        future.set_result(result)


def cancel_call(call: tuple[Any, ...]) -> None:
    """A queued call whose wait is over: its caller has gone (cancelled, or done)."""
    call[0].cancel()


def retrieve(task: asyncio.Future[Any]) -> None:
    """Done-callback for a task cancelled on behalf of a cancelled request: nobody awaits
    it, so read its exception and asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def run_private(
    awaitables: tuple[Awaitable[Any], ...],
    gathering: bool,
    return_exceptions: bool,
    timeout: float | None,
) -> Any:
    """Outside a ferrule worker thread (a shell, a test, a management command): run the work
    on a new event loop in the calling thread, as `asyncio.run` does."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        for aw in awaitables:
            close(aw)
        raise RuntimeError(
            "ferrule.wait() and ferrule.gather() cannot be called from a thread that is "
            "running an event loop: await the awaitable directly instead"
        )
    aw = prepare(awaitables, gathering, return_exceptions, timeout)
    if not inspect.iscoroutine(aw):
        if not inspect.isawaitable(aw):
            raise TypeError(
                f"an awaitable (a coroutine, task or future) is required, not {type(aw).__name__}"
            )
        aw = _await(aw)
    return asyncio.run(aw)


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new loop of `kind` (`--loop`): `asyncio`, `uvloop`, or `auto` (uvloop when it is
    installed). Asking for uvloop without it installed is an error that says so."""
    if kind in ("uvloop", "auto"):
        try:
            import uvloop
        except ImportError as e:
            if kind == "uvloop":
                raise RuntimeError(
                    "--loop uvloop: uvloop is not installed (pip install uvloop)"
                ) from e
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class EventLoop:
    """The process's event loop, run forever by the "ferrule-loop" thread."""

    def __init__(self, name_thread: Callable[[str], None], kind: str = "asyncio") -> None:
        self._name_thread = name_thread
        self.loop = new_loop(kind)
        self.grace = 0.0
        self.left: list[str] = []
        self._running = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ferrule-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._running.wait()

    def stop(self, grace: float) -> tuple[bool, list[str]]:
        """Stop the loop, cancel the tasks still on it, give them `grace` seconds to finish,
        and close it. Returns (whether the thread ended in time, the tasks that did not
        finish)."""
        self.grace = grace
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            pass  # already closed
        # Twice the grace: once for the cancelled tasks, once for the default executor.
        self._thread.join(2 * grace + 1)
        return (not self._thread.is_alive(), self.left)

    def _run(self) -> None:
        self._name_thread(self._thread.name)
        loop = self.loop
        asyncio.set_event_loop(loop)
        loop.call_soon(self._running.set)
        try:
            loop.run_forever()
            self._cancel_all()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(self._shutdown_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def _cancel_all(self) -> None:
        """What `asyncio.run` does at its end, with a bound on the wait."""
        loop = self.loop
        tasks = asyncio.all_tasks(loop)
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        done, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=self.grace))
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                loop.call_exception_handler(
                    {
                        "message": "unhandled exception in a task cancelled at shutdown",
                        "exception": task.exception(),
                        "task": task,
                    }
                )
        self.left = sorted(repr(t.get_coro()) for t in pending)

    async def _shutdown_executor(self) -> None:
        try:
            await asyncio.wait_for(self.loop.shutdown_default_executor(), self.grace)
        except asyncio.TimeoutError:
            pass
