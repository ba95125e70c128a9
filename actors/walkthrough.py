"""What the demo's steps share: the ``Demo`` (the system, plus what earlier steps made) and the
``(label, text)`` lines a step returns. The steps live in ``demo`` and ``shop``; both import this."""

from __future__ import annotations

from corps import ActorRef, ActorSystem
from corps.examples.accounts import Account

Line = tuple[str, str]


class Demo:
    """What the steps share: the system and a reference to the account ``alice``."""

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        # A ref is only an address: it can be made before (or without) the actor being spawned.
        self.alice: ActorRef[Account] = system.ref(Account, "alice")
