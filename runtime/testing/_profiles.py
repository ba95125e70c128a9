"""Hypothesis profiles for saga properties: ``ci`` (derandomized, a fixed seed), ``dev``, ``soak``.

The corps pytest plugin registers them when a run has not registered profiles of those names
itself, and loads ``$HYPOTHESIS_PROFILE`` if set. ``soak`` runs 20x the examples for long local
runs (``HYPOTHESIS_PROFILE=soak pytest tests/property``); tests that set ``max_examples`` scale
it with :func:`examples`.
"""

from __future__ import annotations

import os
from typing import Final

from hypothesis import HealthCheck, settings

PROFILES: Final = ("ci", "dev", "soak")
SOAK_FACTOR: Final = 20


def register_profiles() -> None:
    """Register ``ci``, ``dev`` and ``soak`` unless already registered; load ``$HYPOTHESIS_PROFILE``."""
    known = set(settings._profiles)
    if "ci" not in known:
        settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                                  suppress_health_check=[HealthCheck.too_slow])
    if "dev" not in known:
        settings.register_profile("dev", deadline=None)
    if "soak" not in known:
        settings.register_profile("soak", max_examples=20_000, deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow])
    wanted = os.environ.get("HYPOTHESIS_PROFILE")
    if wanted:
        settings.load_profile(wanted)


def examples(n: int) -> int:
    """``n`` examples, or ``SOAK_FACTOR x n`` under the soak profile (for end-to-end tests)."""
    return n * SOAK_FACTOR if os.environ.get("HYPOTHESIS_PROFILE") == "soak" else n
