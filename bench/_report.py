"""Turn outcomes into rows (median, min, max, ratios, targets), a terminal table, markdown and JSON."""

from __future__ import annotations

import json
import math
from typing import Any

from corps.bench._model import Row
from corps.bench._runner import Outcome
from corps.bench._stats import fmt_range, median

HEADER = ("scenario", "corps", "raw", "corps/raw", "target", "met?", "FastStream", "FS/raw", "vs FastStream")
RATIO_NOTE = ("median [min-max] of the repeats; corps/raw and FS/raw = ratio of medians; "
              "'vs FastStream' = how many times better corps is (ahead) or worse (BEHIND)")


def _values(outcome: Outcome, variant: str | None, metric: str) -> list[float]:
    if variant is None:
        return []
    return [float(s[metric]) for s in outcome.samples.get(variant, []) if isinstance(s.get(metric), int | float)]


def _side(values: list[float]) -> dict[str, Any]:
    return {"median": median(values), "min": min(values, default=math.nan), "max": max(values, default=math.nan),
            "samples": values}


def _ratio(a: float, b: float) -> float:
    return a / b if b and not (math.isnan(a) or math.isnan(b)) else math.nan


def evaluate(row: Row, outcome: Outcome) -> dict[str, Any]:
    """One row's numbers: every side's samples and medians, the ratios, the target and the peer verdict."""
    corps, raw = _values(outcome, row.corps, row.metric), _values(outcome, row.raw, row.metric)
    peer = _values(outcome, row.peer, row.metric)
    c_med, r_med, p_med = median(corps), median(raw), median(peer)
    ratio = _ratio(c_med, r_med) if row.raw else math.nan
    met: bool | None = None
    if row.target is not None:
        value = ratio if row.target.on == "ratio" else c_med
        met = None if math.isnan(value) else row.target.met(value)
    advantage = _ratio(p_med, c_med) if row.lower else _ratio(c_med, p_med)
    peer_status = None
    if row.peer is not None and not peer:
        peer_status = outcome.scenario.missing.get(row.peer, "failed")
    return {
        "label": row.label, "metric": row.metric, "unit": row.unit, "lower_is_better": row.lower,
        "corps_variant": row.corps, "raw_variant": row.raw, "peer_variant": row.peer,
        "corps": _side(corps),
        "raw": _side(raw) if row.raw else None,
        "peer": _side(peer) if row.peer and peer else None,
        "peer_status": peer_status,
        "ratio": ratio,
        "peer_ratio": _ratio(p_med, r_med) if row.raw else math.nan,
        "advantage_over_peer": advantage,
        "ahead_of_peer": None if math.isnan(advantage) else advantage > 1.0,
        "target": str(row.target) if row.target else None,
        "met": met,
    }


def _x(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}x"


def cells(row: Row, ev: dict[str, Any]) -> tuple[str, ...]:
    """The table cells of one evaluated row (shared by the terminal and markdown tables)."""
    corps = fmt_range(ev["corps"]["samples"], row.unit)
    raw = fmt_range(ev["raw"]["samples"], row.unit) if ev["raw"] else "—"
    met = {True: "yes", False: "NO", None: "—" if row.target is None else "n/a"}[ev["met"]]
    if row.peer is None:
        peer, peer_ratio, versus = "—", "—", "—"
    elif ev["peer"] is None:
        peer, peer_ratio, versus = str(ev["peer_status"]).split(" (")[0], "—", "—"
    else:
        peer, peer_ratio = fmt_range(ev["peer"]["samples"], row.unit), _x(ev["peer_ratio"])
        adv = ev["advantage_over_peer"]
        versus = "—" if ev["ahead_of_peer"] is None else (f"ahead {adv:.2f}x" if ev["ahead_of_peer"]
                                                          else f"BEHIND {adv:.2f}x")
    return (row.label, corps, raw, _x(ev["ratio"]), ev["target"] or "—", met, peer, peer_ratio, versus)


def _lines(outcomes: list[Outcome]) -> tuple[list[tuple[str, ...]], list[str]]:
    lines: list[tuple[str, ...]] = []
    notes: list[str] = []
    for outcome in outcomes:
        sc = outcome.scenario
        lines.extend(cells(row, evaluate(row, outcome)) for row in sc.rows)
        params = ", ".join(f"{k}={v:,}" for k, v in sc.params.items())
        notes.append(f"{sc.name}: {sc.summary} ({params})")
        notes.extend(f"    {n}" for n in sc.notes)
        notes.extend(f"    {v}: {why}" for v, why in sc.missing.items())
        for err in outcome.errors:
            notes.append(f"    FAILED {err['variant']} (repeat {err['repeat'] + 1}): {err['error']}")
    return lines, notes


def table(outcomes: list[Outcome]) -> str:
    """The terminal table: one line per row, then each scenario's notes and errors."""
    body, notes = _lines(outcomes)
    lines = [HEADER, *body]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    rule = "  ".join("-" * w for w in widths)

    def fmt(line: tuple[str, ...]) -> str:
        out = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    return "\n".join([fmt(HEADER), rule, *(fmt(line) for line in body), rule, RATIO_NOTE, "", *notes])


def markdown(machine_text: str, command: str, outcomes: list[Outcome]) -> str:
    """A markdown table with the machine line, the command and the scenario notes."""
    body, notes = _lines(outcomes)
    esc = [tuple(c.replace("|", "\\|") for c in line) for line in body]
    out = [f"`{command}`", "", machine_text, "",
           "| " + " | ".join(HEADER) + " |", "|" + "|".join(["---"] + ["---:"] * (len(HEADER) - 1)) + "|",
           *("| " + " | ".join(line) + " |" for line in esc), "", RATIO_NOTE + ".", "", "```", *notes, "```"]
    return "\n".join(out) + "\n"


def machine_line(machine: dict[str, Any]) -> str:
    """One line of the facts that matter when reading the table (the JSON has them all)."""
    v = machine["versions"]
    load = [f"{x:.1f}" for x in (machine.get("load_average_at_start") or [])[:1] +
            (machine.get("load_average_at_end") or [])[:1]]
    cpu = f"{machine['cpu_model']}, " if machine.get("cpu_model") else ""
    return (f"{machine['platform']}, {cpu}{machine['cpu_count']} CPUs, {machine['python']}, loop {machine['loop']}, "
            f"nats-server {machine['nats_server']}, nats-py {v['nats-py']}, msgspec {v['msgspec']}, "
            f"FastStream {v.get('faststream', '?')}, corps {machine.get('git_commit', '?')}"
            + (f"; load average {' -> '.join(load)} (start -> end)" if load else ""))


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
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
                "missing": dict(o.scenario.missing),
                "samples": o.samples,
                "errors": o.errors,
                "rows": [evaluate(row, o) for row in o.scenario.rows],
            }
            for o in outcomes
        },
    }
    return json.dumps(_clean(doc), indent=2, ensure_ascii=False)
