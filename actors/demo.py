"""The ``corps demo`` domain and walk-through: an ``Account`` entity and a ``Pricing`` service.

The walk-through is a list of small steps. Each step is an async function that takes the
``Demo`` (the system, plus what earlier steps made) and returns ``(label, text)`` lines to print.
To extend the demo, write a step and add it to ``STEPS``. Written as a user would write it: the
public ``corps`` API only, plus nats-py where a step plays a client in another language.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
import nats

from corps import (
    ActorSystem,
    AskError,
    RemoteError,
    run,
)
from corps.examples.accounts import Account as Account  # `corps run corps.examples.demo:Account`
from corps.examples.accounts import Balance as Balance
from corps.examples.accounts import Deposit as Deposit
from corps.examples.accounts import GetBalance as GetBalance
from corps.examples.accounts import InsufficientFunds as InsufficientFunds
from corps.examples.accounts import PriceOf as PriceOf
from corps.examples.accounts import Pricing as Pricing
from corps.examples.accounts import Quote as Quote
from corps.examples.accounts import Withdraw as Withdraw
from corps.examples.shop.choreo_demo import choreography
from corps.examples.shop.demo_steps import orchestrated_orders
from corps.examples.walkthrough import Demo, Line

# -- the walk-through ------------------------------------------------------------------------

E = TypeVar("E", bound=BaseException)


async def _expect(error: type[E], pending: Awaitable[object]) -> E:
    """Await ``pending`` and return the ``error`` it raises; a reply instead is a demo failure."""
    try:
        await pending
    except error as exc:
        return exc
    raise RuntimeError(f"demo expected {error.__name__}, but got a reply")


def _short(text: str, width: int = 72) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


async def spawn(demo: Demo) -> list[Line]:
    ref = await demo.system.spawn(Account, "alice")
    return [("spawned", "Account 'alice'"), ("subject", ref.subject)]


async def tell_then_ask(demo: Demo) -> list[Line]:
    for amount in (10, 20, 30):
        await demo.alice.tell(Deposit(amount))
    balance = await demo.alice.ask(GetBalance())
    return [("tell", "Deposit(10), Deposit(20), Deposit(30)   fire and forget"),
            ("ask", f"GetBalance() -> {balance.amount}   handled after the three tells")]


async def typed_reply(demo: Demo) -> list[Line]:
    balance = await demo.alice.ask(Withdraw(25))  # typed: Balance, from Withdraw(Request[Balance])
    return [("ask", "Withdraw(amount=25)"), ("reply", f"{balance!r}   a {type(balance).__name__}")]


async def handler_error(demo: Demo) -> list[Line]:
    exc = await _expect(RemoteError, demo.alice.ask(Withdraw(1000)))
    after = await demo.alice.ask(GetBalance())
    return [("ask", "Withdraw(amount=1000)"),
            ("raised", f"RemoteError  type={exc.type}  message={exc.message!r}"),
            ("then", f"GetBalance() -> {after.amount}   the actor resumed with its state")]


async def missing_actor(demo: Demo) -> list[Line]:
    ghost = demo.system.ref(Account, "nobody")
    exc = await _expect(AskError, ghost.ask(GetBalance(), timeout=2.0))
    return [("ask", "GetBalance() to Account 'nobody', never spawned"),
            ("raised", f"{type(exc).__name__}   nothing was created")]


async def garbage_from_raw_client(demo: Demo) -> list[Line]:
    # A client in any language can talk to ref.subject: a msgpack map tagged with "$type".
    # Here the amount has the wrong type; the actor answers with an error instead of crashing.
    nc = await nats.connect(demo.system.url)
    try:
        payload = msgspec.msgpack.encode({"$type": "Withdraw", "amount": "ten"})
        reply = await nc.request(demo.alice.subject, payload, timeout=2.0)
    finally:
        await nc.close()
    error = msgspec.msgpack.decode(reply.data)
    return [("sent", "{'$type': 'Withdraw', 'amount': 'ten'}   raw nats-py request"),
            ("reply", f"{error['$type']}  kind={error['kind']}  {error['message']}")]


async def service_instances(demo: Demo) -> list[Line]:
    pricing = await demo.system.spawn(Pricing, "prices")
    await demo.system.spawn(Pricing, "prices")  # a second instance joins the same queue group
    served: Counter[int] = Counter()
    for _ in range(20):  # one at a time: asks sent in one loop iteration would travel together
        quote = await pricing.ask(PriceOf("apple"))
        served[quote.instance] += 1
    spread = ", ".join(f"#{n} took {count}" for n, count in sorted(served.items()))
    return [("spawned", f"2 instances of Pricing 'prices' in queue group {pricing.subject}"),
            ("20 asks", f"{spread}   any instance answers")]


async def dead_letters(demo: Demo) -> list[Line]:
    letters = demo.system.dead_letters
    before = letters.count
    await demo.system.ref(Account, "ghost").tell(Deposit(5))
    await letters.wait_for(before + 1, timeout=2.0)  # the tell is answered by nobody, but recorded
    lines = [("tell", "Deposit(5) to Account 'ghost', never spawned"), ("count", f"{letters.count} dead letters")]
    for letter in list(letters.recent)[-letters.count :]:
        actor = ".".join(letter.subject.split(".")[-2:])  # {namespace}.actor.{Class}.{id}
        lines.append(("", _short(f"{actor:<14} {letter.reason}")))
    return lines


Step = Callable[[Demo], Awaitable[list[Line]]]

STEPS: list[tuple[str, Step]] = [
    ("spawn an actor", spawn),
    ("tell, then ask: one mailbox, in order", tell_then_ask),
    ("a typed reply", typed_reply),
    ("a handler error", handler_error),
    ("an actor that does not exist", missing_actor),
    ("garbage from a raw NATS client", garbage_from_raw_client),
    ("a service: 2 instances, 1 queue group", service_instances),
    ("dead letters", dead_letters),
    ("an orchestrated saga: PlaceOrder", orchestrated_orders),
    ("choreography: the same flow by events", choreography),
]


async def run_demo(url: str | None = None, *, out: Callable[[str], None] = print) -> None:
    """Run every step in ``STEPS`` on one ActorSystem and print what each one shows.

    Args:
        url: a NATS URL; None uses ``NATS_URL``, or an embedded nats-server if that is unset.
        out: where lines go.
    """
    # A namespace of its own, so a demo on a shared server never meets another run's actors.
    async with ActorSystem(url, namespace=f"demo-{secrets.token_hex(3)}") as system:
        where = "embedded nats-server" if system.embedded else "nats-server"
        out(f"corps demo on {where} {system.url}, namespace {system.namespace}")
        started = time.perf_counter()
        demo = Demo(system)
        for number, (title, step) in enumerate(STEPS, 1):
            out(f"[{number}/{len(STEPS)}] {title}")
            for label, text in await step(demo):
                out(f"      {label:<8} {text}")
        out(f"done: {len(STEPS)} steps in {time.perf_counter() - started:.2f}s")


if __name__ == "__main__":
    run(run_demo)
