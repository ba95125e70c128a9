"""@on_event's declared types against the handler's parameter annotation, checked when the class is created."""

from __future__ import annotations

import pytest

from corps import Actor, ActorDefinitionError, Message, on_event
from corps.events._classes import event_handlers_of


class CarHeld(Message):
    car: str


class CarReleased(Message):
    car: str


class VanHeld(CarHeld):
    pass


def test_a_declared_type_the_parameter_annotation_does_not_take_is_refused() -> None:
    with pytest.raises(ActorDefinitionError) as caught:

        class Cars(Actor):
            @on_event(CarHeld)
            async def released(self, event: CarReleased) -> None: ...

    (problem,) = caught.value.problems
    assert problem == ("event handler 'released' is declared for CarHeld, but its parameter 'event' is annotated "
                       "CarReleased: the handler would get an event of a type it does not take")


def test_each_declared_type_is_checked_against_a_union_annotation() -> None:
    with pytest.raises(ActorDefinitionError) as caught:

        class Cars(Actor):
            @on_event(CarHeld, CarReleased, VanHeld)
            async def held(self, event: CarHeld) -> None: ...

    (problem,) = caught.value.problems
    assert "declared for CarReleased, but its parameter 'event' is annotated CarHeld" in problem


def test_subclasses_unions_and_the_message_base_are_accepted() -> None:
    class Fleet(Actor):
        @on_event(CarHeld, VanHeld)
        async def held(self, event: CarHeld) -> None: ...

        @on_event(CarReleased)
        async def released(self, event: CarReleased | None) -> None: ...

    class Audit(Actor):
        @on_event(CarHeld, CarReleased)
        async def anything(self, event: Message) -> None: ...

    assert set(event_handlers_of(Fleet)) == {CarHeld, VanHeld, CarReleased}
    assert set(event_handlers_of(Audit)) == {CarHeld, CarReleased}
