"""What a client that is not corps sees and sends (issue 16, items 2 and 3): a plain nats-py
client, as a nats.js or Go client would, on a real server.

* error replies carry ``Nats-Service-Error`` / ``Nats-Service-Error-Code``; the body stays the
  typed ``corps.Error``;
* its ``Corps-Corr`` header (or the trace id of its ``traceparent``) is the correlation id of its
  asks, tells and events; without one, each message gets a fresh id, never a shared constant;
* events published as JSON are handled like msgpack ones, and hostile JSON is dead-lettered.
"""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from corps import Actor, ActorSystem, Message, Request, current_correlation_id, handler, on_event
from corps.core._context import current_traceparent
from corps.events._wire import EventDecoder
from tests.hostile import DEEP_JSON_MAP, error_in, payloads
from tests.integration.test_events import dead_letters_of

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class Hi(Message):
    text: str
    corr: str
    traceparent: str


class Hello(Request[Hi]):
    name: str


class Boom(Request[Hi]):
    why: str


class Note(Message):
    text: str


class Shouted(Message):
    text: str


class Seen:
    """What handlers saw: (text, correlation id, traceparent), with a wake-up per entry."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []
        self.changed = anyio.Event()

    def add(self, text: str) -> None:
        self.items.append((text, current_correlation_id() or "", current_traceparent()))
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            while len(self.items) < n:
                await self.changed.wait()


class Greeter(Actor):
    seen: ClassVar[Seen] = Seen()

    @handler
    async def hello(self, msg: Hello) -> Hi:
        return Hi(f"hi {msg.name}", current_correlation_id() or "", current_traceparent())

    @handler
    async def boom(self, msg: Boom) -> Hi:
        raise ValueError(msg.why)

    @handler
    async def note(self, msg: Note) -> None:
        self.seen.add(msg.text)

    @on_event(Shouted, max_deliver=2)
    async def shouted(self, event: Shouted) -> None:
        self.seen.add(event.text)


def as_json(obj: Any) -> bytes:
    return msgspec.json.encode(obj)


# -- item 2: errors NATS clients understand --------------------------------------------------------


async def test_a_failing_handler_answers_a_nats_client_with_service_error_headers(
    actor_system: ActorSystem, raw: Client
) -> None:
    ref = await actor_system.spawn(Greeter, "g")
    for encode in (as_json, msgspec.msgpack.encode):
        reply = await raw.request(ref.subject, encode(Boom("no luck")), timeout=5)
        assert reply.headers == {"Nats-Service-Error": "ValueError: no luck", "Nats-Service-Error-Code": "500"}
        assert error_in(reply.data) == {"$type": "corps.Error", "kind": "RemoteError", "type": "ValueError",
                                        "message": "no luck"}


async def test_an_invalid_message_and_an_unknown_id_get_400_and_404(actor_system: ActorSystem, raw: Client) -> None:
    ref = await actor_system.spawn(Greeter, "g")
    bad = await raw.request(ref.subject, b'{"$type": "Hello", "name": 5}', timeout=5)
    assert bad.headers is not None
    assert bad.headers["Nats-Service-Error-Code"] == "400"
    assert bad.headers["Nats-Service-Error"].startswith("InvalidMessage: Expected `str`, got `int`")
    assert error_in(bad.data)["kind"] == "InvalidMessage"
    missing = await raw.request(actor_system.ref(Greeter, "nobody").subject, as_json(Hello("x")), timeout=5)
    assert missing.headers is not None
    assert missing.headers["Nats-Service-Error-Code"] == "404"
    assert error_in(missing.data)["kind"] == "NoResponders"


async def test_a_successful_reply_carries_no_error_headers(actor_system: ActorSystem, raw: Client) -> None:
    ref = await actor_system.spawn(Greeter, "g")
    reply = await raw.request(ref.subject, as_json(Hello("ann")), timeout=5)
    assert not reply.headers
    assert msgspec.json.decode(reply.data, type=Hi).text == "hi ann"


# -- item 3: correlation ids of non-corps callers ------------------------------------------------


@pytest.mark.parametrize("encode", [as_json, msgspec.msgpack.encode], ids=["json", "msgpack"])
async def test_a_callers_corps_corr_or_traceparent_is_the_correlation_id_of_its_ask(
    actor_system: ActorSystem, raw: Client, encode: Any
) -> None:
    ref = await actor_system.spawn(Greeter, "g")

    async def ask(headers: dict[str, str] | None) -> Hi:
        reply = await raw.request(ref.subject, encode(Hello("x")), timeout=5, headers=headers)
        return msgspec.json.decode(reply.data, type=Hi) if encode is as_json else msgspec.msgpack.decode(
            reply.data, type=Hi)

    both = await ask({"Corps-Corr": "order-42", "traceparent": TP})
    assert (both.corr, both.traceparent) == ("order-42", TP)
    traced = await ask({"traceparent": TP})
    assert (traced.corr, traced.traceparent) == (TRACE_ID, TP)
    first, second = await ask(None), await ask(None)
    assert first.corr != second.corr  # fresh per request: never the shared "ext-0" of before
    assert first.corr.startswith(f"ext-{actor_system.node}-")
    assert first.traceparent == ""
    counted = actor_system.metrics()["Greeter"]["bad_headers"]
    bad = await ask({"Corps-Corr": "x" * 500, "traceparent": "00-zz"})
    assert bad.corr.startswith("ext-")
    assert bad.traceparent == ""
    assert actor_system.metrics()["Greeter"]["bad_headers"] == counted + 2


async def test_a_callers_correlation_id_rides_on_its_tells(actor_system: ActorSystem, raw: Client) -> None:
    Greeter.seen = seen = Seen()
    ref = await actor_system.spawn(Greeter, "g")
    await raw.publish(ref.subject, as_json(Note("a")), headers={"Corps-Corr": "tell-1"})
    await raw.publish(ref.subject, msgspec.msgpack.encode(Note("b")), headers={"traceparent": TP})
    await raw.publish(ref.subject, as_json(Note("c")))
    await seen.wait_for(3)
    assert seen.items[:2] == [("a", "tell-1", ""), ("b", TRACE_ID, TP)]
    assert seen.items[2][1].startswith(f"ext-{actor_system.node}-")


# -- item 3: JSON events ------------------------------------------------------------------------


async def test_a_json_event_from_another_client_is_handled_with_its_correlation_id(
    actor_system: ActorSystem, raw: Client
) -> None:
    Greeter.seen = seen = Seen()
    await actor_system.spawn(Greeter, "g")
    js = raw.jetstream()
    subject = f"{actor_system.namespace}.events.Shouted"
    await js.publish(subject, b' {"$type": "Shouted", "text": "json"}', headers={"Corps-Corr": "ev-1"})
    await js.publish(subject, as_json(Shouted("traced")), headers={"traceparent": TP})
    await actor_system.publish(Shouted("msgpack"))
    await seen.wait_for(3)
    assert seen.items[0] == ("json", "ev-1", "")
    assert seen.items[1] == ("traced", TRACE_ID, TP)
    assert seen.items[2][0] == "msgpack"


async def test_hostile_json_events_are_dead_lettered_with_the_reason(actor_system: ActorSystem, raw: Client) -> None:
    Greeter.seen = seen = Seen()
    await actor_system.spawn(Greeter, "g")
    js = raw.jetstream()
    subject = f"{actor_system.namespace}.events.Shouted"
    hostile = [b'{"$type": "Shouted", "text": 5}', b'{"$type": "Shouted", ', b'{"$type": "Shouted", "text": "x", "k": '
               + DEEP_JSON_MAP + b"}", b"[1, 2]"]
    for data in hostile:
        await js.publish(subject, data)
    await js.publish(subject, as_json(Shouted("after")))
    await seen.wait_for(1)
    entries = await dead_letters_of(actor_system, len(hostile))
    assert [e.reason for e in entries] == ["undecodable"] * len(hostile)
    assert [e.data for e in entries] == hostile
    assert "Expected `str`, got `int`" in entries[0].error
    assert "truncated" in entries[1].error
    assert "RecursionError" in entries[2].error
    assert "Expected `object`, got `array`" in entries[3].error
    assert [s[0] for s in seen.items] == ["after"]


_EVENTS = EventDecoder(Shouted)
_VALID = [as_json(Shouted("x")), msgspec.msgpack.encode(Shouted("x")), b'\r\n {"$type":"Shouted","text":""}']


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(payloads(_VALID))
def test_the_event_decoder_gives_an_event_or_an_exception_for_any_bytes(data: bytes) -> None:
    try:
        event = _EVENTS.decode(data)
    except Exception:
        return
    assert isinstance(event, Shouted)


@given(st.text(max_size=40))
def test_json_and_msgpack_of_one_event_decode_alike(text: str) -> None:
    event = Shouted(text)
    assert _EVENTS.decode(as_json(event)) == _EVENTS.decode(msgspec.msgpack.encode(event)) == event


async def test_a_traceparent_in_a_frame_is_validated_like_a_header(actor_system: ActorSystem, raw: Client) -> None:
    ref = await actor_system.spawn(Greeter, "g")
    for trace, expected in ((TP, TP), ("00-not-a-trace\r\nInjected: 1", "")):
        frame = msgspec.msgpack.encode([(Hello("f"), 1, 1, "corr-f", "", "", trace)])
        reply = await raw.request(ref.subject, frame, timeout=5)  # a corps frame: a reply frame back
        ((_rid, ok, body),) = msgspec.msgpack.decode(reply.data)
        assert ok is True
        assert (body["corr"], body["traceparent"]) == ("corr-f", expected)
