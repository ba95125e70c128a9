"""Durable extras (runtime/core/_extras.py): what a layer registers on an instance is dumped with
its state; what was loaded and no restorer took is carried over unchanged, so a process that
lacks a layer does not erase that layer's records when it saves the state."""

from __future__ import annotations

import pytest

from corps import Actor
from corps.core import _extras


class Plain(Actor):
    pass


class Blob:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def dump(self) -> bytes:
        return self.data


def instance() -> Plain:
    return Plain.__new__(Plain)  # an instance as the host makes one; no system needed here


def test_every_registered_extra_is_dumped_under_its_name() -> None:
    actor = instance()
    assert _extras.dump(actor) == {}
    _extras.register(actor, "a", Blob(b"1"))
    _extras.register(actor, "b", Blob(b"2"))
    assert _extras.dump(actor) == {"a": b"1", "b": b"2"}


def test_loaded_extras_go_to_their_restorer_and_unknown_ones_are_carried_over(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []

    def rebuild(actor: Actor, data: bytes) -> None:
        seen.append(data)
        _extras.register(actor, "known", Blob(data + b"+"))

    monkeypatch.setitem(_extras._restorers, "known", rebuild)
    actor = instance()
    _extras.restore(actor, {"known": b"k", "from.a.layer.not.loaded": b"keep me"})
    assert seen == [b"k"]
    assert _extras.dump(actor) == {"known": b"k+", "from.a.layer.not.loaded": b"keep me"}


def test_a_carried_extra_registered_later_is_replaced_by_the_live_one() -> None:
    actor = instance()
    _extras.restore(actor, {"late": b"old"})  # no restorer for "late" in this process yet
    _extras.register(actor, "late", Blob(b"new"))
    assert _extras.dump(actor) == {"late": b"new"}


def test_a_restorer_that_cannot_read_its_bytes_raises_to_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(actor: Actor, data: bytes) -> None:
        raise ValueError("unreadable")

    monkeypatch.setitem(_extras._restorers, "known", refuse)
    with pytest.raises(ValueError, match="unreadable"):
        _extras.restore(instance(), {"known": b"?"})
