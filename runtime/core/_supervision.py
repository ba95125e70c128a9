"""Supervision policies and the pure decision of what to do after a handler fails."""

from __future__ import annotations

from typing import Final

import msgspec


class Resume(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Keep the instance and its state; go on with the next message (the default)."""


class Restart(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Replace the instance with a fresh one (``__init__`` and ``on_start`` again) after a backoff.

    More than ``max_restarts`` restarts within ``within`` seconds stops the instance instead.
    """

    max_restarts: int = 3
    within: float = 60.0
    backoff: float = 0.05
    """Delay before the first restart; doubled for each further restart in the window."""
    max_backoff: float = 5.0


class Stop(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Stop the instance (``on_stop``); later messages to it are dead letters / NoResponders."""


Supervision = Resume | Restart | Stop

RESUME: Final = Resume()


def restart_delay(policy: Restart, failures: list[float], now: float) -> float | None:
    """Decide a restart: the backoff delay, or None when the restart budget is spent.

    ``failures`` holds the monotonic times of earlier restarts; it is pruned to the window and
    ``now`` is appended when a restart is granted (pure apart from that list, which the caller owns).
    """
    horizon = now - policy.within
    while failures and failures[0] < horizon:
        failures.pop(0)
    if len(failures) >= policy.max_restarts:
        return None
    delay: float = min(policy.backoff * (2.0 ** len(failures)), policy.max_backoff)
    failures.append(now)
    return delay
