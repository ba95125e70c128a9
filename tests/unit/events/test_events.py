"""Pure parts of corps.events: @on_event validation, Backoff, ack-subject parsing, headers."""

from __future__ import annotations

import pytest

from corps import Actor, ActorDefinitionError, Backoff, Message, handler, on_event
from corps.events._classes import event_handlers_of
from corps.events._wire import build_headers, parse_ack_subject


class Placed(Message):
    order_id: str


class Other(Message):
    n: int


def test_backoff_doubles_up_to_its_cap() -> None:
    b = Backoff(initial=0.1, factor=2.0, max=0.5)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_an_event_handler_table_is_built_from_annotations_and_arguments() -> None:
    class Ok(Actor):
        @on_event()
        async def placed(self, event: Placed) -> None: ...

        @on_event(Other, key="n", max_deliver=2, idempotent=True)
        async def other(self, event: Other) -> None: ...

    assert set(event_handlers_of(Ok)) == {Placed, Other}
    spec = event_handlers_of(Ok)[Other]
    assert (spec.key, spec.max_deliver, spec.idempotent, spec.key_of(Other(3))) == ("n", 2, True, "3")


def test_a_bad_event_handler_lists_every_problem_when_the_class_is_created() -> None:
    with pytest.raises(ActorDefinitionError) as caught:

        class Bad(Actor):
            @on_event(Placed, key="missing", max_deliver=0)
            async def placed(self, event: Placed) -> None: ...

            @on_event(Other)
            def sync(self, event: Other) -> None: ...

            @on_event(Other)
            async def returns(self, event: Other) -> int:
                return 1

            @handler
            @on_event(Placed)
            async def both(self, event: Placed) -> None: ...

    text = str(caught.value)
    assert "max_deliver must be an int >= 1" in text
    assert "'sync' must be async" in text
    assert "'returns' must return None" in text
    assert "is also a @handler" in text


def test_a_key_must_be_a_field_of_the_event() -> None:
    with pytest.raises(ActorDefinitionError, match="key 'nope' is not a field of Placed"):

        class Bad(Actor):
            @on_event(Placed, key="nope")
            async def placed(self, event: Placed) -> None: ...


def test_ack_subjects_of_both_formats_are_parsed() -> None:
    v1 = parse_ack_subject("$JS.ACK.s_events.Billing.3.42.40.1700000000000000000.7")
    v2 = parse_ack_subject("$JS.ACK.dom.ACCHASH.s_events.Billing.3.42.40.1700000000000000000.7.tok")
    assert v1 == v2
    assert v1 is not None
    assert (v1.stream, v1.consumer, v1.delivered, v1.stream_seq) == ("s_events", "Billing", 3, 42)
    assert parse_ack_subject("_INBOX.abc") is None


def test_headers_are_built_once_and_newlines_cannot_inject_a_header() -> None:
    hdr = build_headers({"Nats-Msg-Id": "a\r\nEvil: 1", "Corps-Corr": "", "Corps-Cause": "c"})
    assert hdr == b"NATS/1.0\r\nNats-Msg-Id: a  Evil: 1\r\nCorps-Cause: c\r\n\r\n"
