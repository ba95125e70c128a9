"""Fuzzing a live system: generated and mutated payloads on an actor subject, the reply inbox and an
event subject, from a plain nats-py client. Every request gets a reply, and afterwards the system
still answers an ask and handles an event (each round is a fresh system on the session server).
"""

from __future__ import annotations

from uuid import uuid4

import anyio
import nats
import nats.errors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corps import ActorSystem
from corps.core._intake import decode
from corps.core._run import uvloop_available
from corps.testing._profiles import examples
from corps.wire._codec import Reply, encode_as
from corps.wire._embedded import EmbeddedServer
from corps.wire._subjects import inbox_subject
from corps.wire._transport import flush
from tests.hostile import DEEP, HUGE, frame, payloads, tells
from tests.integration.domain import Balance, GetBalance
from tests.integration.events_domain import Log, Noted, Recorder
from tests.integration.test_hostile_input import Blob, Stash, Vault

VALID = [
    frame(encode_as(Blob("v", {"k": [1, {"x": None}]}), False), rid=1),
    frame(encode_as(Stash({"a": 1}), False), encode_as(GetBalance("v"), False), rid=2),
    encode_as(Blob("v", {"k": "v"}), False),
    encode_as(GetBalance("v"), True),
    frame(encode_as(Stash({}), True), rid=3, is_json=True),
    encode_as([Reply(1, True, Balance("v", 1))], False),
    encode_as(Noted("n", 1), False),
    tells(encode_as(Stash({"t": 1}), False), encode_as(Stash({}), False), base=9),
    tells(encode_as(Stash({"j": 2}), True), base=4, is_json=True),
]


def wants_reply(payload: bytes) -> bool:
    """Whether a request with this payload must be answered: anything refused, and any ask. A frame
    of valid tells (a mutation can make one) is handled and not answered, as from any sender."""
    try:
        intake = decode(Vault._decoders, Vault.options.max_message_bytes, payload, True)
    except Exception:
        return True
    return bool(intake.problems) or any(env.rid for env in intake.envelopes)


async def fuzz_round(server: EmbeddedServer, batch: list[bytes]) -> None:
    namespace = f"fz{uuid4().hex[:10]}"
    Recorder.log = log = Log()
    async with ActorSystem(server.url, namespace=namespace, server_name=server.server_name) as system:
        vault = await system.spawn(Vault, "v")
        await system.spawn(Recorder, "r")
        inbox = inbox_subject(namespace, system.node)
        raw = await nats.connect(server.url)
        try:
            js = raw.jetstream()
            for n, payload in enumerate(batch):
                if wants_reply(payload):
                    try:
                        await raw.request(vault.subject, payload, timeout=2)
                    except nats.errors.TimeoutError:
                        why = f"no reply to a request of {len(payload)} bytes: {payload[:60]!r}"
                        raise AssertionError(why) from None
                else:
                    await raw.publish(vault.subject, payload)
                await raw.publish(f"{inbox}.{n}", payload)
                await js.publish(f"{namespace}.events.Noted", payload)
            await flush(raw)
        finally:
            await raw.close()
        with anyio.fail_after(5):
            assert isinstance(await vault.ask(GetBalance("v"), timeout=2.0), Balance)
        await system.publish(Noted("after-fuzz", 0))
        await log.wait_until(lambda: ("after-fuzz", 0) in log.seen, timeout=10)
        assert system._nc.read_loop_restarts == 0


class Batch:
    """The payloads of one round, with a short repr: a failing example can hold megabytes."""

    def __init__(self, *parts: list[bytes]) -> None:
        self.payloads = [DEEP] + [p for part in parts for p in part]  # DEEP: the simplest example is hostile too

    def __repr__(self) -> str:
        return (f"Batch({len(self.payloads)} payloads, {sum(map(len, self.payloads))} bytes, first "
                f"{[p[:16] for p in self.payloads[:4]]})")


@st.composite
def batches(draw: st.DrawFn) -> Batch:  # composite, not builds: hypothesis prints builds' arguments in full
    return Batch(draw(st.lists(payloads(VALID), min_size=80, max_size=120)),
                 draw(st.lists(st.sampled_from(HUGE), min_size=1, max_size=2)))  # near 1 MB: slow to store


@settings(max_examples=examples(5), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(batches())
def test_fuzzed_payloads_never_silence_a_system(nats_server: EmbeddedServer, batch: Batch) -> None:
    anyio.run(fuzz_round, nats_server, batch.payloads, backend="asyncio",
              backend_options={"use_uvloop": uvloop_available()})
