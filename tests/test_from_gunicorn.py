"""`ferrule from-gunicorn`: a gunicorn configuration file becomes ferrule TOML that
`ferrule check-config` accepts, and what has no equivalent is named on stderr with the reason
(docs/migrating-from-gunicorn.md).

The command runs as users run it, a subprocess, on the realistic files in
`apps/gunicorn_confs/`; one generated file is served end to end. The table of every gunicorn
setting is checked against the installed gunicorn, so a setting a new gunicorn adds fails here
instead of being dropped in silence. `hooks`, `user`, `group` and `proxy_protocol` are keys
ferrule is gaining; the tests that feed them to `check-config` wait for this ferrule to know them.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
import textwrap
from pathlib import Path

import gunicorn.config
import pytest
from conftest import ROOT, TESTS
from ferrule import _from_gunicorn
from helpers import run_ferrule, wait_until

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11's")

CONFS = TESTS / "apps" / "gunicorn_confs"
DOC = ROOT / "docs" / "migrating-from-gunicorn.md"


def from_gunicorn(*args: str, cwd=None) -> tuple[int, str, str]:
    return run_ferrule("from-gunicorn", *map(str, args), cwd=cwd)


def translated(conf: Path, *args: str, cwd=None) -> tuple[str, dict, str]:
    """Translate `conf`, which must succeed; (the TOML, parsed, stderr)."""
    code, out, err = from_gunicorn(conf, *args, cwd=cwd)
    assert code == 0, err
    return out, tomllib.loads(out), err


def check_config(toml: str, tmp_path: Path) -> None:
    path = tmp_path / "ferrule.toml"
    path.write_text(toml)
    code, out, err = run_ferrule("check-config", str(path), cwd=tmp_path)
    assert code == 0, f"{err}\n--- the file:\n{toml}"


@functools.cache
def ferrule_knows(key: str) -> bool:
    """Whether this ferrule accepts `key` in a configuration file."""
    with tempfile.TemporaryDirectory() as directory:
        probe = Path(directory) / "probe.toml"
        probe.write_text(f'app = "echo:app"\n{key} = {_from_gunicorn.toml_value(PROBES[key])}\n')
        return run_ferrule("check-config", str(probe))[0] == 0


PROBES = {"hooks": "echo", "user": "nobody", "group": "nogroup", "proxy_protocol": True}


def needs_keys(*keys: str):
    missing = [k for k in keys if not ferrule_knows(k)]
    return pytest.mark.skipif(bool(missing), reason=f"this ferrule has no key {missing}")


def write_conf(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


# --- the table of every setting ----------------------------------------------------------------


def test_every_gunicorn_setting_is_translated_or_named_with_a_reason():
    names = {s.name for s in gunicorn.config.KNOWN_SETTINGS}
    assert names - _from_gunicorn.KNOWN == set(), "gunicorn settings the translator ignores"
    assert _from_gunicorn.KNOWN - names == set(), "settings this gunicorn does not have"


def test_the_defaults_it_compares_with_are_gunicorns():
    settings = gunicorn.config.Config().settings
    for name, (default, _) in _from_gunicorn.UNMAPPED.items():
        if default is not _from_gunicorn.ANY:
            assert settings[name].default == default, name


def test_the_migration_guide_lists_every_gunicorn_setting():
    rows = set(re.findall(r"^\| `([a-z0-9_]+)` \|", DOC.read_text(), re.MULTILINE))
    missing = {s.name for s in gunicorn.config.KNOWN_SETTINGS} - rows
    assert missing == set(), f"settings missing from the table in {DOC.name}"


# --- realistic files ---------------------------------------------------------------------------


def test_a_django_production_file(tmp_path):
    out, toml, err = translated(CONFS / "django_production.py")
    cores = os.cpu_count() or 1
    assert toml == {
        "app": "mysite.wsgi:application",
        "django_settings": "mysite.settings",
        "working_dir": str(CONFS),
        "bind": ["unix:/run/mysite/gunicorn.sock", "127.0.0.1:8001"],
        "unix_socket_mode": "770",
        "keep_alive": 75,
        "limit_request_line": 8190,
        "limit_request_field_size": 16380,
        "threads": 4,
        "timeout": 60,
        "access_log": True,
        "forwarded_allow_ips": "10.0.0.0/8,127.0.0.1",
        "workers": int(os.environ.get("WEB_CONCURRENCY", cores * 2 + 1)),
        "max_requests": 2000,
        "max_requests_jitter": 200,
        "pid": "/run/mysite/gunicorn.pid",
        "umask": "007",
        "env": {"DJANGO_DEBUG": "0"},
    }
    # A computed value says so, quoting the file.
    assert '# the file computes workers (int(os.environ.get("WEB_CONCURRENCY"' in out
    assert err == "", "everything in this file has an equivalent"
    check_config(out, tmp_path)


def test_settings_without_an_equivalent_are_named_with_why(tmp_path):
    out, toml, err = translated(CONFS / "unsupported.py")
    assert toml == {"app": "mysite.wsgi", "bind": ["0.0.0.0:8000"], "max_connections": 2000}
    named = {
        "bind 'fd://3'": "socket activation",
        "worker_class 'gevent'": "monkey-patch",
        "daemon = True": "foreground",
        "preload_app = True": "in each worker",
        "capture_output = True": "stdout",
        "statsd_host = 'localhost:8125'": "Prometheus",
        "secure_scheme_headers = {'X-SCHEME': 'https'}": "X-Forwarded-Proto",
        "sendfile = False": "network core",
        "reuse_port = True": "binds each address once",
        "logconfig_dict = ": "ferrule.access",
        "loglevel = 'debug'": "FERRULE_DEBUG",
        # Not a gunicorn setting at all: gunicorn ignored it, and says so.
        "keep_alive is not a gunicorn setting": "did you mean keepalive?",
    }
    lines = err.splitlines()
    for what, why in named.items():
        line = next((x for x in lines if x.startswith(f"not translated: {what}")), None)
        assert line is not None and why in line, f"{what!r} not named with {why!r}:\n{err}"
    assert len(lines) == len(named), err
    check_config(out, tmp_path)


@needs_keys("hooks")
def test_hooks_are_listed_with_the_signature_change(tmp_path):
    out, toml, err = translated(CONFS / "hooks.py", "--app", "mysite.wsgi")
    assert toml == {
        "app": "mysite.wsgi",
        "hooks": "ferrule_hooks",
        "bind": ["0.0.0.0:8443"],
        "certfile": "/etc/mysite/tls/fullchain.pem",
        "keyfile": "/etc/mysite/tls/privkey.pem",
        "workers": 4,
    }
    hooks = err[err.index("hooks: ") :]
    assert "defines on_starting, when_ready, post_worker_init, pre_request, post_request, " in hooks
    for change in [
        "on_starting(server) -> on_starting()",
        "when_ready(server) -> when_ready()",
        "post_worker_init(worker) -> post_worker_init()",
        "pre_request(worker, req) -> pre_request(environ)",
        "post_request(worker, req, environ, resp) -> post_request(environ, status, timings)",
        "child_exit: not translated: ",
        "worker_abort: not translated: ",
        "ssl_context: not translated: ferrule's TLS is set by certfile, keyfile, ca_certs, ",
    ]:
        assert f"\n  {change}" in hooks, f"{change!r} not in:\n{hooks}"
    # The hooks module the user writes from the list, with ferrule's signatures.
    (tmp_path / "ferrule_hooks.py").write_text(
        "def on_starting(): pass\ndef post_worker_init(): pass\n"
        "def pre_request(environ): pass\ndef post_request(environ, status, timings): pass\n"
    )
    check_config(f'working_dir = "{tmp_path}"\n{out}', tmp_path)


@needs_keys("user", "group", "proxy_protocol")
def test_user_group_and_the_proxy_protocol(tmp_path):
    conf = write_conf(
        tmp_path / "gunicorn.conf.py",
        """
        wsgi_app = "mysite.wsgi"
        user = "www-data"
        group = 33
        proxy_protocol = "v2"
        """,
    )
    out, toml, err = translated(conf)
    assert toml == {"app": "mysite.wsgi", "user": "www-data", "group": 33, "proxy_protocol": True}
    check_config(out, tmp_path)


def test_a_file_without_the_application_says_to_give_it(tmp_path):
    conf = write_conf(tmp_path / "gunicorn.conf.py", 'bind = "127.0.0.1:9000"\n')
    out, toml, err = translated(conf)
    assert toml == {"bind": ["127.0.0.1:9000"]}
    assert "note: the file names no application (wsgi_app)" in err
    assert "--app MODULE:CALLABLE" in err
    # The sync worker's one request at a time is worth a word, since ferrule runs threads.
    assert "Add threads = 1 if the application is not thread-safe" in err
    out, toml, err = translated(conf, "--app", "echo:app")
    assert toml["app"] == "echo:app" and "no application" not in err
    check_config(out, tmp_path)


def test_output_printed_by_the_file_goes_to_stderr(tmp_path):
    conf = write_conf(
        tmp_path / "gunicorn.conf.py",
        """
        print("loading the production settings")
        wsgi_app = "echo:app"
        workers = 3
        """,
    )
    out, toml, err = translated(conf)
    assert toml == {"app": "echo:app", "workers": 3}
    assert "loading the production settings" in err


def test_a_module_named_with_python_prefix(tmp_path):
    write_conf(tmp_path / "deploy_conf.py", 'wsgi_app = "echo:app"\nthreads = 8\n')
    _, toml, _ = translated("python:deploy_conf", cwd=tmp_path)
    assert toml == {"app": "echo:app", "threads": 8}


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "workers = 4\nbind = cpu_count()\n",
            "gunicorn.conf.py, line 2: NameError: name 'cpu_count'",
        ),
        ("workers = (\n", "gunicorn.conf.py, line 1: SyntaxError: '(' was never closed"),
        ("import sys\nsys.exit(3)\n", "gunicorn.conf.py, line 2: SystemExit: 3"),
        ('workers = "four"\n', "gunicorn.conf.py: invalid value for workers: not an integer"),
        ("bind = 8000\n", "gunicorn.conf.py: invalid value for bind: not a list of strings"),
    ],
)
def test_a_broken_file_is_one_error_line(tmp_path, text, message):
    write_conf(tmp_path / "gunicorn.conf.py", text)
    code, out, err = from_gunicorn("gunicorn.conf.py", cwd=tmp_path)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_a_missing_file_is_one_error_line(tmp_path):
    code, out, err = from_gunicorn(tmp_path / "gunicorn.conf.py")
    assert (code, out) == (2, "")
    assert err == (
        f"error: cannot read {tmp_path / 'gunicorn.conf.py'}: "
        "FileNotFoundError: No such file or directory\n"
    )


def test_help_and_usage_errors():
    code, out, err = from_gunicorn("--help")
    assert code == 0 and out.startswith("usage: ferrule from-gunicorn PATH [--app MODULE:CALLABLE]")
    code, out, err = from_gunicorn()
    assert code == 2 and err.startswith("error: no PATH: name the gunicorn configuration file")
    code, out, err = from_gunicorn("gunicorn.conf.py", "--workers", "4")
    assert code == 2 and err.startswith("error: unexpected argument '--workers'")


# --- single settings: pure functions -----------------------------------------------------------


@pytest.mark.parametrize(
    "bind, expected",
    [
        ("127.0.0.1:8000", None),  # ferrule's default: not written
        ("0.0.0.0:80", ["0.0.0.0:80"]),
        ("localhost", ["localhost:8000"]),
        (":9000", ["0.0.0.0:9000"]),
        ("[::1]", ["[::1]:8000"]),
        ("[::]:8080", ["[::]:8080"]),
        ("tcp://10.0.0.1:81", ["10.0.0.1:81"]),
        ("unix:/run/a.sock", ["unix:/run/a.sock"]),
        ("unix:///run/a.sock", ["unix:/run/a.sock"]),
        (["unix:/run/a.sock", "fd://3"], ["unix:/run/a.sock"]),
    ],
)
def test_bind_addresses(bind, expected):
    t = _from_gunicorn.translate({"bind": bind}, {})
    assert t.keys.get("bind", (None,))[0] == expected


@pytest.mark.parametrize(
    "fmt, template, missing",
    [
        (
            '%(h)s %(l)s %(t)s "%(r)s" %(s)s %(b)s',
            '{client} - {time} "{request}" {status} {bytes_out}',
            [],
        ),
        (
            "%(m)s %(U)s?%(q)s %(D)sus %({x-request-id}i)s",
            "{method} {path}?{query} {duration_us}us {request_id}",
            [],
        ),
        ("{json} 100%% %(s)s", "{{json}} 100% {status}", []),
        (
            "%(h)s %(u)s %(p)s %({x-real-ip}i)s",
            "{client}   ",
            ["%(u)s", "%(p)s", "%({x-real-ip}i)s"],
        ),
    ],
)
def test_access_log_formats(fmt, template, missing):
    assert _from_gunicorn.access_template(fmt) == (template, missing)


@pytest.mark.parametrize(
    "settings, keys",
    [
        ({"worker_class": "uvicorn.workers.UvicornWorker"}, {"interface": "asgi"}),
        ({"worker_class": "gthread", "worker_connections": 50}, {"max_connections": 50}),
        ({"worker_connections": 50}, {}),  # the sync worker ignores it
        ({"umask": 0o027}, {"umask": "027"}),
        (
            {"umask": "0o027", "bind": "unix:/s"},
            {"umask": "027", "bind": ["unix:/s"], "unix_socket_mode": "750"},
        ),
        (
            {"limit_request_line": 0, "limit_request_fields": 0},
            {"limit_request_line": 65536, "limit_request_fields": 32768},
        ),
        ({"limit_request_field_size": 0}, {}),
        ({"cert_reqs": 2, "ca_certs": "ca.pem"}, {"client_cert": "required", "ca_certs": "ca.pem"}),
        ({"http_protocols": "h1"}, {"http": "1"}),
        ({"http_protocols": "h2,h1"}, {}),
        ({"pythonpath": "/srv/a, lib"}, {"pythonpath": ["/srv/a", "lib"]}),
        ({"raw_env": ["A=1=2", "DJANGO_SETTINGS_MODULE=s"]}, {"django_settings": "s"}),
        (
            {"accesslog": "/var/log/a.log", "errorlog": "/var/log/a.log"},
            {"access_log": True, "log_file": "/var/log/a.log"},
        ),
        ({"access_log_format": "%(h)s"}, {}),  # without accesslog gunicorn logged nothing
        ({"root_path": "/api", "asgi_loop": "uvloop"}, {"prefix": "/api", "loop": "uvloop"}),
        ({"keepalive": "10", "reload": "true"}, {"keep_alive": 10, "reload": True}),
        ({"tmp_upload_dir": "/srv/uploads"}, {"spool_dir": "/srv/uploads"}),
    ],
)
def test_settings_translate_to_keys(settings, keys):
    t = _from_gunicorn.translate(settings, {})
    assert {k: v for k, (v, _) in t.keys.items()} == keys


def test_a_unix_socket_without_a_umask_gets_a_word_on_its_mode():
    t = _from_gunicorn.translate({"bind": "unix:/run/mysite.sock"}, {})
    assert any("660 (unix_socket_mode)" in note for note in t.notes), t.notes


# --- end to end --------------------------------------------------------------------------------


def test_a_translated_file_serves(transport, tmp_path, launched):
    bind = "127.0.0.1:0" if transport == "tcp" else f"unix:{tmp_path / 'site.sock'}"
    (tmp_path / "version").write_text("v7\n")
    pidfile = tmp_path / "site.pid"
    conf = write_conf(
        tmp_path / "gunicorn.conf.py",
        f"""
        import os

        chdir = os.path.dirname(os.path.abspath(__file__))
        wsgi_app = "procapp"
        bind = "{bind}"
        workers = 2
        threads = 4
        timeout = 60
        accesslog = "-"
        pidfile = "{pidfile}"
        umask = 0o027
        raw_env = ["PROCAPP_VERSION_FILE={tmp_path / "version"}"]
        """,
    )
    out, toml, err = translated(conf)
    assert err == ""
    path = tmp_path / "ferrule.toml"
    path.write_text(out)
    server = launched(["--config", str(path)])

    resp, body = server.request("GET", "/")
    assert resp.status == 200 and re.fullmatch(rb"pid \d+ v7", body), body  # raw_env → [env]
    resp, body = server.request("GET", f"/touch?path={tmp_path / 'made'}")
    assert body == b"0o640"  # umask 0o027 → umask = "027"
    server.wait_for_output(r'"GET / HTTP/1\.1" 200', timeout=30)  # accesslog → access_log
    wait_until(
        lambda: pidfile.exists() and pidfile.read_text().strip() == str(server.proc.pid),
        timeout=30,
        what="the pid file naming the master",
    )
    assert server.stop() == 0
