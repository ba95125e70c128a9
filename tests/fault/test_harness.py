"""The fault harness checked on its own: the checker sees each kind of violation, the proxy's modes
do what they say. Fast (no node process); a green fault run means something only if these pass."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from types import SimpleNamespace
from typing import Any

import pytest

from corps.saga import SagaStatus
from tests.fault.driver import Monitor, Result, Seen, check_sagas, make_orders
from tests.fault.proxy import Proxy


def info(status: SagaStatus, owner: str = "") -> Any:
    return SimpleNamespace(status=status, terminal=status.terminal, reason="r", owner=owner, history=())


def lines(sid: str, *kinds: str) -> list[dict[str, Any]]:
    """Effect lines: 'charge' = an effect of step charge, 'charge:undo' its undo."""
    out = []
    for k in kinds:
        step, _, undo = k.partition(":")
        key = f"{sid}:{step}:undo" if undo else f"{sid}:{step}"
        out.append({"key": key, "kind": "undo" if undo else "effect", "step": step, "pid": 1})
    return out


def checked(kind: str, status: SagaStatus | None, effects: list[dict[str, Any]], *, acked: bool = True,
            may_compensate: bool = False) -> Result:
    orders = make_orders(random.Random(1), 1, "s", only=kind)
    sid = next(iter(orders))
    effects = [{**e, "key": e["key"].replace("SID", sid)} for e in effects]
    result = Result("t", 1)
    check_sagas(result, orders, {sid} if acked else set(), {sid: None if status is None else info(status)},
                effects, may_compensate=may_compensate)
    return result


ALL = ("reserve", "charge", "ship")


def test_a_completed_saga_with_each_effect_once_is_clean() -> None:
    r = checked("ok", SagaStatus.COMPLETED, lines("SID", *ALL))
    assert (r.completed, r.problems, r.window) == (1, [], [])


@pytest.mark.parametrize(("kind", "status", "effects", "field"), [
    ("ok", None, [], "lost"),
    ("ok", SagaStatus.RUNNING, [], "stuck"),
    ("ok", SagaStatus.COMPLETED, lines("SID", *ALL, "charge"), "dup_effects"),
    ("ok", SagaStatus.COMPLETED, lines("SID", "reserve", "charge"), "unexpected"),  # an effect missing
    ("declined", SagaStatus.COMPLETED, lines("SID", *ALL), "unexpected"),  # must be compensated
    ("ok", SagaStatus.COMPENSATED, [], "unexpected"),  # no fault could explain it
    ("nowhere", SagaStatus.COMPENSATED, lines("SID", "reserve", "charge", "reserve:undo"), "unexpected"),
    ("nowhere", SagaStatus.COMPENSATED, lines("SID", "reserve:undo"), "unexpected"),  # undo of nothing
    ("ok", SagaStatus.FAILED, [], "failed"),
])
def test_the_checker_flags(kind: str, status: SagaStatus | None, effects: list[dict[str, Any]], field: str) -> None:
    r = checked(kind, status, effects)
    assert getattr(r, field) == 1, (field, r)
    assert r.problems


@pytest.mark.parametrize(("forward", "clean"), [("maybe", True), ("never", False), ("applied", False), ("", False)])
def test_an_undo_with_no_effect_is_clean_only_when_the_runtime_said_the_step_may_have_applied(
        forward: str, clean: bool) -> None:
    undo = {**lines("SID", "ship:undo")[0], "forward": forward}
    r = checked("ok", SagaStatus.COMPENSATED, [*lines("SID", "reserve", "charge", "charge:undo", "reserve:undo"),
                                               undo], may_compensate=True)
    assert (r.unexpected == 0) is clean, r
    twice = checked("ok", SagaStatus.COMPENSATED, [undo, undo], may_compensate=True)
    assert twice.unexpected == 1  # two undos of one "maybe" step never balance


def test_a_compensation_a_fault_explains_is_not_unexpected_and_undone_effects_balance() -> None:
    r = checked("ok", SagaStatus.COMPENSATED, lines("SID", "reserve", "charge", "charge:undo", "reserve:undo"),
                may_compensate=True)
    assert (r.compensated, r.unexpected, r.problems) == (1, 0, [])


def test_violations_of_the_crashed_saga_fall_in_the_documented_window_only() -> None:
    effects = [*lines("SID", *ALL, "charge"), {"key": "SID:charge", "kind": "crash", "point": "after-effect"}]
    r = checked("ok", SagaStatus.COMPLETED, effects)
    assert r.dup_effects == 1
    assert r.window
    assert not r.problems


def test_an_effect_for_a_saga_never_started_is_unexpected() -> None:
    r = checked("ok", SagaStatus.COMPLETED, lines("SID", *ALL) + lines("ghost", "charge"))
    assert r.unexpected == 1
    assert "never started" in r.problems[0]


def monitor(runs: list[Seen]) -> Monitor:
    m = Monitor(SimpleNamespace(jetstream=lambda **kw: None), "ns", ["x"])  # type: ignore[arg-type]
    m.seen["x"] = runs
    return m


def seen(rev: int, owner: str, *kinds: str) -> Seen:
    return Seen(0.0, rev, owner, SagaStatus.RUNNING, tuple((i, k, None, 0) for i, k in enumerate(kinds)))


def test_the_chain_check_accepts_one_chain_with_a_takeover() -> None:
    m = monitor([seen(1, "A", "started"), seen(3, "A", "started", "sent"), seen(7, "B", "started", "sent"),
                 seen(9, "B", "started", "sent", "succeeded")])
    assert m.chain_problems() == []


def test_the_chain_check_sees_a_fork_and_a_stale_owner_writing_again() -> None:
    fork = monitor([seen(1, "A", "started", "sent"), seen(4, "B", "started", "timed_out")])
    assert "fork" in fork.chain_problems()[0]
    stale = monitor([seen(1, "A", "started"), seen(2, "B", "started"), seen(3, "A", "started")])
    assert "stale owner" in stale.chain_problems()[0]


# -- the proxy --------------------------------------------------------------------------------


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):  # the proxy resets its upstream side too, on cut
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    writer.close()


async def reset(reader: asyncio.StreamReader) -> bool:
    """True once the stream ends (an RST reads as ConnectionResetError, or as EOF)."""
    try:
        return await asyncio.wait_for(reader.read(1), 2) == b""
    except ConnectionResetError:
        return True


async def test_the_proxy_passes_delays_holds_and_cuts() -> None:
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Proxy("127.0.0.1", port) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"a")
            assert await asyncio.wait_for(reader.read(1), 2) == b"a"
            proxy.delay(0.2)
            t = time.monotonic()
            writer.write(b"b")
            assert await asyncio.wait_for(reader.read(1), 2) == b"b"
            assert time.monotonic() - t >= 0.4  # both directions
            proxy.heal()
            proxy.blackhole()
            writer.write(b"c")
            pending = asyncio.ensure_future(reader.read(1))
            done, _ = await asyncio.wait({pending}, timeout=0.3)
            assert not done  # silence
            proxy.heal()  # held, not dropped: it arrives once healed
            assert await asyncio.wait_for(pending, 2) == b"c"
            proxy.cut()
            assert await reset(reader)
            # While cut, a new connection is accepted by the kernel, then reset at once.
            r2, w2 = await asyncio.open_connection("127.0.0.1", proxy.port)
            assert await reset(r2)
            w2.close()
            writer.close()
            assert proxy.stats["refused"] >= 1
    finally:
        server.close()
        await server.wait_closed()
