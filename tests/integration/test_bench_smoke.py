"""The benchmark suite runs and reports sane numbers: a tiny subset, as a real process.

Never timing thresholds: only that every row has positive, finite numbers on every side that ran,
that the JSON carries machine facts and every sample, and that the markdown table is written.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from corps.bench.registry import SCENARIOS, load

REPO = Path(__file__).resolve().parents[2]
SUBSET = ("tell", "ask-latency", "ask-16", "fan-in", "codec")


def _sane(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_every_scenario_of_the_issue_is_registered() -> None:
    names = set(load())
    assert {"tell", "fan-in", "ask-latency", "ask-1", "ask-16", "ask-256", "codec", "loops", "memory"} <= names
    for name in names:
        scenario = SCENARIOS[name](True)
        assert scenario.name == name
        assert scenario.variants
        assert scenario.rows


def test_a_quick_subset_reports_positive_finite_numbers(tmp_path: Path) -> None:
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "bench", *SUBSET, "--quick", "--repeats", "1",
         "--json", str(out), "--markdown", str(md)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=50,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    doc = json.loads(out.read_text())
    assert doc["machine"]["cpu_count"]
    assert doc["machine"]["versions"]["nats-py"]
    assert set(doc["scenarios"]) == set(SUBSET)
    for name, scenario in doc["scenarios"].items():
        assert not scenario["errors"], (name, scenario["errors"])
        for row in scenario["rows"]:
            sides = [row["corps"], row["raw"], row["peer"]]
            for side in (s for s in sides if s is not None):
                assert side["samples"], (name, row["label"])
                assert all(_sane(v) for v in side["samples"]), (name, row["label"], side)
            if row["raw"] is not None:
                assert _sane(row["ratio"]), (name, row["label"])
    hist = doc["scenarios"]["ask-latency"]["samples"]["corps"][0]["hist_ns"]
    assert sum(count for _, count in hist) == doc["scenarios"]["ask-latency"]["params"]["asks"]
    assert "| tell (coalesce) vs raw batched/iter |" in md.read_text()
