"""PEP 3333 against a live server: the environ, wsgi.input, and every way an application
answers (lists, streams, file_wrapper, write()) or breaks the rules.

Every test runs over TCP and over a Unix socket: on a server of its own (`serve`), or, where
it only looks at its own answers and log lines, on one the module's tests share per app and
transport (`shared`).
"""

import hashlib
import os
import re

import pytest
from helpers import (
    Conn,
    Truncated,
    Unmet,
    build_request,
    echo,
    host_header,
    wait_until,
)

CGI_KEYS = [
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
]
WSGI_KEYS = {
    "wsgi.version": ("tuple", "(1, 0)"),
    "wsgi.url_scheme": ("str", "http"),
    "wsgi.multithread": ("bool", "True"),
    "wsgi.multiprocess": ("bool", "False"),
    "wsgi.run_once": ("bool", "False"),
    "wsgi.input_terminated": ("bool", "True"),
}


def wait_for_new_output(server, pattern: str, start: int, timeout: float = 10) -> str:
    """The first output line at index >= `start` matching `pattern`."""
    rx = re.compile(pattern)

    def find():
        server.output()
        new = server.lines[start:]
        hit = next((line for line in new if rx.search(line)), None)
        return hit or Unmet({"new lines": [line.rstrip() for line in new[-3:]]})

    return wait_until(find, timeout, what=f"a log line matching {pattern!r}")


# -- environ ------------------------------------------------------------------------------


def test_environ_has_every_pep3333_key_with_the_right_type(shared):
    server = shared("echo:app")
    data = echo(
        server,
        "POST",
        "/a/b?x=1&y=2",
        body=b"hi",
        headers={"Host": "example.com:8080", "Content-Type": "text/plain", "X-Custom": "v"},
    )
    env, types = data["environ"], data["types"]
    for key in CGI_KEYS:
        assert types.get(key) == "str", (key, types.get(key))
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/a/b"
    assert env["QUERY_STRING"] == "x=1&y=2"
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "2"
    assert env["SERVER_NAME"] == "example.com"
    assert env["SERVER_PORT"] == "8080"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["HTTP_HOST"] == "example.com:8080"
    assert env["HTTP_X_CUSTOM"] == "v"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    if server.is_unix:
        assert "REMOTE_PORT" not in env
    else:
        assert types["REMOTE_PORT"] == "str" and env["REMOTE_PORT"].isdigit()
    for key, (typ, value) in WSGI_KEYS.items():
        assert (types.get(key), env.get(key)) == (typ, value), key
    assert data["capabilities"] == {
        "wsgi.input": ["read", "readline", "readlines", "__iter__"],
        "wsgi.errors": ["write", "writelines", "flush"],
        "wsgi.file_wrapper": True,
    }
    assert data["non_str_keys"] == []
    # CGI and HTTP_ values are native strings holding latin-1 code points.
    for key, value in env.items():
        if "." not in key:
            assert types[key] == "str", key
            value.encode("latin-1")


def test_server_name_and_port_without_a_port_in_host(shared):
    server = shared("echo:app")
    env = echo(server, headers={"Host": "example.org"})["environ"]
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.org", "80")


def test_server_name_and_port_come_from_the_listener_without_host(shared):
    server = shared("echo:app")
    with Conn(server) as c:
        resp = c.request("GET", "/", host=None, version="HTTP/1.0")
    env = resp.json()["environ"]
    assert isinstance(env["SERVER_NAME"], str) and env["SERVER_NAME"]
    assert isinstance(env["SERVER_PORT"], str)
    if not server.is_unix:
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", str(server.address[1]))


@pytest.mark.parametrize(
    ("target", "path_info", "query"),
    [
        ("/caf%E9", "caf\xe9", ""),
        ("/caf%C3%A9", "caf\xc3\xa9", ""),
        ("/a%2Fb", "a/b", ""),
        ("/a%20b+c", "a b+c", ""),
        ("/%25?", "%", ""),
        ("/p?a=%20b+c&d=%E9&&e", "p", "a=%20b+c&d=%E9&&e"),
        ("/p?q=a/b?c", "p", "q=a/b?c"),
    ],
    ids=["latin1", "utf8-bytes", "slash", "space-plus", "percent", "query-raw", "query-slash"],
)
def test_path_info_is_percent_decoded_as_latin1_and_query_string_stays_raw(
    shared, target, path_info, query
):
    server = shared("echo:app")
    with Conn(server) as c:
        resp = c.request("GET", target)
    env = resp.json()["environ"]
    assert env["PATH_INFO"] == "/" + path_info
    assert env["QUERY_STRING"] == query


def test_absolute_form_target(shared):
    server = shared("echo:app")
    with Conn(server) as c:
        resp = c.request("GET", "http://example.com:81/abs/path?y=1", host="example.com:81")
    env = resp.json()["environ"]
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/abs/path", "y=1")
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "81")


def test_header_folding_into_the_environ(shared):
    server = shared("echo:app")
    headers = [
        ("X-Dup", "a"),
        ("X-Dup", "b"),
        ("Cookie", "a=1"),
        ("Cookie", "b=2"),
        ("Foo-Bar", "good"),
        ("Foo_Bar", "evil"),
        ("Only_Underscore", "dropped"),
        ("x-lower-case", "kept"),
        ("X-Empty", ""),
        ("X-Latin", "caf\xe9"),
    ]
    with Conn(server) as c:
        resp = c.request("GET", "/", headers=headers)
    env = resp.json()["environ"]
    assert env["HTTP_X_DUP"] == "a,b"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_FOO_BAR"] == "good"
    assert "HTTP_ONLY_UNDERSCORE" not in env
    assert env["HTTP_X_LOWER_CASE"] == "kept"
    assert env["HTTP_X_EMPTY"] == ""
    assert env["HTTP_X_LATIN"] == "caf\xe9"


def test_worker_threads_have_their_names_in_python(shared):
    # Tracebacks, logging's %(threadName)s and threading.enumerate() say ferrule-worker-N, as
    # py-spy and top -H do, not the Dummy-N Python gives threads it did not start.
    server = shared("procapp:application")
    names = {server.request("GET", "/thread")[1].decode() for _ in range(5)}
    assert all(re.fullmatch(r"ferrule-worker-\d+", name) for name in names), names


def test_wsgi_errors_reaches_the_server_log(shared):
    server = shared("echo:app")
    echo(server, path="/?errors=written-to-wsgi-errors-42")
    server.wait_for_output("written-to-wsgi-errors-42")


# -- wsgi.input -------------------------------------------------------------------------

READ_METHODS = [
    "read",
    "read-none",
    "read-neg",
    "cl",
    "chunks",
    "readline",
    "readline-size",
    "readlines",
    "iter",
]


def test_wsgi_input_every_read_method(shared):
    server = shared("echo:app")
    body = b"line one\nline two\r\n\nlonger line number three\nno newline at the end"
    lines = body.splitlines(keepends=True)
    failures = []
    for how in READ_METHODS:
        for payload in (body, b""):
            data = echo(server, "POST", f"/?read={how}&n=5", body=payload)
            if (data["body"], data["body_len"]) != (payload.decode(), len(payload)):
                failures.append(f"{how} on {payload!r}: got {data['body']!r}")
            if data["body_sha256"] != hashlib.sha256(payload).hexdigest():
                failures.append(f"{how} on {payload!r}: sha256 differs")
        # Line methods must split at b"\n" exactly like a file does.
        if how in ("readline", "iter"):
            data = echo(server, "POST", f"/?read={how}", body=body)
            if data["reads"] != len(lines) + (how == "readline"):
                failures.append(f"{how}: {data['reads']} calls for {len(lines)} lines")
    assert not failures, "\n".join(failures)


def test_wsgi_input_read_n_never_returns_more_than_n(shared):
    server = shared("echo:app")
    body = os.urandom(100_000)
    for n in (1, 7, 4096, 200_000):
        data = echo(server, "POST", f"/?read=chunks&n={n}", body=body)
        assert data["body_sha256"] == hashlib.sha256(body).hexdigest(), n
        assert data["reads"] >= -(-len(body) // n) + 1, n


# -- responses ------------------------------------------------------------------------


def test_streamed_response_without_content_length_is_chunked(shared):
    server = shared("stream:app")
    with Conn(server) as c:
        resp = c.request("GET", "/?n=5&size=10")
        again = c.request("GET", "/?n=2&size=3&empties=1")
    assert resp.status == 200
    assert resp.chunked and resp.header("Content-Length") is None
    assert resp.body == b"".join(bytes([65 + i]) * 10 for i in range(5))
    # Empty chunks from the app must not end the response early.
    assert again.body == b"AAABBB"


def test_streamed_response_with_content_length_is_not_chunked(shared):
    server = shared("stream:app")
    with Conn(server) as c:
        resp = c.request("GET", "/?n=4&size=1000&cl=1")
    assert resp.status == 200
    assert not resp.chunked and resp.header("Content-Length") == "4000"
    assert resp.body == b"A" * 1000 + b"B" * 1000 + b"C" * 1000 + b"D" * 1000


def test_streamed_response_to_http_1_0_is_close_delimited(shared):
    server = shared("stream:app")
    with Conn(server) as c:
        resp = c.request("GET", "/?n=3&size=5", version="HTTP/1.0")
    assert resp.status == 200 and not resp.chunked
    assert resp.body == b"AAAAABBBBBCCCCC"


def test_streamed_response_is_sent_as_it_is_produced(shared, tmp_path):
    server = shared("stream:app")
    gate = tmp_path / "gate"
    with Conn(server, timeout=10) as c:
        target = f"/?n=2&size=10&gate={gate}&tag=live"
        c.send(build_request("GET", target, host=host_header(server)))
        head = c.read_head()
        assert head.status == 200
        assert c.read_chunk() == b"A" * 10
        # The iterator waits for the gate before its second chunk: nothing was buffered up.
        assert "stream close() called tag=live" not in server.output()
        gate.touch()
        assert c.read_chunk() == b"B" * 10
        assert c.read_chunk() == b""
    server.wait_for_output("stream close\\(\\) called tag=live")


def test_close_is_called_when_the_client_disconnects_mid_stream(shared):
    server = shared("stream:app")
    with Conn(server) as c:
        c.send(build_request("GET", "/?n=100000&size=1000&delay=0.01&tag=gone", host="x"))
        assert c.read_head().status == 200
        assert c.read_chunk() == b"A" * 1000
    server.wait_for_output("stream close\\(\\) called tag=gone", timeout=15)
    resp, body = server.request("GET", "/?n=1&size=2")
    assert (resp.status, body) == (200, b"AA")


def test_response_headers_keep_their_order_and_repeats(shared):
    server = shared("echo:app")
    with Conn(server) as c:
        resp = c.request("GET", "/?hdr=Set-Cookie:a=1&hdr=Set-Cookie:b=2&hdr=X-Thing:%20v")
    assert resp.headers_named("Set-Cookie") == ["a=1", "b=2"]
    assert resp.header("X-Thing") == "v"


def test_latin1_response_header_value_is_sent_as_one_byte(shared):
    server = shared("echo:app")
    with Conn(server) as c:
        resp = c.request("GET", "/?hdr=X-Latin:caf%C3%A9")
    assert resp.header("X-Latin") == "caf\xe9"  # the byte 0xE9, decoded as latin-1 here


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_no_body_is_sent_for_204_and_304_even_if_the_app_returns_one(shared, status):
    server = shared("echo:app")
    with Conn(server) as c:
        resp = c.request("GET", "/?status=" + status.replace(" ", "%20"))
        # A stray body would be parsed as the start of this response.
        after = c.request("GET", "/after")
    assert resp.status == int(status[:3])
    assert after.status == 200 and after.json()["environ"]["PATH_INFO"] == "/after"


def test_streamed_body_shorter_than_its_content_length_is_cut_off(shared):
    server = shared("stream:app")
    with Conn(server) as c:
        with pytest.raises((Truncated, ConnectionResetError)):
            c.request("GET", "/?n=2&size=10&declare=100")
    resp, _ = server.request("GET", "/?n=1&size=1")
    assert resp.status == 200


def test_streamed_body_longer_than_its_content_length_is_not_sent_past_it(shared):
    server = shared("stream:app")
    with Conn(server) as c:
        resp = c.request("GET", "/?n=3&size=10&declare=15")
        assert resp.body == b"A" * 10 + b"B" * 5
        # Whether the connection stays open or not, no excess byte may reach the client.
        try:
            after = c.request("GET", "/?n=1&size=3")
        except (Truncated, ConnectionResetError, BrokenPipeError):
            after = None
    if after is not None:
        assert (after.status, after.body) == (200, b"AAA")


def test_head_of_a_file_wrapper_response_sends_no_body(serve, tmp_path):
    server = serve("filewrap:app")
    path = tmp_path / "payload.bin"
    path.write_bytes(b"z" * 5000)
    with Conn(server) as c:
        head = c.request("HEAD", f"/?path={path}&cl=size")
        get = c.request("GET", f"/?path={path}")
    assert head.status == 200 and head.header("Content-Length") == "5000"
    assert get.body == b"z" * 5000
    server.wait_for_output("filewrap close\\(\\) called")


def test_response_status_and_chunked_list_body(shared):
    server = shared("echo:app")
    with Conn(server) as c:
        created = c.request("POST", "/?status=201%20Created", body=b"x")
        listed = c.request("GET", "/?nocl=1")
    assert created.status == 201
    assert listed.status == 200
    assert listed.json()["environ"]["QUERY_STRING"] == "nocl=1"


@pytest.mark.parametrize(
    "query",
    ["cl=size", "", "nofileno=1", "nofileno=1&cl=size", "blksize=1000"],
    ids=["content-length", "no-content-length", "no-fileno", "no-fileno-content-length", "blksize"],
)
def test_file_wrapper_sends_the_file_and_closes_it(serve, tmp_path, query):
    server = serve("filewrap:app")
    content = os.urandom(300_000)
    path = tmp_path / "payload.bin"
    path.write_bytes(content)
    with Conn(server) as c:
        resp = c.request("GET", f"/?path={path}&{query}")
        again = c.request("GET", f"/?path={path}&{query}")
    assert resp.status == 200
    assert resp.body == content and again.body == content
    if "cl=size" in query:
        assert resp.header("Content-Length") == str(len(content))
    server.wait_for_output("filewrap close\\(\\) called")


def test_file_wrapper_sends_no_more_than_content_length(shared, tmp_path):
    server = shared("filewrap:app")
    path = tmp_path / "payload.bin"
    path.write_bytes(b"0123456789" * 100)
    with Conn(server) as c:
        resp = c.request("GET", f"/?path={path}&cl=25")
        again = c.request("GET", f"/?path={path}&cl=5&nofileno=1")
    assert resp.body == b"0123456789012345678901234"
    assert again.body == b"01234"


def test_write_callable_output_comes_before_the_iterable(serve):
    server = serve("errors:app")
    resp, body = server.request("GET", "/write")
    assert (resp.status, body) == (200, b"written, then returned")
    server.wait_for_output("errors close\\(\\) called path=/write")


def test_exc_info_before_the_body_replaces_the_status(serve):
    server = serve("errors:app")
    resp, body = server.request("GET", "/exc-info-before-body")
    assert (resp.status, body) == (503, b"replaced")
    server.wait_for_output("errors close\\(\\) called path=/exc-info-before-body")


# -- broken applications ---------------------------------------------------------------
# path -> regex the log must show for it
BROKEN = {
    "/raise-before": r"raised before start_response",
    "/raise-in-iter": r"iterator failed at chunk 0",
    "/return-none": r"None",
    "/return-int": r"\b42\b|\bint\b",
    "/return-str": r"\bstr\b",
    "/yield-str": r"\bstr\b",
    "/start-twice": r"start_response",
    "/bad-status": r"['\"]abc['\"]",
    "/status-no-reason": r"['\"]200['\"]",
    "/status-bytes": r"b'200 OK'|bytes",
    "/header-newline": r"X-Split",
    "/header-name-bytes": r"X-Bytes-Name",
    "/header-value-int": r"X-Int-Value",
    "/header-name-space": r"X Bad Name",
    "/header-value-non-latin1": r"X-Wide",
    "/hop-connection": r"(?i)\bConnection\b.*hop-by-hop.*PEP 3333",
    "/hop-transfer-encoding": r"(?i)Transfer-Encoding.*hop-by-hop.*PEP 3333",
    "/hop-keep-alive": r"(?i)Keep-Alive.*hop-by-hop.*PEP 3333",
    "/hop-upgrade": r"(?i)\bUpgrade\b.*hop-by-hop.*PEP 3333",
}


def test_each_broken_app_gets_500_a_logged_reason_and_close(serve):
    server = serve("errors:app")
    failures = []
    for path, reason in BROKEN.items():
        server.output()  # drain what was printed so far into server.lines
        start = len(server.lines)
        resp, body = server.request("GET", path)
        if resp.status != 500:
            failures.append(f"GET {path}: expected 500, got {resp.status} {body[:200]!r}")
        try:
            wait_for_new_output(server, reason, start, timeout=5)
        except AssertionError:
            failures.append(f"GET {path}: no log line matching {reason!r}")
        # The process survives and keeps serving.
        ok, ok_body = server.request("GET", "/ok")
        if (ok.status, ok_body) != (200, b"ok"):
            failures.append(f"GET /ok after {path}: {ok.status} {ok_body!r}")
        # Whatever iterable the app managed to return must be closed (by the time /ok is
        # answered at the latest is not promised, so wait for it).
        wait_for_new_output(server, r"errors close\(\) called path=/ok(\s|$)", start)
        created = any(f"errors body created path={path}" in line for line in server.lines[start:])
        if created:
            try:
                wait_for_new_output(server, f"errors close\\(\\) called path={path}(\\s|$)", start)
            except AssertionError:
                failures.append(f"GET {path}: close() was not called on the returned iterable")
    server.output()
    assert not failures, "\n".join(failures) + "\n--- server output ---\n" + "".join(server.lines)


@pytest.mark.parametrize("path", ["/raise-late", "/exc-info-after-body"])
def test_error_after_the_body_started_cuts_the_response_short(serve, path):
    server = serve("errors:app")
    with Conn(server, timeout=10) as c:
        try:
            resp = c.request("GET", path)
        except (Truncated, ConnectionResetError):
            resp = None  # the 200 was started and then aborted: the client can tell
    if resp is not None:
        # Only acceptable if the server held the first chunk back and could still say 500.
        assert resp.status == 500, (resp.status, resp.body)
    server.wait_for_output(f"errors close\\(\\) called path={path}(\\s|$)")
    server.wait_for_output(r"iterator failed|after the headers were sent")
    ok, body = server.request("GET", "/ok")
    assert (ok.status, body) == (200, b"ok")
