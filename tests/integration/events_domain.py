"""Actors and events for the event tests (a module of its own: classes are created once)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import anyio

from corps import Actor, ActorOptions, ActorSystem, Backoff, Message, current_correlation_id, handler, on_event
from corps.examples.shop import hybrid
from corps.examples.shop.messages import OrderCancelled, OrderCompleted
from corps.wire._transport import flush


class Noted(Message):
    key: str
    n: int
    fail_times: int = 0
    """The handler raises on this many attempts before it succeeds."""


class Poison(Message):
    n: int


class Log:
    """What handlers saw, shared by a test and its actors (one per test, set on the class)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []
        self.attempts: dict[tuple[str, int], int] = {}
        self.changed = anyio.Event()

    def add(self, key: str, n: int) -> None:
        self.seen.append((key, n))
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        await self.wait_until(lambda: len(self.seen) >= count, timeout)

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait, woken by each handler call, until ``condition()`` holds (it may only grow true)."""
        with anyio.fail_after(timeout):
            while not condition():
                await self.changed.wait()


class DeadLetterWatch:
    """Counts dead-letter entries as they are written: a core subscription on the DLQ subjects,
    so a test waits on the writes themselves instead of polling the stream."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = anyio.Event()
        self._sub: Any = None

    async def start(self, system: ActorSystem) -> DeadLetterWatch:
        async def on_entry(_msg: Any) -> None:
            self.count += 1
            self._changed.set()
            self._changed = anyio.Event()

        self._sub = await system._nc.subscribe(f"{system.namespace}.dlq.>", cb=on_entry)
        await flush(system._nc)  # subscribed before anything can be dead-lettered
        return self

    async def wait_until(self, condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
        """Wait until ``condition()`` (which reads the stream) holds, re-checking after each new entry."""
        with anyio.fail_after(timeout):
            while True:
                changed = self._changed  # taken before the check: an entry written during it wakes us
                if await condition():
                    return
                await changed.wait()

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()


class OutcomeWatcher(Actor, options=ActorOptions(name="OutcomeWatcher")):
    """Hears every order's end in the choreographed shop (the Order entity publishes it)."""

    ended: ClassVar[dict[str, dict[str, str]]] = {}
    """namespace -> order id -> completed | cancelled"""
    changed: ClassVar[anyio.Event] = anyio.Event()

    @on_event(OrderCompleted)
    async def completed(self, event: OrderCompleted) -> None:
        self._ended(event.order_id, "completed")

    @on_event(OrderCancelled)
    async def cancelled(self, event: OrderCancelled) -> None:
        self._ended(event.order_id, "cancelled")

    def _ended(self, order_id: str, status: str) -> None:
        type(self).ended.setdefault(self.system.namespace, {}).setdefault(order_id, status)
        type(self).changed.set()
        type(self).changed = anyio.Event()

    @classmethod
    async def wait_for(cls, namespace: str, order_ids: set[str], timeout: float = 20.0) -> dict[str, str]:
        with anyio.fail_after(timeout):
            while not order_ids <= set(cls.ended.get(namespace, {})):
                await cls.changed.wait()
        return cls.ended[namespace]


FAST = Backoff(initial=0.02, factor=2.0, max=0.1)


class Recorder(Actor):
    log: Log = Log()

    @on_event(Noted, max_deliver=3, backoff=FAST)
    async def noted(self, event: Noted) -> None:
        k = (event.key, event.n)
        self.log.attempts[k] = self.log.attempts.get(k, 0) + 1
        if self.log.attempts[k] <= event.fail_times:
            raise RuntimeError(f"attempt {self.log.attempts[k]} of {k} fails")
        self.log.add(event.key, event.n)

    @on_event(Poison, max_deliver=3, backoff=FAST)
    async def poison(self, event: Poison) -> None:
        k = ("poison", event.n)
        self.log.attempts[k] = self.log.attempts.get(k, 0) + 1
        raise ValueError(f"poison {event.n} can never be handled")


class Idempotent(Actor):
    log: Log = Log()

    @on_event(Noted, idempotent=True)
    async def noted(self, event: Noted) -> None:
        self.log.add(event.key, event.n)


class PerKey(Actor):
    """Entity per key: one event at a time per key, in stream order; a slow key sleeps."""

    log: Log = Log()
    slow_key = "slow"
    release = anyio.Event()

    def __init__(self) -> None:
        self.busy = False

    @on_event(Noted, key="key", backoff=FAST)
    async def noted(self, event: Noted) -> None:
        assert not self.busy, "two events at once for one key"
        self.busy = True
        try:
            if event.key == self.slow_key and event.n == 0:
                await self.release.wait()
            k = (event.key, event.n)
            self.log.attempts[k] = self.log.attempts.get(k, 0) + 1
            if self.log.attempts[k] <= event.fail_times:
                raise RuntimeError("fails once")
            await anyio.lowlevel.checkpoint()
            self.log.add(event.key, event.n)
        finally:
            self.busy = False


class Service(Actor, options=ActorOptions(service=True)):
    log: Log = Log()

    @on_event(Noted)
    async def noted(self, event: Noted) -> None:
        self.log.add(event.key, event.n)


class Pass(Message):
    n: int


class Passer(Actor):
    """Hands each Noted event on to a Catcher, with a tell from inside the event handler."""

    @on_event(Noted)
    async def noted(self, event: Noted) -> None:
        await self.system.ref(Catcher, "c").tell(Pass(event.n))


class Catcher(Actor):
    log: Log = Log()
    correlations: ClassVar[list[str | None]] = []

    @handler
    async def caught(self, msg: Pass) -> None:
        self.correlations.append(current_correlation_id())
        self.log.add("caught", msg.n)


class WatchedNotifications(hybrid.Notifications, options=ActorOptions(name="Notifications")):
    """The hybrid shop's notifications context, with a log a test can wait on."""

    log: ClassVar[Log] = Log()

    async def completed(self, event: OrderCompleted) -> None:
        await super().completed(event)
        self.log.add(event.order_id, len(self.sent))

    async def cancelled(self, event: OrderCancelled) -> None:
        await super().cancelled(event)
        self.log.add(event.order_id, len(self.sent))


class WatchedSales(hybrid.SalesProjection, options=ActorOptions(name="SalesProjection")):
    """The hybrid shop's sales projection, with a log a test can wait on."""

    log: ClassVar[Log] = Log()

    async def outcome(self, event: OrderCompleted | OrderCancelled) -> None:
        await super().outcome(event)
        self.log.add(event.order_id, 0)


class RunWatcher(Actor):
    """Notes, per event, the loop iteration it ran in and how many pull requests its consumer had
    sent by then (``test_events_ack_flow``)."""

    log: Log = Log()
    iteration = 0
    seen: ClassVar[list[tuple[int, int]]] = []

    @on_event(Noted)
    async def noted(self, event: Noted) -> None:
        consumer = self.system.events.consumers["RunWatcher"]
        RunWatcher.seen.append((RunWatcher.iteration, consumer._token))
        self.log.add(event.key, event.n)
