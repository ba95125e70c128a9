"""The handler table (runtime/core/_handlers.py) and its validation when an Actor class is created.

No ``from __future__ import annotations`` here: handler annotations are evaluated where they are
written, so the actors below may be defined inside the test functions.
"""

import pytest

from corps import Actor, ActorDefinitionError, ActorOptions, CorpsError, Message, Request, handler


class Balance(Message):
    amount: int


class Receipt(Message):
    note: str


class Deposit(Request[Balance]):
    amount: int


class Withdraw(Request[Balance]):
    amount: int


class Ping(Message):
    n: int


class Account(Actor):
    @handler
    async def deposit(self, msg: Deposit) -> Balance:
        return Balance(msg.amount)

    @handler
    async def withdraw(self, msg: Withdraw) -> Balance:
        return Balance(-msg.amount)

    @handler
    async def ping(self, msg: Ping) -> None:
        pass


def _twin() -> type[Message]:
    class Twin(Message):
        n: int

    return Twin


TwinA = _twin()
TwinB = _twin()  # another class with the same name, hence the same wire tag


def test_a_valid_actor_maps_each_message_type_to_its_handler() -> None:
    table = Account._handlers
    assert set(table) == {Deposit, Withdraw, Ping}
    assert table[Deposit].name == "deposit"
    assert table[Deposit].reply is Balance
    assert table[Ping].reply is None
    assert Account._dispatch[Withdraw] is Account.withdraw
    assert Account.actor_name == "Account"


def test_an_actor_without_handlers_is_valid() -> None:
    class Idle(Actor):
        pass

    assert Idle._handlers == {}
    assert Idle._decoders is None


def _problems(make_class: object) -> list[str]:
    assert callable(make_class)
    with pytest.raises(ActorDefinitionError) as info:
        make_class()
    return info.value.problems


def test_a_sync_handler_is_refused() -> None:
    def make() -> None:
        class Bad(Actor):
            @handler  # type: ignore[type-var]
            def ping(self, msg: Ping) -> None:
                pass

    assert _problems(make) == ["handler 'ping' must be async"]


def test_two_handlers_for_one_message_type_are_refused() -> None:
    def make() -> None:
        class Bad(Actor):
            @handler
            async def ping(self, msg: Ping) -> None:
                pass

            @handler
            async def ping_again(self, msg: Ping) -> None:
                pass

    (problem,) = _problems(make)
    assert "Ping is handled by both 'ping' and 'ping_again'" in problem


def test_a_handler_returning_another_type_than_its_request_names_is_refused() -> None:
    def make() -> None:
        class Bad(Actor):
            @handler
            async def deposit(self, msg: Deposit) -> Receipt:
                return Receipt("no")

    (problem,) = _problems(make)
    assert "'deposit' returns Receipt" in problem
    assert "expects a Balance reply" in problem


def test_a_handler_without_a_return_annotation_is_refused() -> None:
    def make() -> None:
        class Bad(Actor):
            @handler
            async def deposit(self, msg: Deposit):  # type: ignore[no-untyped-def]
                return Balance(1)

    (problem,) = _problems(make)
    assert "'deposit' has no return annotation" in problem
    assert "Balance" in problem


def test_a_handler_for_a_non_message_parameter_is_refused() -> None:
    def make() -> None:
        class Bad(Actor):
            @handler
            async def count(self, msg: int) -> None:
                pass

    (problem,) = _problems(make)
    assert "'count'" in problem
    assert "must be annotated with a Message subclass, not int" in problem


def test_a_handler_with_two_message_parameters_is_refused() -> None:
    def make() -> None:
        class Bad(Actor):
            @handler
            async def ping(self, msg: Ping, other: Ping) -> None:
                pass

    (problem,) = _problems(make)
    assert "exactly one message parameter" in problem


def test_a_plain_message_handler_returning_a_value_is_refused() -> None:
    def make() -> None:
        class Bad(Actor):
            @handler
            async def ping(self, msg: Ping) -> Balance:
                return Balance(1)

    (problem,) = _problems(make)
    assert "'ping' returns Balance" in problem
    assert "Ping is not a Request" in problem


def test_init_with_required_arguments_is_refused() -> None:
    def make() -> None:
        class Bad(Actor):
            def __init__(self, balance: int) -> None:
                self.balance = balance

    (problem,) = _problems(make)
    assert "__init__ must take no arguments" in problem


def test_init_with_only_optional_arguments_is_allowed() -> None:
    class Fine(Actor):
        def __init__(self, balance: int = 0) -> None:
            self.balance = balance

    assert Fine._handlers == {}


def test_a_sync_on_start_is_refused() -> None:
    def make() -> None:
        class Bad(Actor):
            def on_start(self) -> None:  # type: ignore[override]
                pass

    assert _problems(make) == ["on_start must be async"]


def test_every_problem_is_listed_in_one_error() -> None:
    with pytest.raises(ActorDefinitionError) as info:

        class Bad(Actor):
            def __init__(self, x: int) -> None:
                pass

            def on_stop(self) -> None:  # type: ignore[override]
                pass

            @handler  # type: ignore[type-var]
            def ping(self, msg: Ping) -> None:
                pass

            @handler
            async def deposit(self, msg: Deposit) -> Receipt:
                return Receipt("")

            @handler
            async def count(self, msg: int) -> None:
                pass

    assert len(info.value.problems) == 5
    assert info.value.name.endswith("Bad")
    assert "for 5 reasons: " in str(info.value)
    for problem in info.value.problems:
        assert problem in str(info.value)


def test_one_problem_is_reported_in_the_singular() -> None:
    with pytest.raises(ActorDefinitionError, match="for 1 reason: "):

        class Bad(Actor):
            async def on_start(self) -> None:
                pass

            def on_stop(self) -> None:  # type: ignore[override]
                pass


def test_a_subclass_inherits_its_bases_handlers() -> None:
    class Savings(Account):
        pass

    assert set(Savings._handlers) == {Deposit, Withdraw, Ping}
    assert Savings._dispatch[Deposit] is Account.deposit


def test_a_subclass_may_override_a_handler_by_name() -> None:
    class Audited(Account):
        @handler
        async def deposit(self, msg: Deposit) -> Balance:
            return Balance(msg.amount * 2)

    assert Audited._dispatch[Deposit] is Audited.deposit
    assert Audited._dispatch[Withdraw] is Account.withdraw
    assert Account._dispatch[Deposit] is Account.deposit


def test_a_subclass_handling_a_handled_type_under_a_new_name_is_refused() -> None:
    def make() -> None:
        class Bad(Account):
            @handler
            async def deposit_twice(self, msg: Deposit) -> Balance:
                return Balance(0)

    (problem,) = _problems(make)
    assert "Deposit is handled by both" in problem


def test_two_message_classes_with_one_tag_fail_at_class_creation() -> None:
    assert TwinA.__name__ == TwinB.__name__

    def make() -> None:
        class Bad(Actor):
            @handler
            async def a(self, msg: TwinA) -> None:  # type: ignore[valid-type]
                pass

            @handler
            async def b(self, msg: TwinB) -> None:  # type: ignore[valid-type]
                pass

    (problem,) = _problems(make)
    assert "cannot be decoded together" in problem
    assert "unique `tag`" in problem


def test_a_name_option_that_is_not_one_subject_token_is_refused() -> None:
    def make() -> None:
        class Bad(Actor, options=ActorOptions(name="bad.name")):
            pass

    (problem,) = _problems(make)
    assert "actor name" in problem
    assert "'.'" in problem


def test_the_name_option_replaces_the_class_name_in_subjects() -> None:
    class Renamed(Actor, options=ActorOptions(name="ledger")):
        pass

    assert Renamed.actor_name == "ledger"
    assert Renamed.options.name == "ledger"


def test_options_that_are_not_actor_options_are_refused() -> None:
    def make() -> None:
        class Bad(Actor, options={"mailbox_size": 1}):  # type: ignore[arg-type]
            pass

    (problem,) = _problems(make)
    assert "options must be an ActorOptions, not dict" in problem


def test_actor_definition_error_is_a_type_error_and_a_corps_error() -> None:
    assert issubclass(ActorDefinitionError, TypeError)
    assert issubclass(ActorDefinitionError, CorpsError)
