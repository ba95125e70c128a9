"""Saga definitions: checked when the class is created, every problem listed in one error."""

from __future__ import annotations

import types
from typing import Any

import pytest

import corps.saga as saga_pkg
from corps import Actor, handler
from corps.core._messages import Message, Request
from corps.errors import SagaError
from corps.saga import NOTHING_TO_UNDO, Parallel, Retry, Saga, SagaDefinitionError, Step


class OrderInput(Message):
    order_id: str


class Reserved(Message):
    pass


class Reserve(Request[Reserved]):
    order_id: str


class Released(Message):
    pass


class Release(Request[Released]):
    order_id: str


class Inventory(Actor):
    @handler
    async def reserve(self, msg: Reserve) -> Reserved:
        return Reserved()

    @handler
    async def release(self, msg: Release) -> Released:
        return Released()


def step(name: str, **overrides: Any) -> Step:
    fields: dict[str, Any] = {
        "to": Inventory,
        "key": lambda s: s.input.order_id,
        "request": lambda s: Reserve(s.input.order_id),
        "undo": lambda s: Release(s.input.order_id),
    }
    fields.update(overrides)
    return Step(name, **fields)


def define(*steps: Any, input_type: Any = OrderInput, **attrs: Any) -> type[Saga[Any]]:
    """Create a saga class the way a class statement would, so __init_subclass__ runs."""
    return types.new_class("Order", (Saga[input_type],), exec_body=lambda ns: ns.update(steps=tuple(steps), **attrs))


def problems_of(*steps: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(SagaDefinitionError) as info:
        define(*steps, **kwargs)
    return info.value.problems


def test_a_valid_definition_reads_top_to_bottom_and_is_laid_out_in_stages() -> None:
    class PlaceOrder(Saga[OrderInput]):
        deadline = 60.0
        steps = (
            step("reserve", timeout=2.0, retry=Retry(3, interval=0.1, backoff_rate=2.0, max_delay=1.0)),
            Parallel(step("charge"), step("notify", undo=NOTHING_TO_UNDO, uncertain_is_safe=True)),
            step("confirm", pivot=True),
            step("ship", undo=NOTHING_TO_UNDO),
        )

    assert PlaceOrder.saga_name == "PlaceOrder"
    assert PlaceOrder.input_type is OrderInput
    assert [[s.name for s in stage] for stage in PlaceOrder.stages] == [
        ["reserve"],
        ["charge", "notify"],
        ["confirm"],
        ["ship"],
    ]
    assert PlaceOrder.pivot_stage == 2
    assert PlaceOrder.step_named("notify").compensatable is False
    with pytest.raises(KeyError):
        PlaceOrder.step_named("nope")


def test_definition_error_is_a_saga_error_and_a_type_error() -> None:
    with pytest.raises(SagaDefinitionError) as info:
        define()
    assert isinstance(info.value, SagaError)
    assert isinstance(info.value, TypeError)
    assert "Invalid saga Order for 1 reason" in str(info.value)


def test_empty_steps_are_refused() -> None:
    assert problems_of() == ["steps must be a non-empty tuple of Step and Parallel"]


def test_a_step_without_undo_is_refused() -> None:
    (problem,) = problems_of(step("reserve", undo=Step.__dataclass_fields__["undo"].default))
    assert "has no undo: pass undo=<function> or undo=NOTHING_TO_UNDO" in problem


def test_an_undo_that_is_neither_a_function_nor_the_sentinel_is_refused() -> None:
    (problem,) = problems_of(step("reserve", undo=None))
    assert "'undo' must be a function or NOTHING_TO_UNDO" in problem


@pytest.mark.parametrize("name", ["", "a b", "a:b", "x" * 65, "a.b"])
def test_a_step_name_that_is_not_a_plain_token_is_refused(name: str) -> None:
    (problem,) = problems_of(step(name))
    assert "step name must be" in problem


def test_duplicate_step_names_are_refused() -> None:
    (problem,) = problems_of(step("a"), Parallel(step("b"), step("a")))
    assert problem == "step name 'a' is used twice"


@pytest.mark.parametrize("timeout", [0, -1.0, float("inf"), float("nan"), "2"])
def test_a_non_positive_or_non_finite_timeout_is_refused(timeout: Any) -> None:
    (problem,) = problems_of(step("a", timeout=timeout))
    assert "timeout must be a finite number > 0" in problem


def test_a_compensatable_step_after_the_pivot_is_refused() -> None:
    (problem,) = problems_of(step("a", pivot=True), step("b"))
    assert "comes after the pivot 'a', so it is never compensated: its undo must be NOTHING_TO_UNDO" in problem


def test_only_one_pivot_and_never_inside_a_parallel_group() -> None:
    found = problems_of(
        step("a", pivot=True),
        Parallel(step("b", pivot=True, undo=NOTHING_TO_UNDO), step("c", undo=NOTHING_TO_UNDO)),
    )
    assert any("cannot be inside a Parallel group" in p for p in found)
    assert any("only one step can be the pivot" in p for p in found)


def test_a_step_after_the_pivot_needs_a_capped_backoff() -> None:
    (problem,) = problems_of(step("a", pivot=True), step("b", undo=NOTHING_TO_UNDO, retry=Retry(max_delay=None)))
    assert "needs a max_delay" in problem


def test_a_parallel_group_needs_two_steps() -> None:
    assert problems_of(Parallel(step("a"))) == ["a Parallel group needs at least 2 steps, not 1"]


def test_anything_but_steps_and_groups_is_refused() -> None:
    found = problems_of("reserve", Parallel(step("a"), "b"))  # type: ignore[arg-type]
    assert found == [
        "steps holds Step and Parallel only, not 'reserve'",
        "a Parallel group holds Steps only, not 'b'",
    ]


def test_the_input_type_must_be_a_message() -> None:
    (problem,) = problems_of(step("a"), input_type=int)
    assert "input type must be a Message subclass" in problem


def test_target_key_and_request_are_checked() -> None:
    found = problems_of(step("a", to="Inventory", key="", request=Reserve("o")))
    assert len(found) == 3
    assert any("'to' must be an Actor subclass, not 'Inventory'" in p for p in found)
    assert any("'key' '' is not an actor id: actor id must not be empty" in p for p in found)
    assert any("'request' must be a function" in p for p in found)


def test_a_constant_key_names_one_actor() -> None:
    class Fixed(Saga[OrderInput]):
        steps = (step("a", key="main"),)

    assert Fixed.step_named("a").actor_id(None) == "main"  # type: ignore[arg-type]


def test_bad_retry_policies_are_listed_with_their_step() -> None:
    found = problems_of(step("a", retry=Retry(max_attempts=0), undo_retry=Retry(jitter=-0.5)))
    assert found == [
        "step 'a': retry: max_attempts must be an int >= 1, not 0",
        "step 'a': undo_retry: jitter must be a number in [0, 1], not -0.5",
    ]


def test_a_retry_budget_over_the_deadline_is_refused() -> None:
    # 3 attempts x 2 s + delays 0.5 + 1.0 = 7.5 s, over a 7 s deadline.
    slow = step("a", timeout=2.0, retry=Retry(3, interval=0.5, backoff_rate=2.0))
    (problem,) = problems_of(slow, deadline=7.0)
    assert "can take 7.5s (attempts x timeout + retry delays), over the deadline of 7s" in problem
    define(slow, deadline=7.5)  # fits exactly


def test_the_deadline_covers_the_steps_up_to_the_pivot_and_the_slowest_of_a_group() -> None:
    fast = Retry(1)
    define(
        step("a", timeout=1.0, retry=fast),
        Parallel(step("b", timeout=1.0, retry=fast), step("c", timeout=3.0, retry=fast)),
        step("p", timeout=1.0, retry=fast, pivot=True),
        step("after", timeout=100.0, undo=NOTHING_TO_UNDO),  # retried to completion: not budgeted
        deadline=5.0,
    )
    (problem,) = problems_of(
        step("a", timeout=1.0, retry=fast),
        Parallel(step("b", timeout=1.0, retry=fast), step("c", timeout=3.5, retry=fast)),
        step("p", timeout=1.0, retry=fast, pivot=True),
        deadline=5.0,
    )
    assert "the steps up to the pivot can take 5.5s" in problem


def test_every_problem_is_listed_in_one_error() -> None:
    found = problems_of(
        step("a", undo=None, timeout=0),
        step("a", pivot=True),
        Parallel(step("b", undo=NOTHING_TO_UNDO)),
        step("c"),
        deadline=-1,
    )
    assert len(found) == 6, found
    joined = "\n".join(found)
    for expected in (
        "deadline must be",
        "at least 2 steps",
        "'undo' must be a function",
        "timeout must be",
        "used twice",
        "step 'c' comes after the pivot",
    ):
        assert expected in joined


def test_a_generic_intermediate_base_is_checked_in_its_subclasses() -> None:
    from typing import TypeVar

    In = TypeVar("In", bound=Message)

    class Audited(Saga[In]):  # no steps yet: not an error
        pass

    class Concrete(Audited[OrderInput]):
        steps = (step("a"),)

    assert Concrete.input_type is OrderInput
    with pytest.raises(SagaDefinitionError):

        class Empty(Audited[OrderInput]):
            pass


def test_public_names_are_exactly_all() -> None:
    # isidentifier(): pytest's assertion rewriting may add names such as "@py_builtins".
    public = {name for name in vars(saga_pkg) if not name.startswith("_") and name.isidentifier()}
    assert public == set(saga_pkg.__all__)


# -- what can be checked before a run: the target, a static key, the message types ----------------


class NotAnActor:
    async def reserve(self, msg: Reserve) -> Reserved:
        return Reserved()


class Stray(Request[Reserved]):
    order_id: str


def test_a_target_that_is_not_an_actor_class_is_refused() -> None:
    (problem,) = problems_of(step("reserve", to=NotAnActor))
    assert problem == f"step 'reserve': 'to' must be an Actor subclass, not {NotAnActor!r}"


@pytest.mark.parametrize("key", ["a.b", "ada.lovelace@example.com", "a b", "*", ">"])
def test_a_static_key_that_is_not_an_actor_id_is_refused(key: str) -> None:
    (problem,) = problems_of(step("reserve", key=key))
    assert problem.startswith(f"step 'reserve': 'key' {key!r} is not an actor id: ")


def test_a_request_type_the_target_has_no_handler_for_is_refused_when_it_can_be_known() -> None:
    def annotated(s: Any) -> Stray:
        return Stray(s.input.order_id)

    found = problems_of(step("a", request=annotated), step("b", request=lambda s: Stray(s.input.order_id)),
                        step("c", undo=lambda s: Reserved()))
    assert found[0] == ("step 'a': 'request': Inventory has no handler for Stray; it handles Release, Reserve")
    assert found[1].startswith("step 'b': 'request': it builds Stray (read from its code; annotate its return "
                               "type if that is wrong), and Inventory has no handler for it")
    assert len(found) == 2  # Reserved is no Request: the lambda names none, so the run checks it


def test_a_builder_whose_type_cannot_be_known_is_left_to_the_run() -> None:
    def base(s: Any) -> Message:
        return Stray(s.input.order_id)

    def pick(s: Any) -> Any:
        return Stray(s.input.order_id)

    define(step("a", request=base), step("b", request=lambda s: pick(s)))


def test_nothing_to_undo_up_to_the_pivot_needs_the_author_to_say_a_late_effect_is_safe() -> None:
    found = problems_of(step("check", undo=NOTHING_TO_UNDO), step("pay", undo=NOTHING_TO_UNDO, pivot=True),
                        step("ship", undo=NOTHING_TO_UNDO))  # after the pivot: never compensated, fine
    assert [p.split(" can end uncertain")[0] for p in found] == ["step 'check'", "step 'pay'"]
    assert "pass uncertain_is_safe=True if a late effect needs no undo" in found[0]
    define(step("check", undo=NOTHING_TO_UNDO, uncertain_is_safe=True),
           step("pay", undo=NOTHING_TO_UNDO, pivot=True, uncertain_is_safe=True), step("ship", undo=NOTHING_TO_UNDO))


def test_uncertain_is_safe_goes_with_nothing_to_undo_only() -> None:
    found = problems_of(step("a", uncertain_is_safe=True), step("b", undo=NOTHING_TO_UNDO, uncertain_is_safe="yes"))
    assert found == ["step 'a': uncertain_is_safe=True goes with undo=NOTHING_TO_UNDO only (it has an undo)",
                     "step 'b': uncertain_is_safe must be True or False, not 'yes'"]


def test_the_reference_place_order_compensates_every_step_it_can_give_up_on() -> None:
    from corps.examples.shop.orchestrated import PlaceOrder

    assert all(step.compensatable for stage in PlaceOrder.stages for step in stage)
