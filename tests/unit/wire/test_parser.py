"""corps.wire._parser.FastParser makes the same calls as nats-py's Parser, however the bytes are split."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.errors import ProtocolError
from nats.protocol.parser import Parser

from corps.wire._parser import FastParser


class Recorder:
    """Stands in for the client: records every call a parser makes, with bytes normalised."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.on_ping: Any = None

    async def _process_msg(self, sid: int, subject: Any, reply: Any, data: Any, headers: Any) -> None:
        self.calls.append(("msg", sid, bytes(subject), bytes(reply), bytes(data),
                           None if headers is None else bytes(headers)))

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))
        if self.on_ping is not None:
            self.on_ping()

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.calls.append(("info", info))

    async def _process_err(self, err: str) -> None:
        self.calls.append(("err", err))


token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-$", min_size=1, max_size=8)
subject = st.lists(token, min_size=1, max_size=4).map(".".join)
payload = st.binary(max_size=64) | st.sampled_from([b"", b"\r\n", b"MSG a 1 2\r\n", b"PING\r\n"])


@st.composite
def msg(draw: st.DrawFn) -> bytes:
    subj, sid = draw(subject).encode(), draw(st.integers(1, 10**6))
    reply = draw(st.none() | subject)
    data = draw(payload)
    r = b"" if reply is None else reply.encode() + b" "
    if draw(st.booleans()):
        return b"MSG %b %d %b%d\r\n%b\r\n" % (subj, sid, r, len(data), data)
    status = draw(st.sampled_from([b"", b" 503", b" 100 Idle Heartbeat"]))
    lines = draw(st.lists(st.tuples(token, token), max_size=3))
    fields = b"".join(b"%b: %b\r\n" % (k.encode(), v.encode()) for k, v in lines)
    hdr = b"NATS/1.0" + status + b"\r\n" + fields + b"\r\n"
    return b"HMSG %b %d %b%d %d\r\n%b%b\r\n" % (subj, sid, r, len(hdr), len(hdr) + len(data), hdr, data)


CONTROL = {b"PING\r\n": "ping", b"PONG\r\n": "pong", b"+OK\r\n": None, b"-ERR 'Stale Connection'\r\n": "err",
           b"INFO " + json.dumps({"server_id": "x", "max_payload": 1048576}).encode() + b"\r\n": "info"}
ops = msg().map(lambda b: (b, "msg")) | st.sampled_from(sorted(CONTROL.items()))


class DirectRecorder(Recorder):
    """A client with direct routes, as CorpsClient: ``take_direct`` first (here: odd sids are
    taken), ``process_declined`` for the rest. Both record what ``_process_msg`` would have."""

    async def _process_msg(self, sid: int, subject: Any, reply: Any, data: Any, headers: Any) -> None:
        raise AssertionError("a client with direct routes gets take_direct / process_declined")

    def take_direct(self, sid: int, subject: Any, reply: Any, data: Any, headers: Any) -> bool:
        if sid % 2 == 0:
            return False
        self.calls.append(("msg", sid, bytes(subject), bytes(reply), bytes(data),
                           None if headers is None else bytes(headers)))
        return True

    async def process_declined(self, sid: int, subject: Any, reply: Any, data: Any, headers: Any) -> None:
        await Recorder._process_msg(self, sid, subject, reply, data, headers)


async def feed(parser: Parser, data: bytes, cuts: list[int]) -> None:
    last = 0
    for cut in sorted(set(cuts)):
        await parser.parse(data[last:cut])
        last = cut
    await parser.parse(data[last:])


async def calls_of(parser_cls: type[Parser], data: bytes, cuts: list[int], nc_cls: type[Recorder] = Recorder,
                   ) -> list[tuple[Any, ...]]:
    nc = nc_cls()
    parser = parser_cls(nc)
    await feed(parser, data, cuts)
    assert not parser.buf, "a parser kept bytes after a whole stream"
    return nc.calls


@given(stream=st.lists(ops, min_size=1, max_size=12), cut_fractions=st.lists(st.floats(0, 1), max_size=6))
def test_the_fast_parser_makes_the_calls_nats_pys_parser_makes(stream: list[tuple[bytes, str | None]],
                                                                 cut_fractions: list[float]) -> None:
    data = b"".join(b for b, _ in stream)
    cuts = [int(f * len(data)) for f in cut_fractions]
    expected = anyio.run(calls_of, Parser, data, cuts)
    assert [c[0] for c in expected] == [kind for _, kind in stream if kind]
    assert anyio.run(calls_of, FastParser, data, cuts) == expected
    assert anyio.run(calls_of, FastParser, data, cuts, DirectRecorder) == expected  # taken or declined, in order


async def test_every_split_point_of_a_mixed_stream_gives_the_same_calls() -> None:
    data = (b"INFO {\"a\":1}\r\nMSG s.1 7 _INBOX.x 5\r\nhello\r\nPING\r\n"
            b"HMSG s.2 8 12 15\r\nNATS/1.0\r\n\r\nabc\r\n+OK\r\nMSG s.3 9 0\r\n\r\nPONG\r\n")
    expected = await calls_of(Parser, data, [])
    assert [c[0] for c in expected] == ["info", "msg", "ping", "msg", "msg", "pong"]
    for cut in range(len(data) + 1):
        assert await calls_of(FastParser, data, [cut]) == expected, f"split at byte {cut}"


@pytest.mark.parametrize("line", [b"BOGUS\r\n", b"MSG a b 3\r\nabc\r\n", b"MSG onlysubject\r\n"])
async def test_an_unknown_or_malformed_line_is_a_protocol_error(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        await FastParser(Recorder()).parse(line)


async def test_a_reset_during_a_callback_ends_that_parse_and_keeps_the_fresh_buffer() -> None:
    nc = Recorder()
    parser = FastParser(nc)
    nc.on_ping = parser.reset  # a reconnect resets the parser while it is parsing
    await parser.parse(b"PING\r\nMSG a 1 3\r\nabc\r\n")
    assert nc.calls == [("ping",)]
    assert parser.buf == bytearray()
    await parser.parse(b"PONG\r\n")
    assert nc.calls == [("ping",), ("pong",)]


# -- malformed sizes: nats-py's \d+ (ASCII digits only) and more ------------------------------------

not_digits = st.one_of(
    st.integers(-10**9, -1).map(lambda n: str(n).encode()),          # MSG a 1 -5: would slice into the line
    st.integers(0, 10**6).map(lambda n: b"+%d" % n),
    st.integers(10, 10**6).map(lambda n: b"%d_%d" % (n // 10, n % 10)),  # int() takes underscores
    st.sampled_from([b"0x10", b"1e3", b"5.0", "\u0663".encode(), "\uff15".encode(), b"-0", b"--1"]),
    st.text("-+_.xe ", min_size=1, max_size=4).map(lambda t: t.replace(" ", "").encode() or b"-"),
)


@st.composite
def malformed_frame(draw: st.DrawFn) -> bytes:
    """A MSG or HMSG line whose sizes nats-server never sends, followed by bytes posing as a payload."""
    subj = draw(subject).encode()
    bad = draw(not_digits)
    tail = draw(st.sampled_from([b"", b"abc\r\n", b"PING\r\n", b"MSG x 1 3\r\nabc\r\n"]))
    kind = draw(st.sampled_from(["msg", "hmsg-total", "hmsg-header", "hmsg-header-over-total"]))
    if kind == "msg":
        return b"MSG %b 1 %b\r\n%b" % (subj, bad, tail)
    if kind == "hmsg-total":
        return b"HMSG %b 1 12 %b\r\n%b" % (subj, bad, tail)
    if kind == "hmsg-header":
        return b"HMSG %b 1 %b 20\r\n%b" % (subj, bad, tail)
    total = draw(st.integers(0, 100))
    return b"HMSG %b 1 %d %d\r\n%b" % (subj, total + draw(st.integers(1, 100)), total, tail)


@given(before=st.lists(ops, max_size=6), frame=malformed_frame(),
       cut_fractions=st.lists(st.floats(0, 1), max_size=6))
def test_a_size_that_is_not_plain_digits_or_a_header_over_the_total_is_a_protocol_error_however_split(
        before: list[tuple[bytes, str | None]], frame: bytes, cut_fractions: list[float]) -> None:
    good = b"".join(b for b, _ in before)
    data = good + frame
    cuts = [int(f * len(data)) for f in cut_fractions]
    nc = Recorder()
    with pytest.raises(ProtocolError):
        anyio.run(feed, FastParser(nc), data, cuts)
    # Everything before the bad line was delivered as nats-py delivers it, and nothing after it.
    assert nc.calls == anyio.run(calls_of, Parser, good, [])


@pytest.mark.parametrize("line", [b"MSG a 1 -5\r\n", b"MSG a 1 _INBOX.x -1\r\n", b"HMSG a 1 -3 4\r\n",
                                  b"HMSG a 1 3 -4\r\n", b"MSG a 1 +3\r\nabc\r\n", b"MSG a 1 1_0\r\n",
                                  b"MSG a -1 3\r\nabc\r\n", b"HMSG a 1 20 12\r\n",
                                  b"MSG a 1 %d\r\n" % (64 * 1024 * 1024 + 1)])
async def test_a_negative_signed_or_oversized_size_is_refused_before_any_payload_is_read(line: bytes) -> None:
    nc = Recorder()
    parser = FastParser(nc)
    with pytest.raises(ProtocolError):
        await parser.parse(line + b"PING\r\n")
    assert nc.calls == []


@given(frame=malformed_frame())
def test_nats_py_also_refuses_sizes_that_are_not_plain_digits(frame: bytes) -> None:
    # Our parser is no stricter than nats-py on signs and underscores (its \d+); only the
    # header-over-total check is ours alone.
    line = frame.split(b"\r\n", 1)[0].split()
    sizes = line[-2:] if line[0] == b"HMSG" else line[-1:]
    if all(s.isdigit() for s in sizes):
        return
    with pytest.raises(ProtocolError):
        anyio.run(feed, Parser(Recorder()), frame, [])
