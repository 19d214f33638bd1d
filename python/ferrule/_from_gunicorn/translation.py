"""What a gunicorn file's settings become: `Translation` (the ferrule keys with their comments,
the `[env]` table, what is left behind and why), a rule per translated setting in
`TRANSLATORS`, and `translate()`, which runs the rules and adds the notes. `KNOWN` is every
setting this package knows: TRANSLATORS, UNMAPPED (unmapped.py), HOOKS and NO_HOOK (hooks.py).
Reading the file is loader.py's; writing the TOML is output.py's."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from .access_log import GUNICORN_ACCESS_FORMAT, access_template
from .hooks import HOOKS, HOOKS_MODULE, NO_HOOK
from .unmapped import ANY, UNMAPPED
from .values import BadValue, as_bool, as_int, as_str, comma_list, str_list

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


def renamed(key: str, convert=as_int, comment: str = "") -> Translator:
    def translate(t: Translation, name: str, value) -> None:
        t.set(key, convert(value), comment, setting=name)

    return translate


# Settings that are a ferrule option under the same or another name: (key, how gunicorn reads
# the value, a comment for the file).
for _name, (_key, _convert, _comment) in {
    "workers": ("workers", as_int, ""),
    "threads": ("threads", as_int, ""),
    "graceful_timeout": ("graceful_timeout", as_int, ""),
    "keepalive": ("keep_alive", as_int, ""),
    "max_requests": ("max_requests", as_int, ""),
    "max_requests_jitter": ("max_requests_jitter", as_int, ""),
    "http2_max_concurrent_streams": ("h2_max_concurrent_streams", as_int, ""),
    "pidfile": ("pid", as_str, ""),
    "certfile": ("certfile", as_str, ""),
    "keyfile": ("keyfile", as_str, ""),
    "ca_certs": ("ca_certs", as_str, ""),
    "reload": ("reload", as_bool, ""),
    "reload_extra_files": (
        "reload_include",
        str_list,
        "globs, matched under the working directory",
    ),
    "asgi_loop": ("loop", as_str, ""),
    "asgi_disconnect_grace_period": (
        "cancel_grace",
        as_int,
        "seconds a cancelled request keeps running, WSGI requests too",
    ),
    "root_path": (
        "prefix",
        as_str,
        "requests outside the prefix get a 404 page (prefix_redirect: a 308)",
    ),
}.items():
    TRANSLATORS[_name] = renamed(_key, _convert, _comment)


@translates("wsgi_app")
def _app(t: Translation, name: str, value) -> None:
    t.set("app", as_str(value), setting=name)


@translates("bind")
def _bind(t: Translation, name: str, value) -> None:
    binds = []
    for address in str_list(value):
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
        t.set("max_connections", as_int(value), setting=name)


def _is_sync(settings: dict) -> bool:
    cls = settings.get("worker_class", "sync")
    sync = isinstance(cls, str) and cls.lower().removeprefix("egg:gunicorn#") == "sync"
    return sync and as_int(settings.get("threads", 1)) <= 1


@translates("timeout")
def _timeout(t: Translation, name: str, value) -> None:
    t.set(
        "timeout",
        as_int(value),
        "gunicorn killed a worker silent this long; ferrule answers 504 and cancels the request",
        setting=name,
    )


@translates("limit_request_line", "limit_request_fields", "limit_request_field_size")
def _limit(t: Translation, name: str, value) -> None:
    n = as_int(value)
    if n == 0 and name == "limit_request_line":
        # gunicorn's 0 is "no limit"; ferrule takes 0 literally. 64 KiB is far beyond any URL a
        # browser or proxy sends (nginx's default is 8 KiB).
        t.set(name, 65536, "gunicorn's 0 means no limit; ferrule needs a number", setting=name)
    elif n == 0 and name == "limit_request_fields":
        t.set(name, 32768, "gunicorn's 0 means its maximum, 32768", setting=name)
    else:
        # gunicorn 27 reads a limit_request_field_size of 0 as 8190, ferrule's default too.
        t.set(name, n or 8190, setting=name)


@translates("tmp_upload_dir")
def _spool_dir(t: Translation, name: str, value) -> None:
    if value is not None:
        t.set("spool_dir", os.path.abspath(as_str(value)), setting=name)


@translates("forwarded_allow_ips")
def _forwarded(t: Translation, name: str, value) -> None:
    t.set("forwarded_allow_ips", ",".join(comma_list(value)), setting=name)


@translates("pythonpath")
def _pythonpath(t: Translation, name: str, value) -> None:
    if value is not None:
        t.set("pythonpath", comma_list(value), setting=name)


@translates("chdir")
def _chdir(t: Translation, name: str, value) -> None:
    # gunicorn takes a relative chdir from the directory it was started in; so does this.
    t.set("working_dir", os.path.abspath(as_str(value)), setting=name)


@translates("raw_env")
def _raw_env(t: Translation, name: str, value) -> None:
    for item in str_list(value):
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
        t.set(name, value if isinstance(value, int) else as_str(value), setting=name)


@translates("umask")
def _umask(t: Translation, name: str, value) -> None:
    mask = as_int(value)
    if mask == 0:
        return
    t.set("umask", f"{mask:03o}", "ferrule's is the processes' umask, for every file", name)
    if any(b.startswith("unix:") for b in str_list(t.settings.get("bind"))):
        t.set(
            "unix_socket_mode",
            f"{0o777 & ~mask:03o}",
            "gunicorn's umask set the socket's mode; ferrule's umask does not",
        )


@translates("proxy_protocol")
def _proxy_protocol(t: Translation, name: str, value) -> None:
    mode = value if isinstance(value, bool) else as_str(value).lower()
    if mode not in (False, "off", "false", "0", "none"):
        t.set("proxy_protocol", True, setting=name)


@translates("cert_reqs")
def _cert_reqs(t: Translation, name: str, value) -> None:
    modes = {0: "none", 1: "optional", 2: "required"}
    n = as_int(value)
    if n not in modes:
        raise BadValue(f"{value!r} is not 0, 1 or 2 (ssl.CERT_*)")
    t.set("client_cert", modes[n], setting=name)


@translates("http_protocols")
def _http_protocols(t: Translation, name: str, value) -> None:
    if "h2" not in comma_list(value):
        t.set("http", "1", setting=name)


@translates("http2_max_header_list_size", "websocket_max_message_size")
def _size_or_unlimited(t: Translation, name: str, value) -> None:
    key = {"http2_max_header_list_size": "h2_max_header_list_size"}.get(name, "ws_max_message")
    n = as_int(value)
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
        t.set("log_file", as_str(error), "server logs, and the access lines too", "errorlog")
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
        template, missing = access_template(as_str(fmt))
        if missing:
            t.drop(
                "access_log_format",
                f"ferrule has no field for {', '.join(missing)}; its lines are Apache combined "
                "plus the duration, or json, or a template of {fields} (docs/migrating-from-"
                "gunicorn.md#logging)",
            )
        else:
            t.set("access_log_format", template, "from gunicorn's access_log_format")


#: Every gunicorn setting this package knows, translated or not.
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
