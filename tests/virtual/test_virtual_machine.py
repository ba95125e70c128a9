"""A hypothesis state machine over join / leave / kill / pause / message steps, with real corps
node processes on a real nats-server: after every step, per-id order and single activation hold
(from the replies), and at the end from every node's activation and handled history.

Hypothesis state machines are synchronous: each example runs its event loop in a blocking portal
(as ``corps.testing.SagaMachine`` does). Few, short examples by default; ``--soak`` runs more.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any, ClassVar

import anyio.from_thread
import nats.js.errors
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from corps import ActorSystem, EmbeddedServer
from corps.virtual._membership import members_bucket
from tests.fault.procs import Nodes
from tests.fault.world import wait_for
from tests.virtual.hosts import VNode, vnode
from tests.virtual.load import (
    Load,
    double_handling_problems,
    overlap_problems,
    read_history,
    single_activation_problems,
)

pytestmark = [pytest.mark.slow]

MAX_NODES = 4


class VirtualMachine(RuleBasedStateMachine):
    server: ClassVar[EmbeddedServer]
    workdir: ClassVar[Path]

    def __init__(self) -> None:
        super().__init__()
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        self.ns = f"vm{uuid.uuid4().hex[:8]}"
        self.dir = self.workdir / self.ns
        self.dir.mkdir()
        self.nodes = Nodes(self.server.url, self.ns, self.dir)
        self.alive: list[VNode] = []
        self.killed: set[str] = set()
        self.paused: VNode | None = None
        self.count = 0
        # Entered and left in one task of the portal's loop (a task group must be).
        self._client_cm = self.portal.wrap_async_context_manager(ActorSystem(self.server.url, namespace=self.ns))
        self.client = self._client_cm.__enter__()
        self.load = Load(self.client, "s", [f"k{i}" for i in range(40)], timeout=1.5)
        self.portal.call(self._start)

    def _node(self) -> VNode:
        i = self.count
        self.count += 1
        return vnode(self.nodes, f"v{i}", "--ttl", "1.5", "--grace", "0.2")

    async def _start(self) -> None:
        first = self._node()
        await first.start()
        self.alive.append(first)

    def _resume(self) -> None:
        if self.paused is not None:
            self.paused.signal(signal.SIGCONT)
            self.paused = None

    @rule()
    @precondition(lambda self: len(self.alive) < MAX_NODES)
    def join(self) -> None:
        self._resume()
        n = self._node()
        self.portal.call(n.start)
        self.alive.append(n)

    @rule(data=st.data())
    @precondition(lambda self: len(self.alive) > 1)
    def leave(self, data: Any) -> None:
        self._resume()
        n = data.draw(st.sampled_from(self.alive))
        self.alive.remove(n)
        self.portal.call(n.stop)

    @rule(data=st.data())
    @precondition(lambda self: len(self.alive) > 1)
    def kill(self, data: Any) -> None:
        self._resume()
        n = data.draw(st.sampled_from(self.alive))
        self.alive.remove(n)
        self.killed.add(n.node_id)
        n.kill()

    @rule(data=st.data())
    @precondition(lambda self: len(self.alive) > 1 and self.paused is None)
    def pause(self, data: Any) -> None:
        self.paused = data.draw(st.sampled_from(self.alive))
        self.paused.signal(signal.SIGSTOP)

    @rule(data=st.data())
    @precondition(lambda self: len(self.alive) > 1 and self.paused is None)
    def lapse(self, data: Any) -> None:
        """Pause a node past its lease: the server expires its record, the others take its ids."""
        self.paused = data.draw(st.sampled_from(self.alive))
        self.paused.signal(signal.SIGSTOP)
        self.portal.call(self._expired, self.paused.node_id)

    async def _expired(self, node_id: str) -> None:
        kv = await self.client._nc.jetstream().key_value(members_bucket(self.ns))

        async def gone() -> bool:
            try:
                await kv.get(node_id)
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                return True
            return False
        await wait_for(gone, 30, "the paused node's membership record expired")

    @rule()
    def message(self) -> None:
        self.portal.call(self.load.round)

    @invariant()
    def order_and_single_activation(self) -> None:
        assert self.load.problems() == []

    def teardown(self) -> None:
        try:
            self._resume()
            self.portal.call(self._settle)
            for n in self.alive:  # a barrier: a node resumed last records its fenced activations
                self.portal.call(n.stop)  # when its loop runs again; a drained node has run them
            handled, changes = read_history(sorted(self.dir.glob("v*.jsonl")))
            assert single_activation_problems(handled, changes) == []
            assert double_handling_problems(handled) == []
            assert overlap_problems(changes, frozenset(self.killed)) == []
        finally:
            self._client_cm.__exit__(None, None, None)
            self.portal.call(self.nodes.__aexit__, None, None, None)
            self._portal_cm.__exit__(None, None, None)

    async def _settle(self) -> None:
        async def answered() -> bool:
            await self.load.round()
            return all(rs[-1][1] is not None for rs in self.load.replies.values())
        await wait_for(answered, 30, "every id answers once the faults are healed")
        assert self.load.problems() == []



def test_join_leave_kill_pause_message(nats_server: EmbeddedServer, tmp_path: Path, soak: bool) -> None:
    VirtualMachine.server = nats_server
    VirtualMachine.workdir = tmp_path
    run_state_machine_as_test(VirtualMachine, settings=settings(
        max_examples=8 if soak else 1, stateful_step_count=12 if soak else 6, deadline=None))
