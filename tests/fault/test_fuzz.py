"""The fault suite's fuzz: at least 10,000 hypothesis-generated and mutated payloads (deep nesting,
truncation, wrong shapes, sizes up to the payload limit, JSON) against an actor subject, a reply
inbox and an event subject of live systems (tests/integration/test_hostile_fuzz.py's rounds, at
scale). Every request is answered, and each system still answers an ask and handles an event.
"""

from __future__ import annotations

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corps.core._run import uvloop_available
from corps.testing._profiles import examples
from corps.wire._embedded import EmbeddedServer
from tests.hostile import HUGE, payloads
from tests.integration.test_hostile_fuzz import VALID, Batch, fuzz_round

ROUNDS = 20
PER_ROUND = 500  # 20 x (500 + 1 or 2 near 1 MB + DEEP) >= 10,000 payloads, each sent three ways

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(300)]


@st.composite
def big_batches(draw: st.DrawFn) -> Batch:
    return Batch(draw(st.lists(payloads(VALID), min_size=PER_ROUND, max_size=PER_ROUND)),
                 draw(st.lists(st.sampled_from(HUGE), min_size=1, max_size=2)))


@settings(max_examples=examples(ROUNDS), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(big_batches())
def test_ten_thousand_fuzzed_payloads_never_silence_a_system(nats_server: EmbeddedServer, batch: Batch) -> None:
    assert len(batch.payloads) > PER_ROUND
    anyio.run(fuzz_round, nats_server, batch.payloads, backend="asyncio",
              backend_options={"use_uvloop": uvloop_available()})
