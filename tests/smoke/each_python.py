"""Install a wheel in a fresh virtualenv per CPython and run tests/smoke/smoke.py in each.

    python tests/smoke/each_python.py [--venvs DIR] [--versions 3.10 3.11 ...] WHEEL

`make test-wheels` runs it. Each version's interpreter comes from pyenv (`pyenv prefix 3.12`
picks the newest 3.12 it has), else `python3.12` on PATH; a version found neither way is
skipped, loudly, not failed. Each venv (DIR/3.12, made anew) gets the wheel and the Django
that pip chooses for that Python; its log is DIR/3.12.log, shown when it fails. One line per
version, then the exit status: 1 if any version failed. Run it with a Python that has pip.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SMOKE = Path(__file__).resolve().parent / "smoke.py"
VERSIONS = ["3.10", "3.11", "3.12", "3.13"]
# Seconds for one version: venv, pip (a Django download on a cold cache) and the smoke test.
# Generous: the smoke test itself takes seconds; pip's network is the unknown.
DEADLINE = 600


def interpreter(version: str) -> str | None:
    if shutil.which("pyenv"):
        found = subprocess.run(
            ["pyenv", "prefix", version], capture_output=True, text=True, check=False
        )
        path = Path(found.stdout.strip()) / "bin" / f"python{version}"
        if found.returncode == 0 and path.exists():
            return str(path)
    return shutil.which(f"python{version}")


def smoke(version: str, wheel: Path, venvs: Path) -> tuple[str, str]:
    """Build the venv and run the smoke test; (result, detail) for the summary line."""
    python = interpreter(version)
    if python is None:
        return "SKIPPED", f"no CPython {version} (neither pyenv nor python{version} on PATH)"
    venv = venvs / version
    log = venvs / f"{version}.log"
    target = str(venv / "bin" / "python")
    steps = [
        # Without pip, which ensurepip would spend seconds of a loaded machine on: the pip
        # running this script installs into the venv instead (`--python`, pip 22.3 and later).
        [python, "-m", "venv", "--clear", "--without-pip", str(venv)],
        [sys.executable, "-m", "pip", "--python", target, "install", "-q", str(wheel), "django"],
        [target, str(SMOKE)],
    ]
    start = time.monotonic()
    with log.open("w") as out:
        for argv in steps:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            began = time.monotonic()
            left = DEADLINE - (began - start)
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
            try:
                code = proc.wait(left)
            except subprocess.TimeoutExpired:
                # SIGTERM, not SIGKILL: smoke.py then stops the servers it started.
                proc.terminate()
                proc.wait()
                return "FAILED", f"{argv[-1]} still running after {DEADLINE}s; see {log}"
            out.write(f"# {time.monotonic() - began:.1f}s\n")
            if code != 0:
                return "FAILED", f"{Path(argv[-1]).name} exited with {code}; see {log}"
    last = log.read_text().strip().splitlines()[-2]
    return "ok", f"{time.monotonic() - start:.0f}s: {last.removeprefix('smoke: ok: ')}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--venvs", type=Path, default=Path(".venv-smoke"))
    parser.add_argument("--versions", nargs="+", default=VERSIONS)
    args = parser.parse_args()
    args.venvs.mkdir(parents=True, exist_ok=True)
    wheel = args.wheel.resolve()
    # Two at a time: the smoke test waits on servers more than it computes.
    with ThreadPoolExecutor(max_workers=2) as pool:
        ran = pool.map(lambda v: smoke(v, wheel, args.venvs), args.versions)
        results = dict(zip(args.versions, ran, strict=True))
    by_result: dict[str, list[str]] = {}
    for version, (result, _) in results.items():
        by_result.setdefault(result, []).append(version)
    for version in by_result.get("FAILED", []):
        print(f"--- CPython {version}: {args.venvs / f'{version}.log'}")
        print((args.venvs / f"{version}.log").read_text(), end="")
    print(f"smoke tests of {wheel.name}:")
    for version, (result, detail) in results.items():
        print(f"  CPython {version}: {result}: {detail}")
    if "SKIPPED" in by_result:
        print(f"WARNING: CPython {', '.join(by_result['SKIPPED'])} SKIPPED: not on this machine")
    return 1 if "FAILED" in by_result else 0


if __name__ == "__main__":
    sys.exit(main())
