"""Checked by mypy in test_saga_typing.py, never run: typed step builders.

Each line marked ``# TYPO`` must be reported (an attribute the saga's input does not have); nothing
else in this file may be.
"""

from __future__ import annotations

from corps.examples.shop.messages import (
    BookCourier,
    CancelCourier,
    ChargeCard,
    OrderRequest,
    RefundCard,
    ReleaseStock,
    ReserveStock,
)
from corps.examples.shop.orchestrated import Inventory, Payments, Shipping
from corps.saga import NOTHING_TO_UNDO, Parallel, Saga, Step


class PlaceOrder(Saga[OrderRequest]):  # the README's form: the lambdas are typed by the saga's input
    steps = (
        Step("reserve", to=Inventory, key="main",
             request=lambda s: ReserveStock(s.input.order_idd, s.input.sku, s.input.qty),  # TYPO request
             undo=lambda s: ReleaseStock(s.input.order_id, s.input.sku, s.input.qty)),
        Parallel(
            Step("charge", to=Payments, key=lambda s: s.input.cardd,  # TYPO key
                 request=lambda s: ChargeCard(s.input.order_id, s.input.card, s.input.amount),
                 undo=lambda s: RefundCard(s.input.order_id, s.input.card, s.input.amountt)),  # TYPO undo
            Step("ship", to=Shipping, key="courier",
                 request=lambda s: BookCourier(s.input.order_id, s.input.address),
                 undo=lambda s: CancelCourier(s.input.order_id)),
        ),
    )


# A step built outside a saga class says its input type.
RESERVE = Step[OrderRequest]("reserve", to=Inventory, key="main",
                             request=lambda s: ReserveStock(s.input.order_id, s.input.skuu, 1),  # TYPO outside
                             undo=NOTHING_TO_UNDO, uncertain_is_safe=True)

# Without it, a step is Step[Any], as every step was before: accepted anywhere, checked nowhere.
LOOSE = Step("mail", to=Shipping, key="courier", request=lambda s: CancelCourier(s.input.whatever),
             undo=NOTHING_TO_UNDO, uncertain_is_safe=True)


class Correct(Saga[OrderRequest]):
    steps = (
        RESERVE,
        Step("charge", to=Payments, key=lambda s: s.input.card,
             request=lambda s: ChargeCard(s.input.order_id, s.input.card, s.input.amount),
             undo=lambda s: RefundCard(s.input.order_id, s.input.card, s.input.amount)),
        LOOSE,
    )


class Copied(Saga[OrderRequest]):  # steps copied from another saga of the same input
    steps = (*PlaceOrder.steps, LOOSE)
