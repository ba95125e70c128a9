"""What a shell or a network hands the CLI is untrusted: JSON arguments, HTTP probe requests, node
reports and stored events. Any input ends in a typed outcome, never another exception."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corps import InvalidMessage, NotProvisioned
from corps.cli._common import EXIT_CODES, exit_code
from corps.cli._http import MAX_CLIENTS, _answer, serve_http
from corps.errors import (
    AskTimeout,
    CorpsError,
    MailboxFull,
    NatsUnavailable,
    NoResponders,
    RemoteError,
    SagaNotFound,
)
from corps.examples.shop.messages import GetStock, OrderPlaced
from corps.tools._inspect import Tailed
from corps.tools._resolve import decode

json_like = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                         lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20)


@given(st.text() | st.builds(lambda v: __import__("json").dumps(v), json_like))
def test_any_json_argument_decodes_or_is_invalid_message(text: str) -> None:
    for tp in (GetStock, OrderPlaced):
        try:
            msg: object = decode(tp, text, "s")
        except InvalidMessage as exc:
            msg = exc
        assert isinstance(msg, tp) or (isinstance(msg, InvalidMessage) and msg.subject == "s")


def test_deep_nesting_and_oversized_json_are_invalid_messages() -> None:
    with pytest.raises(InvalidMessage):
        decode(OrderPlaced, '{"order": ' + "[" * 200_000, "s")
    with pytest.raises(InvalidMessage, match="over the"):
        decode(GetStock, " " * (1024 * 1024 + 1), "s")
    assert decode(GetStock, '{"sku": "a"}', "s") == GetStock("a")
    assert decode(GetStock, '{"$type": "GetStock", "sku": "a"}', "s") == GetStock("a")


@given(st.binary(max_size=300))
def test_any_http_request_gets_a_status(head: bytes) -> None:
    async def answer() -> int:
        reader = asyncio.StreamReader(limit=8192)
        reader.feed_data(head + b"\r\n\r\n")
        reader.feed_eof()
        status, _ = await _answer(reader, {"/readyz": lambda: (200, {})})
        return status

    assert asyncio.run(answer()) in (200, 400, 404, 405, 431)


@given(st.binary(max_size=200), st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=4))
def test_any_stored_event_can_be_tailed(data: bytes, headers: dict[str, str]) -> None:
    t = Tailed.of("s", 7, "ns.events.X", data, headers)
    assert t.seq == 7
    assert t.type == "X"


def test_every_error_kind_has_its_documented_exit_code() -> None:
    cases: list[tuple[CorpsError, int]] = [
        (InvalidMessage("s", "r"), 3), (NatsUnavailable("u", "r"), 4), (NotProvisioned("stream", "x"), 5),
        (SagaNotFound("x"), 5), (NoResponders("s"), 6), (AskTimeout("s", 1.0), 7), (RemoteError("s", "T", "m"), 8),
        (MailboxFull("s", 1), 9), (CorpsError("other"), 1)]
    for error, code in cases:
        assert exit_code(error) == code, error
        assert f"\n  {code} " in "\n" + EXIT_CODES, code


async def test_the_probe_server_serves_a_bounded_number_of_connections_at_once() -> None:
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_http, {"/healthz": lambda: (200, {"ok": True})}, "127.0.0.1", 0)
        idle = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(MAX_CLIENTS)]
        for s in idle:  # a byte each: the server has accepted them all
            await s.send(b"G")
        with anyio.fail_after(5):
            async with await anyio.connect_tcp("127.0.0.1", port) as extra:
                await extra.send(b"GET /healthz HTTP/1.0\r\n\r\n")
                assert await _read_all(extra) == b""  # closed unanswered
            for s in idle:
                await s.aclose()
            async with await anyio.connect_tcp("127.0.0.1", port) as again:
                await again.send(b"GET /healthz HTTP/1.0\r\n\r\n")
                assert (await _read_all(again)).startswith(b"HTTP/1.0 200 OK")
        tg.cancel_scope.cancel()


async def _read_all(stream: Any) -> bytes:
    data = b""
    try:
        while True:
            data += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
        return data
