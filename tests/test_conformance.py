"""gunicorn's HTTP/1.1 request corpus against a live ferrule (tests/conformance/README.md).

Every case is replayed over TCP and a Unix socket, its bytes sent whole and in random
fragments of 1-7 bytes, to `conformance_echo:app`. One server per transport and option set
serves all the cases that need it, with one Python thread, so that the application's calls
arrive in order: after each exchange a sync request (`/__sync__/N`) marks where the calls of
the next exchange begin, which is how the test knows whether the application was called.

Where ferrule differs from gunicorn is `tests/conformance/divergences.md`, read here.
"""

from __future__ import annotations

import ast
import base64
import itertools
import json
import random
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest
from conftest import start
from helpers import Conn, Response, Truncated

HERE = Path(__file__).resolve().parent / "conformance"
CASES = {c["name"]: c for c in json.loads((HERE / "cases.json").read_text())["cases"]}
ADDED_HOST = "t"  # short: some cases set a field size limit of 10
# gunicorn settings that are ferrule options of the same name.
OPTIONS = {
    "limit_request_line": "--limit-request-line",
    "limit_request_fields": "--limit-request-fields",
    "limit_request_field_size": "--limit-request-field-size",
    "forwarded_allow_ips": "--forwarded-allow-ips",
    # gunicorn's `auto` (a header or none) is taken as ferrule's flag (a header required).
    "proxy_protocol": "--proxy-protocol",
}
HANDLINGS = {"skip", "refused", "accepted", "no-fragment"}
CALLED = re.compile(r"fixture: conformance called (\S+) (.*)$")


def read_divergences() -> dict[str, tuple[str, str]]:
    """`case -> (handling, reason)` from the table in divergences.md."""
    rows = {}
    row = re.compile(r"^\| `([^`]+)` \| ([a-z-]+) \| (.*) \|$")
    for line in (HERE / "divergences.md").read_text().splitlines():
        if m := row.match(line):
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


DIVERGENCES = read_divergences()


def test_divergences_name_real_cases():
    assert DIVERGENCES, "no rows read from divergences.md"
    assert set(DIVERGENCES) <= set(CASES), set(DIVERGENCES) - set(CASES)
    assert {h for h, _ in DIVERGENCES.values()} <= HANDLINGS


def flags(config: dict) -> tuple[str, ...]:
    out = []
    for key, value in sorted(config.items()):
        if key == "proxy_protocol":
            out.append(OPTIONS[key])
        elif key in OPTIONS:
            if key == "forwarded_allow_ips":
                value = ",".join(ast.literal_eval(value))
            out += [OPTIONS[key], str(value)]
    return tuple(out)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """get(transport, flags) -> a running server, started on first use, kept for the module."""
    running = {}

    def get(transport: str, options: tuple[str, ...]):
        key = (transport, options)
        if key not in running:
            if transport == "tcp":
                bind = "127.0.0.1:0"
            else:
                bind = f"unix:{tmp_path_factory.mktemp('conformance') / 'ferrule.sock'}"
            server = start(["--bind", bind, "--threads", "1", *options, "conformance_echo:app"])
            # With --proxy-protocol every connection, the sync requests' too, starts with one.
            server.preamble = b"PROXY UNKNOWN\r\n" if "--proxy-protocol" in options else b""
            server.sync = itertools.count()
            server.seen = 0
            running[key] = server
        return running[key]

    yield get
    for server in running.values():
        server.stop()


# --- sending and receiving -------------------------------------------------------------------


def send(sock: socket.socket, data: bytes, rng: random.Random | None) -> None:
    """Whole, or in fragments of 1-7 bytes with a pause now and then so that the server
    really sees them apart. A server that refuses early may close before all is sent."""
    try:
        if rng is None:
            sock.sendall(data)
            return
        i = 0
        while i < len(data):
            n = rng.randint(1, 7)
            sock.sendall(data[i : i + n])
            i += n
            if i < 2048 and rng.random() < 0.08:
                time.sleep(0.001)
    except (BrokenPipeError, ConnectionResetError):
        pass


@dataclass
class Exchange:
    responses: list[Response]
    closed: bool  # the server closed the connection
    extra: bytes  # bytes after the responses read
    calls: list[tuple[str, str]]  # (method, RAW_URI) of every application call


def read_all(conn: Conn, wanted: int | None) -> tuple[list[Response], bool, bytes]:
    """Read `wanted` responses (None: as many as come), then half-close and read to EOF.

    A server still waiting for bytes (a cut-off request) gets the half-close after a short
    quiet spell; the verdict never depends on that timing, only the length of the test."""
    responses: list[Response] = []
    closed = False
    while wanted is None or len(responses) < wanted:
        conn.sock.settimeout(0.5 if wanted is None else 10)
        try:
            responses.append(conn.read_response())
        except Truncated:
            closed = True
            break
        except ConnectionResetError:
            closed = True
            break
        except TimeoutError:
            if wanted is not None:
                raise
            break
    if not closed:
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        conn.sock.settimeout(10)
        while True:
            try:
                data = conn.sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            conn.buf += data
        closed = True
        # What came after the half-close: more responses (an invalid case) or stray bytes.
        while conn.buf:
            try:
                responses.append(conn.read_response())
            except (Truncated, AssertionError):
                break
    return responses, closed, conn.buf


def exchange(server, data: bytes, rng, wanted: int | None) -> Exchange:
    with Conn(server, timeout=10) as conn:
        if not server.is_unix:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        send(conn.sock, data, rng)
        responses, closed, extra = read_all(conn, wanted)
    return Exchange(responses, closed, extra, calls_since_last_sync(server))


def calls_since_last_sync(server) -> list[tuple[str, str]]:
    """The application calls since the previous sync: send a sync request and wait for its
    line (one Python thread, so every earlier call printed before it)."""
    n = next(server.sync)
    target = f"/__sync__/{n}"
    # HTTP/1.0 with no header fields passes every limit a case sets.
    with Conn(server, timeout=10) as conn:
        conn.send(server.preamble + f"GET {target} HTTP/1.0\r\n\r\n".encode())
        assert conn.read_response().status == 200
    server.wait_for_output(re.escape(f"conformance called GET {target!r}"))
    calls = []
    for i in range(server.seen, len(server.lines)):
        if m := CALLED.search(server.lines[i]):
            raw = ast.literal_eval(m.group(2))
            if raw == target:
                server.seen = i + 1
                return calls
            calls.append((m.group(1), raw))
    raise AssertionError(f"sync line for {target} not found")


# --- what the corpus expects -----------------------------------------------------------------


def lacks_host(req: dict) -> bool:
    return req["version"] == [1, 1] and not any(n == "HOST" for n, _ in req["headers"])


def request_line(req: dict) -> bytes:
    major, minor = req["version"]
    return f"{req['method']} {req['uri']['raw']} HTTP/{major}.{minor}\r\n".encode("latin-1")


def add_host_to_valid(raw: bytes, expect: list[dict]) -> bytes:
    """Insert `Host:` after the request line of each expected request that lacks one."""
    out, at = b"", 0
    for req in expect:
        line = request_line(req)
        # Case-insensitively: a casefolding case expects `-BLARGH` for `-blargh`.
        i = raw.lower().index(line.lower(), at)
        out += raw[at : i + len(line)]
        if lacks_host(req):
            out += f"Host: {ADDED_HOST}\r\n".encode()
        at = i + len(line)
    return out + raw[at:]


def invalid_lacks_host(raw: bytes) -> bool:
    head = raw.split(b"\r\n\r\n", 1)[0]
    first, _, rest = head.partition(b"\r\n")
    return first.endswith(b" HTTP/1.1") and not re.search(rb"(?im)^host:", rest)


def add_host_to_invalid(raw: bytes) -> bytes:
    first, _, rest = raw.partition(b"\r\n")
    return first + b"\r\nHost: " + ADDED_HOST.encode() + b"\r\n" + rest


def environ_headers(req: dict, host_added: bool) -> dict[str, str]:
    """The header keys the environ should have, combined as ferrule combines them (PEP 3333:
    one key per name, values joined with `,`, cookies with `; `; names with `_` dropped)."""
    out: dict[str, str] = {}
    for name, value in req["headers"]:
        if "_" in name:
            continue
        if name in ("CONTENT-TYPE", "CONTENT-LENGTH"):
            key = name.replace("-", "_")
        else:
            key = "HTTP_" + name.replace("-", "_")
        if key in out:
            out[key] += ("; " if name == "COOKIE" else ",") + value
        else:
            out[key] = value
    if host_added and lacks_host(req):
        out["HTTP_HOST"] = ADDED_HOST
    body = base64.b64decode(req["body_b64"])
    if body and "CONTENT_LENGTH" not in out:
        # A chunked body is read whole, so ferrule states its length (environ.rs).
        out["CONTENT_LENGTH"] = str(len(body))
    return out


def echo_mismatches(req: dict, resp: Response, host_added: bool, fragment: bool) -> list[str]:
    if not 200 <= resp.status < 300:
        return [f"status {resp.status}: {resp.body[:300]!r}"]
    got = resp.json()
    uri = req["uri"]
    raw = uri["raw"] if fragment else uri["raw"].split("#", 1)[0]
    major, minor = req["version"]
    headers = {k: v for k, v in got["headers"].items() if k != "HTTP_X_REQUEST_ID"}
    want = {
        "method": req["method"],
        "raw_uri": raw,
        "request_uri": raw,
        "path": unquote_to_bytes(uri["path"].encode("latin-1")).decode("latin-1"),
        "query": uri["query"],
        "protocol": f"HTTP/{major}.{minor}",
        "headers": environ_headers(req, host_added),
        "body": req["body_b64"],
    }
    have = {**got, "headers": headers}
    return [f"{k}: got {have.get(k)!r}, want {v!r}" for k, v in want.items() if have.get(k) != v]


# --- verdicts ---------------------------------------------------------------------------------


def refused(ex: Exchange) -> list[str]:
    """Refused: no success and no application call (a close without response counts)."""
    problems = [
        f"status {r.status}" for r in ex.responses if not (400 <= r.status < 500 or r.status == 501)
    ]
    if ex.calls:
        problems.append(f"application called: {ex.calls}")
    return problems


def judge_valid(ex: Exchange, expect: list[dict], host_added: bool, fragment: bool) -> list[str]:
    """Each expected request answered with a matching echo, until the first HTTP/1.1 request
    without Host (as sent), which gets 400 and ends the connection."""
    problems = []
    answered = expect
    cut = next((i for i, r in enumerate(expect) if not host_added and lacks_host(r)), None)
    if cut is not None:
        answered = expect[:cut]
    for i, req in enumerate(answered):
        if i >= len(ex.responses):
            problems.append(f"request {i} ({req['method']} {req['uri']['raw'][:60]}): no response")
            break
        problems += [
            f"request {i}: {p}" for p in echo_mismatches(req, ex.responses[i], host_added, fragment)
        ]
    if cut is not None:
        rest = ex.responses[cut:]
        if not rest or rest[0].status != 400:
            problems.append(f"request {cut} without Host: want 400, got {[r.status for r in rest]}")
        if len(rest) > 1:
            problems.append(f"responses after the 400: {[r.status for r in rest[1:]]}")
    elif len(ex.responses) > len(expect):
        problems.append(f"unexpected responses: {[r.status for r in ex.responses[len(expect) :]]}")
    want_calls = [
        (r["method"], r["uri"]["raw"] if fragment else r["uri"]["raw"].split("#", 1)[0])
        for r in answered
    ]
    if ex.calls != want_calls:
        problems.append(f"application calls {ex.calls}, want {want_calls}")
    return problems


def run_case(server, name: str, data: bytes, rng, host_added: bool) -> list[str]:
    case = CASES[name]
    handling = DIVERGENCES.get(name, ("", ""))[0]
    if name.startswith("valid/"):
        expect = case["expect"]
        if handling == "refused":
            return refused(exchange(server, data, rng, None))
        cut = next((i for i, r in enumerate(expect) if not host_added and lacks_host(r)), None)
        wanted = len(expect) if cut is None else cut + 1
        ex = exchange(server, data, rng, wanted)
        return judge_valid(ex, expect, host_added, fragment=handling != "no-fragment")
    ex = exchange(server, data, rng, None)
    if handling == "accepted" and host_added:
        if not ex.responses or not 200 <= ex.responses[0].status < 300 or not ex.calls:
            return [f"documented as answered, got {[r.status for r in ex.responses]}"]
        return []
    return refused(ex)


def variants(name: str) -> list[tuple[str, bytes, bool]]:
    """(label, bytes, host_rule_out): as sent, and with Host added where HTTP/1.1 requests
    lack it. `host_rule_out` is true when no request is refused just for lacking Host."""
    case = CASES[name]
    raw = base64.b64decode(case["raw_b64"])
    if name.startswith("valid/"):
        if not any(lacks_host(r) for r in case["expect"]):
            return [("as sent", raw, True)]
        return [
            ("as sent", raw, False),
            ("Host added", add_host_to_valid(raw, case["expect"]), True),
        ]
    if not invalid_lacks_host(raw):
        return [("as sent", raw, True)]
    return [("as sent", raw, False), ("Host added", add_host_to_invalid(raw), True)]


@pytest.mark.parametrize("sending", ["whole", "fragments"])
@pytest.mark.parametrize("transport", ["tcp", "unix"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_case(servers, name, transport, sending):
    handling, reason = DIVERGENCES.get(name, ("", ""))
    if handling == "skip":
        pytest.skip(reason)
    server = servers(transport, flags(CASES[name]["config"]))
    problems = []
    for label, data, host_ok in variants(name):
        rng = random.Random(f"{name} {transport} {label}") if sending == "fragments" else None
        problems += [f"{label}: {p}" for p in run_case(server, name, data, rng, host_ok)]
    assert not problems, f"{name}:\n" + "\n".join(problems)
