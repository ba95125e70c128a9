"""Load and checks for the virtual-actor cluster tests: rounds of asks per id, and the
single-activation and order invariants over the replies and over the nodes' history files."""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from corps import ActorSystem, AskError
from tests.virtual.domain import Hit, Seen
from tests.virtual.vnode import Tally


@dataclass
class Load:
    """Sender ``sender`` asks every id once per round, ids concurrently, rounds in order."""

    system: ActorSystem
    sender: str
    ids: list[str]
    timeout: float = 2.0
    replies: dict[str, list[tuple[int, Seen | None, float]]] = field(default_factory=lambda: defaultdict(list))
    rounds: int = 0
    errors: list[tuple[str, int, str]] = field(default_factory=list)

    async def round(self) -> None:
        n = self.rounds
        self.rounds += 1
        async with anyio.create_task_group() as tg:
            for actor_id in self.ids:
                tg.start_soon(self._one, actor_id, n)

    async def _one(self, actor_id: str, n: int) -> None:
        try:
            seen: Seen | None = await self.system.ref(Tally, actor_id).ask(Hit(self.sender, n), timeout=self.timeout)
        except AskError as exc:
            seen = None  # timed out (its node died) or refused: its outcome is unknown
            self.errors.append((actor_id, n, repr(exc)[:120]))
        self.replies[actor_id].append((n, seen, time.time()))

    def problems(self) -> list[str]:
        """Per id: tokens never go back; within one activation, each reply's ``last`` is the
        previous answered round (order kept, nothing handled out of turn); a new activation never
        saw a round the previous one answered (no ask handled by two activations)."""
        out = []
        for actor_id, rs in self.replies.items():
            rs = sorted(rs, key=lambda r: r[0])
            answered_by: dict[int, int] = {}
            prev: tuple[int, Seen] | None = None
            for n, seen, _ in rs:
                if seen is None:
                    continue
                answered_by[n] = seen.token
                if prev is not None and seen.token < prev[1].token:
                    out.append(f"{actor_id}: round {n} answered by token {seen.token} after {prev[1].token}")
                unanswered_since_prev = range(prev[0], n) if prev is not None else range(0)
                if prev is not None and seen.token == prev[1].token and seen.last not in unanswered_since_prev:
                    out.append(f"{actor_id}: round {n}: last {seen.last}, previous answered round {prev[0]}")
                if (prev is not None and seen.token != prev[1].token and seen.last in answered_by
                        and answered_by[seen.last] != seen.token):
                    out.append(f"{actor_id}: round {seen.last} handled by tokens {answered_by[seen.last]} and "
                               f"{seen.token}")
                prev = (n, seen)
        return out

    def owners(self) -> dict[str, str]:
        """The node that answered each id's last answered round."""
        return {i: next(s.node for _, s, _ in reversed(rs) if s is not None)
                for i, rs in self.replies.items() if any(s is not None for _, s, _ in rs)}


def read_history(files: list[Path]) -> tuple[list[list[object]], list[dict[str, object]]]:
    """(handled lines ``[id, token, sender, n, at, node]``, activation records) of every node."""
    handled: list[list[object]] = []
    changes: list[dict[str, object]] = []
    for f in files:
        if not f.exists():
            continue
        for line in f.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a killed node's last line may be cut
            if "h" in rec:
                handled.append(rec["h"])
            elif "a" in rec:
                changes.append(rec["a"])
    return handled, changes


def single_activation_problems(handled: list[list[object]], changes: list[dict[str, object]]) -> list[str]:
    """From the nodes' own records: per id, in wall-time order, the tokens of handled messages
    never go back (no older activation handles anything once a newer one has), and one token
    belongs to one node."""
    out = []
    by_id: dict[str, list[list[object]]] = defaultdict(list)
    for h in handled:
        by_id[str(h[0])].append(h)
    token_node: dict[tuple[str, int], str] = {}
    for a in changes:
        key = (str(a["actor_id"]), int(a["token"]))  # type: ignore[call-overload]
        if token_node.setdefault(key, str(a["node"])) != a["node"]:
            out.append(f"token {key} recorded by two nodes")
    for actor_id, hs in by_id.items():
        hs.sort(key=lambda h: float(h[4]))  # type: ignore[arg-type]
        top = 0
        for h in hs:
            token = int(h[1])  # type: ignore[call-overload]
            if token < top:
                out.append(f"{actor_id}: token {token} (node {h[5]}) handled n={h[3]} after token {top} had")
            top = max(top, token)
    return out


def double_handling_problems(handled: list[list[object]]) -> list[str]:
    """From the nodes' handled records: no message (id, sender, n) was handled twice, by one
    activation or two (a late reply is ignored by the asker: only the records show it)."""
    seen: dict[tuple[str, str, int], list[object]] = {}
    out = []
    for h in handled:
        key = (str(h[0]), str(h[2]), int(h[3]))  # type: ignore[call-overload]
        first = seen.setdefault(key, h)
        if first is not h:
            out.append(f"{key[0]}: message {key[1]}#{key[2]} handled by token {first[1]} (node {first[5]}) "
                       f"and token {h[1]} (node {h[5]})")
    return out


def overlap_problems(changes: list[dict[str, object]], killed: frozenset[str] = frozenset()) -> list[str]:
    """From the activation records: per id, each activation but the last ended (moved or
    deactivated) before the next one began, so at most one was active at any time. An
    activation ended by its node's lease running out (``fenced``) is recorded when that node
    runs again, after the next one began: the lease, not the record, ended it in time; the
    activations of a ``killed`` node end with it, unrecorded."""
    out = []
    by_id: dict[str, list[dict[str, object]]] = defaultdict(list)
    for a in changes:
        by_id[str(a["actor_id"])].append(a)
    for actor_id, recs in by_id.items():
        starts = sorted((int(a["token"]), float(a["at"])) for a in recs if a["kind"] == "activate"
                        and a["node"] not in killed)  # type: ignore[call-overload,arg-type]
        ends = {int(a["token"]): (str(a["kind"]), float(a["at"])) for a in recs if a["kind"] != "activate"}  # type: ignore[call-overload,arg-type]
        for (token, _), (next_token, next_at) in itertools.pairwise(starts):
            end = ends.get(token)
            if end is None:
                out.append(f"{actor_id}: token {token} never ended, yet token {next_token} began")
            elif end[0] != "fenced" and end[1] > next_at:
                out.append(f"{actor_id}: token {token} ended ({end[0]}) {end[1] - next_at:.3f}s after "
                           f"{next_token} began")
    return out
