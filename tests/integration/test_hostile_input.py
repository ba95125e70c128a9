"""Hostile bytes at every entry point: the process keeps answering, and each one gets its typed outcome.

The outage: msgspec raises RecursionError (not a msgspec error) on a payload nested ~1,000 deep,
and corps decodes on its hot paths inside nats-py's protocol parser, whose read loop stops on
such an exception: the process was deaf until ping timeouts forced a reconnect (~40 s). Each
test sends the bytes from a plain nats-py client (anyone on the bus), then asks the system a
normal question: that ask is the barrier, and its answer is the proof the process still reads.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import anyio
import msgspec
import nats
import pytest
from nats.aio.client import Client

from corps import Actor, ActorSystem, EventError, InvalidMessage, Message, Request, handler
from corps.events._wire import DLQ_PREFIX
from corps.wire._codec import ErrorReply, Reply
from corps.wire._embedded import EmbeddedServer
from corps.wire._subjects import inbox_subject, presence_subject
from corps.wire._transport import connect, flush
from tests.hostile import DEEP, DEEP_JSON, DEEP_JSON_MAP, DEEP_MAP, HOLE, error_in, filled, frame
from tests.integration.domain import GATES, Balance, Gate, GetBalance, Hold, Slow
from tests.integration.events_domain import DeadLetterWatch, Log, Noted, Recorder

encode = msgspec.msgpack.encode


class Blob(Request[Balance]):
    """A ``dict[str, Any]`` field: decoded without a schema, so nesting reaches msgspec's recursion."""

    account: str
    data: dict[str, Any]


class Stash(Message):
    data: dict[str, Any]


class Vault(Actor):
    def __init__(self) -> None:
        self.stashed = 0

    @handler
    async def blob(self, msg: Blob) -> Balance:
        return Balance(self.id, len(msg.data))

    @handler
    async def stash(self, msg: Stash) -> None:
        self.stashed += 1

    @handler
    async def get(self, msg: GetBalance) -> Balance:
        return Balance(self.id, self.stashed)


DEEP_BLOB = filled(Blob("v", {"k": HOLE}), DEEP)
DEEP_STASH = filled(Stash({"k": HOLE}), DEEP)
DEEP_UNKNOWN = filled({"$type": "GetBalance", "account": "v", "extra": HOLE}, DEEP_MAP)
"""Any class is exposed: msgspec skips an unknown field recursively."""

REQUESTS = {
    "frame, dict field 2000 deep (fast path)": frame(DEEP_BLOB, rid=1),
    "frame, unknown field 2000 deep (fast path)": frame(DEEP_UNKNOWN, rid=1),
    "bare, dict field 2000 deep": DEEP_BLOB,
    "bare, unknown field 2000 deep": DEEP_UNKNOWN,
    "json, dict field 2000 deep": filled(Blob("v", {"k": HOLE}), DEEP_JSON, is_json=True),
    "array 2000 deep (slow path)": DEEP,
    "map 2000 deep": DEEP_MAP,
    "json array 2000 deep": DEEP_JSON,
    "json map 2000 deep": DEEP_JSON_MAP,
    "[[1]]": b"\x91\x91\x01",
    "json [[1]]": b"[[1]]",
    "truncated frame": frame(encode(GetBalance("v")), rid=1)[:-4],
    "truncated message": encode(GetBalance("v"))[:-3],
    "envelope is a map": b"\x91" + encode(GetBalance("v")),
    "rid is a string": b"\x92\x92" + encode(GetBalance("v")) + encode("x"),
    "json envelope is a number": b"[1]",
}


@pytest.fixture
async def raw(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    """A plain nats-py client: anyone on the bus."""
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def still_answers(system: ActorSystem, stashed: int = 0) -> None:
    """The barrier: a normal ask, answered within a second or two, not after ~40 s of deafness."""
    with anyio.fail_after(3):
        assert await system.ref(Vault, "v").ask(GetBalance("v"), timeout=2.0) == Balance("v", stashed)


@pytest.mark.parametrize("payload", REQUESTS.values(), ids=REQUESTS.keys())
async def test_a_hostile_request_gets_invalid_message_and_the_process_keeps_answering(
        actor_system: ActorSystem, raw: Client, payload: bytes) -> None:
    ref = await actor_system.spawn(Vault, "v")
    reply = await raw.request(ref.subject, payload, timeout=2)
    err = error_in(reply.data)
    assert err["kind"] == "InvalidMessage"
    assert err["message"]
    await still_answers(actor_system)
    assert actor_system.metrics()["Vault"]["invalid"] >= 1
    letter = actor_system.dead_letters.recent[-1]
    assert letter.reason.startswith("InvalidMessage: ")
    assert letter.payload
    assert letter.payload in payload


async def test_deep_nesting_is_named_in_the_error(actor_system: ActorSystem, raw: Client) -> None:
    ref = await actor_system.spawn(Vault, "v")
    reply = await raw.request(ref.subject, DEEP_BLOB, timeout=2)
    assert "nested too deeply to decode (RecursionError" in error_in(reply.data)["message"]


TELLS = {
    "frame, dict field 2000 deep (fast path)": frame(DEEP_STASH),
    "frame, unknown field 2000 deep (fast path)": frame(filled({"$type": "Stash", "data": {}, "x": HOLE}, DEEP)),
    "bare, dict field 2000 deep": DEEP_STASH,
    "json, dict field 2000 deep": filled(Stash({"k": HOLE}), DEEP_JSON, is_json=True),
    "array 2000 deep": DEEP,
    "[[1]]": b"\x91\x91\x01",
    "truncated": frame(encode(Stash({})))[:-2],
}


@pytest.mark.parametrize("payload", TELLS.values(), ids=TELLS.keys())
async def test_a_hostile_tell_is_dead_lettered_with_its_payload(
        actor_system: ActorSystem, raw: Client, payload: bytes) -> None:
    ref = await actor_system.spawn(Vault, "v")
    await raw.publish(ref.subject, payload)
    await flush(raw)  # the server holds it for the system before the barrier ask is sent
    await still_answers(actor_system)
    letter = actor_system.dead_letters.recent[-1]
    assert letter.subject == ref.subject
    assert letter.reason.startswith("InvalidMessage: ")
    assert letter.payload
    assert letter.payload in payload


async def test_a_tell_and_an_ask_after_a_hostile_one_in_the_same_stream_are_handled(
        actor_system: ActorSystem, raw: Client) -> None:
    await actor_system.spawn(Vault, "v")
    ref = actor_system.ref(Vault, "v")
    for payload in (frame(DEEP_STASH), DEEP_STASH, encode(Stash({"ok": 1}))):  # the first on the fast path
        await raw.publish(ref.subject, payload)
    await flush(raw)
    await still_answers(actor_system, stashed=1)
    assert all(route.pending == 0 for route in actor_system._nc._routes.values())


INBOX_GARBAGE = {
    "array 2000 deep": DEEP,
    "map 2000 deep": DEEP_MAP,
    "json 2000 deep": DEEP_JSON,
    "a reply whose body is 2000 deep": filled([Reply(1, True, HOLE)], DEEP),
    "[[1]]": b"\x91\x91\x01",
    "truncated": encode([Reply(1, True, Balance("v", 1))])[:-3],
    "a map": encode({"a": 1}),
    "empty": b"",
    "not msgpack": b"\xc1\xc1",
}


async def test_garbage_on_the_reply_inbox_is_counted_and_dropped(actor_system: ActorSystem, raw: Client) -> None:
    """Anyone may publish on ``{ns}.inbox.{node}.>``: every ask of the process is answered there."""
    await actor_system.spawn(Vault, "v")
    inbox = inbox_subject(actor_system.namespace, actor_system.node)
    for n, payload in enumerate(INBOX_GARBAGE.values()):
        await raw.publish(f"{inbox}.{n}", payload)
        await raw.publish(f"{inbox}.t{n}", payload)
    await flush(raw)
    await still_answers(actor_system)  # its reply arrives on the inbox after all of them
    assert actor_system._inbox.undecodable == 2 * len(INBOX_GARBAGE)
    assert actor_system.metrics()["system"]["undecodable_replies"] == 2 * len(INBOX_GARBAGE)


async def test_a_malformed_reply_to_a_pending_ask_fails_that_ask_with_invalid_message(
        actor_system: ActorSystem, raw: Client) -> None:
    inbox = inbox_subject(actor_system.namespace, actor_system.node)
    forged = [  # an ErrorReply whose size is not a number: int("²") raised ValueError in the parser
        (False, ErrorReply("MailboxFull", "²", "full")),
        (True, {"$type": "Balance", "account": 5}),  # the wrong shape for the reply type
    ]
    failures: dict[int, InvalidMessage] = {}
    gates: list[Gate] = []

    async def ask(n: int, name: str) -> None:
        with pytest.raises(InvalidMessage) as info:
            await actor_system.ref(Slow, f"s{n}").ask(Hold(name), timeout=5.0)
        failures[n] = info.value

    async with anyio.create_task_group() as tg:
        for n, (ok, body) in enumerate(forged):
            await actor_system.spawn(Slow, f"s{n}")
            name = f"hold-{uuid4().hex}"
            GATES[name] = gate = Gate()
            gates.append(gate)
            before = set(actor_system._inbox._pending)
            tg.start_soon(ask, n, name)
            with anyio.fail_after(3):
                await gate.entered.wait()  # the ask is pending: its handler holds it
            (rid,) = set(actor_system._inbox._pending) - before
            await raw.publish(f"{inbox}.1", encode([Reply(rid, ok, body)]))
    assert "malformed error reply: MailboxFull of size '²'" in str(failures[0])
    assert "reply does not decode as Balance" in str(failures[1])
    assert actor_system._inbox.bad_replies == 1
    for gate in gates:
        gate.release.set()


async def test_presence_ignores_and_counts_what_is_not_join_here_or_leave(
        actor_system: ActorSystem, raw: Client) -> None:
    """Anyone may publish on ``{ns}.host.{Class}.>``: garbage must neither raise nor become a peer."""
    await actor_system.spawn(Vault, "v")
    presence = actor_system._hosts[Vault]._presence
    assert presence is not None
    subject = f"{presence_subject(actor_system.namespace, 'Vault')}.all"
    garbage = [DEEP, b"join " + DEEP, b"\xff\xfe", b"join a.b", b"join " + b"x" * 300, b"here ", b"hello world"]
    for payload in garbage:
        await raw.publish(subject, payload)
    reply = await raw.request(subject, b"join peer-1", timeout=2)  # answered in order: after all of them
    assert reply.data == b"here " + actor_system.node.encode()
    assert presence.peers == {"peer-1"}  # not "a.b", "", "xxx...": a garbage peer puts the class in shared mode
    assert presence.ignored == len(garbage)
    await still_answers(actor_system)


async def test_a_subject_that_is_not_utf8_costs_one_message_not_the_connection(
        actor_system: ActorSystem, nats_server: EmbeddedServer) -> None:
    """nats-py decodes each subject to str inside its parser; bytes that are not UTF-8 raised there."""
    ref = await actor_system.spawn(Vault, "v")
    host, port = nats_server.url.removeprefix("nats://").rsplit(":", 1)
    async with await anyio.connect_tcp(host, int(port)) as sock:
        await sock.receive()  # INFO
        prefix = f"{actor_system.namespace}.actor.Vault.".encode()
        await sock.send(b'CONNECT {"verbose":false}\r\n'
                        b"PUB " + prefix + b"\xff\xfe 2\r\nhi\r\n"  # the route fails on the subject
                        b"PUB " + prefix + b"nobody \xff\xfe 2\r\nhi\r\n"  # declined, then nats-py fails on the reply
                        b"PING\r\n")
        with anyio.fail_after(2):
            while b"PONG" not in await sock.receive():
                pass
    await flush(actor_system._nc)  # read after both
    await still_answers(actor_system)
    assert ref.subject
    assert actor_system._nc.dropped == 2
    assert actor_system.metrics()["system"]["dropped_messages"] == 2
    assert all(route.pending == 0 for route in actor_system._nc._routes.values())


async def test_if_the_read_loop_stops_anyway_the_client_reconnects_at_once(nats_server: EmbeddedServer) -> None:
    nc = await connect([nats_server.url], "read-loop-guard")
    reconnected = anyio.Event()
    inner = nc._reconnected_cb
    assert inner is not None

    async def on_reconnect() -> None:
        reconnected.set()
        await inner()

    nc._reconnected_cb = on_reconnect
    parse = nc._ps.parse

    async def broken(data: bytes = b"") -> None:  # a bug anywhere under the parser
        nc._ps.parse = parse  # type: ignore[method-assign]
        raise RuntimeError("a bug in the parser")

    async def echo(msg: Any) -> None:
        await msg.respond(msg.data)

    try:
        await nc.subscribe("guard.echo", cb=echo)
        await flush(nc)
        nc._ps.parse = broken  # type: ignore[method-assign]
        await nc.publish("guard.echo", b"poke")  # the server's MSG back hits the broken parser
        with anyio.fail_after(5):  # without the guard: PING_INTERVAL x MAX_OUTSTANDING_PINGS = 30 s
            await reconnected.wait()
        assert (await nc.request("guard.echo", b"hi", timeout=2)).data == b"hi"
        assert nc.read_loop_restarts == 1
    finally:
        await nc.close()


DEEP_NOTED = filled({"$type": "Noted", "key": "deep", "n": 1, "extra": HOLE}, DEEP_MAP)


async def dead_letters_of(system: ActorSystem, count: int) -> list[Any]:
    async def enough() -> bool:
        return len(await system.events.dead_letters()) >= count

    watch = await DeadLetterWatch().start(system)
    try:
        await watch.wait_until(enough, timeout=5)
    finally:
        await watch.stop()
    return await system.events.dead_letters()


async def test_an_event_nested_too_deeply_is_dead_lettered_at_once_and_the_next_is_processed(
        actor_system: ActorSystem, raw: Client) -> None:
    Recorder.log = log = Log()
    await actor_system.spawn(Recorder, "r")
    js = raw.jetstream()
    await js.publish(f"{actor_system.namespace}.events.Noted", DEEP_NOTED)
    await js.publish(f"{actor_system.namespace}.events.Noted", DEEP)
    await actor_system.publish(Noted("ok", 1))
    await log.wait_for(1, timeout=5)
    entries = await dead_letters_of(actor_system, 2)
    assert [e.reason for e in entries] == ["undecodable", "undecodable"]
    assert [e.attempts for e in entries] == [1, 1]  # at once: not once per redelivery
    assert [e.data for e in entries] == [DEEP_NOTED, DEEP]
    assert "nested too deeply to decode (RecursionError" in entries[0].error
    assert actor_system.metrics()["Recorder"]["undecodable"] == 2
    await still_answers_events(actor_system, log)


async def still_answers_events(system: ActorSystem, log: Log) -> None:
    await system.publish(Noted("after", 2))
    await log.wait_until(lambda: ("after", 2) in log.seen, timeout=5)


def corps(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "corps.cli._main", *args], capture_output=True, text=True, timeout=60)


async def test_dead_letter_tools_work_with_an_entry_nested_too_deeply_and_one_with_forged_headers(
        actor_system: ActorSystem, raw: Client) -> None:
    """Listing, showing, redriving and tailing: none raises on what an entry or event holds."""
    Recorder.log = log = Log()
    await actor_system.spawn(Recorder, "r")
    ns = actor_system.namespace
    js = raw.jetstream()
    corps_like = {DLQ_PREFIX + "Subject": f"{ns}.events.Noted", DLQ_PREFIX + "Consumer": "Recorder",
                  DLQ_PREFIX + "Stream": f"{ns}_events", DLQ_PREFIX + "Seq": "1", DLQ_PREFIX + "Attempts": "1",
                  DLQ_PREFIX + "Reason": "undecodable", DLQ_PREFIX + "Error": "RecursionError",
                  DLQ_PREFIX + "At": "1700000000.0"}
    deep = (await js.publish(f"{ns}.dlq.Recorder", DEEP_NOTED, headers=corps_like)).seq
    forged = (await js.publish(f"{ns}.dlq.Recorder", DEEP, headers={DLQ_PREFIX + "Seq": "x",
                                                                    DLQ_PREFIX + "At": "nan"})).seq
    entries = {e.dlq_seq: e for e in await actor_system.events.dead_letters()}
    assert entries[deep].event_type == "?"
    assert entries[deep].problem == ""
    assert "Corps-Dlq-Seq is not a number: 'x'" in entries[forged].problem
    assert await actor_system.events.dead_letter(forged) == entries[forged]
    with pytest.raises(EventError, match="cannot be redriven"):
        await actor_system.events.redrive(forged)
    where = ["--nats", actor_system.url, "--namespace", ns]
    listed = await anyio.to_thread.run_sync(lambda: corps("dlq", "list", *where))
    assert listed.returncode == 0, listed.stderr
    assert "2 dead letter(s)" in listed.stdout
    assert "unreadable entry: no Corps-Dlq-Subject header" in listed.stdout
    assert "Corps-Dlq-Seq is not a number: 'x'" in listed.stdout
    shown = await anyio.to_thread.run_sync(lambda: corps("dlq", "show", str(forged), *where))
    assert shown.returncode == 0, shown.stderr
    assert "payload   b'\\x91\\x91" in shown.stdout
    # The deep one is redriven; the consumer dead-letters it again at once (it still does not decode).
    assert (await actor_system.events.redrive(deep)) == entries[deep]
    again = await dead_letters_of(actor_system, 2)
    assert [(e.dlq_seq > forged, e.reason, e.data) for e in again] == [
        (False, "", DEEP), (True, "undecodable", DEEP_NOTED)]
    redriven = await anyio.to_thread.run_sync(lambda: corps("dlq", "redrive", "--all", "--keep", *where))
    assert redriven.returncode == 1
    assert f"not redriven {forged}: dead letter {forged} cannot be redriven" in redriven.stdout
    assert f"redriven {again[1].dlq_seq}: ? for Recorder" in redriven.stdout
    # A deep event in the event stream does not stop a replay (corps events tail).
    await actor_system.publish(Noted("tail", 1))
    tail = await anyio.to_thread.run_sync(lambda: corps("events", "tail", ">", "--all", "--no-follow", *where))
    assert tail.returncode == 0, tail.stderr
    assert '"undecodable":' in tail.stdout  # shown for what it is, never skipped silently
    assert '"key":"tail"' in tail.stdout
    await log.wait_until(lambda: ("tail", 1) in log.seen, timeout=5)
