"""The driver's side of a saga scenario: orders, the saga log read from outside, effects, the verdict.

The saga log is read straight from the KV bucket ``{ns}-sagas`` with nats-py (records decoded by
``corps.saga._log.decode_record``): the driver runs no coordinator, so it can neither take a saga
over nor hide a stuck one. ``Monitor`` polls it (and, where the server stays up, also watches
every revision), keeping each revision it saw, so the checker can tell whether the revisions of
a saga form one chain (each extends the one before: one owner at a time).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client

from corps import ActorSystem, CorpsError
from corps.examples.shop.messages import OrderRequest
from corps.saga import SagaInfo, SagaStatus
from corps.saga._log import decode_record, saga_bucket
from tests.fault.roles import Front, StartOrder

STEPS: Final = ("reserve", "charge", "ship")
POLL: Final = 0.05
"""Seconds between two reads of the saga log: the resolution of detect_s and recover_s."""
READ_TIMEOUT: Final = 1.0
KINDS: Final = {  # order kind -> (weight, expected terminal status)
    "ok": (6, SagaStatus.COMPLETED),
    "declined": (1, SagaStatus.COMPENSATED),
    "nowhere": (1, SagaStatus.COMPENSATED),
    "nostock": (1, SagaStatus.COMPENSATED),
}


def make_orders(rng: random.Random, n: int, prefix: str,
                only: str | None = None) -> dict[str, tuple[OrderRequest, str]]:
    """``n`` orders (id -> (order, kind)), the kinds drawn from ``rng`` (a fixed seed, the same mix)
    unless ``only`` names the one kind to make."""
    kinds = list(KINDS)
    weights = [KINDS[k][0] for k in kinds]
    out = {}
    for i in range(n):
        kind = only or rng.choices(kinds, weights)[0]
        oid = f"{prefix}-{i:03d}"
        out[oid] = (OrderRequest(
            order_id=oid, sku="plum" if kind == "nostock" else "apple", qty=6 if kind == "nostock" else 1,
            card="declined" if kind == "declined" else "visa", amount=100,
            address="nowhere" if kind == "nowhere" else "1 Main St"), kind)
    return out


async def connect(urls: list[str]) -> Client:
    """A nats-py connection that keeps trying through any outage (the driver must outlive faults)."""
    return await nats.connect(servers=urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1,
                              ping_interval=5, connect_timeout=5, name="fault-driver")


async def start_orders(system: ActorSystem, front: str, orders: Iterable[OrderRequest],
                       timeout: float = 15.0) -> set[str]:
    """Ask the coordinator node's Front to start each order (all at once); the ids acknowledged."""
    acked: set[str] = set()
    ref = system.ref(Front, front)

    async def one(order: OrderRequest) -> None:
        with contextlib.suppress(CorpsError):
            acked.add((await ref.ask(StartOrder(order), timeout=timeout)).saga_id)

    async with anyio.create_task_group() as tg:
        for order in orders:
            tg.start_soon(one, order)
    return acked


@dataclass(frozen=True)
class Seen:
    """One revision of one saga's record, when the driver first saw it."""

    t: float
    rev: int
    owner: str
    status: SagaStatus
    history: tuple[tuple[int, str, str | None, int], ...]


class Monitor:
    """Reads the saga records of ``ids`` from outside, keeping every revision seen."""

    def __init__(self, nc: Client, ns: str, ids: Iterable[str]) -> None:
        self.nc = nc
        # Short requests: a read lost to a dead node costs one poll, not nats-py's 5 s default
        # (which would show up as seconds of detect_s the system under test did not spend).
        self.js = nc.jetstream(timeout=READ_TIMEOUT)
        self.bucket = saga_bucket(ns)
        self.ids = sorted(ids)
        self.seen: dict[str, list[Seen]] = {sid: [] for sid in self.ids}
        self.info: dict[str, SagaInfo | None] = dict.fromkeys(self.ids)
        self.errors = Counter[str]()
        self._kv: Any = None
        self._next = 0

    def _note(self, sid: str, data: bytes, rev: int, t: float) -> SagaInfo:
        info = SagaInfo.of(decode_record(sid, data))
        runs = self.seen.setdefault(sid, [])
        if not any(s.rev == rev for s in runs):
            runs.append(Seen(t, rev, info.owner, info.status,
                             tuple((h.seq, str(h.kind), h.step, h.attempt) for h in info.history)))
        return info

    async def poll(self) -> None:
        """Read every saga not yet seen terminal once. A failed read (a store outage) is counted and
        ends this round; the next round starts at the saga it failed on, so slow reads still progress."""
        try:
            if self._kv is None:
                self._kv = await self.js.key_value(self.bucket)
            for _ in range(len(self.ids)):
                sid = self.ids[self._next]
                info = self.info.get(sid)
                if info is None or not info.terminal:
                    try:
                        entry = await self._kv.get(f"s.{sid}")
                    except nats.js.errors.KeyNotFoundError:
                        entry = None
                    if entry is not None:
                        self.info[sid] = self._note(sid, entry.value or b"", entry.revision or 0, time.monotonic())
                self._next = (self._next + 1) % len(self.ids)
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            self.errors[type(exc).__name__] += 1

    async def watch(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """See every revision as the server stores it (an ordered consumer on the KV stream)."""
        sub = await self.js.subscribe(f"$KV.{self.bucket}.s.>", ordered_consumer=True)
        task_status.started()
        try:
            async for msg in sub.messages:
                sid = msg.subject.rsplit(".", 1)[-1]
                if msg.data and sid in self.seen:
                    with contextlib.suppress(CorpsError):
                        self._note(sid, msg.data, msg.metadata.sequence.stream, time.monotonic())
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def terminal(self) -> bool:
        return all(i is not None and i.terminal for i in self.info.values())

    async def until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Poll until ``done()``; False at the deadline (a bounded wait, never a guess)."""
        deadline = time.monotonic() + timeout
        while True:
            await self.poll()
            if done():
                return True
            if time.monotonic() > deadline:
                return False
            await anyio.sleep(POLL)

    def first(self, after: float, pred: Callable[[Seen], bool]) -> float | None:
        """Seconds from ``after`` to the first revision seen after it that satisfies ``pred``."""
        times = [s.t for runs in self.seen.values() for s in runs if s.t >= after and pred(s)]
        return min(times) - after if times else None

    def all_terminal_at(self) -> float | None:
        ends = []
        for runs in self.seen.values():
            done = [s.t for s in runs if s.status.terminal]
            if not done:
                return None
            ends.append(min(done))
        return max(ends) if ends else None

    def chain_problems(self) -> list[str]:
        """A saga whose revisions fork (a later one does not extend an earlier one's history), or
        whose owner comes back after another took it over: two coordinators wrote it."""
        out = []
        for sid, runs in self.seen.items():
            runs = sorted(runs, key=lambda s: s.rev)
            for a, b in itertools.pairwise(runs):
                if b.history[: len(a.history)] != a.history:
                    out.append(f"{sid}: revision {b.rev} does not extend revision {a.rev} (a fork)")
            owners = [s.owner for s in runs if s.owner]
            changes = [o for i, o in enumerate(owners) if i == 0 or o != owners[i - 1]]
            if len(changes) != len(set(changes)):
                out.append(f"{sid}: owners went {' -> '.join(changes)} (a stale owner wrote again)")
            final = self.info.get(sid)
            seqs = [h.seq for h in final.history] if final is not None else []
            if seqs and seqs != list(range(seqs[0], seqs[0] + len(seqs))):
                out.append(f"{sid}: history seqs {seqs} are not one sequence")
        return out


def read_effects(paths: Iterable[Path]) -> list[dict[str, Any]]:
    lines = []
    for p in paths:
        if p.exists():
            lines += [json.loads(raw) for raw in p.read_text().splitlines() if raw.strip()]
    return lines


@dataclass
class Result:
    """One scenario's figures; ``line()`` is what the suite prints."""

    scenario: str
    seed: int
    started: int = 0
    completed: int = 0
    compensated: int = 0
    failed: int = 0
    stuck: int = 0
    lost: int = 0
    unexpected: int = 0
    dup_effects: int = 0
    dlq: int = 0
    detect_s: float | None = None
    recover_s: float | None = None
    problems: list[str] = field(default_factory=list)
    """Violations nothing documented explains: the test fails on them."""
    window: list[str] = field(default_factory=list)
    """Violations inside a window the README documents (participant killed between effect and record)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        def s(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        fixed = (f"{self.scenario} started={self.started} completed={self.completed} "
                 f"compensated={self.compensated} failed={self.failed} stuck={self.stuck} lost={self.lost} "
                 f"unexpected={self.unexpected} dup_effects={self.dup_effects} dlq={self.dlq} "
                 f"detect_s={s(self.detect_s)} recover_s={s(self.recover_s)}")
        return " ".join([fixed, f"seed={self.seed}", *(f"{k}={v}" for k, v in self.extra.items())])


def check_sagas(result: Result, orders: dict[str, tuple[OrderRequest, str]], acked: set[str],
                info: dict[str, SagaInfo | None], effects: list[dict[str, Any]], *, may_compensate: bool,
                window: bool = True) -> None:
    """Fill ``result`` from the final saga log and the effects file (see docs/reliability.md).

    ``window``: a violation in a saga whose participant was killed after its effect, before its
    record, is the documented window (``result.window``); False where that crash must leave none
    (``unfinished="compensate"``), so it is a problem like any other."""
    crashed = {str(e["key"]).split(":")[0] for e in effects
               if window and e["kind"] == "crash" and e["point"] == "after-effect"}
    lines = Counter((str(e["key"]), e["kind"]) for e in effects if e["kind"] in ("effect", "undo"))
    # An undo the runtime ran on a step that "may have applied" (an attempt wrote its intent and no
    # outcome: say, its record write timed out while the cluster had no quorum) balances no effect
    # line: compensations must tolerate nothing to undo then (README, Sagas, forward_state).
    maybes = {str(e["key"]) for e in effects if e["kind"] == "undo" and e.get("forward") == "maybe"}

    def flag(sid: str, text: str) -> None:
        (result.window if sid in crashed else result.problems).append(f"{sid}: {text}")

    result.started = len(orders)
    for sid, (_, kind) in sorted(orders.items()):
        i = info.get(sid)
        if i is None:
            if sid in acked:
                result.lost += 1
                result.problems.append(f"{sid}: acknowledged but not in the saga log")
            continue
        if not i.terminal:
            result.stuck += 1
            result.problems.append(f"{sid}: stuck in {i.status} (owner {i.owner or '-'})")
            continue
        eff = {st: lines[(f"{sid}:{st}", "effect")] for st in STEPS}
        undo = {st: lines[(f"{sid}:{st}:undo", "undo")] for st in STEPS}
        expected = KINDS[kind][1]
        if i.status is SagaStatus.COMPLETED:
            result.completed += 1
            if expected is not SagaStatus.COMPLETED:
                result.unexpected += 1
                flag(sid, f"COMPLETED, but a {kind} order must be compensated")
            elif any(eff[st] == 0 or undo[st] for st in STEPS):
                result.unexpected += 1
                flag(sid, f"COMPLETED with effects {eff} and undos {undo}")
        elif i.status is SagaStatus.COMPENSATED:
            result.compensated += 1
            if expected is SagaStatus.COMPLETED:
                result.extra["by_fault"] = result.extra.get("by_fault", 0) + 1
            if expected is SagaStatus.COMPLETED and not may_compensate:
                result.unexpected += 1
                flag(sid, f"COMPENSATED ({i.reason}) with no fault that could cause it")
            elif any(eff[st] != undo[st] and not (eff[st] == 0 and undo[st] == 1 and f"{sid}:{st}:undo" in maybes)
                     for st in STEPS):
                result.unexpected += 1
                flag(sid, f"COMPENSATED, but effects {eff} != undos {undo} (an effect stands)")
        else:
            result.failed += 1
            result.unexpected += 1
            flag(sid, f"{i.status}: {i.reason}")
    for (key, kind), count in sorted(lines.items()):
        sid = key.split(":")[0]
        if sid not in orders:
            result.unexpected += 1
            result.problems.append(f"{key}: a {kind} for a saga never started")
        if count > 1:
            result.dup_effects += 1
            flag(sid, f"{key}: {count} {kind} lines (applied {count} times)")
