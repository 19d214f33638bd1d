"""Type stubs for the compiled core, `ferrule._ferrule`."""

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar, final

from typing_extensions import Self

__all__ = [
    "PLATFORM_PATHS",
    "Executor",
    "FileWrapper",
    "Ready",
    "__version__",
    "cancelled",
    "gather",
    "main",
    "wait",
    "worker_costs",
]

_T = TypeVar("_T")

__version__: str
PLATFORM_PATHS: str

def main(
    argv: list[str],
    django: bool = False,
    before_serve: Callable[[bool], object] | None = None,
    config: str | None = None,
    worker_command: list[str] | None = None,
    failure: BaseException | None = None,
) -> int:
    """Run ferrule with `argv` (argv[0] is the program name); return the exit code.

    With `django=True` the positional argument is `[addr:]port` and the application is the
    Django project's `WSGI_APPLICATION`. `before_serve(reload)` runs once the options are
    valid and before the application is loaded; an exception it raises propagates. `config`
    is `settings.FERRULE` as a JSON object: values for the options argv leaves unset.
    `worker_command` starts a worker process instead of this process's command line;
    `failure`, in a worker, is the exception that kept the project from starting.
    """

@final
class FileWrapper:
    """`wsgi.file_wrapper`: the server sends a regular file by itself."""

    def __new__(cls, filelike: Any, blksize: int = 8192) -> Self: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def close(self) -> None: ...

@final
class Executor:
    """`AsyncToSync.executors.current` of an ASGI request: runs its sync code on the pool
    thread leased for the request. Made by the server only."""

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Any: ...
    def release(self) -> None: ...
    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None: ...

@final
class Ready:
    """An awaitable that is already done: what ASGI `send` and `receive` return when they
    need not wait."""

    def __await__(self) -> Iterator[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __next__(self) -> Any: ...
    def send(self, _value: Any) -> Any: ...
    def throw(self, error: Any, value: Any = None, traceback: Any = None) -> Any: ...
    def close(self) -> None: ...

def wait(awaitable: Awaitable[_T], timeout: float | None = None) -> _T:
    """Run `awaitable` and return its result, or raise its exception; `timeout` (seconds)
    cancels it and raises `TimeoutError`. On a ferrule worker thread it runs on the shared
    event loop while the thread sleeps; a cancelled request raises `ferrule.RequestCancelled`'s
    subclass at once and cancels the awaitable. Elsewhere it runs on a private loop.
    """

def gather(
    *awaitables: Awaitable[Any],
    return_exceptions: bool = False,
    timeout: float | None = None,
) -> list[Any]:
    """Run `awaitables` concurrently and return their results in order. If one raises, the
    others are cancelled and the exception is raised, unless `return_exceptions` is true."""

def cancelled() -> bool:
    """Whether the request the calling thread runs has been cancelled; False outside one."""

def worker_costs() -> dict[str, int] | None:
    """`FERRULE_COST_SAMPLE`'s totals, for benchmarks (`bench/run.py --cost`), or None when the
    variable is not set: `every`, `seen` (WSGI requests run), `sampled`, `app_ns` (the
    application's CPU time over the sampled requests, clock reads included),
    `clock_cost_ns` and `reads_per_sample`."""
