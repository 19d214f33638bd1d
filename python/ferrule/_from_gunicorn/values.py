"""gunicorn's rules for a setting's value (the validators in gunicorn/config.py), and
`BadValue` for a value gunicorn itself would refuse. What a value becomes in ferrule is
translation.py's."""

from __future__ import annotations


class BadValue(Exception):
    """A value gunicorn itself would refuse."""


def as_int(value) -> int:
    try:
        n = int(value) if isinstance(value, int) else int(str(value).strip(), 0)
    except ValueError as e:
        raise BadValue(f"not an integer: {value!r}") from e
    if n < 0:
        raise BadValue(f"must be positive: {value!r}")
    return n


def as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise BadValue(f"not a boolean: {value!r}")


def as_str(value) -> str:
    if not isinstance(value, str):
        raise BadValue(f"not a string: {value!r}")
    return value.strip()


def str_list(value) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [as_str(value)]
    if not isinstance(value, (list, tuple)):
        raise BadValue(f"not a list of strings: {value!r}")
    return [as_str(v) for v in value]


def comma_list(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [as_str(v) for v in value]
    return [v.strip() for v in as_str(value).split(",") if v.strip()]
