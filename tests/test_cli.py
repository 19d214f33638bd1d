"""The `ferrule` command: --help/--version, exit codes for bad options and apps that cannot
be imported, binding (address in use, several listeners, Unix socket files), application
factories and FERRULE_* environment variables.

Tests that serve requests use the `serve` fixture (TCP and Unix); tests about Unix socket
files start the server themselves on a path they prepare.
"""

import os
import re
import signal
import socket
import threading

import ferrule
import pytest
from conftest import TESTS, UnixHTTPConnection
from helpers import (
    Conn,
    Unmet,
    build_request,
    host_header,
    run_ferrule,
    wait_until,
)

APPS = TESTS / "apps"


def unix_get(path, target="/"):
    conn = UnixHTTPConnection(str(path), timeout=10)
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# -- --help and --version -----------------------------------------------------------------

DEFAULTS = {
    "--bind": "127.0.0.1:8000",
    "--unix-socket-mode": "660",
    "--threads": "32",
    "--min-threads": "1",
    "--thread-idle-timeout": "60",
    "--max-queue": "1024",
    "--max-connections": "10000",
    "--keep-alive": "5",
    "--header-timeout": "10",
    "--max-body-size": "1G",
    "--body-buffer-size": "1M",
    "--limit-request-line": "4094",
    "--limit-request-fields": "100",
    "--limit-request-field-size": "8190",
    "--graceful-timeout": "30",
}
OTHER_OPTIONS = ["--access-log", "--log-file", "--pythonpath", "--version", "--help"]


def option_blocks(text: str) -> dict[str, str]:
    """Each long option's help text, whitespace-normalized."""
    blocks: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^\s+(?:-\w, )?(--[\w-]+)", line)
        if m:
            current = m.group(1)
            blocks[current] = line
        elif re.match(r"^\S", line):
            current = None  # a heading
        elif current:
            blocks[current] += " " + line
    return {k: " ".join(v.split()) for k, v in blocks.items()}


def test_help_lists_every_option_grouped_with_defaults():
    code, out, _ = run_ferrule("--help", merge_stderr=True)
    assert code == 0, out
    blocks = option_blocks(out)
    for option in [*DEFAULTS, *OTHER_OPTIONS]:
        assert option in blocks, f"{option} missing from --help:\n{out}"
    for option, default in DEFAULTS.items():
        block = blocks[option]
        assert re.search(rf"(?i)default(?::| is) {re.escape(default)}\b", block), block
        env = "FERRULE_" + option[2:].upper().replace("-", "_")
        assert env in block, f"{env} not shown for {option}: {block}"
    headings = [
        line
        for line in out.splitlines()
        if re.match(r"^[A-Z][\w ]*:$", line) and line not in ("Usage:", "Arguments:", "Options:")
    ]
    assert len(headings) >= 3, f"options are not grouped under headings:\n{out}"


def test_version():
    code, out, _ = run_ferrule("--version", merge_stderr=True)
    assert code == 0
    assert ferrule.__version__ in out
    assert "ferrule" in out


# -- exit code 2 before binding -----------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "needle"),
    [
        ("ferrule_no_such_module:app", r"No module named '?ferrule_no_such_module"),
        ("badimport:app", r"No module named '?ferrule_test_no_such_module"),
        ("echo:no_such_attribute", r"no_such_attribute"),
        ("factory:no_such_factory()", r"no_such_factory"),
    ],
    ids=["missing-module", "import-error-inside", "missing-attribute", "missing-factory"],
)
def test_app_that_cannot_be_imported_exits_2_before_binding(app, needle):
    code, out, _ = run_ferrule("--bind", "127.0.0.1:0", app, merge_stderr=True)
    assert code == 2, out
    assert re.search(needle, out), out
    assert "Listening at" not in out and "Ready to accept" not in out, out


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--threads", "abc"),
        ("--threads", "0"),
        ("--max-body-size", "10X"),
        ("--body-buffer-size", "lots"),
        ("--keep-alive", "-1"),
        ("--unix-socket-mode", "999"),
        ("--umask", "8"),
        ("--bind", "nonsense"),
        ("--limit-request-line", "-5"),
        ("--min-threads", "64"),
    ],
)
def test_bad_option_value_exits_2_naming_the_option(option, value):
    code, out, _ = run_ferrule(
        "--bind", "127.0.0.1:0", f"{option}={value}", "echo:app", merge_stderr=True
    )
    assert code == 2, out
    assert option in out, out
    assert "Listening at" not in out, out


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--threads", "expected a whole number, such as 8"),
        ("--max-requests", "expected a whole number, such as 8"),
        ("--timeout", "expected a number of seconds, such as 30 or 0.5"),
    ],
)
def test_a_number_that_is_not_one_is_explained(option, expected):
    # Issue 12: "invalid digit found in string" is Rust's wording, not a user's.
    code, out, _ = run_ferrule(f"{option}=abc", "echo:app", merge_stderr=True)
    assert code == 2, out
    assert f"invalid value 'abc' for '{option} <" in out and expected in out, out
    assert "invalid digit" not in out and "float literal" not in out, out


def test_no_app_in_a_django_project_says_what_to_type(tmp_path):
    (tmp_path / "manage.py").write_text(
        'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")\n'
    )
    code, _, err = run_ferrule(cwd=tmp_path)
    assert code == 2, err
    assert "python manage.py server" in err, err
    assert '"ferrule" to INSTALLED_APPS' in err
    assert "ferrule shop.wsgi" in err


def test_help_says_how_to_enable_manage_py_server():
    code, out, _ = run_ferrule("--help", merge_stderr=True)
    assert code == 0
    assert 'add "ferrule" to INSTALLED_APPS' in " ".join(out.split()), out[-600:]


def test_unknown_option_exits_2():
    code, out, _ = run_ferrule("--no-such-option", "echo:app", merge_stderr=True)
    assert code == 2, out
    assert "--no-such-option" in out


def test_bad_environment_value_exits_2_naming_the_option():
    code, out, _ = run_ferrule(
        "--bind", "127.0.0.1:0", "echo:app", env={"FERRULE_THREADS": "abc"}, merge_stderr=True
    )
    assert code == 2, out
    assert "--threads" in out or "FERRULE_THREADS" in out, out


# -- binding ------------------------------------------------------------------------------


def test_port_in_use_exits_2_with_one_line_naming_the_address():
    # Issue 12: it exited 1 where every other start-up failure exits 2.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, _ = run_ferrule("--bind", f"127.0.0.1:{port}", "echo:app", merge_stderr=True)
    assert code == 2, out
    lines = [line for line in out.splitlines() if f"127.0.0.1:{port}" in line]
    assert len(lines) == 1, out
    assert f"another process is listening on port {port}" in lines[0], out
    assert "Traceback" not in out and "Listening at" not in out, out


def test_factory_call_serves_what_it_returns(serve):
    server = serve("factory:create()")
    resp, body = server.request("GET", "/")
    assert (resp.status, body) == (200, b"made by create()")


def test_module_alone_means_module_application(serve):
    server = serve("echo")
    assert server.request("GET", "/")[0].status == 200


def test_app_from_cwd_and_from_pythonpath(serve, tmp_path):
    here = tmp_path / "cwd"
    extra = tmp_path / "extra"
    here.mkdir()
    extra.mkdir()
    source = (
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Length', '{n}')])\n"
        "    return [b'{body}']\n"
    )
    (here / "cwd_app_mod.py").write_text(source.format(n=8, body="from cwd"))
    (extra / "pp_app_mod.py").write_text(source.format(n=15, body="from pythonpath"))
    server = serve("cwd_app_mod:app", cwd=here)
    assert server.request("GET", "/")[1] == b"from cwd"
    server.stop()
    server = serve("pp_app_mod:app", "--pythonpath", str(extra))
    assert server.request("GET", "/")[1] == b"from pythonpath"


def test_two_binds_tcp_and_unix_serve_both(serve, transport, tmp_path):
    other = "127.0.0.1:0" if transport == "unix" else f"unix:{tmp_path / 'second.sock'}"
    server = serve("echo:app", "--bind", other)
    assert len(server.urls) == 2, server.output()
    assert {u.startswith("unix:") for u in server.urls} == {True, False}
    for url in server.urls:
        if url.startswith("unix:"):
            status, body = unix_get(url[len("unix:") :], "/via-unix")
            assert status == 200 and b"/via-unix" in body
        else:
            m = re.match(r"http://([\d.]+):(\d+)$", url)
            assert m, url
            with socket.create_connection((m.group(1), int(m.group(2))), timeout=10) as s:
                s.sendall(build_request("GET", "/via-tcp", host=f"{m.group(1)}:{m.group(2)}"))
                data = s.recv(65536)
            assert data.startswith(b"HTTP/1.1 200"), data[:200]


def test_access_log_has_one_combined_line_per_request(serve):
    server = serve("echo:app", "--access-log")
    with Conn(server) as c:
        c.request("GET", "/logged?x=1", headers=[("User-Agent", "ferrule-tests/1")])
    line = server.wait_for_output(r'"GET /logged\?x=1 HTTP/1.1" 200 \d+').string
    assert "ferrule-tests/1" in line, line
    assert re.search(r"\b\d+\s*$", line), line  # the duration in microseconds ends the line


def test_no_access_log_without_the_flag(serve):
    server = serve("echo:app")
    assert server.request("GET", "/not-logged")[0].status == 200
    assert server.stop(signal.SIGTERM, timeout=10) == 0  # all output is in once it exits
    assert "/not-logged" not in server.output(), server.output()


# -- Unix socket files ------------------------------------------------------------------


def test_stale_unix_socket_file_is_replaced(launched, tmp_path):
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # closing without unlink leaves a socket file nobody answers on
    assert path.exists()
    launched(["--bind", f"unix:{path}", "echo:app"])
    assert unix_get(path)[0] == 200


def test_unix_socket_in_use_by_a_live_server_is_not_stolen(tmp_path):
    path = tmp_path / "live.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        code, out, _ = run_ferrule("--bind", f"unix:{path}", "echo:app", merge_stderr=True)
        assert code == 2, out
        assert str(path) in out, out
        with socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(5)
            probe.connect(str(path))  # still ours


def test_regular_file_at_the_socket_path_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "not-a-socket"
    path.write_text("precious data\n")
    code, out, _ = run_ferrule("--bind", f"unix:{path}", "echo:app", merge_stderr=True)
    assert code == 2, out
    assert str(path) in out, out
    assert "Listening at" not in out, out
    assert path.read_text() == "precious data\n"


@pytest.mark.parametrize(("args", "mode"), [([], 0o660), (["--unix-socket-mode", "600"], 0o600)])
def test_unix_socket_mode_is_applied_and_the_file_unlinked_on_exit(launched, tmp_path, args, mode):
    path = tmp_path / "mode.sock"
    server = launched(["--bind", f"unix:{path}", *args, "echo:app"])
    assert os.stat(path).st_mode & 0o777 == mode, oct(os.stat(path).st_mode)
    assert unix_get(path)[0] == 200
    assert server.stop(signal.SIGTERM, timeout=10) == 0
    assert not path.exists()


# -- FERRULE_* environment variables ------------------------------------------------------


def test_environment_variables_configure_the_server(serve):
    server = serve("echo:app", env={"FERRULE_MAX_BODY_SIZE": "1K"})
    with Conn(server) as c:
        assert c.request("POST", "/", body=b"x" * 1000).status == 200
        assert c.request("POST", "/", body=b"x" * 2000).status == 413


def test_ferrule_threads_env_runs_two_requests_at_once(serve, tmp_path):
    server = serve("slow:app", env={"FERRULE_THREADS": "2"})
    host = host_header(server)
    gate = tmp_path / "gate"
    conns = [Conn(server) for _ in range(2)]
    try:
        for i, c in enumerate(conns):
            c.send(build_request("GET", f"/?gate={gate}&tag=t{i}", host=host))
        server.wait_for_output("slow started tag=t0")
        server.wait_for_output("slow started tag=t1")
        # Both began before either finished (the first cannot until the gate opens): two
        # threads ran them.
        assert "slow finished" not in server.output()
        gate.touch()
        for c in conns:
            assert c.read_response().status == 200
    finally:
        for c in conns:
            c.close()


def test_threads_1_runs_requests_one_at_a_time(serve):
    # The counterpart of the test above, so that it proves something.
    server = serve("slow:app", "--threads", "1")
    host = host_header(server)
    results = []

    def get(i):
        with Conn(server) as c:
            results.append(c.request("GET", f"/?s=0.5&tag=o{i}", host=host).status)

    threads = [threading.Thread(target=get, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [200, 200]

    def both_finished():
        out = server.output()
        slow = [line for line in out.splitlines() if "fixture: slow" in line]
        return out.count("slow finished") == 2 or Unmet(slow)

    wait_until(both_finished, 5, what="both finished")
    out = [
        line.split("fixture: ")[1].split(" tag=")[0]
        for line in server.output().splitlines()
        if "fixture: slow" in line
    ]
    assert out == ["slow started", "slow finished", "slow started", "slow finished"], out
