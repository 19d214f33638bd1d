"""The `ferrule` command: every option is defined in Rust; this hands argv over."""

import sys


def main() -> None:
    from ferrule import _ferrule

    sys.exit(_ferrule.main(["ferrule", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
