"""The observer hook: none, one or several observers; a Fanout calls each and ends in reverse."""

from __future__ import annotations

from typing import Any

import pytest

from corps.core._observe import Fanout, Observer, combine


class Rec(Observer):
    def __init__(self, name: str, log: list[str], tp: str = "") -> None:
        self.name, self.log, self.tp = name, log, tp

    def send_begin(self, subject: str, msg: Any, ask: bool) -> Any:
        self.log.append(f"begin {self.name}")
        return self.name

    def send_end(self, token: Any, error: BaseException | None) -> None:
        self.log.append(f"end {token}")

    def traceparent(self) -> str:
        return self.tp


def test_none_one_or_several_observers() -> None:
    log: list[str] = []
    a, b = Rec("a", log), Rec("b", log, "tp-b")
    assert combine(None) is None
    assert combine([]) is None
    assert combine(a) is a
    assert combine([a]) is a
    both = combine([a, b])
    assert isinstance(both, Fanout)
    token = both.send_begin("s", None, False)
    both.send_end(token, None)
    assert log == ["begin a", "begin b", "end b", "end a"]
    assert both.traceparent() == "tp-b"


def test_something_that_is_no_observer_is_refused() -> None:
    with pytest.raises(TypeError, match="corps Observer"):
        combine([object()])  # type: ignore[list-item]
