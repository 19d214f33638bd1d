"""The `ferrule` command: every option is defined in Rust; this hands argv over. The one
exception is `ferrule from-gunicorn`, which runs a gunicorn configuration file (Python) to
translate it, and so lives in Python (the `_from_gunicorn` package)."""

import sys


def main() -> None:
    if sys.argv[1:2] == ["from-gunicorn"]:
        from ferrule._from_gunicorn import main as from_gunicorn

        sys.exit(from_gunicorn(sys.argv[2:]))

    from ferrule import _ferrule

    sys.exit(_ferrule.main(["ferrule", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
