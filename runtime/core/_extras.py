"""Durable extras: what a layer keeps on an actor instance that must be exactly as durable as its state.

A layer above core that keeps something on an instance whose loss must go with the state's
(saga's ``@idempotent(effect="memory")`` records: the effect is the state, the record says it
applied) registers it on the instance under a name (``register``) and, once for the process, how
to rebuild it from its bytes (``restorer``). A store of durable state (``corps.virtual``) writes
``dump(actor)`` in the same write as the state, and hands what it loads back with ``restore``
before the instance takes a message. The two layers never import each other: both meet here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from corps.core._actor import Actor

_REGISTERED = "_corps_extras"
_CARRIED = "_corps_extras_carried"
_restorers: dict[str, Callable[[Actor, bytes], None]] = {}


class DurableExtra(Protocol):
    def dump(self) -> bytes:
        """Its bytes, saved with the instance's state."""
        ...


def restorer(name: str, fn: Callable[[Actor, bytes], None]) -> None:
    """How extras named ``name`` are rebuilt on an instance (``fn`` registers the rebuilt extra;
    it raises on bytes it cannot read)."""
    _restorers[name] = fn


def register(actor: Actor, name: str, extra: DurableExtra) -> None:
    actor.__dict__.setdefault(_REGISTERED, {})[name] = extra
    carried: dict[str, bytes] | None = actor.__dict__.get(_CARRIED)
    if carried is not None:
        carried.pop(name, None)


def dump(actor: Actor) -> dict[str, bytes]:
    """The instance's extras, to save with its state ({}: none). Loaded extras that no restorer
    took (their layer is not loaded in this process) are carried over as they were."""
    found: dict[str, DurableExtra] = actor.__dict__.get(_REGISTERED) or {}
    carried: dict[str, bytes] = actor.__dict__.get(_CARRIED) or {}
    return {**carried, **{name: extra.dump() for name, extra in found.items()}}


def restore(actor: Actor, extras: dict[str, bytes]) -> None:
    """Give the instance the extras loaded with its state.

    Raises:
        Exception: whatever a restorer raises for bytes it cannot read (the caller types it).
    """
    carried: dict[str, bytes] = {}
    for name, data in extras.items():
        fn = _restorers.get(name)
        if fn is None:
            carried[name] = data
        else:
            fn(actor, data)
    if carried:
        actor.__dict__[_CARRIED] = carried
