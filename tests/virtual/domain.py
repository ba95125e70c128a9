"""A virtual entity for the virtual-actor tests: counts, and says which activation handled what."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import ClassVar

import anyio
import msgspec

from corps import Actor, ActorOptions, Backoff, Message, Request, StepRejected, handler, on_event
from corps.saga import idempotent


class Seen(Message):
    actor_id: str
    node: str
    token: int
    count: int
    """Messages this activation handled, this one included."""
    last: int
    """The ``n`` of the previous message this activation handled from the same sender (-1: none)."""


class Hit(Request[Seen]):
    sender: str
    n: int


class Poke(Message):
    sender: str
    n: int


class Stall(Message):
    """Block the node's event loop (not its heartbeat thread) until the file ``release`` exists:
    a node that resumes busy reads its socket only after its heartbeat renewed the lease."""

    release: str


class Hold(Message):
    """Keep the instance busy, without blocking the loop, until the file ``release`` exists."""

    release: str


class Seeing(Actor):
    """Counts what it handles and answers which activation handled it (``Seen``); the virtual
    entities of the tests (``Counter`` here, ``vnode.Tally`` in node processes) are these."""

    def __init__(self) -> None:
        self.count = 0
        self.last: dict[str, int] = {}

    def saw(self, token: int, sender: str, n: int) -> None:
        """Each message handled, as it is (a node process writes it down)."""

    def _see(self, sender: str, n: int) -> Seen:
        self.count += 1
        last = self.last.get(sender, -1)
        self.last[sender] = n
        token = self.system.virtual.token(type(self), self.id) or 0  # type: ignore[attr-defined]
        self.saw(token, sender, n)
        return Seen(self.id, self.system.node, token, self.count, last)

    @handler
    async def hit(self, msg: Hit) -> Seen:
        return self._see(msg.sender, msg.n)

    @handler
    async def poke(self, msg: Poke) -> None:
        self._see(msg.sender, msg.n)


class Counter(Seeing, options=ActorOptions(virtual=True, idle_after=0.3)):
    lifecycle: ClassVar[list[tuple[str, str]]] = []

    async def on_start(self) -> None:
        Counter.lifecycle.append(("start", self.id))

    async def on_stop(self) -> None:
        Counter.lifecycle.append(("stop", self.id))


class Plain(Actor):
    @handler
    async def hit(self, msg: Hit) -> Seen:
        return Seen(self.id, "", 0, 0, -1)


class Keeper(Counter, options=ActorOptions(virtual=True, idle_after=60.0)):
    """A Counter that stays active for the length of a test."""


class WalletState(msgspec.Struct):
    total: int = 0
    stops: int = 0


class Total(Message):
    total: int


class Add(Request[Total]):
    n: int


class Wallet(Actor, options=ActorOptions(virtual=True, idle_after=0.2, durable="message")):
    state: WalletState = WalletState()

    @handler
    async def add(self, msg: Add) -> Total:
        self.state.total += msg.n
        return Total(self.state.total)


class LazyWallet(Actor, options=ActorOptions(virtual=True, idle_after=0.2, durable="deactivate")):
    state: WalletState = WalletState()

    async def on_stop(self) -> None:
        self.state.stops += 1

    @handler
    async def add(self, msg: Add) -> Total:
        self.state.total += msg.n
        return Total(self.state.total * 1000 + self.state.stops)


class Balance(Request[Total]):
    pass


class TillState(msgspec.Struct):
    balance: int = 0


class DurableTill(Actor, options=ActorOptions(virtual=True, idle_after=60.0, durable="message")):
    """A durable saga participant whose effect is its state: its records are saved with it."""

    state: TillState = TillState()

    @handler
    @idempotent(effect="memory")
    async def add(self, msg: Add) -> Total:
        if msg.n < 0:
            raise StepRejected("no withdrawals")
        self.state.balance += msg.n
        return Total(self.state.balance)

    @handler
    async def balance(self, msg: Balance) -> Total:
        return Total(self.state.balance)


class Stateless(Actor, options=ActorOptions(virtual=True, durable="message")):
    @handler
    async def add(self, msg: Add) -> Total:
        return Total(0)


class Entry(Message):
    """A keyed event: the ``n``-th of its key, published in order."""

    key: str
    n: int
    fail: int = 0
    """Attempts that raise before one succeeds (a handler error, retried in place)."""
    hold: float = 0.0
    """Seconds its handler takes."""
    crash: bool = False
    """Its handler kills its process (``os._exit``): a poison event."""


class Handled(msgspec.Struct, frozen=True):
    key: str
    n: int
    node: str
    token: int


class Ledger(Actor, options=ActorOptions(virtual=True, idle_after=60.0)):
    """A virtual class with a keyed event handler: its events are partitioned across its hosts."""

    handled: ClassVar[list[Handled]] = []
    sink: ClassVar[Callable[[Handled], None] | None] = None

    def __init__(self) -> None:
        self.failures = 0

    @on_event(Entry, key="key", max_deliver=3, backoff=Backoff(initial=0.01))
    async def entry(self, event: Entry) -> None:
        if self.failures < event.fail:
            self.failures += 1
            raise RuntimeError(f"attempt {self.failures} of {event.key}/{event.n} fails")
        self.failures = 0
        if event.hold:
            await anyio.sleep(event.hold)
        if event.crash:
            os._exit(17)
        token = self.system.virtual.token(Ledger, self.id) or 0  # type: ignore[attr-defined]
        h = Handled(event.key, event.n, self.system.node, token)
        Ledger.handled.append(h)
        if Ledger.sink is not None:
            Ledger.sink(h)

    @handler
    async def hit(self, msg: Hit) -> Seen:
        token = self.system.virtual.token(Ledger, self.id) or 0  # type: ignore[attr-defined]
        return Seen(self.id, self.system.node, token, 0, -1)
