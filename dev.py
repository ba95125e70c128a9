#!/usr/bin/env python3
"""Set up and run corps from a fresh clone, with nothing but python3 (>= 3.11) installed.

    python3 dev.py demo          # the demo, on an embedded nats-server
    python3 dev.py test          # the whole test suite (arguments go to pytest)
    python3 dev.py lint          # ruff and mypy
    python3 dev.py bench [...]   # the benchmark suite (corps bench)
    python3 dev.py corps [...]   # any corps command

The first run creates .venv and installs corps with its test and dev extras; later runs
reinstall only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".corps-installed"


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 -- dev.py runs under any python3, before the venv
        sys.exit(f"corps needs Python >= 3.11; this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    print("installing corps and its dependencies into .venv ...", flush=True)
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(digest)


def run(*cmd: str) -> int:
    return subprocess.call(list(cmd), cwd=ROOT)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    ensure_venv()
    if command == "demo":
        return run(str(BIN / "corps"), "demo", *rest)
    if command == "test":
        return run(str(PY), "-m", "pytest", *rest)
    if command == "lint":
        return run(str(PY), "-m", "ruff", "check", ".") or run(str(PY), "-m", "mypy")
    if command == "bench":
        return run(str(BIN / "corps"), "bench", *rest)
    if command == "corps":
        return run(str(BIN / "corps"), *rest)
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
