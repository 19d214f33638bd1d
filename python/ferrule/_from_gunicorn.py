"""`ferrule from-gunicorn PATH [--app MODULE:CALLABLE]`: a gunicorn configuration file as a
ferrule TOML file.

The file is read as gunicorn reads it (Python run in a fresh module, `__file__` set, the
current directory on `sys.path`; `python:module.name` imports a module instead). The TOML goes
to stdout; what it cannot carry over, and why, goes to stderr. Every setting gunicorn knows is
in one of the tables below: `TRANSLATORS` (a function writes ferrule keys), `UNMAPPED` (no
equivalent, and why), `HOOKS` (a hook ferrule has too) or `NO_HOOK`. `KNOWN` is all of them;
`tests/test_from_gunicorn.py` checks it against `gunicorn.config.KNOWN_SETTINGS`, and
docs/migrating-from-gunicorn.md is the same table for people. gunicorn itself is not needed.
"""

from __future__ import annotations

import ast
import difflib
import importlib.machinery
import importlib.util
import inspect
import json
import os
import re
import sys
import traceback
from collections.abc import Callable

USAGE = """\
usage: ferrule from-gunicorn PATH [--app MODULE:CALLABLE]

Print the ferrule configuration (TOML) equivalent to the gunicorn configuration file PATH
(`python:module.name` for a module), and on stderr every setting it has no equivalent for.

  --app MODULE:CALLABLE  the application, which gunicorn takes from its command line
                         (default: the file's wsgi_app)

  ferrule from-gunicorn gunicorn.conf.py --app mysite.wsgi > ferrule.toml
  ferrule check-config ferrule.toml
"""

#: The module named by `hooks = ...` when the gunicorn file defines hooks.
HOOKS_MODULE = "ferrule_hooks"


class BadValue(Exception):
    """A value gunicorn itself would refuse."""


# --- gunicorn's value rules (gunicorn/config.py's validators) ---------------------------------


def _int(value) -> int:
    try:
        n = int(value) if isinstance(value, int) else int(str(value).strip(), 0)
    except ValueError as e:
        raise BadValue(f"not an integer: {value!r}") from e
    if n < 0:
        raise BadValue(f"must be positive: {value!r}")
    return n


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise BadValue(f"not a boolean: {value!r}")


def _str(value) -> str:
    if not isinstance(value, str):
        raise BadValue(f"not a string: {value!r}")
    return value.strip()


def _str_list(value) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [_str(value)]
    if not isinstance(value, (list, tuple)):
        raise BadValue(f"not a list of strings: {value!r}")
    return [_str(v) for v in value]


def _comma_list(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [_str(v) for v in value]
    return [v.strip() for v in _str(value).split(",") if v.strip()]


# --- the translation --------------------------------------------------------------------------

# ferrule's defaults: a translated value equal to one of these is left out of the file.
FERRULE_DEFAULTS = {
    "bind": ["127.0.0.1:8000"],
    "workers": 1,
    "threads": 32,
    "max_connections": 10000,
    "timeout": 0,
    "graceful_timeout": 30,
    "keep_alive": 5,
    "limit_request_line": 4094,
    "limit_request_fields": 100,
    "limit_request_field_size": 8190,
    "max_requests": 0,
    "max_requests_jitter": 0,
    "forwarded_allow_ips": "127.0.0.1,::1",
    "client_cert": "none",
    "http": "auto",
    "h2_max_concurrent_streams": 100,
    "h2_max_header_list_size": 65536,
    "loop": "auto",
    "cancel_grace": 5,
    "ws_max_message": 16 * 1024 * 1024,
    "reload": False,
    "access_log": False,
}

# The order of the keys in the file: check-config's sections.
KEY_ORDER = (
    "app django_settings working_dir pythonpath hooks bind unix_socket_mode max_connections "
    "keep_alive limit_request_line limit_request_fields limit_request_field_size threads "
    "graceful_timeout timeout cancel_grace interface loop ws_max_message access_log "
    "access_log_format log_file prefix forwarded_allow_ips proxy_protocol certfile keyfile "
    "ca_certs client_cert http h2_max_concurrent_streams h2_max_header_list_size workers "
    "max_requests max_requests_jitter reload reload_include pid umask user group"
).split()


class Translation:
    """What one gunicorn file becomes: keys with their comments, the `[env]` table, and the
    settings left behind with the reason."""

    def __init__(self, settings: dict, computed: dict[str, str]):
        self.settings = settings
        self.computed = computed
        self.keys: dict[str, tuple[object, list[str]]] = {}
        self.env: dict[str, str] = {}
        self.dropped: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self.done: set[str] = set()
        self.hooks: list[str] = []

    def set(self, key: str, value, comment: str = "", setting: str = "") -> None:
        """Write `key = value`, unless it is ferrule's default."""
        if key in FERRULE_DEFAULTS and value == FERRULE_DEFAULTS[key]:
            return
        comments = [comment] if comment else []
        if setting in self.computed:
            comments.append(
                f"the file computes {setting} ({self.computed[setting]}): its value here"
            )
        self.keys[key] = (value, comments)

    def drop(self, what: str, why: str) -> None:
        self.dropped.append((what, why))


Translator = Callable[[Translation, str, object], None]
TRANSLATORS: dict[str, Translator] = {}


def translates(*names: str):
    def register(fn: Translator) -> Translator:
        for name in names:
            TRANSLATORS[name] = fn
        return fn

    return register


def renamed(key: str, convert=_int, comment: str = "") -> Translator:
    def translate(t: Translation, name: str, value) -> None:
        t.set(key, convert(value), comment, setting=name)

    return translate


# Settings that are a ferrule option under the same or another name: (key, how gunicorn reads
# the value, a comment for the file).
for _name, (_key, _convert, _comment) in {
    "workers": ("workers", _int, ""),
    "threads": ("threads", _int, ""),
    "graceful_timeout": ("graceful_timeout", _int, ""),
    "keepalive": ("keep_alive", _int, ""),
    "max_requests": ("max_requests", _int, ""),
    "max_requests_jitter": ("max_requests_jitter", _int, ""),
    "http2_max_concurrent_streams": ("h2_max_concurrent_streams", _int, ""),
    "pidfile": ("pid", _str, ""),
    "certfile": ("certfile", _str, ""),
    "keyfile": ("keyfile", _str, ""),
    "ca_certs": ("ca_certs", _str, ""),
    "reload": ("reload", _bool, ""),
    "reload_extra_files": (
        "reload_include",
        _str_list,
        "globs, matched under the working directory",
    ),
    "asgi_loop": ("loop", _str, ""),
    "asgi_disconnect_grace_period": (
        "cancel_grace",
        _int,
        "seconds a cancelled request keeps running, WSGI requests too",
    ),
    "root_path": (
        "prefix",
        _str,
        "requests outside the prefix get a 404 page (prefix_redirect: a 308)",
    ),
}.items():
    TRANSLATORS[_name] = renamed(_key, _convert, _comment)


@translates("wsgi_app")
def _app(t: Translation, name: str, value) -> None:
    t.set("app", _str(value), setting=name)


@translates("bind")
def _bind(t: Translation, name: str, value) -> None:
    binds = []
    for address in _str_list(value):
        if address.startswith("fd://"):
            t.drop(
                f"bind {address!r}",
                "ferrule takes inherited sockets only from systemd's socket activation "
                "(LISTEN_FDS; docs/deploy-systemd.md)",
            )
        elif m := re.match(r"unix:(//)?", address):
            binds.append("unix:" + address[m.end() :])
        else:
            binds.append(_host_port(address.removeprefix("tcp://")))
    if binds:
        t.set("bind", binds, setting=name)


def _host_port(address: str) -> str:
    # As gunicorn.util.parse_address: port 8000 when none is given, all interfaces for ":PORT".
    if address.startswith("["):
        host, _, port = address[1:].partition("]")
        return f"[{host}]:{port.removeprefix(':') or 8000}"
    host, _, port = address.partition(":")
    return f"{host or '0.0.0.0'}:{port or 8000}"


@translates("worker_class")
def _worker_class(t: Translation, name: str, value) -> None:
    cls = value if isinstance(value, str) else f"{value.__module__}.{value.__qualname__}"
    lowered = cls.lower()
    if lowered.removeprefix("egg:gunicorn#") in ("sync", "gthread") or lowered in (
        "gunicorn.workers.sync.syncworker",
        "gunicorn.workers.gthread.threadworker",
    ):
        return
    if "uvicorn" in lowered or lowered == "asgi" or "gunicorn.workers.gasgi" in lowered:
        t.set("interface", "asgi", f"gunicorn's worker_class {cls}", setting=name)
    elif any(word in lowered for word in ("gevent", "eventlet", "tornado")):
        t.drop(
            f"worker_class {cls!r}",
            "ferrule runs WSGI applications on a pool of OS threads that grows while requests "
            "block (up to threads per worker) and ASGI ones on an event loop; it does not "
            "monkey-patch. Raise threads for many slow requests, or serve the async parts as ASGI",
        )
    else:
        t.drop(f"worker_class {cls!r}", "a custom worker class has no ferrule equivalent")


@translates("worker_connections")
def _worker_connections(t: Translation, name: str, value) -> None:
    if _is_sync(t.settings):
        t.drop(name, "gunicorn's sync worker ignores it; ferrule's max_connections is 10000")
    else:
        t.set("max_connections", _int(value), setting=name)


def _is_sync(settings: dict) -> bool:
    cls = settings.get("worker_class", "sync")
    sync = isinstance(cls, str) and cls.lower().removeprefix("egg:gunicorn#") == "sync"
    return sync and _int(settings.get("threads", 1)) <= 1


@translates("timeout")
def _timeout(t: Translation, name: str, value) -> None:
    t.set(
        "timeout",
        _int(value),
        "gunicorn killed a worker silent this long; ferrule answers 504 and cancels the request",
        setting=name,
    )


@translates("limit_request_line", "limit_request_fields", "limit_request_field_size")
def _limit(t: Translation, name: str, value) -> None:
    n = _int(value)
    if n == 0 and name == "limit_request_line":
        # gunicorn's 0 is "no limit"; ferrule takes 0 literally. 64 KiB is far beyond any URL a
        # browser or proxy sends (nginx's default is 8 KiB).
        t.set(name, 65536, "gunicorn's 0 means no limit; ferrule needs a number", setting=name)
    elif n == 0 and name == "limit_request_fields":
        t.set(name, 32768, "gunicorn's 0 means its maximum, 32768", setting=name)
    else:
        # gunicorn 27 reads a limit_request_field_size of 0 as 8190, ferrule's default too.
        t.set(name, n or 8190, setting=name)


@translates("forwarded_allow_ips")
def _forwarded(t: Translation, name: str, value) -> None:
    t.set("forwarded_allow_ips", ",".join(_comma_list(value)), setting=name)


@translates("pythonpath")
def _pythonpath(t: Translation, name: str, value) -> None:
    if value is not None:
        t.set("pythonpath", _comma_list(value), setting=name)


@translates("chdir")
def _chdir(t: Translation, name: str, value) -> None:
    # gunicorn takes a relative chdir from the directory it was started in; so does this.
    t.set("working_dir", os.path.abspath(_str(value)), setting=name)


@translates("raw_env")
def _raw_env(t: Translation, name: str, value) -> None:
    for item in _str_list(value):
        key, sep, val = item.partition("=")
        if not sep:
            raise BadValue(f"{item!r} is not KEY=VALUE")
        if key == "DJANGO_SETTINGS_MODULE":
            t.set("django_settings", val, setting=name)
        elif key.startswith("FERRULE_"):
            t.drop(
                f"raw_env {key}", "ferrule refuses FERRULE_ names in [env]: use the option's key"
            )
        else:
            t.env[key] = val


@translates("user", "group")
def _user(t: Translation, name: str, value) -> None:
    if value is not None:
        t.set(name, value if isinstance(value, int) else _str(value), setting=name)


@translates("umask")
def _umask(t: Translation, name: str, value) -> None:
    mask = _int(value)
    if mask == 0:
        return
    t.set("umask", f"{mask:03o}", "ferrule's is the processes' umask, for every file", name)
    if any(b.startswith("unix:") for b in _str_list(t.settings.get("bind"))):
        t.set(
            "unix_socket_mode",
            f"{0o777 & ~mask:03o}",
            "gunicorn's umask set the socket's mode; ferrule's umask does not",
        )


@translates("proxy_protocol")
def _proxy_protocol(t: Translation, name: str, value) -> None:
    mode = value if isinstance(value, bool) else _str(value).lower()
    if mode not in (False, "off", "false", "0", "none"):
        t.set("proxy_protocol", True, setting=name)


@translates("cert_reqs")
def _cert_reqs(t: Translation, name: str, value) -> None:
    modes = {0: "none", 1: "optional", 2: "required"}
    n = _int(value)
    if n not in modes:
        raise BadValue(f"{value!r} is not 0, 1 or 2 (ssl.CERT_*)")
    t.set("client_cert", modes[n], setting=name)


@translates("http_protocols")
def _http_protocols(t: Translation, name: str, value) -> None:
    if "h2" not in _comma_list(value):
        t.set("http", "1", setting=name)


@translates("http2_max_header_list_size", "websocket_max_message_size")
def _size_or_unlimited(t: Translation, name: str, value) -> None:
    key = {"http2_max_header_list_size": "h2_max_header_list_size"}.get(name, "ws_max_message")
    n = _int(value)
    if n == 0:
        t.drop(name, f"gunicorn's 0 means no limit; ferrule's {key} needs one")
    else:
        t.set(key, n, setting=name)


@translates("accesslog", "errorlog", "access_log_format")
def _logs(t: Translation, name: str, value) -> None:
    if "logs" in t.done:
        return  # the three settings are decided together, at the first one seen
    t.done.add("logs")
    access = t.settings.get("accesslog")
    error = t.settings.get("errorlog", "-")
    stream = (None, "-", "/dev/stderr", "/dev/stdout")
    if error not in stream:
        t.set("log_file", _str(error), "server logs, and the access lines too", "errorlog")
    fmt = t.settings.get("access_log_format")
    if access is None:
        if fmt is not None:
            t.drop("access_log_format", "gunicorn had no access log (accesslog is not set)")
        return
    t.set("access_log", True, "to the ferrule.access logger (stderr unless configured)")
    if access not in stream and access != error:
        t.drop(
            f"accesslog {access!r}",
            "ferrule has no access log file of its own: the lines go to the ferrule.access "
            "logger (route it with a FileHandler in the application's logging), or with "
            "log_file into that file",
        )
    if fmt is not None and fmt != GUNICORN_ACCESS_FORMAT:
        template, missing = access_template(_str(fmt))
        if missing:
            t.drop(
                "access_log_format",
                f"ferrule has no field for {', '.join(missing)}; its lines are Apache combined "
                "plus the duration, or json, or a template of {fields} (docs/migrating-from-"
                "gunicorn.md#logging)",
            )
        else:
            t.set("access_log_format", template, "from gunicorn's access_log_format")


GUNICORN_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

# gunicorn's access log atoms that ferrule's template has a field for (`l` is always "-").
ATOMS = {
    "h": "{client}",
    "l": "-",
    "t": "{time}",
    "r": "{request}",
    "m": "{method}",
    "U": "{path}",
    "q": "{query}",
    "H": "{protocol}",
    "s": "{status}",
    "B": "{bytes_out}",
    "b": "{bytes_out}",
    "f": "{referer}",
    "a": "{user_agent}",
    "M": "{duration_ms}",
    "D": "{duration_us}",
    "{x-request-id}i": "{request_id}",
    "{referer}i": "{referer}",
    "{user-agent}i": "{user_agent}",
}


def access_template(fmt: str) -> tuple[str, list[str]]:
    """gunicorn's `%(h)s` format as ferrule's `{client}` template, and the atoms it has no
    field for."""
    out, missing = [], []
    for m in re.finditer(r"%\(([^)]*)\)[sd]|%%|[^%]+|%", fmt):
        piece = m.group(0)
        if m.group(1) is not None:
            if m.group(1) in ATOMS:
                out.append(ATOMS[m.group(1)])
            else:
                missing.append(piece)
        else:
            out.append("%" if piece == "%%" else piece.replace("{", "{{").replace("}", "}}"))
    return "".join(out), missing


# --- settings with no equivalent: gunicorn's default (a value equal to it changes nothing, so
# it is not reported; ANY: the default depends on the machine, so any value is) and why ----------

ANY = object()
_LOGGING = (
    "ferrule logs to the Python loggers `ferrule` and `ferrule.access`: configure them in the "
    "application's logging (Django's LOGGING), where gunicorn.error and gunicorn.access were"
)
_SYSLOG = "send the ferrule loggers to syslog with a SysLogHandler in the application's logging"
_STATSD = "ferrule serves Prometheus metrics at stats_bind's /metrics instead (docs/statistics.md)"
_PARSER = "ferrule's parser refuses such requests and has no switch to accept them"
_DIRTY = "ferrule has no pool for long-running non-HTTP work: use a task queue or a service"
_CONTROL = "ferrule has no control socket: signals (HUP, TTIN, TTOU, TERM) and stats_bind do that"
_UWSGI = "ferrule speaks HTTP only: point nginx's proxy_pass at it instead of uwsgi_pass"
_PASTE = "ferrule does not read PasteDeploy files: name the WSGI callable as app"

UNMAPPED: dict[str, tuple[object, str]] = {
    "config": (ANY, "gunicorn reads it from its command line only; ferrule's is --config FILE"),
    "backlog": (2048, "ferrule listens with a backlog of 2048 (capped by net.core.somaxconn)"),
    "reload_engine": ("auto", "ferrule picks its own file watcher"),
    "spew": (False, "no equivalent"),
    "check_config": (False, "use `ferrule check-config ferrule.toml`"),
    "print_config": (False, "use `ferrule check-config ferrule.toml`"),
    "preload_app": (
        False,
        "ferrule imports the application in each worker, never in the master: no memory is "
        "shared copy-on-write, a reload (SIGHUP) always loads new code, and work meant to run "
        "once before the workers goes in the on_starting hook",
    ),
    "sendfile": (None, "no switch: ferrule's network core sends files itself"),
    "reuse_port": (False, "ferrule's master binds each address once and its workers share it"),
    "daemon": (False, "ferrule stays in the foreground: run it under systemd (Type=notify)"),
    "worker_tmp_dir": (None, "ferrule's heartbeat goes over a socket, not a temporary file"),
    "initgroups": (False, "no option of its own in ferrule"),
    "tmp_upload_dir": (None, "bodies over body_buffer_size go to a file in TMPDIR: set TMPDIR"),
    "secure_scheme_headers": (
        {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"},
        "ferrule reads X-Forwarded-Proto and X-Forwarded-Ssl (or Forwarded, see "
        "forwarded_headers) from forwarded_allow_ips; other headers cannot be named",
    ),
    "forwarder_headers": (
        "SCRIPT_NAME,PATH_INFO",
        "ferrule takes no environ values from headers: set prefix, or have the proxy send "
        "X-Forwarded-Prefix",
    ),
    "header_map": ("drop", "ferrule always drops header names containing '_' (gunicorn's drop)"),
    "disable_redirect_access_to_syslog": (False, _SYSLOG),
    "loglevel": (
        "info",
        "ferrule's verbosity is the `ferrule` logger's level in the application's logging "
        "(INFO unless set), or FERRULE_DEBUG (1 error, 2 warning, 3 info, 4 debug) in the "
        "service's environment with log_file",
    ),
    "capture_output": (False, "ferrule leaves the application's stdout and stderr alone"),
    "logger_class": ("gunicorn.glogging.Logger", _LOGGING),
    "logconfig": (None, _LOGGING),
    "logconfig_dict": ({}, _LOGGING),
    "logconfig_json": (None, _LOGGING),
    "syslog_addr": ("udp://localhost:514", _SYSLOG),
    "syslog": (False, _SYSLOG),
    "syslog_prefix": (None, _SYSLOG),
    "syslog_facility": ("user", _SYSLOG),
    "enable_stdio_inheritance": (False, "ferrule never daemonizes, so stdio is inherited"),
    "statsd_host": (None, _STATSD),
    "dogstatsd_tags": ("", _STATSD),
    "statsd_prefix": ("", _STATSD),
    "enable_backlog_metric": (False, _STATSD),
    "proc_name": (None, "ferrule does not rename its processes"),
    "default_proc_name": ("gunicorn", "ferrule does not rename its processes"),
    "paste": (None, _PASTE),
    "raw_paste_global_conf": ([], _PASTE),
    "permit_obsolete_folding": (False, _PARSER),
    "strip_header_spaces": (False, _PARSER),
    "permit_unconventional_http_method": (False, _PARSER),
    "permit_unconventional_http_version": (False, _PARSER),
    "casefold_http_method": (False, _PARSER),
    "proxy_allow_ips": ("127.0.0.1,::1", "no option of its own in ferrule"),
    "protocol": ("http", _UWSGI),
    "uwsgi_allow_ips": ("127.0.0.1,::1", _UWSGI),
    "ssl_version": (2, "gunicorn ignores it since 21.0; ferrule's oldest version is tls_min"),
    "ciphers": (None, "ferrule (rustls) offers its own modern cipher suites only"),
    "suppress_ragged_eofs": (True, "a detail of Python's ssl module, which ferrule does not use"),
    "do_handshake_on_connect": (False, "a detail of Python's ssl module, unused by ferrule"),
    "http2_cleartext": (
        "off",
        "ferrule (http = auto) takes HTTP/2 on cleartext by its preface (prior knowledge), "
        "never by Upgrade: h2c",
    ),
    "http2_initial_window_size": (65535, "not configurable in ferrule"),
    "http2_max_frame_size": (16384, "not configurable in ferrule"),
    "asgi_lifespan": (
        "auto",
        "ferrule always runs the lifespan protocol and tells an application that does not "
        "speak it from one that fails (docs/asgi.md)",
    ),
    "http_parser": ("auto", "ferrule parses HTTP in its Rust core"),
    "dirty_apps": ([], _DIRTY),
    "dirty_workers": (0, _DIRTY),
    "dirty_timeout": (300, _DIRTY),
    "dirty_threads": (1, _DIRTY),
    "dirty_graceful_timeout": (30, _DIRTY),
    "control_socket": (ANY, _CONTROL),
    "control_socket_mode": (0o600, _CONTROL),
    "control_socket_disable": (False, _CONTROL),
}

# --- hooks ------------------------------------------------------------------------------------

_MASTER = "runs in the master, or in the single process without workers"

# gunicorn's hooks that ferrule has: gunicorn's signature, ferrule's, and what changes.
HOOKS: dict[str, tuple[str, str, str]] = {
    "on_starting": ("on_starting(server)", "on_starting()", f"{_MASTER}; no server object"),
    "when_ready": ("when_ready(server)", "when_ready()", f"{_MASTER}; no server object"),
    "on_reload": ("on_reload(server)", "on_reload()", f"{_MASTER}; no server object"),
    "post_worker_init": (
        "post_worker_init(worker)",
        "post_worker_init()",
        "runs in each worker after the import; worker.pid is os.getpid()",
    ),
    "worker_exit": ("worker_exit(server, worker)", "worker_exit()", "runs in each worker"),
    "pre_request": (
        "pre_request(worker, req)",
        "pre_request(environ)",
        "in the worker thread, before each WSGI request; req.method and req.path are "
        'environ["REQUEST_METHOD"] and environ["PATH_INFO"]',
    ),
    "post_request": (
        "post_request(worker, req, environ, resp)",
        "post_request(environ, status, timings)",
        "in the worker thread, after each WSGI request; resp.status is status, an int, "
        "and timings a dict",
    ),
}

_FORKED = "ferrule starts workers as new processes, not forks: move it to post_worker_init()"
_DIRTY_HOOK = "gunicorn's dirty arbiters have no ferrule equivalent"

# gunicorn's hooks that ferrule does not have, and what to do instead.
NO_HOOK: dict[str, str] = {
    "pre_fork": _FORKED,
    "post_fork": _FORKED,
    "pre_exec": "ferrule does not re-execute itself; SIGHUP starts workers with new code",
    "worker_int": "no equivalent; cleanup when a worker stops goes in worker_exit()",
    "worker_abort": "no equivalent: a worker past worker_timeout is killed, and the master "
    "logs the requests it had in flight",
    "child_exit": "no equivalent in the master; for prometheus_client's multiprocess mode, "
    "call mark_process_dead(os.getpid()) in worker_exit()",
    "nworkers_changed": "no equivalent",
    "on_exit": "no equivalent",
    "ssl_context": "ferrule's TLS is set by certfile, keyfile, ca_certs, client_cert and "
    'tls_min (tls_min = "1.3" is this hook\'s usual job)',
    "on_dirty_starting": _DIRTY_HOOK,
    "dirty_post_fork": _DIRTY_HOOK,
    "dirty_worker_init": _DIRTY_HOOK,
    "dirty_worker_exit": _DIRTY_HOOK,
}

#: Every gunicorn setting this module knows, translated or not.
KNOWN = set(TRANSLATORS) | set(UNMAPPED) | set(HOOKS) | set(NO_HOOK)


def translate(settings: dict, computed: dict[str, str], app: str | None = None) -> Translation:
    """The ferrule configuration for gunicorn `settings` (name → value as the file set it)."""
    t = Translation(settings, computed)
    for name, value in settings.items():
        try:
            if name in TRANSLATORS:
                TRANSLATORS[name](t, name, value)
        except (BadValue, TypeError, AttributeError) as e:
            # TypeError and AttributeError: a value of a type no rule expects (`bind = 5`).
            raise BadValue(f"invalid value for {name}: {e}") from None
        if name in UNMAPPED:
            default, why = UNMAPPED[name]
            if default is ANY or value != default:
                t.drop(f"{name} = {_short(value)}", why)
    hooks = [name for name in settings if name in HOOKS or name in NO_HOOK]
    if any(name in HOOKS for name in hooks):
        t.set("hooks", HOOKS_MODULE, f"write {HOOKS_MODULE}.py from the file's hooks (see stderr)")
    if app:
        t.keys["app"] = (app, [])
    if "app" not in t.keys and "django_settings" not in t.keys:
        t.notes.append(
            "the file names no application (wsgi_app): gunicorn took it from its command line."
            " Run again with --app MODULE:CALLABLE, or add app = ... to the file"
        )
    if "threads" not in settings and _is_sync(settings):
        t.notes.append(
            "gunicorn's sync worker ran one request at a time per process; ferrule runs up to "
            "32 threads per process. Add threads = 1 if the application is not thread-safe"
        )
    unix = any(b.startswith("unix:") for b in t.keys.get("bind", ((),))[0])
    if unix and "unix_socket_mode" not in t.keys:
        t.notes.append(
            "gunicorn created Unix sockets with mode 777 minus its umask; ferrule creates them "
            "660 (unix_socket_mode): the proxy's user needs ferrule's group, or "
            'unix_socket_mode = "666"'
        )
    t.hooks = hooks
    return t


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- reading the file -------------------------------------------------------------------------


class LoadError(Exception):
    """The file cannot be read or run; the message says why."""


def load(location: str) -> tuple[dict, str | None, str]:
    """Run the configuration as gunicorn does; (its namespace, its source, the name shown)."""
    # gunicorn puts its chdir (the current directory) first on sys.path before reading it.
    sys.path.insert(0, os.getcwd())
    if location.startswith("python:"):
        name = location.removeprefix("python:")
        try:
            with _stdout_to_stderr():
                module = importlib.import_module(name)
        except (Exception, SystemExit) as e:
            raise LoadError(f"cannot import {name}: {type(e).__name__}: {e}") from None
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):
            source = None
        return vars(module), source, name
    shown = location.removeprefix("file:")
    path = os.path.abspath(shown)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            source = f.read()
    except OSError as e:
        raise LoadError(f"cannot read {shown}: {type(e).__name__}: {e.strerror}") from None
    # As gunicorn.app.base.get_config_from_filename: any extension is read as Python source.
    loader = importlib.machinery.SourceFileLoader("__config__", path)
    spec = importlib.util.spec_from_file_location("__config__", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["__config__"] = module
    try:
        with _stdout_to_stderr():
            loader.exec_module(module)
    except (Exception, SystemExit) as e:
        raise LoadError(f"{shown}{_line_of(e, path)}: {type(e).__name__}: {_message(e)}") from None
    finally:
        sys.modules.pop("__config__", None)
    return vars(module), source, shown


class _stdout_to_stderr:
    """A file that prints keeps stdout for the TOML."""

    def __enter__(self):
        self.saved, sys.stdout = sys.stdout, sys.stderr

    def __exit__(self, *exc):
        sys.stdout = self.saved


def _line_of(e: BaseException, path: str) -> str:
    if isinstance(e, SyntaxError) and e.lineno:
        return f", line {e.lineno}"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
    return f", line {frames[-1].lineno}" if frames else ""


def _message(e: BaseException) -> str:
    return e.msg if isinstance(e, SyntaxError) else str(e)


def computed_settings(source: str | None, names) -> dict[str, str]:
    """The settings whose value the file computes (`cpu_count() * 2 + 1`), with the expression:
    their value here may not be their value on the server."""
    if source is None:
        return {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    found: dict[str, str] = {}
    for node in _statements(tree.body):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if not (isinstance(target, ast.Name) and target.id in names):
                continue
            if isinstance(node, ast.AugAssign):
                found[target.id] = _short_source(ast.get_source_segment(source, node))
                continue
            try:
                ast.literal_eval(value)
                found.pop(target.id, None)
            except (ValueError, TypeError, SyntaxError):
                found[target.id] = _short_source(ast.get_source_segment(source, value))
    return found


def _statements(body):
    """The statements run when the module is, not those inside its functions and classes."""
    for node in body:
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            yield from _statements(getattr(node, field, None) or [])


def _short_source(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= 80 else text[:77] + "..."


def near_misses(namespace: dict) -> list[tuple[str, str]]:
    """Names gunicorn ignored because they are not settings, but look like one
    (`keep_alive` for `keepalive`)."""
    misses = []
    for name, value in namespace.items():
        if name in KNOWN or name.startswith("_") or not name.islower():
            continue
        if callable(value) or inspect.ismodule(value):
            continue
        if close := difflib.get_close_matches(name, sorted(KNOWN), n=1, cutoff=0.8):
            misses.append((name, close[0]))
    return misses


# --- output -----------------------------------------------------------------------------------


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    # JSON's string escapes are all valid in a TOML basic string.
    return json.dumps(str(value), ensure_ascii=False)


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)


def render(t: Translation, shown: str) -> str:
    """The TOML file."""
    lines = [
        f"# Translated by `ferrule from-gunicorn` from {shown}.",
        "# What it could not carry over was printed on stderr. Check: ferrule check-config FILE",
    ]
    if "app" not in t.keys and "django_settings" not in t.keys:
        lines.append('# app = "MODULE:CALLABLE"  (gunicorn took it from its command line)')
    order = {key: i for i, key in enumerate(KEY_ORDER)}
    for key in sorted(t.keys, key=lambda k: order.get(k, len(order))):
        value, comments = t.keys[key]
        lines += [f"# {c}" for c in comments]
        lines.append(f"{key} = {toml_value(value)}")
    if t.env:
        lines += ["", "[env]"]
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in t.env.items()]
    return "\n".join(lines) + "\n"


def report(t: Translation, shown: str, misses: list[tuple[str, str]]) -> str:
    """What stderr says: each setting left behind and why, then the hooks."""
    lines = [f"not translated: {what}: {why}" for what, why in t.dropped]
    lines += [
        f"not translated: {name} is not a gunicorn setting, so gunicorn ignored it too "
        f"(did you mean {close}?)"
        for name, close in misses
    ]
    lines += [f"note: {note}" for note in t.notes]
    if t.hooks:
        lines.append(
            f"hooks: {shown} defines {', '.join(t.hooks)}. ferrule calls the functions of the "
            "module named by `hooks`"
            + (f' ("{HOOKS_MODULE}" above): write {HOOKS_MODULE}.py' if "hooks" in t.keys else "")
            + " with ferrule's signatures (docs/migrating-from-gunicorn.md#hooks):"
        )
        for name in t.hooks:
            if name in HOOKS:
                before, after, change = HOOKS[name]
                lines.append(f"  {before} -> {after}: {change}")
            else:
                lines.append(f"  {name}: not translated: {NO_HOOK[name]}")
    return "".join(line + "\n" for line in lines)


def parse_args(argv: list[str]) -> tuple[str | None, str | None]:
    """(PATH, --app); PATH None for --help. Raises ValueError with what is wrong."""
    location = app = None
    args = iter(argv)
    for arg in args:
        if arg in ("-h", "--help"):
            return None, None
        if arg == "--app":
            app = next(args, None)
            if app is None:
                raise ValueError("--app needs a value (MODULE:CALLABLE)")
        elif arg.startswith("--app="):
            app = arg.removeprefix("--app=")
        elif arg.startswith("-") and arg != "-":
            raise ValueError(f"unexpected argument '{arg}'")
        elif location is None:
            location = arg
        else:
            raise ValueError(f"unexpected argument '{arg}' (one PATH only)")
    if location is None:
        raise ValueError("no PATH: name the gunicorn configuration file")
    return location, app


def main(argv: list[str]) -> int:
    """`ferrule from-gunicorn ARGV`; the exit code."""
    try:
        location, app = parse_args(argv)
    except ValueError as e:
        print(f"error: {e}\n\n{USAGE.splitlines()[0]}", file=sys.stderr)
        return 2
    if location is None:
        sys.stdout.write(USAGE)
        return 0
    try:
        namespace, source, shown = load(location)
        settings = {k: v for k, v in namespace.items() if k in KNOWN}
        t = translate(settings, computed_settings(source, settings), app)
    except LoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BadValue as e:
        print(f"error: {shown}: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(render(t, shown))
    sys.stderr.write(report(t, shown, near_misses(namespace)))
    return 0
