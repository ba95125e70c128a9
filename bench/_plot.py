"""``--plot FILE``: a PNG with throughput bars (corps, raw, FastStream; ratios written on the bars)
and the ask latency CDF. Needs matplotlib (the optional ``plot`` extra)."""

from __future__ import annotations

import importlib
import importlib.util
import math
from typing import Any

from corps.bench._hist import LogHistogram
from corps.bench._report import evaluate
from corps.bench._runner import Outcome

COLORS = {"corps": "#2b7bba", "raw": "#8c8c8c", "faststream": "#e08a2c"}
MISSING = "matplotlib is not installed: pip install 'corps[plot]' (or pip install matplotlib) for --plot"


def available() -> bool:
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        return False


def _throughput(outcomes: list[Outcome]) -> list[tuple[str, float, float, float]]:
    """(label, corps, raw, faststream) medians of every rate row that has a raw side."""
    rows = []
    for o in outcomes:
        for row in o.scenario.rows:
            if row.lower or not row.raw or not row.unit.endswith("/s") or o.scenario.name == "loops":
                continue
            ev = evaluate(row, o)
            peer = ev["peer"]["median"] if ev["peer"] else math.nan
            rows.append((row.label, ev["corps"]["median"], ev["raw"]["median"], peer))
    return rows


def _cdfs(outcomes: list[Outcome]) -> dict[str, LogHistogram]:
    """Every variant's latency histogram of the ask-latency scenario, merged over the repeats."""
    hists: dict[str, LogHistogram] = {}
    for o in outcomes:
        if o.scenario.name != "ask-latency":
            continue
        for variant, samples in o.samples.items():
            for s in samples:
                if "hist_ns" in s:
                    hists.setdefault(variant, LogHistogram()).merge(LogHistogram.from_pairs(s["hist_ns"]))
    return hists


def plot(outcomes: list[Outcome], path: str, title: str) -> None:
    """Write the PNG. Raises RuntimeError with an install hint when matplotlib is missing."""
    if not available():
        raise RuntimeError(MISSING)
    mpl: Any = importlib.import_module("matplotlib")
    mpl.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")
    bars, cdfs = _throughput(outcomes), _cdfs(outcomes)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, max(4.5, 0.55 * len(bars) + 2)),
                                   gridspec_kw={"width_ratios": [3, 2]})
    height = 0.27
    for i, (_label, corps, raw, peer) in enumerate(bars):
        y = len(bars) - 1 - i
        for k, (name, value) in enumerate((("corps", corps), ("raw", raw), ("faststream", peer))):
            if math.isnan(value):
                continue
            ax1.barh(y + (1 - k) * height, value, height, color=COLORS[name], label=name if i == 0 else None)
            if name != "raw" and raw and not math.isnan(raw):
                ax1.text(value, y + (1 - k) * height, f" {value / raw:.2f}x", va="center", fontsize=8)
    ax1.set_yticks(range(len(bars)), [b[0] for b in reversed(bars)], fontsize=8)
    ax1.set_xscale("log")
    ax1.set_xlabel("throughput, msg/s or req/s (log scale; ratio vs raw nats-py on the bars)")
    ax1.legend(loc="upper right", fontsize=8, framealpha=0.9)
    ax1.set_title("throughput (median of repeats)")
    for variant, hist in sorted(cdfs.items()):
        xs, ys = hist.cdf()
        p50 = hist.value_at(50) / 1e3
        ax2.step(xs, ys, where="post", color=COLORS.get(variant), label=f"{variant} (p50 {p50:.0f} µs)")
    ax2.set_xscale("log")
    ax2.set_xlabel("ask latency, µs (log scale)")
    ax2.set_ylabel("fraction of asks")
    ax2.set_title("sequential ask latency CDF (all repeats)")
    ax2.grid(True, which="both", alpha=0.3)
    if cdfs:
        ax2.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
