"""`ferrule from-gunicorn PATH [--app MODULE:CALLABLE]`: a gunicorn configuration file as a
ferrule TOML file.

The file is read as gunicorn reads it (Python run in a fresh module, `__file__` set, the
current directory on `sys.path`; `python:module.name` imports a module instead). The TOML goes
to stdout; what it cannot carry over, and why, goes to stderr. Every setting gunicorn knows is
in one of four tables: `TRANSLATORS` (a function writes ferrule keys), `UNMAPPED` (no
equivalent, and why), `HOOKS` (a hook ferrule has too) or `NO_HOOK`. `KNOWN` is all of them;
`tests/test_from_gunicorn.py` checks it against `gunicorn.config.KNOWN_SETTINGS`, and
docs/migrating-from-gunicorn.md is the same table for people. gunicorn itself is not needed.

The modules, in the order the command uses them:

- `command.py`: the arguments, the usage text and the exit codes (`main`).
- `loader.py`: running the file as gunicorn does (`load`), the settings whose value it
  computes, and names that look like a misspelt setting.
- `values.py`: gunicorn's rules for a setting's value, and `BadValue` for one it would refuse.
- `translation.py`: `Translation`, the `TRANSLATORS` table, `translate()` and `KNOWN`.
- `access_log.py`: gunicorn's `access_log_format` as ferrule's access log template.
- `unmapped.py`: `UNMAPPED`, the settings ferrule has no equivalent for.
- `hooks.py`: `HOOKS` and `NO_HOOK`, gunicorn's server hooks with and without a ferrule one.
- `output.py`: the TOML file (`render`) and what stderr says (`report`).

This file only re-exports what `ferrule.__main__` and the tests use.
"""

from .access_log import access_template
from .command import main
from .output import toml_value
from .translation import KNOWN, translate
from .unmapped import ANY, UNMAPPED

__all__ = ["ANY", "KNOWN", "UNMAPPED", "access_template", "main", "toml_value", "translate"]
