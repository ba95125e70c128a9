"""Route (runtime/wire/_client.py): what waits for the slow path is bounded; beyond, it is shed."""

from __future__ import annotations

from typing import Any

from corps.wire._client import Route


class _Msg:
    def __init__(self, data: bytes) -> None:
        self.data = data


async def _never(msg: Any) -> None:
    pass


def _route(shed: list[bytes], **bounds: int) -> Route:
    return Route(lambda s, r, d, h: False, _never, lambda s, r, d: shed.append(d), **bounds)


async def test_beyond_max_pending_messages_are_shed_in_the_parser_and_counted() -> None:
    shed: list[bytes] = []
    route = _route(shed, max_pending=2, max_bytes=1_000)
    assert [route.take(b"s", b"", b"%d" % i, None) for i in range(4)] == [False, False, True, True]
    assert shed == [b"2", b"3"]
    assert (route.pending, route.shed_count) == (2, 2)
    await route.cb(_Msg(b"0"))  # the slow path caught up with one: room for one more
    assert route.take(b"s", b"", b"4", None) is False
    assert route.pending == 2


def test_beyond_max_bytes_messages_are_shed() -> None:
    shed: list[bytes] = []
    route = _route(shed, max_pending=100, max_bytes=10)
    assert route.take(b"s", b"", b"x" * 6, None) is False
    assert route.take(b"s", b"", b"y" * 6, None) is True  # 12 bytes would be over the bound
    assert route.take(b"s", b"", b"z" * 4, None) is False
    assert shed == [b"y" * 6]
    assert route.pending_bytes == 10


def test_a_taken_message_never_counts_against_the_bounds() -> None:
    route = Route(lambda s, r, d, h: True, _never, max_pending=1, max_bytes=1)
    assert all(route.take(b"s", b"", b"payload", None) for _ in range(10))
    assert (route.pending, route.pending_bytes, route.shed_count) == (0, 0, 0)
