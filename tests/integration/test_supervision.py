"""Supervision policies: resume (default), restart with backoff and a budget, stop."""

from __future__ import annotations

import anyio
import pytest

from corps import ActorSystem, NoResponders, RemoteError
from tests.integration.domain import Account, Boom, Deposit, GetBalance, RestartingAccount, StoppingAccount


async def test_resume_keeps_the_instance_and_its_state(actor_system: ActorSystem) -> None:
    ref = await actor_system.spawn(Account, "r")
    await ref.tell(Deposit("r", 3))
    for _ in range(3):
        with pytest.raises(RemoteError):
            await ref.ask(Boom("again"), timeout=2.0)
    assert (await ref.ask(GetBalance("r"), timeout=2.0)).amount == 3
    assert actor_system.metrics()["Account"]["restarts"] == 0


async def test_restart_replaces_the_instance_and_runs_on_start_again(actor_system: ActorSystem) -> None:
    RestartingAccount.starts = 0
    ref = await actor_system.spawn(RestartingAccount, "r")
    assert RestartingAccount.starts == 1
    await ref.tell(Deposit("r", 3))
    with pytest.raises(RemoteError, match="crash"):
        await ref.ask(Boom("crash"), timeout=2.0)
    # The next message waits for the restart (after its backoff) and sees a fresh instance.
    assert (await ref.ask(GetBalance("r"), timeout=2.0)).amount == 0
    assert RestartingAccount.starts == 2
    assert actor_system.metrics()["RestartingAccount"]["restarts"] == 1


async def test_restart_budget_spent_stops_the_instance(actor_system: ActorSystem) -> None:
    RestartingAccount.starts = 0
    ref = await actor_system.spawn(RestartingAccount, "r")
    for _ in range(3):  # max_restarts=2 within 60 s: the third failure stops it
        with pytest.raises(RemoteError):
            await ref.ask(Boom("crash"), timeout=2.0)
    with pytest.raises(NoResponders):
        await ref.ask(GetBalance("r"), timeout=2.0)
    assert actor_system.metrics()["RestartingAccount"] == {
        **actor_system.metrics()["RestartingAccount"], "restarts": 2, "stopped": 1, "failed": 3}
    assert RestartingAccount.starts == 3


async def test_stop_policy_stops_after_the_first_failure_and_calls_on_stop(actor_system: ActorSystem) -> None:
    StoppingAccount.stopped = []
    ref = await actor_system.spawn(StoppingAccount, "s")
    other = await actor_system.spawn(StoppingAccount, "other")
    with pytest.raises(RemoteError):
        await ref.ask(Boom("fatal"), timeout=2.0)
    with pytest.raises(NoResponders):
        await ref.ask(GetBalance("s"), timeout=2.0)
    assert StoppingAccount.stopped == ["s"]
    assert (await other.ask(GetBalance("other"), timeout=2.0)).amount == 0  # siblings unaffected
    # A stopped id can be spawned again.
    again = await actor_system.spawn(StoppingAccount, "s")
    assert (await again.ask(Deposit("s", 1), timeout=2.0)).amount == 1


async def test_a_stop_mid_frame_answers_the_rest_of_the_frame_no_responders(actor_system: ActorSystem) -> None:
    """Boom and three deposits travel in one frame, one batch of the mailbox: the instance stops on
    Boom, and the deposits behind it in that batch are answered, not dropped (they would time out)."""
    StoppingAccount.stopped = []
    ref = await actor_system.spawn(StoppingAccount, "mid")
    outcomes: dict[int, object] = {}

    async def ask(i: int, msg: Boom | Deposit) -> None:
        try:
            outcomes[i] = await ref.ask(msg, timeout=5.0)
        except Exception as exc:  # the outcome is what the test checks
            outcomes[i] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(ref.tell, Deposit("mid", 100))  # published at once: the next four share a frame
        tg.start_soon(ask, 0, Boom("fatal"))
        for i in range(1, 4):
            tg.start_soon(ask, i, Deposit("mid", 1))
    assert isinstance(outcomes[0], RemoteError)
    assert [type(outcomes[i]) for i in range(1, 4)] == [NoResponders] * 3
    assert actor_system.metrics()["StoppingAccount"]["processed"] == 1  # the first deposit only
    assert StoppingAccount.stopped == ["mid"]
