"""What the consumer's hot path builds per delivery: the numbers of the ack subject, the one
``EventDelivery`` object (its message views and lazy parts), and the PUB of an answer."""

from __future__ import annotations

from typing import Any, cast

from hypothesis import example, given
from hypothesis import strategies as st

from corps.events._delivery import EventDelivery
from corps.events._wire import _ANSWERS, Inbound, ack_numbers, ack_prefix, parse_ack_subject

V1 = "$JS.ACK.s_events.Billing.3.42.40.1700000000000000000.7"
V2 = "$JS.ACK.dom.ACCHASH.s_events.Billing.3.42.40.1700000000000000000.7.tok"
HEADERS = b"NATS/1.0\r\nNats-Msg-Id: abc\r\nCorps-Corr: c1\r\n\r\n"

def _subjects_of(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Any text, and ack-subject-like dotted tokens (numbers, signs, "_", spaces, the prefix)."""
    token = st.one_of(st.sampled_from(["$JS", "ACK", "3", "42", "-1", "0", "+5", "1_0", " 7", "x", ""]),
                      text.map(lambda t: t[:4]), st.integers().map(str))
    return st.one_of(
        text,
        st.lists(token, min_size=7, max_size=14).map(".".join),
        st.lists(token, min_size=5, max_size=12).map(lambda t: ".".join(["$JS", "ACK", *t])),
    )


_subjects = _subjects_of(st.text())
_ascii_subjects = _subjects_of(st.text(st.characters(max_codepoint=127)))


PREFIXES = (ack_prefix("s_events", "Billing"), ack_prefix("other", "Billing"), b"")
"""This consumer's own (the fast way for V1), another consumer's, none."""


def _timestamp(reply: str) -> str:
    t = reply.split(".")
    return t[9 if len(t) >= 12 else 7]


@given(_ascii_subjects, st.sampled_from(PREFIXES))
@example(V1, PREFIXES[0])
@example(V1, PREFIXES[1])
@example(V2, PREFIXES[0])
@example("$JS.ACK.s_events.Billing.1.2.3.4.5.6", PREFIXES[0])  # 10 tokens: read as v1 (not the fast way)
@example("$JS.ACK.s_events.Billing.1.2.3.notanumber.5", PREFIXES[0])  # both refuse it
@example("$JS.ACK.s_events.Billing.2.3.4.5.6", PREFIXES[0])  # delivered twice: not the "1" shortcut
def test_ack_numbers_takes_the_ascii_subjects_parse_ack_subject_takes(reply: str, prefix: bytes) -> None:
    meta = parse_ack_subject(reply)
    numbers = ack_numbers(reply.encode(), prefix)
    if meta is not None and _timestamp(reply).isdigit():  # (no server sends "+5" or " 5" there)
        assert numbers == (meta.stream_seq, meta.delivered)
    elif meta is None:
        assert numbers is None


@given(st.one_of(st.binary(), _subjects.map(str.encode), st.binary().map(lambda b: V1.encode() + b),
                 st.binary().map(lambda b: PREFIXES[0] + b)), st.sampled_from(PREFIXES))
@example("$JS.ACK.s.Caf\u00e9.1.2.3.4.5".encode(), "$JS.ACK.s.Caf\u00e9".encode())  # a class name may be UTF-8
@example(b"$JS.ACK.s.\xff.1.2.3.4.5", b"$JS.ACK.s.\xff")  # not UTF-8: no subject at all
@example(b"$JS.ACK.s_events.Billing.1.2.3.\xd9\xa3.5", PREFIXES[0])  # a non-ASCII digit
def test_what_ack_numbers_takes_has_a_meta_with_the_same_numbers(reply: bytes, prefix: bytes) -> None:
    numbers = ack_numbers(reply, prefix)
    if numbers is None:
        return
    meta = parse_ack_subject(reply.decode())
    assert meta is not None
    assert numbers == (meta.stream_seq, meta.delivered)


def test_a_utf8_consumer_name_is_taken_and_bytes_that_are_not_utf8_are_not() -> None:
    assert ack_numbers("$JS.ACK.s.Caf\u00e9.1.2.3.4.5".encode(), b"") == (2, 1)
    assert ack_numbers(b"$JS.ACK.s.\xff.1.2.3.4.5", b"$JS.ACK.s.\xff") is None


def _received(reply: str = V1, raw: bytes | None = HEADERS) -> EventDelivery:
    return EventDelivery.received(cast(Any, None), b"ns.events.Placed", reply.encode(), b"\x80", raw, None,
                                  42, 1.5, "event", None, None)


def test_a_received_delivery_is_its_own_message_and_parses_its_meta_once_when_read() -> None:
    d = _received()
    assert d.msg is d
    assert (d.subject, d.reply, d.data, d.seq, d.touched) == ("ns.events.Placed", V1, b"\x80", 42, 1.5)
    assert d._meta is None  # nothing parsed on the hot path
    assert d._headers is None
    assert d.header("Corps-Corr") == "c1"
    assert d.header("Corps-Redrive-For") is None
    assert d.headers == {"Nats-Msg-Id": "abc", "Corps-Corr": "c1"}
    assert d.meta == parse_ack_subject(V1)
    d.meta.delivered = 5  # the partitioned consumer counts the attempts of owners that died this way
    assert d.attempt == 4  # the meta is kept: the change holds
    assert (d.event_id, d.correlation_id) == ("abc", "c1")
    assert [next(d.publishes), next(d.publishes)] == [0, 1]  # one counter per delivery


def test_a_delivery_built_from_an_inbound_message_reads_as_a_received_one() -> None:
    meta = parse_ack_subject(V2)
    assert meta is not None
    msg = Inbound(b"ns.events.Placed", V2, b"\x80", HEADERS)
    d = EventDelivery(cast(Any, None), msg, meta, "event", None, None)
    assert d.meta is meta
    assert (d.subject, d.reply, d.ack_to, d.data, d.seq) == ("ns.events.Placed", V2, V2.encode(), b"\x80", 42)
    assert d.headers == _received(V2).headers
    assert d.event_id == "abc"


def test_an_event_id_without_headers_is_the_stream_and_sequence() -> None:
    assert _received(raw=None).event_id == "s_events-42"


def test_each_fixed_answer_is_the_pub_the_generic_form_writes() -> None:
    reply = V1.encode()
    for what, fmt in _ANSWERS.items():
        assert fmt % reply == b"PUB %b %d\r\n%b\r\n" % (reply, len(what), what)
    assert set(_ANSWERS) == {b"+ACK", b"-NAK", b"+TERM", b"+WPI"}
