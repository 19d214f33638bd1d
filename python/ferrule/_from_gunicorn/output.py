"""What the command prints: the TOML file for stdout (`render`, its keys in check-config's
order, ferrule's defaults left out by translation.py) and, for stderr, what was left behind and
how to move the hooks (`report`)."""

from __future__ import annotations

import json
import re

from .hooks import HOOKS, HOOKS_MODULE, NO_HOOK
from .translation import Translation

# The order of the keys in the file: check-config's sections.
KEY_ORDER = (
    "app django_settings working_dir pythonpath hooks bind unix_socket_mode max_connections "
    "keep_alive limit_request_line limit_request_fields limit_request_field_size spool_dir threads "
    "graceful_timeout timeout cancel_grace interface loop ws_max_message access_log "
    "access_log_format log_file prefix forwarded_allow_ips proxy_protocol certfile keyfile "
    "ca_certs client_cert http h2_max_concurrent_streams h2_max_header_list_size workers "
    "max_requests max_requests_jitter reload reload_include pid umask user group"
).split()


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
