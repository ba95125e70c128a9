"""A step's command, built and checked before the engine records a send (runtime/saga/_command.py).

Whatever a step's key, request or undo gives that cannot be sent fails the step for good (no
retry), with a reason naming the step and the problem, and the saga compensates: the coordinator
is never handed a command it cannot send.
"""

from __future__ import annotations

from typing import Any

import msgspec

from corps.core._messages import Message, Request
from corps.saga import (
    Engine,
    Kind,
    Saga,
    SagaStatus,
    SendStep,
    SendUndo,
    Started,
    StepFailed,
    StepStatus,
    StepSucceeded,
)
from corps.testing import FaultPlan, run_pure
from tests.unit.saga.test_saga_engine import ORDER, Done, OrderInput, problems, step, undo_order


class Stray(Request[Done]):
    """A request no participant here handles."""


def stray(_: Any) -> Message:
    return Stray()  # built out of sight of the definition check, which reads a lambda's code


class Notice(Message):
    """A plain Message: it can be told, but a step asks."""


def sent(run: Any, name: str) -> list[SendStep]:
    return [c for t in run.turns for c in t.commands if isinstance(c, SendStep) and c.step == name]


def test_a_key_that_is_not_an_actor_id_fails_its_step_for_good_and_compensates() -> None:
    class Welcome(Saga[OrderInput]):
        steps = (step("reserve"), step("welcome", key=lambda s: "ada.lovelace@example.com"))

    run = run_pure(Welcome, ORDER, FaultPlan())
    assert run.state.status is SagaStatus.COMPENSATED
    assert sent(run, "welcome") == []  # the coordinator never sees it
    welcome = run.state.step("welcome")
    assert welcome is not None
    assert (welcome.status, welcome.attempt) == (StepStatus.FAILED, 1)  # no retry, and nothing applied
    assert run.state.reason == ("step 'welcome' could not be built: its key gave 'ada.lovelace@example.com', "
                                "which is not an actor id: actor id must not contain '.' ('.', '*', '>', whitespace)")
    assert undo_order(run.state) == ["reserve"]
    assert problems(run, Welcome) == []


def test_a_key_function_that_raises_fails_its_step_for_good() -> None:
    class Broken(Saga[OrderInput]):
        steps = (step("reserve"), step("charge", key=lambda s: s.input.missing))

    run = run_pure(Broken, ORDER, FaultPlan())
    assert run.state.status is SagaStatus.COMPENSATED
    assert "step 'charge' could not be built: building the key raised AttributeError" in (run.state.reason or "")
    assert sent(run, "charge") == []
    assert problems(run, Broken) == []


def test_a_request_its_target_has_no_handler_for_fails_for_good_naming_what_it_handles() -> None:
    class Unhandled(Saga[OrderInput]):
        steps = (step("reserve"), step("charge", request=stray))

    run = run_pure(Unhandled, ORDER, FaultPlan())
    assert run.state.status is SagaStatus.COMPENSATED
    charge = run.state.step("charge")
    assert charge is not None
    assert charge.attempt == 1
    assert "its request: Participant has no handler for Stray; it handles Do, Undo" in (run.state.reason or "")
    assert sent(run, "charge") == []


def test_a_plain_message_or_a_non_message_as_request_fails_for_good() -> None:
    for build, expected in ((lambda s: Notice(), "Notice is not a Request[...]"),
                            (lambda s: "do it", "its request must be a Message, not str")):

        class Odd(Saga[OrderInput]):
            steps = (step("reserve"), step("charge", request=build))

        run = run_pure(Odd, ORDER, FaultPlan())
        assert run.state.status is SagaStatus.COMPENSATED
        assert expected in (run.state.reason or "")


def test_a_compensation_its_target_has_no_handler_for_fails_the_saga_without_sending_it() -> None:
    class BadUndo(Saga[OrderInput]):
        steps = (step("reserve", undo=stray), step("charge"))

    engine = Engine(BadUndo)
    state, _ = engine.advance(None, Started.of("s-1", ORDER, at=0.0))
    state, _ = engine.advance(state, StepSucceeded(step="reserve", attempt=1, reply=msgspec.msgpack.encode(Done()),
                                                   at=1.0))
    state, commands = engine.advance(state, StepFailed(step="charge", attempt=1, error_type="StepRejected",
                                                       message="no", terminal=True, at=2.0))
    assert not any(isinstance(c, SendUndo) for c in commands)
    assert state.status is SagaStatus.FAILED
    assert "Participant has no handler for Stray" in (state.reason or "")


def test_resuming_a_step_that_was_sent_to_no_address_gives_it_up_as_never_applied() -> None:
    """A saga logged by a coordinator that sent 'welcome' to an id that is no address (and died of
    it): a coordinator resuming it fails the step for good, and compensates what completed."""

    class Welcome(Saga[OrderInput]):
        steps = (step("reserve"), step("welcome", key=lambda s: "ada.lovelace@example.com"))

    class Twin(Saga[OrderInput]):  # what the old coordinator ran: the same steps, an id it did not check
        saga_name = "Welcome"
        steps = (step("reserve"), step("welcome", key="placeholder"))

    twin = Engine(Twin)
    state, _ = twin.advance(None, Started.of("s-1", ORDER, at=0.0))
    state, _ = twin.advance(state, StepSucceeded(step="reserve", attempt=1, reply=msgspec.msgpack.encode(Done()),
                                                 at=1.0))
    logged = msgspec.structs.replace(state, steps=tuple(
        msgspec.structs.replace(s, actor_id="ada.lovelace@example.com") if s.name == "welcome" else s
        for s in state.steps))
    new, commands = Engine(Welcome).resume(logged, at=50.0)
    welcome = new.step("welcome")
    assert welcome is not None
    assert welcome.status is StepStatus.FAILED  # it could never have reached anyone
    assert [(type(c), c.step) for c in commands] == [(SendUndo, "reserve")]
    assert [t.kind for t in new.history[len(logged.history):]][:2] == [Kind.REJECTED, Kind.GAVE_UP]


def test_a_request_that_may_have_applied_but_cannot_be_retried_is_compensated() -> None:
    """StepFailed(terminal, uncertain): a participant that could not decode the request, or a reply
    we could not decode; the coordinator cannot tell which, so the step is undone all the same."""

    class Two(Saga[OrderInput]):
        steps = (step("reserve"), step("charge"))

    engine = Engine(Two)
    state, _ = engine.advance(None, Started.of("s-1", ORDER, at=0.0))
    state, _ = engine.advance(state, StepSucceeded(step="reserve", attempt=1, reply=msgspec.msgpack.encode(Done()),
                                                   at=1.0))
    state, commands = engine.advance(state, StepFailed(step="charge", attempt=1, error_type="InvalidMessage",
                                                       message="cannot decode", terminal=True, uncertain=True,
                                                       at=2.0))
    charge = state.step("charge")
    assert charge is not None
    assert (charge.status, charge.attempt) == (StepStatus.UNCERTAIN, 1)
    assert [(type(c), c.step) for c in commands] == [(SendUndo, "charge")]
