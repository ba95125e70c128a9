"""Placement by rendezvous hashing (pure), and the membership decoder against hostile bytes."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st
from nats.js.kv import KeyValue

from corps.virtual import VirtualConfig, owner
from corps.virtual._membership import Membership
from corps.virtual._ownership import OwnerRecord, read_record

members = st.sets(st.text(alphabet="abcdef0123456789", min_size=1, max_size=12), min_size=1, max_size=8)
keys = st.text(min_size=1, max_size=40)


@given(members, keys, st.randoms())
def test_placement_is_a_function_of_the_id_and_the_members_only(ms: set[str], key: str, rnd: random.Random) -> None:
    order = list(ms)
    rnd.shuffle(order)
    assert owner(key, order) == owner(key, sorted(ms))
    assert owner(key, ms) in ms


@given(members, keys, st.text(alphabet="ghijkl", min_size=1, max_size=8))
def test_a_join_moves_an_id_only_to_the_new_member(ms: set[str], key: str, new: str) -> None:
    before = owner(key, ms)
    assert owner(key, ms | {new}) in (before, new)


@given(members, keys)
def test_a_leave_moves_only_the_ids_of_the_member_that_left(ms: set[str], key: str) -> None:
    before = owner(key, ms)
    for gone in ms - {before}:
        assert owner(key, ms - {gone}) == before


def test_ids_spread_about_evenly() -> None:
    ms = [f"node{i}" for i in range(3)]
    counts = {m: 0 for m in ms}
    for i in range(3_000):
        counts[owner(f"id-{i}", ms)] += 1  # type: ignore[index]
    assert min(counts.values()) > 800, counts


def _entry(key: str, value: bytes, op: str | None = None) -> KeyValue.Entry:
    return KeyValue.Entry(bucket="b", key=key, value=value, revision=1, delta=0, created=None, operation=op)


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_a_hostile_member_record_is_counted_and_skipped(data: bytes) -> None:
    changes: list[int] = []
    m = Membership(None, "ns", "me", VirtualConfig(), lambda: changes.append(1), lambda: None)
    m._apply(_entry("peer", data))
    assert m.ignored + len(m.members) == 1
    assert set(m.members) <= {"peer"}
    assert len(changes) == len(m.members)


def test_a_deeply_nested_member_record_is_counted_not_raised() -> None:
    m = Membership(None, "ns", "me", VirtualConfig(), lambda: None, lambda: None)
    m._apply(_entry("p", b"[" * 100_000))
    m._apply(_entry("q", b'{"classes":' + b"[" * 100_000))
    assert (m.ignored, m.members) == (2, {})


def test_members_join_change_and_leave() -> None:
    changes: list[int] = []
    m = Membership(None, "ns", "me", VirtualConfig(), lambda: changes.append(1), lambda: None)
    m._apply(_entry("a", b'{"classes":["C"]}'))
    m._apply(_entry("a", b'{"classes":["C"]}'))  # a heartbeat: no change
    m._apply(_entry("b", b'{"classes":["C","D"]}'))
    assert m.owner("D", "x") == "b"
    m._apply(_entry("a", b"", "DEL"))
    assert (sorted(m.members), len(changes)) == (["b"], 3)


@given(st.binary(max_size=300) | st.builds(lambda d: __import__("json").dumps(d).encode(),
                                           st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8))))
def test_an_ownership_record_decodes_or_says_why(data: bytes) -> None:
    got = read_record(data)
    assert isinstance(got, OwnerRecord | str)


def test_a_deeply_nested_ownership_record_says_why() -> None:
    assert isinstance(read_record(b'{"node":"a","through":' + b"[" * 100_000), str)


def test_a_record_of_an_epoch_its_live_node_has_left_is_not_held() -> None:
    """A node whose lease ran out fenced off its activations and forgot them: the records it
    left under its old epoch must be claimable, or the ids would wait for it forever (the
    --soak state machine found that liveness failure)."""
    m = Membership(None, "ns", "me", VirtualConfig(), lambda: None, lambda: None)
    m._apply(_entry("b", b'{"classes":["C"],"epoch":1}'))
    assert not m.holds("b:0")
    assert m.holds("b:1")
    assert not m.holds("gone:0")
    assert not m.holds("b:x")
