"""What a fault node hosts: the reference shop, instrumented so the driver can see the outside world.

* **Participants**: the orchestrated shop's Inventory, Payments and Shipping, subclassed under
  the same actor names. Every forward effect and every compensation that really runs appends one
  line ``{"key", "kind": "effect"|"undo", "step", "pid", "t"}`` (``t``: wall-clock time) to the
  effects file (opened O_APPEND, fsync'ed): the file stands for the card network and the
  warehouse, which a killed process cannot take back. A duplicate answered from the idempotency
  record writes nothing, and neither does a compensation that ``@compensation`` turns into a
  recorded no-op. The shop declares its participants' effects ``"memory"`` (their state is the
  instance's); here each effect is a line in that file, outside the process, so the subclasses
  declare ``effect="external"``: their records are in KV, as the crash points below need.
* **Crash points** (``CORPS_FAULT_CRASH``): the participant SIGKILLs itself ``on-receipt`` of the
  ``CORPS_FAULT_AT``-th forward request of step ``CORPS_FAULT_STEP`` (before anything ran),
  ``after-effect`` (its effect line written, its idempotency record not, its reply not sent), or
  ``after-record`` of the ``CORPS_FAULT_AT``-th forward step whose outcome record is written (the
  reply not sent: ``@idempotent`` holds it until the record is durable, and the crash is held
  behind that write). A ``crash`` line naming the
  key is written first, so the driver knows which saga it hit. ``CORPS_FAULT_UNFINISHED=compensate``
  hosts a Payments whose charge is ``@idempotent(unfinished="compensate")``.
* **Front**: a small actor of the coordinator node that starts PlaceOrder sagas when asked, so
  sagas are driven by that process's coordinator.
* **Ledger**: one ``@on_event(OrderPlaced, idempotent=True)`` handler whose effect is an effect
  line keyed by the event id; its crash points (``CORPS_FAULT_CRASH``, at the ``CORPS_FAULT_AT``-th
  event): ``before-handler`` (its begun mark written, nothing applied), ``after-effect`` (the effect
  line written, the done mark not), ``after-done`` (the done mark written, the ack not sent).
* **Consumer**: the choreographed shop, each ``@on_event`` handler recording the event ids it
  handled (``kind: "handled"``); with ``CORPS_FAULT_POISON`` naming a switch file, Inventory's
  reserve raises for orders whose id starts with ``poison`` while the file exists.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import anyio

from corps import Actor, ActorOptions, EventsConfig, Message, Request, handler, on_event
from corps.core._context import current_idempotency_key, hold_reply
from corps.events._consumer import EventConsumer
from corps.events._delivery import MARK_DONE, EventDelivery, current_event
from corps.examples.shop import choreographed as choreo
from corps.examples.shop import orchestrated as shop
from corps.examples.shop.messages import (
    BookCourier,
    CancelCourier,
    ChargeCard,
    OrderPlaced,
    OrderRequest,
    OutOfStock,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    RefundCard,
    ReleaseStock,
    ReserveStock,
    ShipmentBooked,
    ShipmentCancelled,
    ShipmentFailed,
    StockReleased,
    StockReserved,
)
from corps.saga import compensation, forward_state, idempotent

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

CRASH_POINTS: Final = ("on-receipt", "after-effect", "after-record")
LEDGER_CRASH_POINTS: Final = ("before-handler", "after-effect", "after-done")


def events_config(replicas: int = 1) -> EventsConfig:
    """The events settings of every system in a fault namespace (stream settings must agree).

    ``ack_wait`` is short so that events a killed consumer held come back within seconds.
    """
    return EventsConfig(replicas=replicas, ack_wait=2.0, heartbeat=0.5, fetch_expires=2.0, publish_timeout=20.0)


class World:
    """The effects file: one JSON line per effect, appended with one write() and fsync'ed."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, **fields: Any) -> None:
        line = json.dumps({**fields, "pid": os.getpid(), "t": round(time.time(), 3)}, separators=(",", ":")) + "\n"
        os.write(self.fd, line.encode())
        os.fsync(self.fd)


class Faults:
    """This process's instrumentation, set by the node program before anything is spawned."""

    world: World | None = None
    crash: str = ""
    crash_step: str = "charge"
    crash_at: int = 1
    seen: int = 0
    latency: float = 0.0
    poison_switch: str = ""
    done_crash: str = ""
    """after-done: the event id whose done mark, once written, kills the process."""

    @classmethod
    def configure(cls, effects: str, latency: float = 0.0) -> None:
        cls.world = World(effects)
        cls.latency = latency
        cls.crash = os.environ.get("CORPS_FAULT_CRASH", "")
        if cls.crash and cls.crash not in CRASH_POINTS + LEDGER_CRASH_POINTS:
            raise SystemExit(f"CORPS_FAULT_CRASH must be one of {CRASH_POINTS + LEDGER_CRASH_POINTS}, "
                             f"not {cls.crash!r}")
        cls.crash_step = os.environ.get("CORPS_FAULT_STEP", "charge")
        cls.crash_at = int(os.environ.get("CORPS_FAULT_AT", "1"))
        cls.poison_switch = os.environ.get("CORPS_FAULT_POISON", "")

    @classmethod
    def record(cls, **fields: Any) -> None:
        assert cls.world is not None, "Faults.configure() first"
        cls.world.append(**fields)

    @classmethod
    def maybe_crash(cls, point: str, step: str) -> None:
        """SIGKILL this process if ``point`` of ``step`` is the configured crash (counted once)."""
        if cls.crash != point or cls.crash_step != step:
            return
        if point == "on-receipt":
            cls.seen += 1
            if cls.seen != cls.crash_at:
                return
        cls.crash = ""
        cls.die(key=current_idempotency_key(), point=point, step=step)

    @classmethod
    def die(cls, **fields: Any) -> None:
        """Write the ``crash`` line, then SIGKILL this process."""
        cls.record(kind="crash", **fields)
        os.kill(os.getpid(), signal.SIGKILL)


def on_receipt(step: str) -> Callable[[F], F]:
    """Outermost wrapper of a forward handler: the ``on-receipt`` crash point, before any record,
    and the ``after-record`` one, once ``@idempotent``'s outcome record is written and before the
    reply is sent. ``@idempotent`` writes a KV outcome off the mailbox and holds the reply until
    it is durable (``hold_reply``); the crash is held behind that write, as the reply is."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        async def wrapper(self: Actor, msg: Any) -> Any:
            key = current_idempotency_key()
            if key:
                Faults.maybe_crash("on-receipt", step)
            reply = await fn(self, msg)
            if key:
                hold_reply(_after_record(key, step))
            return reply

        return wrapper  # type: ignore[return-value]

    return decorate


async def _after_record(key: str, step: str) -> None:
    """Held after @idempotent's outcome write: the ``after-record`` crash point (its own task, so
    the key is passed in: the mailbox has moved on to its next message)."""
    if Faults.crash != "after-record" or Faults.crash_step != step:
        return
    Faults.seen += 1
    if Faults.seen == Faults.crash_at:
        Faults.crash = ""
        Faults.die(key=key, point="after-record", step=step)


async def _forward(original: Any, step: str, actor: Actor, msg: Any) -> Any:
    """Run the shop's own handler (unwrapped from its @idempotent), then write its effect line."""
    if Faults.latency:
        await anyio.sleep(Faults.latency)  # the outside world's latency (a card network), not a wait
    reply = await original.__wrapped__(actor, msg)
    Faults.record(key=current_idempotency_key(), kind="effect", step=step)
    Faults.maybe_crash("after-effect", step)
    return reply


async def _undo(original: Any, step: str, actor: Actor, msg: Any) -> Any:
    reply = await original.__wrapped__(actor, msg)
    state = forward_state()  # "maybe": an attempt began with no outcome (an undo with no effect line is fine)
    Faults.record(key=current_idempotency_key(), kind="undo", step=step, forward=state.value if state else "")
    return reply


# The subclasses keep the shop's actor names (class names), so PlaceOrder's steps reach them.
class Inventory(shop.Inventory):
    @handler
    @on_receipt("reserve")
    @idempotent(effect="external")  # the effects file is the outside world, unlike the shop's own state
    async def reserve(self, msg: ReserveStock) -> StockReserved:
        reply: StockReserved = await _forward(shop.Inventory.reserve, "reserve", self, msg)
        return reply

    @handler
    @compensation(noop=lambda msg: StockReleased(msg.order_id, msg.sku, 0), effect="external")
    async def release(self, msg: ReleaseStock) -> StockReleased:
        reply: StockReleased = await _undo(shop.Inventory.release, "reserve", self, msg)
        return reply


class Payments(shop.Payments):
    @handler
    @on_receipt("charge")
    @idempotent(effect="external")
    async def charge(self, msg: ChargeCard) -> PaymentCaptured:
        reply: PaymentCaptured = await _forward(shop.Payments.charge, "charge", self, msg)
        return reply

    @handler
    @compensation(noop=lambda msg: PaymentRefunded(msg.order_id, msg.card, 0), effect="external")
    async def refund(self, msg: RefundCard) -> PaymentRefunded:
        reply: PaymentRefunded = await _undo(shop.Payments.refund, "charge", self, msg)
        return reply


class Shipping(shop.Shipping):
    @handler
    @on_receipt("ship")
    @idempotent(effect="external")
    async def book(self, msg: BookCourier) -> ShipmentBooked:
        reply: ShipmentBooked = await _forward(shop.Shipping.book, "ship", self, msg)
        return reply

    @handler
    @compensation(noop=lambda msg: ShipmentCancelled(msg.order_id, ""), effect="external")
    async def cancel(self, msg: CancelCourier) -> ShipmentCancelled:
        reply: ShipmentCancelled = await _undo(shop.Shipping.cancel, "ship", self, msg)
        return reply


class PaymentsAtMostOnce(Payments, options=ActorOptions(name="Payments")):
    """Payments whose charge refuses a retry after an unfinished attempt: the saga compensates."""

    @handler
    @on_receipt("charge")
    @idempotent(effect="external", unfinished="compensate")
    async def charge(self, msg: ChargeCard) -> PaymentCaptured:
        reply: PaymentCaptured = await _forward(shop.Payments.charge, "charge", self, msg)
        return reply


PARTICIPANTS: Final = {"Inventory": (Inventory, shop.WAREHOUSE), "Payments": (Payments, shop.PAYMENTS),
                       "Shipping": (Shipping, shop.COURIER)}


# -- the coordinator's front -------------------------------------------------------------


class OrderStarted(Message):
    saga_id: str


class StartOrder(Request[OrderStarted]):
    order: OrderRequest


class Front(Actor):
    """Starts a PlaceOrder saga (saga id = order id) in this node's coordinator; replies once logged."""

    @handler
    async def start(self, msg: StartOrder) -> OrderStarted:
        saga_id = await self.system.start_saga(shop.PlaceOrder, msg.order, saga_id=msg.order.order_id)
        return OrderStarted(saga_id)


# -- the ledger: one idempotent event handler with crash points -----------------------------


class FaultLedger(Actor, options=ActorOptions(name="FaultLedger")):
    """Books each OrderPlaced once: an effect line keyed by the event id (the outside world)."""

    @on_event(OrderPlaced, idempotent=True)
    async def placed(self, event: OrderPlaced) -> None:
        d = current_event.get()
        key = d.event_id if d else "?"
        Faults.seen += 1
        hit = Faults.crash if Faults.seen == Faults.crash_at else ""
        if hit == "before-handler":  # its begun mark is written: the redelivery finds it
            Faults.die(key=key, point=hit, step="ledger")
        await _latency()
        Faults.record(key=key, kind="effect", step="ledger", order=event.order.order_id,
                      delivered=d.meta.delivered if d else 0)
        if hit == "after-effect":
            Faults.die(key=key, point=hit, step="ledger")
        if hit == "after-done":
            Faults.done_crash = key  # killed by the done mark's write, before the ack


def install_after_done_crash() -> None:
    """Patch this process's EventConsumer: SIGKILL right after the done mark of ``Faults.done_crash``
    is written (the ack not sent yet: run_delivery acks after put_mark returns)."""
    put_mark = EventConsumer.put_mark

    async def put_mark_then_maybe_die(self: EventConsumer, d: EventDelivery, mark: bytes) -> None:
        await put_mark(self, d, mark)
        if mark == MARK_DONE and Faults.done_crash and d.event_id == Faults.done_crash:
            Faults.die(key=d.event_id, point="after-done", step="ledger")

    setattr(EventConsumer, "put_mark", put_mark_then_maybe_die)  # noqa: B010 -- this process only


# -- the choreographed consumer ----------------------------------------------------------


async def _latency() -> None:
    if Faults.latency:
        await anyio.sleep(Faults.latency)  # the handler's own work (a remote call), not a wait


def _handled(handler_name: str, order_id: str) -> None:
    d = current_event.get()
    Faults.record(key=d.event_id if d else "?", kind="handled", handler=handler_name, order=order_id,
                  delivered=d.meta.delivered if d else 0)


def _poisoned(order_id: str) -> bool:
    return bool(Faults.poison_switch) and order_id.startswith("poison") and os.path.exists(Faults.poison_switch)


class PoisonError(RuntimeError):
    """Raised by the consumer for a poison order while the switch file exists."""


# The choreographed classes carry their actor names in their options ("InventoryEvents"...),
# which the subclasses inherit; overriding an @on_event method keeps its declaration.
class ConsumerInventory(choreo.Inventory):
    async def reserve(self, event: OrderPlaced) -> None:
        order_id = event.order.order_id
        if _poisoned(order_id):
            d = current_event.get()
            Faults.record(key=d.event_id if d else "?", kind="poisoned", handler="InventoryEvents.reserve",
                          order=order_id, delivered=d.meta.delivered if d else 0)
            raise PoisonError(f"poison order {order_id}")
        await _latency()
        await super().reserve(event)
        _handled("InventoryEvents.reserve", order_id)

    async def release(self, event: PaymentDeclined | PaymentRefunded) -> None:
        await _latency()
        await super().release(event)
        _handled("InventoryEvents.release", event.order_id)


class ConsumerPayments(choreo.Payments):
    async def charge(self, event: StockReserved) -> None:
        await _latency()
        await super().charge(event)
        _handled("PaymentsEvents.charge", event.order_id)

    async def refund(self, event: ShipmentFailed) -> None:
        await _latency()
        await super().refund(event)
        _handled("PaymentsEvents.refund", event.order_id)


class ConsumerShipping(choreo.Shipping):
    async def book(self, event: PaymentCaptured) -> None:
        await _latency()
        await super().book(event)
        _handled("ShippingEvents.book", event.order_id)


class Order(choreo.Order):
    async def placed(self, event: OrderPlaced) -> None:
        await _latency()
        await super().placed(event)
        _handled("Order.placed", event.order.order_id)

    async def shipped(self, event: ShipmentBooked) -> None:
        await _latency()
        await super().shipped(event)
        _handled("Order.shipped", event.order_id)

    async def cancelled(self, event: OutOfStock | StockReleased) -> None:
        await _latency()
        await super().cancelled(event)
        _handled("Order.cancelled", event.order_id)


CONSUMER_SERVICES: Final = ((ConsumerInventory, choreo.INVENTORY), (ConsumerPayments, choreo.PAYMENTS),
                            (ConsumerShipping, choreo.SHIPPING))
