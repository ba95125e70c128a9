"""The activation history: who activated, deactivated, moved or lost which id, with its token.

Kept in memory (bounded: the most recent ``HISTORY_KEPT``) and, if given, passed to a sink, so
a test can check from the records of every node that an id was active on one node at a time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Final, Literal

import msgspec

HISTORY_KEPT: Final = 10_000

Kind = Literal["activate", "deactivate", "move", "fenced"]


class Activation(msgspec.Struct, frozen=True):
    """One change of an id's activation on one node. ``token`` is the fencing token (the
    ownership record's revision) of the activation it starts or ends; ``at`` is wall time."""

    actor: str
    actor_id: str
    node: str
    token: int
    kind: Kind
    at: float


class History:
    def __init__(self, sink: Callable[[Activation], None] | None = None) -> None:
        self.recent: deque[Activation] = deque(maxlen=HISTORY_KEPT)
        self.sink = sink

    def record(self, actor: str, actor_id: str, node: str, token: int, kind: Kind) -> None:
        a = Activation(actor, actor_id, node, token, kind, time.time())
        self.recent.append(a)
        if self.sink is not None:
            self.sink(a)
