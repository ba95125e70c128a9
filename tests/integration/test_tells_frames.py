"""Root tells travel in tells frames ``[1, base, [msg, ...]]`` (runtime/wire/_codec.py ``Tells``)
and run from the mailbox without an envelope each: their ids, a stop in the middle of one, a
receiver with an observer, and a tell that holds its work."""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import anyio.lowlevel

from corps import Actor, ActorOptions, ActorSystem, Message, Observer, Request, Stop, current_correlation_id, handler
from corps.core._context import hold_reply


class Mark(Message):
    n: int


class Marks(Message):
    ids: list[str]
    relayed: list[str]


class GetMarks(Request[Marks]):
    pass


class Relayed(Message):
    n: int


class Marker(Actor):
    """Records the id of each root Mark it handles (a root message's correlation id is its own id),
    and relays every fifth to a Sink, whose handler records the correlation id the relay carried."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    @handler
    async def mark(self, msg: Mark) -> None:
        self.ids.append(current_correlation_id() or "")
        if msg.n % 5 == 0:
            await self.system.ref(Sink, "sink").tell(Relayed(msg.n))

    @handler
    async def get(self, msg: GetMarks) -> Marks:
        return Marks(self.ids, Sink.seen)


class Sink(Actor):
    seen: ClassVar[list[str]] = []

    @handler
    async def relayed(self, msg: Relayed) -> None:
        Sink.seen.append(current_correlation_id() or "")

    @handler
    async def get(self, msg: GetMarks) -> Marks:
        return Marks([], Sink.seen)


async def test_the_tells_of_one_frame_get_consecutive_ids_that_their_handlers_pass_on(
        actor_system_factory: Any) -> None:
    Sink.seen = []
    receiver: ActorSystem = await actor_system_factory()
    sender: ActorSystem = await actor_system_factory()
    await receiver.spawn(Sink, "sink")
    await receiver.spawn(Marker, "m")
    ref = sender.ref(Marker, "m")
    for i in range(40):  # the first goes alone, the rest in one tells frame (no checkpoint between)
        await ref.tell(Mark(i))
    marks = await ref.ask(GetMarks(), timeout=5.0)
    nodes = {mid.rpartition("-")[0] for mid in marks.ids}
    assert nodes == {sender.node}
    numbers = [int(mid.rpartition("-")[2]) for mid in marks.ids]
    assert numbers == list(range(numbers[0], numbers[0] + 40))  # unique, in send order, none skipped
    assert sender.metrics()["system"]["nats_messages_out"] <= 4  # it did travel batched (and the ask)
    # What a handler sends carries the id of the tell it handles as its correlation id. (The
    # receiver's own ask goes after the relays its Marker sent: one sender, in order.)
    relayed = (await receiver.ref(Sink, "sink").ask(GetMarks(), timeout=5.0)).relayed
    assert relayed == [marks.ids[i] for i in range(0, 40, 5)]


class Fragile(Actor, options=ActorOptions(supervision=Stop())):
    handled: ClassVar[list[int]] = []
    stopped: ClassVar[anyio.Event]

    @handler
    async def mark(self, msg: Mark) -> None:
        if msg.n < 0:
            raise RuntimeError("boom")
        Fragile.handled.append(msg.n)

    async def on_stop(self) -> None:
        Fragile.stopped.set()


async def test_a_stop_in_the_middle_of_a_tells_frame_dead_letters_the_rest_of_it(actor_system: ActorSystem) -> None:
    Fragile.handled, Fragile.stopped = [], anyio.Event()
    ref = await actor_system.spawn(Fragile, "f")
    before = actor_system.dead_letters.count
    for n in (1, 2, 3, -1, 4, 5, 6):  # 1 alone, then one frame: the stop leaves 4, 5 and 6
        await ref.tell(Mark(n))
    with anyio.fail_after(5):
        await Fragile.stopped.wait()
    await actor_system.dead_letters.wait_for(before + 3, timeout=5.0)
    assert Fragile.handled == [1, 2, 3]
    assert actor_system.dead_letters.count == before + 3
    last = list(actor_system.dead_letters.recent)[-3:]
    assert [(d.subject, d.message_type) for d in last] == [(ref.subject, "Mark")] * 3


class Seen(Observer):
    """Records the envelope (type and id) of each message handled, as observers get it."""

    def __init__(self) -> None:
        self.mids: list[int] = []
        self.done = anyio.Event()

    def handle_begin(self, host: Any, subject: str, env: Any) -> Any:
        if isinstance(env.msg, Mark):
            self.mids.append(env.mid)
        return None

    def handle_end(self, token: Any, error: BaseException | None) -> None:
        if len(self.mids) == 30:
            self.done.set()


async def test_a_receiver_with_an_observer_sees_each_tell_of_a_frame_as_an_envelope(actor_system_factory: Any) -> None:
    seen = Seen()
    receiver: ActorSystem = await actor_system_factory(observers=[seen])
    sender: ActorSystem = await actor_system_factory()  # no observer: it sends tells frames
    await receiver.spawn(Marker, "m")
    ref = sender.ref(Marker, "m")
    for i in range(30):
        await ref.tell(Mark(i + 1))  # (every fifth is relayed to a Sink that runs nowhere: a dead letter)
    with anyio.fail_after(5):
        await seen.done.wait()
    assert seen.mids == list(range(seen.mids[0], seen.mids[0] + 30))


class Holder(Actor):
    """Holds the work of each tell (``hold_reply``): the mailbox goes on while the work waits."""

    gate: ClassVar[anyio.Event]
    all_finished: ClassVar[anyio.Event]
    finished: ClassVar[list[int]] = []
    handled: ClassVar[list[int]] = []

    @handler
    async def mark(self, msg: Mark) -> None:
        Holder.handled.append(msg.n)

        async def work() -> None:
            await Holder.gate.wait()
            Holder.finished.append(msg.n)
            if len(Holder.finished) == 10:
                Holder.all_finished.set()

        hold_reply(work())

    @handler
    async def get(self, msg: GetMarks) -> Marks:
        return Marks([str(n) for n in Holder.handled], [str(n) for n in Holder.finished])


async def test_tells_of_a_frame_that_hold_their_work_are_handled_on_and_their_work_finishes(
        actor_system: ActorSystem) -> None:
    Holder.gate, Holder.all_finished, Holder.finished, Holder.handled = anyio.Event(), anyio.Event(), [], []
    ref = await actor_system.spawn(Holder, "h")
    for i in range(10):
        await ref.tell(Mark(i))
    marks = await ref.ask(GetMarks(), timeout=5.0)
    assert marks.ids == [str(i) for i in range(10)]  # all handled while every work still waits
    assert marks.relayed == []
    Holder.gate.set()
    with anyio.fail_after(5):
        await Holder.all_finished.wait()
    assert Holder.finished == list(range(10))  # held works finish in the order they were held


async def test_a_fenced_activation_handles_none_of_a_tells_frame_and_a_live_one_marks_each_id(
        actor_system_factory: Any) -> None:
    # What corps.virtual sets on an activation's cell (white box): a guard (its lease) checked
    # before each message, and per-sender marks of the last id handled, for the next owner.
    receiver: ActorSystem = await actor_system_factory()
    sender: ActorSystem = await actor_system_factory()
    Sink.seen = []
    await receiver.spawn(Sink, "sink")
    await receiver.spawn(Marker, "m")
    host = receiver._hosts[Marker]
    cell = host.cells["m"]
    cell.marks = {}
    seen_marks: list[dict[str, int]] = []

    def lease() -> bool:  # called before each message: what the marks were after the one before
        seen_marks.append(dict(cell.marks or {}))
        return True

    cell.guard = lease
    ref = sender.ref(Marker, "m")
    for i in range(20):
        await ref.tell(Mark(i))
    marks = await ref.ask(GetMarks(), timeout=5.0)
    ids = [int(mid.rpartition("-")[2]) for mid in marks.ids]
    assert len(ids) == 20
    inbox = next(iter(cell.marks))
    assert inbox.endswith(sender.node)
    assert [m[inbox] for m in seen_marks[1:]] == ids  # each tell marked with its own id, in order
    assert cell.marks[inbox] > ids[-1]  # then the ask's
    del cell.marks[inbox]
    for i in range(20, 30):
        await ref.tell(Mark(i))
    await ref.tell(Mark(99))  # (the first of a burst goes alone; these go in one tells frame)
    cell.guard = lambda: False  # the lease ran out: nothing more is handled here
    with anyio.fail_after(5):
        while host.fenced < 11:
            await anyio.lowlevel.checkpoint()
    assert host.fenced == 11
    assert len(marks.ids) == 20
    assert cell.marks == {}
