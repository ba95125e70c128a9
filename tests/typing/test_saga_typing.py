"""Typed step builders, checked by mypy on saga_sample.py: a typo in ``s.input`` is a type error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
SAMPLE = HERE / "saga_sample.py"


def mypy(path: Path, cache: Path) -> list[str]:
    """mypy --strict's error lines for ``path``, as a user's CI runs it (corps installed)."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), "--no-error-summary",
         str(path.relative_to(ROOT))],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return [line for line in proc.stdout.splitlines() if ": error:" in line]


@pytest.fixture(scope="module")
def errors(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return mypy(SAMPLE, tmp_path_factory.mktemp("mypy-cache"))


def marked(marker: str) -> dict[int, str]:
    """Line number -> line, for the lines of the sample carrying ``marker``."""
    return {n: line for n, line in enumerate(SAMPLE.read_text().splitlines(), start=1) if marker in line}


@pytest.mark.parametrize(("where", "attribute"), [
    ("# TYPO request", "order_idd"), ("# TYPO key", "cardd"), ("# TYPO undo", "amountt"),
    ("# TYPO outside", "skuu"),
])
def test_a_typo_in_the_saga_input_is_reported_in_key_request_and_undo(
    errors: list[str], where: str, attribute: str
) -> None:
    (line,) = marked(where)
    found = [e for e in errors if f":{line}: error:" in e]
    assert len(found) == 1, errors
    assert f'"OrderRequest" has no attribute "{attribute}"' in found[0]


def test_nothing_else_is_reported_old_untyped_steps_and_copies_included(errors: list[str]) -> None:
    lines = marked("  # TYPO")
    assert len(errors) == len(lines), errors
    assert all(any(f":{n}: error:" in e for n in lines) for e in errors), errors
