"""What ferrule's dependencies log reaches the server log at debug level, and none of it at the
default level (the refactoring that put the server log behind the `tracing`/`log` facades).

rustls logs through `log`, h2 through `tracing`; ferrule's subscriber hands their records to the
`ferrule.<crate>` logger with the target in front of the message, or to `--log-file` at
`FERRULE_DEBUG`'s verbosity, and only while that level is DEBUG or below. The client here
breaks a TLS 1.2 handshake (a second ClientHello where the key exchange belongs), which rustls
logs as a warning: a server at INFO must not print that for every scanner. Then it makes an
HTTP/2 request, whose frames h2 logs at debug. Over TCP and a Unix socket, through Python
`logging` and through `--log-file`.
"""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from conftest import Server
from helpers import Unmet, wait_until
from tls_helpers import Pki, tls_args

LIVENESS = 30

# The `ferrule` logger at DEBUG, with the logger's name in each line.
DEBUG_APP = """
import logging
import sys

handler = logging.StreamHandler(sys.stderr)
handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
logging.getLogger("ferrule").addHandler(handler)
logging.getLogger("ferrule").setLevel(logging.DEBUG)

from echo import app  # noqa: E402
"""

RUSTLS_WARNING = r"rustls::check: Received a ClientHello handshake message while expecting"
H2_LINE = r"h2::[\w:]+: "


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@dataclass
class Logged:
    """A TLS server and everything it has logged so far."""

    server: Server
    read: Callable[[], str]

    def wait_for(self, pattern: str) -> None:
        def seen() -> re.Match | Unmet:
            out = self.read()
            return re.search(pattern, out, re.M) or Unmet(out)

        wait_until(seen, LIVENESS, what=pattern)


@pytest.fixture(params=["logging", "file"])
def sink(request) -> str:
    return request.param


@pytest.fixture(params=["debug", "default"])
def level(request) -> str:
    return request.param


@pytest.fixture
def logged(pki, sink, level, transport, tmp_path, launched) -> Logged:
    bind = "127.0.0.1:0" if transport == "tcp" else f"unix:{tmp_path / 'ferrule.sock'}"
    args = ["--bind", bind, *tls_args(pki.server()), "--access-log"]
    if sink == "logging":
        (tmp_path / "debuglog.py").write_text(DEBUG_APP)
        app = ["--pythonpath", str(tmp_path), "debuglog:app"] if level == "debug" else ["echo"]
        server = launched(args + app)
        return Logged(server, server.output)
    log = tmp_path / "ferrule.log"
    env = {"FERRULE_DEBUG": "4"} if level == "debug" else {}
    server = launched([*args, "--log-file", str(log), "echo"], env=env, expect_ready=False)

    def read() -> str:
        return log.read_text() if log.exists() else ""

    wait_until(
        lambda: "Ready to accept requests" in (out := read()) or Unmet(out),
        LIVENESS,
        what="the ready line in the log file",
    )
    # The log file has the address; the server printed nothing.
    server.urls = re.findall(r"Listening at: (\S+)", read())
    return Logged(server, read)


def break_tls12_handshake(server: Server, ctx: ssl.SSLContext) -> None:
    """Send a TLS 1.2 ClientHello twice: the server, waiting for the key exchange after its
    hello, refuses the second one and closes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    with server.connect() as s:
        s.sendall(hello + hello)
        with contextlib.suppress(ConnectionResetError):
            while s.recv(65536):
                pass


def http2_get(server: Server, ctx: ssl.SSLContext, path: str) -> int:
    """GET `path` over HTTP/2 (ALPN h2); the status."""
    if server.is_unix:
        transport = httpx.HTTPTransport(uds=server.address, http2=True, verify=ctx)
        url = f"https://localhost{path}"
    else:
        transport = httpx.HTTPTransport(http2=True, verify=ctx)
        url = f"https://localhost:{server.address[1]}{path}"
    with httpx.Client(transport=transport, timeout=30) as client:
        response = client.get(url)
        assert response.http_version == "HTTP/2"
        return response.status_code


def test_dependency_records_reach_the_log_at_debug_only(pki, logged, sink, level):
    break_tls12_handshake(logged.server, pki.context(maximum=ssl.TLSVersion.TLSv1_2))
    assert http2_get(logged.server, pki.context(), "/after") == 200
    # Records are written in the order they were made: once the access line of the request
    # that came after is there, whatever the broken handshake logged is there too.
    logged.wait_for(r'"GET /after HTTP/2\.0" 200 ')
    out = logged.read()
    if level == "default":
        assert "rustls::" not in out and "h2::" not in out, out
        return
    if sink == "logging":
        # Each dependency has its own logger under `ferrule`, whose handler printed them.
        assert re.search(rf"^ferrule\.rustls WARNING {RUSTLS_WARNING}", out, re.M), out
        assert re.search(rf"^ferrule\.h2 DEBUG {H2_LINE}", out, re.M), out
    else:
        assert re.search(rf"\[WARNING\] {RUSTLS_WARNING}", out), out
        assert re.search(rf"\[DEBUG\] {H2_LINE}", out), out
    assert "TLS handshake with" in out, out
