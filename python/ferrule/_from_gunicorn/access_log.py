"""gunicorn's `access_log_format` as ferrule's access log template: the `%(h)s` atoms ferrule
has a `{field}` for, and the ones it has not. Whether the access log is kept at all, and where
it goes, is decided with `accesslog` and `errorlog` in translation.py."""

from __future__ import annotations

import re

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
