"""Subjects (runtime/wire/_subjects.py): an actor id round-trips through its subject or is refused."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from corps.errors import CorpsError, InvalidActorId
from corps.wire._subjects import MAX_TOKEN_LENGTH, actor_class_wildcard, actor_id_of, actor_subject

NS = "t1"
NAME = "Account"


def _is_control(ch: str) -> bool:
    """C0 and C1 control characters and DEL."""
    return ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F


def _must_refuse(actor_id: str) -> bool:
    return (
        not actor_id
        or len(actor_id) > MAX_TOKEN_LENGTH
        or any(ch in ".*>" or ch.isspace() or _is_control(ch) for ch in actor_id)
    )


# Ids biased toward the interesting characters, plus arbitrary text (the hypothesis default alphabet).
_ids = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from("ab-_:é.*> \t\n\x00\x1f\x7f\u00a0\u2028"), max_size=12),
    st.text(alphabet="x", min_size=MAX_TOKEN_LENGTH - 1, max_size=MAX_TOKEN_LENGTH + 1),
)


@given(actor_id=_ids)
@example(actor_id="x" * MAX_TOKEN_LENGTH)
@example(actor_id="x" * (MAX_TOKEN_LENGTH + 1))
@example(actor_id="\u3000")  # ideographic space: whitespace outside ASCII
def test_an_id_round_trips_through_its_subject_or_is_refused(actor_id: str) -> None:
    if _must_refuse(actor_id):
        with pytest.raises(InvalidActorId):
            actor_subject(NS, NAME, actor_id)
        return
    subject = actor_subject(NS, NAME, actor_id)
    assert subject.split(".") == [NS, "actor", NAME, actor_id]
    assert actor_id_of(NS, NAME, subject) == actor_id


@pytest.mark.parametrize(
    ("actor_id", "problem"),
    [
        ("a.b", "'.'"),
        ("a*", "'*'"),
        (">", "'>'"),
        ("a b", "' '"),
        ("\t", "'\\t'"),
        ("", "must not be empty"),
        ("x" * (MAX_TOKEN_LENGTH + 1), f"longer than {MAX_TOKEN_LENGTH}"),
    ],
)
def test_a_refused_id_is_named_with_its_problem(actor_id: str, problem: str) -> None:
    with pytest.raises(InvalidActorId) as info:
        actor_subject(NS, NAME, actor_id)
    assert info.value.actor_id == actor_id
    assert problem in info.value.reason
    assert problem in str(info.value)


def test_a_non_str_id_is_refused() -> None:
    with pytest.raises(InvalidActorId, match="must be a str"):
        actor_subject(NS, NAME, 42)  # type: ignore[arg-type]


def test_invalid_actor_id_is_a_value_error_and_a_corps_error() -> None:
    assert issubclass(InvalidActorId, ValueError)
    assert issubclass(InvalidActorId, CorpsError)


def test_the_class_wildcard_matches_exactly_the_instance_subjects() -> None:
    wildcard = actor_class_wildcard(NS, NAME)
    subject = actor_subject(NS, NAME, "acc-1")
    assert wildcard.split(".")[:-1] == subject.split(".")[:-1]
    assert wildcard.endswith(".*")


@pytest.mark.parametrize("ch", ["\x80", "\x9b", "\x9f"])
def test_c1_control_characters_are_refused(ch: str) -> None:
    assert unicodedata.category(ch) == "Cc"
    with pytest.raises(InvalidActorId):
        actor_subject(NS, NAME, f"a{ch}b")
