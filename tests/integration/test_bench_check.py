"""``corps bench --check`` gates on targets: exit 3 when a row misses, 0 when every row meets it.

Real runs of the codec scenario (the quickest, no timing threshold of ours: the targets are set on
the command line with ``--target`` so that one is impossible and the other trivially met).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from corps.bench._check import EXIT_MISSED, EXIT_OK, parse_target
from corps.bench._model import Target

REPO = Path(__file__).resolve().parents[2]
ROW = "codec decode (frame of 64)"


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "corps.bench", "codec", "--quick", "--repeats", "1", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_check_exits_3_when_a_row_misses_its_target_and_0_when_it_meets_it() -> None:
    missed = _bench("--check", "--target", f"{ROW}>=1000000x")
    assert missed.returncode == EXIT_MISSED, missed.stderr[-3000:]
    assert re.search(rf"codec: {re.escape(ROW)}: [0-9.]+x, target >= 1e\+06x", missed.stderr), missed.stderr
    assert "target >= 1e+06x" in missed.stderr
    assert " NO" in missed.stdout  # the table shows the miss too
    met = _bench("--check", "--target", f"{ROW}>=0.000001x", "--target", "codec encode (envelope)>=1")
    assert met.returncode == EXIT_OK, met.stderr[-3000:]
    assert "every row with a target met it" in met.stderr


def test_without_check_a_miss_is_reported_and_exits_0() -> None:
    done = _bench("--target", f"{ROW}>=1000000x")
    assert done.returncode == EXIT_OK, done.stderr[-3000:]
    assert " NO" in done.stdout


def test_a_target_for_no_row_or_malformed_is_a_usage_error() -> None:
    assert _bench("--target", "no such row>=1x").returncode == 2
    assert _bench("--target", f"{ROW}=>1x").returncode == 2


@pytest.mark.parametrize(("text", "label", "target"), [
    ("tell (coalesce)>=0.6x", "tell (coalesce)", Target(">=", 0.6, "ratio")),
    ("ask p50 <= 300", "ask p50", Target("<=", 300.0, "value")),
    ("a<b<.5x", "a<b", Target("<", 0.5, "ratio")),
])
def test_parse_target(text: str, label: str, target: Target) -> None:
    assert parse_target(text) == (label, target)


@pytest.mark.parametrize("text", ["tell>=", ">=1x", "tell=1x", "tell>=1y", "tell>=-1x"])
def test_parse_target_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="expected LABEL"):
        parse_target(text)
