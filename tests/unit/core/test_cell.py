"""The mailbox's helpers: finding where a stopped instance's batch was left off."""

from __future__ import annotations

from typing import Any

from corps.core._cell import index_of
from corps.wire._codec import Envelope


def test_index_of_finds_the_envelope_itself_not_an_equal_one() -> None:
    envs: list[Envelope[Any]] = [Envelope(1), Envelope(1), Envelope(1)]  # equal, as a replay may send
    assert envs[0] == envs[2]
    assert [index_of(envs, env) for env in envs] == [0, 1, 2]
