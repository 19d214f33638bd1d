"""Type stubs for the compiled core, `ferrule._ferrule`."""

from collections.abc import Callable, Iterator
from typing import Any, final

from typing_extensions import Self

__all__ = ["FileWrapper", "__version__", "main"]

__version__: str

def main(
    argv: list[str],
    django: bool = False,
    before_serve: Callable[[], object] | None = None,
) -> int:
    """Run ferrule with `argv` (argv[0] is the program name); return the exit code.

    With `django=True` the positional argument is `[addr:]port` and the application is the
    Django project's `WSGI_APPLICATION`. `before_serve` runs once the options are valid and
    before the application is loaded; an exception it raises propagates.
    """

@final
class FileWrapper:
    """`wsgi.file_wrapper`: the server sends a regular file by itself."""

    def __new__(cls, filelike: Any, blksize: int = 8192) -> Self: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def close(self) -> None: ...
