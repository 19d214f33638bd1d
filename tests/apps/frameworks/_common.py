"""What the framework apps share: the file they send and the chunks they stream."""

import hashlib
import os
import tempfile
from pathlib import Path

# 300 KiB: several file_wrapper blocks, and more than one socket buffer.
BLOB_SIZE = 300 * 1024
STREAM = [f"chunk {i}\n".encode() for i in range(5)]


def blob() -> bytes:
    return bytes(i % 251 for i in range(BLOB_SIZE))


def blob_path() -> Path:
    """The blob on disk, written once per machine; atomically, since a ferrule and a gunicorn
    process may import the app at the same time."""
    path = Path(tempfile.gettempdir()) / f"ferrule-frameworks-blob-{BLOB_SIZE}.bin"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(blob())
        os.replace(tmp, path)
    return path


def digest(data: bytes) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def framing(environ) -> dict:
    """How the server described the body, before the framework read it (WebOb, for one,
    sets CONTENT_LENGTH once it has read a chunked body)."""
    return {
        "content_length": environ.get("CONTENT_LENGTH"),
        "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING"),
    }
