"""Retry: the pure delay arithmetic in the AWS Step Functions vocabulary."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corps.saga import Retry
from corps.saga._retry import jitter_sample


def test_delay_grows_by_the_backoff_rate_from_the_interval() -> None:
    policy = Retry(max_attempts=5, interval=0.1, backoff_rate=2.0, max_delay=None)
    assert [policy.delay(n, 0.0) for n in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2, 0.4, 0.8])


def test_delay_is_capped_by_max_delay() -> None:
    policy = Retry(max_attempts=10, interval=1.0, backoff_rate=3.0, max_delay=5.0)
    assert policy.delay(1, 0.0) == 1.0
    assert policy.delay(3, 0.0) == 5.0
    assert policy.delay(10_000, 0.0) == 5.0  # no overflow for the unbounded retries after a pivot


def test_delay_without_cap_overflows_to_infinity_instead_of_raising() -> None:
    assert Retry(interval=1.0, backoff_rate=2.0, max_delay=None).delay(5_000, 0.0) == math.inf


@given(attempt=st.integers(1, 50), sample=st.floats(0.0, 1.0, exclude_max=True))
def test_jitter_only_shortens_a_delay_and_by_at_most_its_fraction(attempt: int, sample: float) -> None:
    policy = Retry(interval=0.5, backoff_rate=1.5, max_delay=4.0, jitter=0.25)
    longest = policy.delay(attempt, 0.0)
    assert longest * 0.75 <= policy.delay(attempt, sample) <= longest <= 4.0


def test_budget_is_every_attempt_waiting_its_timeout_plus_the_delays_between() -> None:
    policy = Retry(max_attempts=3, interval=0.1, backoff_rate=2.0, max_delay=1.0, jitter=0.5)
    assert policy.budget(timeout=2.0) == pytest.approx(3 * 2.0 + 0.1 + 0.2)


def test_problems_lists_every_bad_field() -> None:
    bad = Retry(max_attempts=0, interval=-1.0, backoff_rate=0.5, max_delay=0.0, jitter=2.0)
    assert len(bad.problems()) == 5
    assert Retry().problems() == []


def test_jitter_sample_is_deterministic_and_in_unit_interval() -> None:
    samples = {jitter_sample("saga-1", "charge", n, "step") for n in range(1, 200)}
    assert all(0.0 <= s < 1.0 for s in samples)
    assert len(samples) > 150  # spread, not constant
    assert jitter_sample("saga-1", "charge", 1, "step") == jitter_sample("saga-1", "charge", 1, "step")
