"""Supervision (runtime/core/_supervision.py): the pure restart decision and its backoff."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corps import Restart
from corps.core._supervision import restart_delay


def test_each_restart_in_the_window_doubles_the_backoff() -> None:
    policy = Restart(max_restarts=4, within=60.0, backoff=0.1, max_backoff=10.0)
    failures: list[float] = []
    delays = [restart_delay(policy, failures, now) for now in (1.0, 2.0, 3.0, 4.0)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert failures == [1.0, 2.0, 3.0, 4.0]


def test_the_backoff_is_capped_at_max_backoff() -> None:
    policy = Restart(max_restarts=10, within=60.0, backoff=1.0, max_backoff=3.0)
    failures: list[float] = []
    delays = [restart_delay(policy, failures, float(now)) for now in range(5)]
    assert delays == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_no_restart_once_max_restarts_are_spent_within_the_window() -> None:
    policy = Restart(max_restarts=2, within=10.0, backoff=0.05)
    failures: list[float] = []
    assert restart_delay(policy, failures, 0.0) is not None
    assert restart_delay(policy, failures, 1.0) is not None
    assert restart_delay(policy, failures, 2.0) is None
    assert failures == [0.0, 1.0]  # a refused restart is not recorded


def test_restarts_older_than_the_window_are_forgotten() -> None:
    policy = Restart(max_restarts=2, within=10.0, backoff=0.05, max_backoff=5.0)
    failures = [0.0, 1.0]
    assert restart_delay(policy, failures, 10.5) == pytest.approx(0.1)  # 0.0 left the window
    assert failures == [1.0, 10.5]
    assert restart_delay(policy, failures, 30.0) == pytest.approx(0.05)  # both left: backoff starts over
    assert failures == [30.0]


def test_a_restart_exactly_at_the_window_edge_still_counts() -> None:
    policy = Restart(max_restarts=1, within=10.0)
    failures = [0.0]
    assert restart_delay(policy, failures, 10.0) is None


def test_zero_max_restarts_never_restarts() -> None:
    assert restart_delay(Restart(max_restarts=0), [], 0.0) is None


@given(
    max_restarts=st.integers(0, 8),
    within=st.floats(0.0, 100.0),
    backoff=st.floats(0.0, 10.0),
    max_backoff=st.floats(0.0, 10.0),
    gaps=st.lists(st.floats(0.0, 50.0), max_size=40),
)
def test_the_delay_never_exceeds_max_backoff_nor_the_list_max_restarts(
    max_restarts: int, within: float, backoff: float, max_backoff: float, gaps: list[float]
) -> None:
    policy = Restart(max_restarts=max_restarts, within=within, backoff=backoff, max_backoff=max_backoff)
    failures: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        delay = restart_delay(policy, failures, now)
        assert delay is None or 0.0 <= delay <= max_backoff
        assert len(failures) <= max_restarts
        assert all(t >= now - within for t in failures)  # the window, as restart_delay computes it
        assert failures == sorted(failures)
