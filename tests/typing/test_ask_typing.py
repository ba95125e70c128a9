"""The typed API, checked by mypy on sample.py: ask's reply type, frozen messages by default."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
SAMPLE = HERE / "sample.py"


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """mypy's report on sample.py (strict, from pyproject.toml), with a cache of its own."""
    cache = tmp_path_factory.mktemp("mypy-cache")
    env = dict(os.environ)  # corps is found as a user finds it: installed in the environment
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--no-error-summary", str(SAMPLE.relative_to(ROOT))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr  # 1: the deliberate read-only error
    return proc.stdout.splitlines()


def _line_of(marker: str) -> int:
    for n, line in enumerate(SAMPLE.read_text().splitlines(), start=1):
        if marker in line:
            return n
    raise AssertionError(f"{marker!r} not in {SAMPLE}")


def test_ask_returns_the_reply_type_the_request_names(mypy_output: list[str]) -> None:
    line = _line_of("reveal_type(await ref.ask(")
    revealed = [m for m in mypy_output if f":{line}: note: Revealed type is" in m]
    assert len(revealed) == 1, mypy_output
    assert re.search(r'Revealed type is "(tests\.typing\.)?sample\.Balance"', revealed[0]), revealed


def test_assigning_a_message_field_is_reported_read_only(mypy_output: list[str]) -> None:
    line = _line_of("READ-ONLY")
    errors = [m for m in mypy_output if f":{line}: error:" in m]
    assert len(errors) == 1, mypy_output
    assert "read-only" in errors[0]


def test_a_message_without_frozen_true_type_checks_cleanly(mypy_output: list[str]) -> None:
    # Ping is declared without frozen=True and used as a handler parameter and a tell: the only
    # error in the whole sample is the deliberate assignment.
    errors = [m for m in mypy_output if ": error:" in m]
    assert errors == [m for m in errors if f":{_line_of('READ-ONLY')}:" in m], mypy_output
    assert len(errors) == 1, mypy_output
