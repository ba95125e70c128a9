"""The partition function's edges (runtime/wire/_partition.py), beyond the reference vectors in
tests/virtual/test_partitioned_events.py: keys that are not plain ASCII, and the explicit bound."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corps.wire._partition import MAX_PARTITIONS, fnv1a32, partition_of


def test_a_key_is_hashed_as_its_utf8_bytes_a_lone_surrogate_included() -> None:
    # A key read from JSON may hold a lone surrogate ("\ud800"): it still has a partition, the
    # same in every process (its UTF-8-style bytes, surrogatepass), never an encoding error.
    assert fnv1a32("é".encode()) == fnv1a32(b"\xc3\xa9")
    assert partition_of("é", 1024) == fnv1a32(b"\xc3\xa9") % 1024
    assert partition_of("k\ud800", 1024) == fnv1a32(b"k\xed\xa0\x80") % 1024


@given(st.text(st.characters(codec=None, categories=["Cs", "Lo", "So"]), max_size=8), st.integers(1, MAX_PARTITIONS))
def test_any_key_has_a_partition_surrogates_included(key: str, n: int) -> None:
    assert partition_of(key, n) == fnv1a32(key.encode("utf-8", "surrogatepass")) % n


def test_the_bound_is_1024_partitions_and_both_ends_are_enforced() -> None:
    assert MAX_PARTITIONS == 1024  # each owned partition is a KV record: a typo must not make 100,000
    assert partition_of("x", 1) == 0
    assert 0 <= partition_of("x", 1024) < 1024
    for refused in (0, -1, 1025):
        with pytest.raises(ValueError, match="between 1 and 1024"):
            partition_of("x", refused)
