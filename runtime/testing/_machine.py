"""``SagaMachine``: a hypothesis ``RuleBasedStateMachine`` base that tests *your* saga end to end.

Subclass it, name your saga, its participants and an input strategy; hypothesis then starts
sagas under random fault plans, crashes and restarts the coordinator, pauses it past its lease
while a standby coordinator takes its sagas over (and resumes it), redelivers step requests,
checks the safety invariants after every step, and at teardown heals every fault, drains, and
checks everything (termination, exact compensation, one owner, lost/unexpected, your domain).

Hypothesis state machines are synchronous; corps is async. Each example opens an anyio
*blocking portal* (``anyio.from_thread.start_blocking_portal``: an event loop, uvloop where
installed, in a thread of its own) and runs the :class:`SagaWorld` there; every rule is one
``portal.call(...)``. The loop, the world and its namespace live for one example and are closed
in ``teardown``. Run it with :func:`run_saga_machine`, which hands it the plugin's server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar

import anyio.from_thread
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from corps.core._actor import Actor
from corps.core._run import uvloop_available
from corps.saga import Saga
from corps.testing._checks import DomainCheck, InvariantViolation, check_saga_invariants, saga_shape
from corps.testing._history import History
from corps.testing._plans import CoordinatorCrash, FaultPlan
from corps.testing._strategies import crash_points, fault_plans, step_names
from corps.testing._world import SagaWorld
from corps.wire._embedded import EmbeddedServer

T = TypeVar("T")


class SagaMachine(RuleBasedStateMachine):
    """Subclass and set ``saga``, ``participants``, ``inputs`` (and maybe ``plans``, timings).

    Override :meth:`check_domain` for conservation-style checks (it runs on the world's loop,
    after the drain, and returns violations).
    """

    saga: ClassVar[type[Saga[Any]]]
    participants: ClassVar[Sequence[tuple[type[Actor], str]]] = ()
    inputs: ClassVar[st.SearchStrategy[Any]]
    plans: ClassVar[st.SearchStrategy[FaultPlan] | None] = None
    """Default: ``fault_plans(step names, crashes=False)`` (crashes come from the crash rule)."""
    step_timeout: ClassVar[float] = 0.3
    """Your saga's step timeout (keep it short: timeout faults wait 1.5x it)."""
    lease: ClassVar[float] = 0.5
    drain_timeout: ClassVar[float] = 20.0
    server: ClassVar[EmbeddedServer | None] = None
    """Set by :func:`run_saga_machine` (or yourself): the nats-server to run on."""

    sagas = Bundle("sagas")

    def __init__(self) -> None:
        super().__init__()
        if self.server is None:
            raise RuntimeError("no server: run the machine with run_saga_machine(Machine, nats_server)")
        self.history = History()
        self._stack = contextlib.ExitStack()
        backend_options = {"use_uvloop": uvloop_available()}
        self.portal = self._stack.enter_context(
            anyio.from_thread.start_blocking_portal("asyncio", backend_options=backend_options))
        self.world = SagaWorld(self.server.url, self.server.server_name, [self.saga], self.participants,
                               step_timeout=self.step_timeout, lease=self.lease, history=self.history,
                               standby=True)
        self._stack.enter_context(self.portal.wrap_async_context_manager(self.world))
        self._stages, self._undoable = saga_shape(self.saga)
        self.armed = False

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` on the world's loop and return its result; a call that takes
        longer than the drain timeout plus 20 s fails (TimeoutError) instead of hanging the run."""
        result: T = self.portal.call(_within, self.drain_timeout + 20.0, fn, *args)
        return result

    # -- rules ------------------------------------------------------------------------------

    @rule(target=sagas, data=st.data())
    def start_saga(self, data: st.DataObject) -> str:
        plans = self.plans if self.plans is not None else fault_plans(step_names(self.saga), crashes=False)
        saga_input = data.draw(self.inputs, label="input")
        plan = data.draw(plans, label="plan")
        return self.call(self.world.start, self.saga, saga_input, plan)

    # Preconditions read only what the rules themselves set: whether an armed crash has fired
    # yet depends on timing, and a precondition that depends on timing makes hypothesis's
    # replay (and so its shrinking) flaky.

    @precondition(lambda self: not self.armed)
    @rule(crash=crash_points(max_skip=2))
    def crash_coordinator(self, crash: CoordinatorCrash) -> None:
        self.call(self.world.arm, crash)
        self.armed = True

    @precondition(lambda self: self.armed)
    @rule()
    def restart_coordinator(self) -> None:
        """Start a fresh coordinator if the armed one has crashed (a no-op while it lives)."""
        self.call(self.world.restart)
        self.armed = False

    @precondition(lambda self: not self.world.paused)
    @rule(target=sagas, data=st.data())
    def pause_coordinator_mid_saga(self, data: st.DataObject) -> str:
        """Start a saga and pause the coordinator (no lease renewals, its writes stall): after
        the lease the standby takes the saga over, and the paused one's writes once resumed
        must lose their compare-and-set (the one-owner check reads every write)."""
        plans = self.plans if self.plans is not None else fault_plans(step_names(self.saga), crashes=False)
        saga_input = data.draw(self.inputs, label="input")
        plan = data.draw(plans, label="plan")
        return self.call(_start_then_pause, self.world, self.saga, saga_input, plan)

    @precondition(lambda self: self.world.paused)
    @rule(seconds=st.sampled_from([0.0, 0.7, 1.2]))
    def resume_coordinator(self, seconds: float) -> None:
        """Resume after ``seconds`` more (past the lease, the standby has taken over meanwhile)."""
        self.call(anyio.sleep, seconds)
        self.call(self.world.resume)

    @rule(saga_id=sagas, step=st.integers(0, 16))
    def redeliver(self, saga_id: str, step: int) -> None:
        names = step_names(self.saga)
        self.call(self.world.redeliver, f"{saga_id}:{names[step % len(names)]}")

    @rule(seconds=st.sampled_from([0.05, 0.2]))
    def let_time_pass(self, seconds: float) -> None:
        self.call(anyio.sleep, seconds)

    # -- checks -----------------------------------------------------------------------------

    @invariant()
    def safety(self) -> None:
        self.call(self.world.observe)
        self._check(final=False)

    def teardown(self) -> None:
        try:
            self.call(self.world.drain, self.drain_timeout)
            domain = self.call(self.check_domain, self.world)
            self._check(final=True, domain=[lambda _h: domain])
        finally:
            self._stack.close()

    def _check(self, *, final: bool, domain: Sequence[DomainCheck] = ()) -> None:
        problems = check_saga_invariants(self.history, stages=self._stages, compensatable=self._undoable,
                                         domain=domain, final=final)
        if problems:
            raise InvariantViolation([*problems, "history:\n" + self.history.format()], self.history)

    async def check_domain(self, world: SagaWorld) -> list[str]:
        """Your domain invariants after the drain (conservation...): violations, empty if fine."""
        return []


async def _start_then_pause(world: SagaWorld, saga: type[Saga[Any]], saga_input: Any, plan: FaultPlan) -> str:
    """One call on the world's loop: no gap in which the saga could finish before the pause."""
    saga_id = await world.start(saga, saga_input, plan)
    await world.pause()
    return saga_id


async def _within(seconds: float, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    with anyio.fail_after(seconds):
        return await fn(*args)


def run_saga_machine(machine: type[SagaMachine], server: EmbeddedServer, *,
                     settings: settings | None = None) -> None:
    """Run ``machine`` as a test on ``server`` (the plugin's ``nats_server`` fixture)."""
    machine.server = server
    try:
        run_state_machine_as_test(machine, settings=settings)
    finally:
        machine.server = None
