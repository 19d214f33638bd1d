"""The gunicorn settings ferrule has no equivalent for (`UNMAPPED`): gunicorn's default for
each, and why ferrule has none. A table only: translation.py reports the settings a file sets
to something other than the default."""

from __future__ import annotations

#: A default that depends on the machine: any value the file sets is reported.
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

# Each setting's gunicorn default (a value equal to it changes nothing, so it is not reported)
# and why ferrule has no equivalent.
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
    "initgroups": (
        False,
        "ferrule always gives --user its supplementary groups (initgroups); with --group "
        "alone, that group is the only one",
    ),
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
    "proxy_allow_ips": (
        "127.0.0.1,::1",
        "ferrule believes a PROXY protocol header from forwarded_allow_ips peers: put the "
        "balancers there",
    ),
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
