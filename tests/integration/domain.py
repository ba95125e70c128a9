"""Small actor classes shared by the integration tests."""

from __future__ import annotations

import anyio

from corps import Actor, ActorOptions, Message, Request, Restart, Stop, current_correlation_id, handler


class Balance(Message):
    account: str
    amount: int


class Deposit(Request[Balance]):
    account: str
    amount: int


class GetBalance(Request[Balance]):
    account: str


class Note(Message):
    text: str


class Notes(Message):
    texts: list[str]


class GetNotes(Request[Notes]):
    pass


class Boom(Request[Balance]):
    why: str


class Account(Actor):
    """A stateful entity: balance and an ordered log of notes."""

    def __init__(self) -> None:
        self.balance = 0
        self.notes: list[str] = []

    @handler
    async def deposit(self, msg: Deposit) -> Balance:
        self.balance += msg.amount
        return Balance(self.id, self.balance)

    @handler
    async def get(self, msg: GetBalance) -> Balance:
        return Balance(self.id, self.balance)

    @handler
    async def note(self, msg: Note) -> None:
        self.notes.append(msg.text)

    @handler
    async def get_notes(self, msg: GetNotes) -> Notes:
        return Notes(list(self.notes))

    @handler
    async def boom(self, msg: Boom) -> Balance:
        raise ValueError(msg.why)


class RestartingAccount(Account, options=ActorOptions(supervision=Restart(max_restarts=2, within=60, backoff=0.01))):
    starts = 0

    async def on_start(self) -> None:
        type(self).starts += 1


class StoppingAccount(Account, options=ActorOptions(supervision=Stop())):
    stopped: list[str] = []

    async def on_stop(self) -> None:
        type(self).stopped.append(self.id)


class Gate:
    """Events a test uses to hold a handler inside its critical section (no sleeps)."""

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.release = anyio.Event()


GATES: dict[str, Gate] = {}


class Hold(Request[Balance]):
    gate: str


class Slow(Actor):
    """Holds each Hold message until the test releases its gate; counts overlap."""

    def __init__(self) -> None:
        self.active = 0
        self.max_active = 0
        self.done = 0

    @handler
    async def hold(self, msg: Hold) -> Balance:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        gate = GATES[msg.gate]
        gate.entered.set()
        await gate.release.wait()
        self.active -= 1
        self.done += 1
        return Balance(self.id, self.max_active)


class WhoAmI(Request["Identity"]):
    pass


class Identity(Message):
    node: str
    instance: int


class Greeter(Actor, options=ActorOptions(service=True)):
    """A stateless service: replies with the node and instance that handled the message."""

    created = 0

    def __init__(self) -> None:
        type(self).created += 1
        self.instance = type(self).created

    @handler
    async def who(self, msg: WhoAmI) -> Identity:
        return Identity(self.system.node, self.instance)


class Forward(Request[Balance]):
    to: str
    amount: int


class Traced(Message):
    label: str


class TraceLog(Request["Traces"]):
    pass


class Traces(Message):
    seen: list[tuple[str, str]]


class Relay(Actor):
    """Forwards deposits to another Account, and records correlation ids of what it receives."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    @handler
    async def forward(self, msg: Forward) -> Balance:
        await self.system.ref(Relay, msg.to).tell(Traced("forwarded"))
        return await self.system.ref(Account, msg.to).ask(Deposit(msg.to, msg.amount))

    @handler
    async def traced(self, msg: Traced) -> None:
        self.seen.append((msg.label, current_correlation_id() or ""))

    @handler
    async def log(self, msg: TraceLog) -> Traces:
        return Traces(list(self.seen))
