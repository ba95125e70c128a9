"""Messages (runtime/core/_messages.py): frozen, tagged Structs whose wire tag is the class name."""

from __future__ import annotations

import msgspec
import pytest

from corps import Message, Request
from corps.core._messages import TAG_FIELD, reply_type


class Balance(Message):
    amount: int


class Deposit(Request[Balance]):
    amount: int


class Notice(Message):
    type: str
    kind: str


class Renamed(Message, tag="acct.Renamed"):
    name: str


def test_a_request_records_the_reply_type_it_names() -> None:
    assert reply_type(Deposit) is Balance


def test_a_request_subclass_inherits_its_reply_type() -> None:
    class BigDeposit(Deposit):
        note: str = ""

    assert reply_type(BigDeposit) is Balance


def test_a_plain_message_has_no_reply_type() -> None:
    assert reply_type(Balance) is None
    assert reply_type(Request) is None


def test_user_fields_may_be_called_type_and_kind() -> None:
    notice = Notice(type="email", kind="welcome")
    assert TAG_FIELD == "$type"
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(notice), type=Notice) == notice


@pytest.mark.parametrize("proto", [msgspec.msgpack, msgspec.json], ids=["msgpack", "json"])
def test_the_wire_form_is_a_map_tagged_with_the_class_name(proto: object) -> None:
    wire = proto.decode(proto.encode(Notice(type="email", kind="welcome")))  # type: ignore[attr-defined]
    assert wire == {"$type": "Notice", "type": "email", "kind": "welcome"}


@pytest.mark.parametrize("proto", [msgspec.msgpack, msgspec.json], ids=["msgpack", "json"])
def test_a_custom_tag_names_the_message_on_the_wire(proto: object) -> None:
    encoded = proto.encode(Renamed("x"))  # type: ignore[attr-defined]
    assert proto.decode(encoded) == {"$type": "acct.Renamed", "name": "x"}  # type: ignore[attr-defined]
    decoded = proto.decode(encoded, type=Renamed | Balance)  # type: ignore[attr-defined]
    assert decoded == Renamed("x")


def test_a_tagged_map_decodes_to_its_class_within_a_union() -> None:
    union = Balance | Deposit | Notice
    wire = msgspec.msgpack.encode({"$type": "Deposit", "amount": 7})
    assert msgspec.msgpack.decode(wire, type=union) == Deposit(amount=7)


def test_messages_are_frozen() -> None:
    msg = Deposit(amount=1)
    with pytest.raises(AttributeError):
        msg.amount = 2  # type: ignore[misc]
    assert hash(msg) == hash(Deposit(amount=1))
