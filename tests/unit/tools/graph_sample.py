"""Sample actors for tests/unit/tools/test_graph.py: sends that only the source shows.

Each way of sending that ``corps graph`` reads appears once: a ``ref(...)`` naming the target,
a type found through the handler tables, a local variable, a conditional, a dotted name, a saga
started from a handler; and one send it cannot read (a message built elsewhere).
"""

from __future__ import annotations

import corps.examples.shop.messages as shop
from corps import Actor, Message, Request, handler, on_event
from corps.saga import NOTHING_TO_UNDO, Parallel, Saga, Step


class Level(Message):
    units: int


class Check(Request[Level]):
    sku: str


class Audit(Message):
    line: str


class Paid(Message):
    order_id: str


class Declined(Message):
    order_id: str


class Checkout(Message):
    order_id: str
    ok: bool


class Stock(Actor):
    @handler
    async def check(self, msg: Check) -> Level:
        return Level(1)


class Auditor(Actor):
    @handler
    async def audit(self, msg: Audit) -> None:
        pass


class Cashier(Actor):
    @handler
    async def checkout(self, msg: Checkout) -> None:
        await self.system.ref(Stock, "main").ask(Check("apple"), timeout=1.0)
        await self.system.ref(Auditor, "log").tell(Audit("checked"))
        event = Paid(msg.order_id) if msg.ok else Declined(msg.order_id)
        await self.publish(event)
        await self.system.publish(shop.OrderPlaced(shop.OrderRequest(msg.order_id, "apple", 1, "c", 1, "a")))
        await self.system.start_saga(Fulfil, Checkout(msg.order_id, True))

    @on_event(Paid)
    async def paid(self, event: Paid) -> None:
        await self._log(Audit(event.order_id))  # no tell, ask or publish here
        await self.publish(self._receipt(event))  # built elsewhere: a note, not an edge

    async def _log(self, audit: Audit) -> None:
        await self.system.ref(Auditor, "log").tell(audit)  # the annotation says what `audit` is

    def _receipt(self, event: Paid) -> Message:
        return Declined(event.order_id)


class Fulfil(Saga[Checkout]):
    steps = (
        Parallel(
            Step("check", to=Stock, key="main", request=lambda s: Check(s.input.order_id), undo=NOTHING_TO_UNDO,
                 uncertain_is_safe=True),
            Step("audit", to=Auditor, key="log", request=lambda s: Audit(s.input.order_id),
                 undo=lambda s: Audit(f"undo {s.input.order_id}")),
        ),
        Step("close", to=Auditor, key="log", request=lambda s: Audit("closed"), undo=NOTHING_TO_UNDO, pivot=True,
             uncertain_is_safe=True),
    )
