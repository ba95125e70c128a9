#!/usr/bin/env python3
"""Set up and run corps from a fresh clone, with nothing but python3 (>= 3.11) installed.

    python3 dev.py demo          # the demo, on an embedded nats-server
    python3 dev.py test          # the whole test suite (arguments go to pytest)
    python3 dev.py lint          # ruff and mypy
    python3 dev.py bench [...]   # the benchmark suite (corps bench)
    python3 dev.py corps [...]   # any corps command

The first run creates .venv and installs corps with its test and dev extras; later runs
reinstall only when pyproject.toml or the set of source files changes. The install is editable
in setuptools' strict mode: a tree of links to runtime/, actors/ and bench/ under build/, named
as the package `corps` (a path that type checkers follow, unlike the default import hook);
a new or removed file needs a relink, which the next dev.py command does.
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
SOURCES = ("runtime", "actors", "bench")  # the folders the package corps is built from (pyproject.toml)


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 -- dev.py runs under any python3, before the venv
        sys.exit(f"corps needs Python >= 3.11; this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    deps = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    files = hashlib.sha256("\n".join(sorted(
        str(p.relative_to(ROOT)) for folder in SOURCES for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts)).encode()).hexdigest()
    stamp = STAMP.read_text().split() if STAMP.exists() else []
    if stamp == [deps, files]:
        return
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    editable = ["-e", f"{ROOT}[dev]", "--config-settings", "editable_mode=strict"]
    if stamp[:1] == [deps]:  # same dependencies, files added or removed: relink only
        subprocess.run([*pip, "--no-deps", "--no-build-isolation", *editable], check=True)
    else:
        print("installing corps and its dependencies into .venv ...", flush=True)
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, *editable], check=True)
    STAMP.write_text(f"{deps} {files}")


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
    if command == "lint":  # style, types (the package and a user's module outside it), layers
        return (run(str(PY), "-m", "ruff", "check", ".") or run(str(PY), "-m", "mypy")
                or run(str(PY), "-m", "mypy", "--strict", "tests/typing/user_module.py")
                or run(str(BIN / "lint-imports")))
    if command == "bench":
        return run(str(BIN / "corps"), "bench", *rest)
    if command == "corps":
        return run(str(BIN / "corps"), *rest)
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
