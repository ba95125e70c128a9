"""Retry: a step's retry policy in the AWS Step Functions vocabulary, and its pure delay arithmetic."""

from __future__ import annotations

import hashlib
import math
from typing import Final

import msgspec

DEFAULT_MAX_DELAY: Final = 60.0
"""Seconds. A cap by default (AWS has none) so that the unbounded retries after a pivot stay sane."""


class Retry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How often, and how far apart, one step (or one compensation) is attempted.

    The delay before attempt ``n + 1`` is ``interval * backoff_rate ** (n - 1)``, capped at
    ``max_delay``, then shortened by up to ``jitter`` of itself. Jitter only ever *shortens*
    a delay, so ``max_delay`` stays a hard cap and the worst-case budget needs no sampling.

    Steps after a saga's pivot ignore ``max_attempts``: they are retried until they succeed.
    """

    max_attempts: int = 3
    """Attempts in all, the first one included (AWS ``MaxAttempts`` counts retries only)."""
    interval: float = 1.0
    """Seconds before the first retry (AWS ``IntervalSeconds``)."""
    backoff_rate: float = 2.0
    """Multiplier applied to the delay after each retry (AWS ``BackoffRate``), at least 1."""
    max_delay: float | None = DEFAULT_MAX_DELAY
    """Cap on one delay in seconds (AWS ``MaxDelaySeconds``); None means no cap."""
    jitter: float = 0.0
    """Fraction in [0, 1] by which a delay may be shortened at random (AWS ``JitterStrategy``)."""

    def delay(self, attempt: int, jitter_sample: float) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one.

        Args:
            attempt: the attempt that just failed, counting from 1.
            jitter_sample: a number in [0, 1); 0 gives the longest delay.

        Returns:
            The delay; ``math.inf`` only if it overflows and ``max_delay`` is None.
        """
        try:
            base = self.interval * self.backoff_rate ** max(attempt - 1, 0)
        except OverflowError:  # a large attempt number after a pivot: only the cap matters
            base = math.inf
        capped = base if self.max_delay is None else min(base, self.max_delay)
        return capped * (1.0 - self.jitter * jitter_sample)

    def budget(self, timeout: float) -> float:
        """The longest time all ``max_attempts`` can take, each waiting ``timeout`` for its reply."""
        delays = sum(self.delay(n, 0.0) for n in range(1, max(self.max_attempts, 1)))
        return self.max_attempts * timeout + delays

    def problems(self) -> list[str]:
        """Every reason this policy cannot be used, or an empty list."""
        found = []
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            found.append(f"max_attempts must be an int >= 1, not {self.max_attempts!r}")
        if not _finite(self.interval) or self.interval < 0:
            found.append(f"interval must be a finite number >= 0, not {self.interval!r}")
        if not _finite(self.backoff_rate) or self.backoff_rate < 1:
            found.append(f"backoff_rate must be a finite number >= 1, not {self.backoff_rate!r}")
        if self.max_delay is not None and (not _finite(self.max_delay) or self.max_delay <= 0):
            found.append(f"max_delay must be None or a finite number > 0, not {self.max_delay!r}")
        if not _finite(self.jitter) or not 0 <= self.jitter <= 1:
            found.append(f"jitter must be a number in [0, 1], not {self.jitter!r}")
        return found


DEFAULT_RETRY: Final = Retry()
"""For forward steps: three attempts, 1 s then 2 s apart (the AWS defaults)."""

DEFAULT_UNDO_RETRY: Final = Retry(max_attempts=10, interval=0.5, backoff_rate=2.0, max_delay=30.0, jitter=0.2)
"""For compensations: generous (about two minutes in all), because giving up leaves the saga FAILED."""


def jitter_sample(saga_id: str, step: str, attempt: int, phase: str) -> float:
    """A number in [0, 1) derived from its arguments: jitter without a random generator.

    The engine has no randomness of its own, yet retries of many sagas must not fire in
    lockstep. A hash of (saga, step, attempt) spreads them just as well, and a replay after a
    coordinator crash computes the very same delay.
    """
    digest = hashlib.blake2b(f"{saga_id}\x00{step}\x00{attempt}\x00{phase}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
