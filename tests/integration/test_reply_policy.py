"""A node answers only on reply subjects under the reply prefixes: no actor is a relay."""

from __future__ import annotations

import msgspec
import nats
from nats.aio.msg import Msg

from corps import ActorSystem, Security
from corps.wire._codec import WireCodec
from corps.wire._embedded import EmbeddedServer
from tests.integration.domain import Account, Deposit, GetBalance


async def test_a_request_whose_reply_subject_is_not_an_inbox_is_refused_unhandled_and_counted(
        nats_server: EmbeddedServer, actor_system: ActorSystem) -> None:
    ref = await actor_system.spawn(Account, "a")
    target = f"{actor_system.namespace}.events.Forged"  # what a relay would publish onto
    nc = await nats.connect(nats_server.url)
    try:
        relayed: list[bytes] = []

        async def record(msg: Msg) -> None:
            relayed.append(msg.data)

        sub = await nc.subscribe(target, cb=record)
        before = actor_system.dead_letters.count
        bare = msgspec.msgpack.encode(Deposit("a", 5))
        framed = WireCodec("msgpack").encode((Deposit("a", 7), 1, 1))  # a corps envelope: the fast path
        await nc.publish(ref.subject, bare, reply=target)
        await nc.publish(ref.subject, b"\x91" + framed, reply=target)
        await nc.flush()
        # Refusals are dead letters: wait (bounded) for both, then check the handler never ran.
        await actor_system.dead_letters.wait_for(before + 2)
        assert actor_system.metrics()["Account"]["misdirected"] == 2
        assert (await ref.ask(GetBalance("a"), timeout=2.0)).amount == 0
        await nc.flush()
        await sub.unsubscribe()
        assert relayed == []
        assert "is outside the reply prefixes" in actor_system.dead_letters.recent[-1].reason
        # A request from any NATS client (reply on _INBOX.) is still answered.
        reply = await nc.request(ref.subject, msgspec.msgpack.encode(GetBalance("a")), timeout=2)
        assert msgspec.msgpack.decode(reply.data)["amount"] == 0
    finally:
        await nc.close()


async def test_reply_prefixes_are_configurable(nats_server: EmbeddedServer, corps_namespace: str) -> None:
    async with ActorSystem(nats_server.url, namespace=corps_namespace, server_name=nats_server.server_name,
                           security=Security(reply_prefixes=())) as system:
        ref = await system.spawn(Account, "a")
        nc = await nats.connect(nats_server.url)
        try:
            before = system.dead_letters.count
            await nc.publish(ref.subject, msgspec.msgpack.encode(Deposit("a", 1)), reply="_INBOX.anyone.1")
            await nc.flush()
            await system.dead_letters.wait_for(before + 1)
            assert system.metrics()["Account"]["misdirected"] == 1
            assert (await ref.ask(GetBalance("a"), timeout=2.0)).amount == 0  # corps's own inbox still works
        finally:
            await nc.close()
