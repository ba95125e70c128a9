"""Acks and pull requests leave during a mailbox run, not after it.

A mailbox runs a whole pull batch in one loop iteration. Written only at the end of it, the acks
(and the next pull request) reached the server after the last handler, and the server, at
``max_ack_pending``, delivered nothing meanwhile: server and client took turns (measured: the
consumer's queue started each run with the whole batch, 500, and acks went out 500 at a time).

The watchers subscribe behind corps's ``flush``, not nats-py's ``flush()``: that one pings ahead of
the SUB still in the client's buffer, and on a loaded machine the server took the PUBs before the
SUB and dropped them for want of interest (nothing arrived: ``next_msg`` timed out; see
test_flush_barrier.py). Delivery itself is quick: 129 messages in 2.7 ms (median), 91 ms at worst
in 9000 runs with 2 to 4 busy loops on 2 cores, so 5 s per message bounds a stuck write only.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import nats

from corps import ActorSystem, EventsConfig
from corps.events._wire import WRITE_EVERY, AckBuffer
from corps.wire._transport import flush
from tests.integration.events_domain import Log, Noted, RunWatcher


async def test_ack_buffer_writes_every_write_every_answers_behind_what_nats_py_holds(nats_server: Any) -> None:
    nc = await nats.connect(nats_server.url)
    watcher = await nats.connect(nats_server.url)
    try:
        sub = await watcher.subscribe("ackflow.>")
        await flush(watcher)  # the server holds the SUB (nats-py's flush() may ping ahead of it)
        await nc.publish("ackflow.first", b"x")  # queued in nats-py's buffer, its flusher not run yet
        acks = AckBuffer(nc)
        for i in range(WRITE_EVERY - 1):
            acks.add(f"ackflow.{i}", b"+ACK")
        assert nc._pending  # below the threshold: waits for the end of the loop iteration
        acks.add("ackflow.last", b"+ACK")
        assert not nc._pending  # written now, nothing awaited
        assert nc._pending_data_size == 0
        got = [(await sub.next_msg(5.0)).subject for _ in range(WRITE_EVERY + 1)]
        assert got == ["ackflow.first", *(f"ackflow.{i}" for i in range(WRITE_EVERY - 1)), "ackflow.last"]
    finally:
        await nc.close()
        await watcher.close()


async def test_the_next_pull_request_leaves_during_a_mailbox_run(nats_server: Any, corps_namespace: str) -> None:
    RunWatcher.log = log = Log()
    RunWatcher.seen = []
    loop = asyncio.get_running_loop()

    def tick() -> None:  # counts loop iterations: events noted under one count ran in one iteration
        RunWatcher.iteration += 1
        handle[0] = loop.call_soon(tick)

    handle = [loop.call_soon(tick)]
    cfg = EventsConfig(batch=50, max_ack_pending=100)
    try:
        async with ActorSystem(nats_server.url, namespace=corps_namespace, events=cfg) as system:
            for n in range(400):
                await system.publish(Noted("k", n))
            await system.spawn(RunWatcher, "w")
            await log.wait_for(400)
            assert [n for _, n in log.seen] == list(range(400))  # each once, in stream order
            assert system.events.consumers["RunWatcher"].stalls == 0
    finally:
        handle[0].cancel()
    runs: dict[int, set[int]] = {}
    for iteration, token in RunWatcher.seen:
        runs.setdefault(iteration, set()).add(token)
    assert any(len(tokens) > 1 for tokens in runs.values()), RunWatcher.seen  # asked for more mid-run


async def test_ack_buffer_leaves_a_full_socket_to_nats_py_flusher(nats_server: Any, monkeypatch: Any) -> None:
    from corps.events import _wire

    monkeypatch.setattr(_wire, "WRITE_NOW_LIMIT", 0)  # as if the socket's buffer were full
    nc = await nats.connect(nats_server.url)
    watcher = await nats.connect(nats_server.url)
    try:
        sub = await watcher.subscribe("ackfull.>")
        await flush(watcher)  # the server holds the SUB (nats-py's flush() may ping ahead of it)
        acks = AckBuffer(nc)
        for i in range(WRITE_EVERY):
            acks.add(f"ackfull.{i}", b"+ACK")
        assert nc._pending  # not written past the flusher, which awaits the socket's drain
        queue = nc._flush_queue
        assert queue is not None
        assert not queue.empty()  # ... but woken: else they wait for nc's next command or the server's PING
        got = [(await sub.next_msg(5.0)).subject for _ in range(WRITE_EVERY)]  # ... and it writes them
        assert got == [f"ackfull.{i}" for i in range(WRITE_EVERY)]
    finally:
        await nc.close()
        await watcher.close()


async def test_interleaved_publishes_answers_and_pull_requests_reach_the_server_once_in_buffer_order(
        nats_server: Any, monkeypatch: Any) -> None:
    """Any mix of nats-py publishes, answers, commands (pull requests) and loop turns, with the socket
    taken as having room or as full: each message arrives exactly once, in the order of this model
    of the buffer: a publish goes behind what is written; answers wait in the buffer until the end
    of the loop iteration, ``WRITE_EVERY`` of them, or a command, and then go out behind everything
    written before (never ahead of a publish made before them). Seeded: each run is the same."""
    from corps.events import _wire

    nc = await nats.connect(nats_server.url)
    watcher = await nats.connect(nats_server.url)
    try:
        sub = await watcher.subscribe("ackmix.>")
        await flush(watcher)
        expected: list[str] = []
        for seed in range(24):
            rnd = random.Random(seed)
            monkeypatch.setattr(_wire, "WRITE_NOW_LIMIT", rnd.choice((0, _wire.WRITE_NOW_LIMIT)))
            acks = AckBuffer(nc)
            held: list[str] = []  # the model's buffer of answers
            for step in range(rnd.randrange(50, 400)):
                subject = f"ackmix.{seed}.{step}"
                op = rnd.choices(("publish", "answer", "command", "turn"), (20, 70, 3, 7))[0]
                if op == "publish":
                    await nc.publish(subject, b"p")
                    expected.append(subject)
                elif op == "answer":
                    acks.add(subject, b"+ACK")
                    held.append(subject)
                    if len(held) >= WRITE_EVERY:
                        expected += held
                        held = []
                elif op == "command":
                    acks.add_command(b"PUB %b 1\r\nc\r\n" % subject.encode())
                    expected += [*held, subject]
                    held = []
                else:
                    await asyncio.sleep(0)  # one loop turn: the end-of-iteration write runs (and the flusher may)
                    expected += held
                    held = []
            await asyncio.sleep(0)
            expected += held
        got = [(await sub.next_msg(5.0)).subject for _ in expected]
        assert got == expected
        await flush(nc)  # the server routed all nc wrote ...
        await flush(watcher)  # ... and the watcher read it before this PONG
        assert sub.pending_msgs == 0  # nothing twice
    finally:
        await nc.close()
        await watcher.close()
