"""Sagas scaling out: 1 and 2 coordinator processes (``_saga_procs``), measured two ways.

saga-procs: PlaceOrder with 64 in flight per process against the shop's participants (records
in memory, in the bench process): the machine's CPU is the limit here, so the rows that say what
scales are the CPU ones: coordinator CPU per saga, sagas per coordinator CPU-second (no
contention between coordinators keeps it flat from 1 process to 2), and the machine's ceiling,
its cores over the CPU one saga costs everywhere (coordinators, participants, nats-server).

saga-procs-latency: ``_slow_saga.SlowOrder``, whose participants wait 20 ms per step (a service
outside), 16 in flight per process: each coordinator's in-flight capacity is the limit, not the
CPU, so a second process should come near 2x. Its participant, ``Remote``, runs as 512 keyed
instances: the class scales by instances while each key's requests stay one at a time (the
"in flight per key" row must read 1).

The rate is all sagas over the union of the processes' measured windows.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from corps import ActorSystem
from corps.bench._child import run_child
from corps.bench._model import Context, Row, Sample, Scenario, Target, Variant
from corps.bench._proc_cpu import cores, server_cpu
from corps.bench._saga_procs import MEMORY_PARTICIPANTS
from corps.bench._slow_saga import GAUGE, INSTANCES, REMOTES, STEP_LATENCY
from corps.bench.registry import register

PROC_TIMEOUT = 300.0
PROC_START = 6.0
"""Seconds from launching the children to their common start: time to import, connect, warm up."""


def _procs(n: int, saga: str) -> Any:
    async def run(ctx: Context) -> Sample:
        ns = f"b{uuid.uuid4().hex[:8]}"
        async with ActorSystem(ctx.url, namespace=ns) as parts:
            for cls, actor_id in (MEMORY_PARTICIPANTS if saga == "place" else REMOTES):
                await parts.spawn(cls, actor_id)
            start_at = time.time() + PROC_START
            args = [ctx.url, ns, str(ctx.params["sagas"]), str(ctx.params["inflight"]), str(start_at), ctx.loop, saga]
            GAUGE.reset()
            cpu0, server0 = time.process_time(), server_cpu()
            results = await asyncio.gather(*(run_child("corps.bench._saga_procs", args, PROC_TIMEOUT)
                                             for _ in range(n)))
            participants_cpu = time.process_time() - cpu0  # warm-ups included: an upper bound
            server1 = server_cpu()
        total = sum(r["sagas"] for r in results)
        window = max(r["t1"] for r in results) - min(r["t0"] for r in results)
        overlap = min(r["t1"] for r in results) - max(r["t0"] for r in results)
        coordinator_us = 1e6 * sum(r["cpu"] for r in results) / total
        sample: Sample = {
            "rate": total / window, "seconds": window, "overlap_share": 100 * max(overlap, 0.0) / window,
            "coordinator_cpu_us": coordinator_us, "participants_cpu_us": 1e6 * participants_cpu / total,
            "per_cpu_second": 1e6 / coordinator_us,
            "most_per_key": GAUGE.most_per_key, "most_busy": GAUGE.most,
        }
        if server0 is not None and server1 is not None:  # warm-ups included: an upper bound
            sample["server_cpu_us"] = 1e6 * (server1 - server0) / total
            every = coordinator_us + sample["participants_cpu_us"] + sample["server_cpu_us"]
            sample["all_cpu_us"] = every
            sample["ceiling"] = cores() * 1e6 / every
            sample["room"] = sample["ceiling"] / sample["rate"]
        return sample

    return run


def _cpu_rows(name: str) -> tuple[Row, ...]:
    return (
        Row(f"{name} coordinator CPU per saga (2 procs vs 1)", "coordinator_cpu_us", "µs", "procs-2", "procs-1"),
        Row(f"{name} sagas per coordinator CPU-second (2 procs vs 1)", "per_cpu_second", "saga/s",
            "procs-2", "procs-1"),
        Row(f"{name} participants CPU per saga (2 procs vs 1)", "participants_cpu_us", "µs", "procs-2", "procs-1"),
        Row(f"{name} nats-server CPU per saga (2 procs vs 1)", "server_cpu_us", "µs", "procs-2", "procs-1"),
        Row(f"{name} CPU per saga, every process (2 procs vs 1)", "all_cpu_us", "µs", "procs-2", "procs-1"),
        Row(f"{name} machine ceiling: {cores()} cores / CPU per saga (2 procs vs 1)", "ceiling", "saga/s",
            "procs-2", "procs-1"),
        Row(f"{name} ceiling / measured rate: the most more processes could add (2 procs vs 1)", "room", "x",
            "procs-2", "procs-1"),
    )


@register("saga-procs")
def saga_procs(quick: bool) -> Scenario:
    return Scenario(
        "saga-procs",
        "orchestrated PlaceOrder, 64 in flight per coordinator process: 2 processes vs 1",
        {"sagas": 300 if quick else 2_000, "inflight": 64},
        (Variant("procs-1", _procs(1, "place")), Variant("procs-2", _procs(2, "place"))),
        (
            Row("saga 2 coordinator processes vs 1", "rate", "saga/s", "procs-2", "procs-1", Target(">=", 1.6)),
            Row("saga 2 processes: overlap of their windows", "overlap_share", "%", "procs-2", None),
            *_cpu_rows("saga"),
        ),
        ("each coordinator is its own process (python -m corps.bench._saga_procs), 64 sagas in flight; the "
         "participants run in the bench process with their records in memory (@idempotent(effect='memory'))",
         "the corps column is 2 processes, the raw column 1 process: the ratio is the scale-out",
         "CPU per saga from process_time (coordinators, the bench process's participants) and /proc "
         "(the nats-server the bench started; none with --nats); the participants' and the server's "
         "include the warm-ups (an upper bound); the ceiling is the cores over the sum"),
    )


@register("saga-procs-latency")
def saga_procs_latency(quick: bool) -> Scenario:
    ms = f"{1000 * STEP_LATENCY:g} ms"
    return Scenario(
        "saga-procs-latency",
        f"3-step saga, participants that wait {ms} per step ({INSTANCES} keyed instances), 16 in flight per "
        "coordinator process: 2 processes vs 1",
        {"sagas": 150 if quick else 1_000, "inflight": 16},
        (Variant("procs-1", _procs(1, "slow")), Variant("procs-2", _procs(2, "slow"))),
        (
            Row(f"saga {ms}/step: 2 coordinator processes vs 1", "rate", "saga/s", "procs-2", "procs-1",
                Target(">=", 1.6)),
            Row(f"saga {ms}/step: 2 processes: overlap of their windows", "overlap_share", "%", "procs-2", None),
            Row(f"saga {ms}/step: participant handlers in flight per key, max (2 procs vs 1)", "most_per_key", "",
                "procs-2", "procs-1", lower_is_better=True),
            Row(f"saga {ms}/step: participant instances working at once, max (2 procs vs 1)", "most_busy", "",
                "procs-2", "procs-1"),
            Row(f"saga {ms}/step: coordinator CPU per saga (2 procs vs 1)", "coordinator_cpu_us", "µs",
                "procs-2", "procs-1"),
        ),
        (f"SlowOrder (bench/_slow_saga.py): 3 steps to {INSTANCES} keyed instances of one participant class, each "
         f"waiting {ms} per request (records in memory); each coordinator process keeps 16 sagas in flight, "
         "so its in-flight capacity, not the CPU, is the limit",
         "'in flight per key' is the most handlers one instance ran at once (the mailbox: 1, so each key's "
         f"requests keep their order); 'working at once' the most across the {INSTANCES} instances"),
    )
