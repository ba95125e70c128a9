"""Turn outcomes into rows (median, min, max, ratio, target met?), a terminal table and a JSON document."""

from __future__ import annotations

import json
import math
from typing import Any

from bench._model import Row
from bench._runner import Outcome
from bench._stats import fmt_range, median

HEADER = ("scenario", "corps", "raw", "ratio", "target", "met?")


def evaluate(row: Row, outcome: Outcome) -> dict[str, Any]:
    """One row's numbers: the samples of both sides, their medians and the ratio corps/raw of medians."""
    corps = [s[row.metric] for s in outcome.samples.get(row.corps, []) if row.metric in s]
    raw = [s[row.metric] for s in outcome.samples.get(row.raw, []) if row.metric in s] if row.raw else []
    c_med, r_med = median(corps), median(raw)
    ratio = c_med / r_med if row.raw and corps and raw and r_med else math.nan
    met: bool | None = None
    if row.target is not None:
        value = ratio if row.target.on == "ratio" else c_med
        met = None if math.isnan(value) else row.target.met(value)
    return {
        "label": row.label,
        "metric": row.metric,
        "unit": row.unit,
        "corps_variant": row.corps,
        "raw_variant": row.raw,
        "corps": {"median": c_med, "min": min(corps, default=math.nan), "max": max(corps, default=math.nan),
                  "samples": corps},
        "raw": {"median": r_med, "min": min(raw, default=math.nan), "max": max(raw, default=math.nan),
                "samples": raw} if row.raw else None,
        "ratio": ratio,
        "target": str(row.target) if row.target else None,
        "met": met,
    }


def table(outcomes: list[Outcome]) -> str:
    """The terminal table: one line per row, then each scenario's notes and errors."""
    lines: list[tuple[str, ...]] = [HEADER]
    notes: list[str] = []
    for outcome in outcomes:
        sc = outcome.scenario
        for row in sc.rows:
            ev = evaluate(row, outcome)
            corps = fmt_range(ev["corps"]["samples"], row.unit)
            raw = fmt_range(ev["raw"]["samples"], row.unit) if ev["raw"] else "—"
            ratio = "—" if math.isnan(ev["ratio"]) else f"{ev['ratio']:.2f}x"
            met = {True: "yes", False: "NO", None: "—" if row.target is None else "n/a"}[ev["met"]]
            lines.append((row.label, corps, raw, ratio, ev["target"] or "—", met))
        params = ", ".join(f"{k}={v:,}" for k, v in sc.params.items())
        notes.append(f"{sc.name}: {sc.summary} ({params})")
        notes.extend(f"    {n}" for n in sc.notes)
        for err in outcome.errors:
            notes.append(f"    FAILED {err['variant']} (repeat {err['repeat'] + 1}): {err['error']}")
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    rule = "  ".join("-" * w for w in widths)

    def fmt(line: tuple[str, ...]) -> str:
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    body = [fmt(lines[0]), rule, *(fmt(line) for line in lines[1:]), rule]
    return "\n".join([*body, "median [min-max] of the repeats; ratio = corps/raw of medians", "", *notes])


def machine_line(machine: dict[str, Any]) -> str:
    """One line of the facts that matter when reading the table (the JSON has them all)."""
    v = machine["versions"]
    load = [f"{x:.1f}" for x in (machine.get("load_average_at_start") or [])[:1] +
            (machine.get("load_average_at_end") or [])[:1]]
    return (f"{machine['platform']}, {machine['cpu_count']} CPUs, {machine['python']}, loop {machine['loop']}, "
            f"nats-server {machine['nats_server']}, nats-py {v['nats-py']}, msgspec {v['msgspec']}"
            + (f"; load average {' -> '.join(load)} (start -> end)" if load else ""))


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def document(machine: dict[str, Any], parameters: dict[str, Any], outcomes: list[Outcome]) -> str:
    """The JSON report: machine, parameters, and per scenario every sample of every variant."""
    doc = {
        "machine": machine,
        "parameters": parameters,
        "scenarios": {
            o.scenario.name: {
                "summary": o.scenario.summary,
                "params": dict(o.scenario.params),
                "notes": list(o.scenario.notes),
                "samples": o.samples,
                "errors": o.errors,
                "rows": [evaluate(row, o) for row in o.scenario.rows],
            }
            for o in outcomes
        },
    }
    return json.dumps(_clean(doc), indent=2, ensure_ascii=False)
