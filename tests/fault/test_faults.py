"""Fault scenarios with real processes: nats-servers, coordinators, participants and consumers are OS
processes, faults are real signals (SIGKILL, SIGSTOP/SIGCONT) and a TCP proxy. See docs/reliability.md.

Each scenario prints one line (``scenario started completed compensated failed stuck lost unexpected
dup_effects dlq detect_s recover_s``) and fails on any stuck, lost, unexpected or duplicated effect,
except inside the windows the README documents (a participant killed between its effect and its
idempotency record applies the effect again; so does an idempotent event handler killed between
its effect and its done mark): those tests are strict xfails raising KnownWindow.
"""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import nats.errors
import nats.js.errors
import pytest

from corps import EmbeddedServer
from corps.events._wire import stream_name
from corps.saga import SagaStatus
from corps.saga._log import saga_bucket
from corps.testing import NatsCluster
from tests.fault.choreo import Outcomes, check_orders, publish_orders, redeliveries
from tests.fault.conftest import Plan
from tests.fault.driver import READ_TIMEOUT, Result, make_orders, read_effects
from tests.fault.proxy import Proxy
from tests.fault.world import KnownWindow, SagaWorld, now, run, wait_for

Report = Callable[[Any], None]
WINDOW = ("README, Sagas, 'Exactly once, or a named window': a participant killed between an external effect and "
          "its idempotency record applies the effect again on the retry")


CHOREO_SETTLE = 30.0
"""Bound on the wait for every order's outcome (they end within seconds when nothing is lost)."""


def ns() -> str:
    return f"f{uuid.uuid4().hex[:10]}"


# -- 1. nats-server SIGKILL, restarted on the same port and store ----------------------------


async def test_sagas_end_when_the_nats_server_is_killed_and_restarted_on_its_store(
    nats_server_factory: Callable[..., EmbeddedServer], plan: Plan, report: Report, tmp_path: Path
) -> None:
    async def once(seed: int) -> Result:
        server = nats_server_factory()
        async with SagaWorld([server.url], ns(), tmp_path / str(seed), seed, plan.n) as w:
            await w.nodes.start(w.participants(), w.coordinator("a"))
            await w.start_orders("a")
            await w.strike_when_in_flight()
            fault_at = now()
            server.kill()  # SIGKILL: no flush, no goodbye; the store stays
            await anyio.to_thread.run_sync(server.start)  # same port, same store dir
            back_at = now()
            w.seq_at_fault = await w.log_seq()  # detect_s: kill -> the first write after the restart
            await w.settle()
            # Timeouts while the server is down make steps uncertain: compensation is explained.
            result = await w.verdict("server-kill-restart", fault_at, may_compensate=True)
            result.extra["down_s"] = round(back_at - fault_at, 2)
            return result

    await run(plan.seeds, once, report)


# -- 2. coordinator SIGKILL, a standby takes over ---------------------------------------------


async def test_a_standby_coordinator_takes_over_and_ends_the_sagas_of_a_killed_one(
    nats_server: EmbeddedServer, plan: Plan, report: Report, tmp_path: Path
) -> None:
    async def once(seed: int) -> Result:
        async with SagaWorld([nats_server.url], ns(), tmp_path / str(seed), seed, plan.n) as w:
            a, b = w.coordinator("a"), w.coordinator("b")
            await w.nodes.start(w.participants(), a, b)
            await w.start_orders("a")
            await w.strike_when_in_flight()
            fault_at = await w.mark_fault()
            a.kill()
            await w.settle()
            result = await w.verdict("coordinator-kill-standby", fault_at, may_compensate=False)
            result.detect_s = w.monitor.first(fault_at, lambda s: s.owner == b.node_id)
            result.extra["taken_over"] = sum(any(s.owner == b.node_id for s in r) for r in w.monitor.seen.values())
            return result

    await run(plan.seeds, once, report)


# -- 3. coordinator SIGSTOP past its lease, then SIGCONT ---------------------------------------


async def test_a_coordinator_paused_past_its_lease_never_writes_over_its_successor(
    nats_server: EmbeddedServer, plan: Plan, report: Report, tmp_path: Path
) -> None:
    async def once(seed: int) -> Result:
        async with SagaWorld([nats_server.url], ns(), tmp_path / str(seed), seed, plan.n) as w:
            a, b = w.coordinator("a"), w.coordinator("b")
            await w.nodes.start(w.participants(), a, b)

            def b_owns_the_rest() -> bool:
                return all(i is not None and (i.terminal or i.owner == b.node_id) for i in w.monitor.info.values())

            async with anyio.create_task_group() as tg:
                await w.start_orders("a")
                await tg.start(w.monitor.watch)  # every revision as stored: the chain check
                await w.strike_when_in_flight()
                fault_at = await w.mark_fault()
                a.signal(signal.SIGSTOP)
                # Paused until B owns every saga A had not finished (their leases ran out under A).
                assert await w.monitor.until(b_owns_the_rest, 30), "the standby took nothing over"
                a.signal(signal.SIGCONT)
                await w.settle()
                await a.stop()  # drains: whatever A still tries to write must lose its CAS
                tg.cancel_scope.cancel()
            result = await w.verdict("coordinator-sigstop-lease", fault_at, may_compensate=False)
            result.detect_s = w.monitor.first(fault_at, lambda s: s.owner == b.node_id)
            # A's own log: every write it tried after waking up and lost (its CAS refused).
            result.extra["stale_writes_refused"] = a.count_in_log("lost to another coordinator")
            result.extra["revisions_seen"] = sum(len(r) for r in w.monitor.seen.values())
            return result

    await run(plan.seeds, once, report)


# -- 4. participant SIGKILL at each crash point, restarted -------------------------------------


@pytest.mark.parametrize("point", [
    "on-receipt",
    pytest.param("after-effect", marks=pytest.mark.xfail(strict=True, raises=KnownWindow, reason=WINDOW)),
    "after-record",
    "after-effect-compensate",
])
async def test_a_participant_killed_mid_step_is_restarted_and_no_effect_applies_twice(
    nats_server: EmbeddedServer, plan: Plan, report: Report, tmp_path: Path, point: str
) -> None:
    # after-effect-compensate: the same crash, under @idempotent(unfinished="compensate").
    crash_point, unfinished = ("after-effect", "compensate") if point == "after-effect-compensate" else (point, "rerun")

    async def once(seed: int) -> Result:
        async with SagaWorld([nats_server.url], ns(), tmp_path / str(seed), seed, plan.n) as w:
            # Payments alone in the process that dies: a kill cannot land inside another actor's
            # effect (that window is the after-effect case, not the on-receipt one).
            crash = {"CORPS_FAULT_CRASH": crash_point, "CORPS_FAULT_STEP": "charge", "CORPS_FAULT_AT": str(plan.n // 3)}
            payments = w.participants("payments", "--classes", "Payments", "--unfinished", unfinished, env=crash)
            others = w.participants("others", "--classes", "Inventory,Shipping")
            await w.nodes.start(others, payments, w.coordinator("a"))
            await w.start_orders("a")
            await payments.wait_exit(30)  # it SIGKILLs itself at the crash point
            fault_at = await w.mark_fault()
            await payments.start(extra_env={"CORPS_FAULT_CRASH": ""})  # restarted, without the crash
            restart_s = now() - fault_at
            await w.settle()
            # A step whose participant stayed down through its attempts is compensated: explained.
            # Under unfinished="compensate" the after-effect crash is no window: it must leave none.
            result = await w.verdict(f"participant-kill-{point}", fault_at, may_compensate=True,
                                     window=unfinished == "rerun")
            result.extra["restart_s"] = round(restart_s, 2)
            effects = read_effects(sorted(w.workdir.glob("*.effects.jsonl")))
            hit = [str(e["key"]).split(":")[0] for e in effects if e["kind"] == "crash"]
            assert len(hit) == 1, f"expected one crash line, got {hit}"
            sid = hit[0]
            info = w.monitor.info.get(sid)
            status = info.status if info is not None else None
            lines = Counter((str(e["key"]), e["kind"]) for e in effects)
            charged, refunded = lines[(f"{sid}:charge", "effect")], lines[(f"{sid}:charge:undo", "undo")]
            result.extra["hit"] = f"{sid}:{status}:charge={charged}:refund={refunded}"
            if point == "after-record" and charged != 1:
                result.problems.append(f"{sid}: charged {charged} times; the retry after the record must "
                                       "be answered from it")
            if point == "after-effect-compensate" and (status is not SagaStatus.COMPENSATED or refunded != 1):
                result.problems.append(f"{sid}: {status} with {charged} charge(s) and {refunded} refund(s); "
                                       "unfinished='compensate' must compensate it and run the undo once")
            return result

    await run(plan.seeds, once, report)


# -- 5. event consumer SIGKILL mid-stream, restarted -------------------------------------------


async def test_a_killed_event_consumer_resumes_and_every_order_reaches_an_outcome(
    nats_server: EmbeddedServer, plan: Plan, report: Report, tmp_path: Path
) -> None:
    async def once(seed: int) -> Result:
        async with SagaWorld([nats_server.url], ns(), tmp_path / str(seed), seed, plan.n) as w:
            consumer = w.nodes.node("consumer", "consumer", "--latency", w.latency)
            effects = w.nodes.effects("consumer")
            await w.nodes.start(consumer)
            orders = make_orders(w.rng, plan.n, f"c{seed}")
            out = Outcomes(w.system, set(orders))
            acked = await publish_orders(w, orders)
            # Mid-stream: about a third of the handlers' work done, the rest in flight or queued.
            await wait_for(lambda: len(read_effects([effects])) >= plan.n * 2, 30, "the consumer to get going")
            fault_at = now()  # no saga log here: outcomes are read off the event stream
            consumer.kill()
            await consumer.wait_exit()
            await consumer.start()
            await wait_for(lambda: any(e["pid"] == consumer.pid for e in read_effects([effects])), 30,
                           "the restarted consumer to handle an event")
            first_handled_s = now() - fault_at
            await out.until(out.all_ended, CHOREO_SETTLE)
            result = Result("consumer-kill-midstream", seed)
            check_orders(result, orders, acked, out)
            result.dlq = await w.dlq()
            lines = read_effects([effects])
            ends = [out.ended_at[o] for o in orders if o in out.ended_at]
            result.recover_s = max(ends) - fault_at if len(ends) == len(orders) else None
            result.detect_s = first_handled_s
            result.extra["redelivered"] = redeliveries(lines)
            result.extra["handled_after_restart"] = sum(e["pid"] == consumer.pid for e in lines)
            return result

    await run(plan.seeds, once, report)


# -- 5b. an idempotent event handler SIGKILLed at each point, restarted --------------------------

EVENT_WINDOW = ("README, Events, 'Idempotent handlers': a consumer killed inside an idempotent=True handler runs it "
                "again on the redelivery; an external effect may apply twice")


@pytest.mark.parametrize("point", [
    "before-handler",
    pytest.param("after-effect", marks=pytest.mark.xfail(strict=True, raises=KnownWindow, reason=EVENT_WINDOW)),
    "after-done",
])
async def test_an_idempotent_event_handler_killed_mid_event_applies_each_effect_once(
    nats_server: EmbeddedServer, plan: Plan, report: Report, tmp_path: Path, point: str
) -> None:
    async def once(seed: int) -> Result:
        async with SagaWorld([nats_server.url], ns(), tmp_path / str(seed), seed, plan.n) as w:
            crash = {"CORPS_FAULT_CRASH": point, "CORPS_FAULT_AT": str(plan.n // 3)}
            ledger = w.nodes.node("ledger", "ledger", "--latency", w.latency, env=crash)
            effects = w.nodes.effects("ledger")
            await w.nodes.start(ledger)
            orders = make_orders(w.rng, plan.n, f"e{seed}")
            acked = await publish_orders(w, orders)
            await ledger.wait_exit(30)  # it SIGKILLs itself at the crash point
            fault_at = now()
            killed_pid = ledger.pid
            await ledger.start(extra_env={"CORPS_FAULT_CRASH": ""})
            restart_s = now() - fault_at
            js = w.nc.jetstream(timeout=READ_TIMEOUT)
            stream = stream_name(w.ns)

            async def quiet() -> bool:  # every event booked, and nothing pending or unacked
                booked = {e["order"] for e in read_effects([effects]) if e["kind"] == "effect"}
                if not booked >= acked:
                    return False
                with contextlib.suppress(nats.errors.Error, TimeoutError, nats.js.errors.Error):
                    c = await js.consumer_info(stream, "FaultLedger")
                    return c.num_pending == 0 and c.num_ack_pending == 0
                return False

            with contextlib.suppress(AssertionError):
                await wait_for(quiet, CHOREO_SETTLE, "the ledger to book every event", interval=0.1)
            lines = read_effects([effects])
            result = Result(f"ledger-kill-{point}", seed)
            result.started = len(orders)
            booked = Counter(e["key"] for e in lines if e["kind"] == "effect")
            by_order = Counter(e["order"] for e in lines if e["kind"] == "effect")
            hit = [e["key"] for e in lines if e["kind"] == "crash"]
            assert len(hit) == 1, f"expected one crash line, got {hit}"
            result.completed = sum(1 for oid in orders if by_order[oid])
            for oid in sorted(acked):
                if not by_order[oid]:
                    result.lost += 1
                    result.problems.append(f"{oid}: acknowledged, never booked")
            for key, count in sorted(booked.items()):
                if count > 1:
                    result.dup_effects += 1
                    text = f"{key}: booked {count} times"
                    (result.window if point == "after-effect" and key == hit[0] else result.problems).append(text)
            if not await quiet():
                c = await js.consumer_info(stream, "FaultLedger")
                result.stuck = c.num_pending + c.num_ack_pending
                result.problems.append(f"consumer not quiet: pending={c.num_pending} ack_pending={c.num_ack_pending}")
            result.dlq = await w.dlq()
            if result.dlq:
                result.problems.append(f"{result.dlq} dead letters")
            after = [e for e in lines if e["kind"] == "effect" and e["pid"] != killed_pid]
            result.detect_s = None
            result.recover_s = now() - fault_at
            result.extra["restart_s"] = round(restart_s, 2)
            result.extra["hit_booked"] = booked[hit[0]]
            result.extra["rerun_warnings"] = ledger.count_in_log("was begun by an earlier delivery")
            result.extra["booked_after_restart"] = len(after)
            if point == "before-handler" and booked[hit[0]] != 1:
                result.problems.append(f"{hit[0]}: killed before its effect, booked {booked[hit[0]]} times")
            return result

    await run(plan.seeds, once, report)


# -- 6. poison event: dead-lettered after max_deliver, redriven once fixed ---------------------


async def test_a_poison_event_is_dead_lettered_then_redriven_to_its_outcome(
    nats_server: EmbeddedServer, plan: Plan, report: Report, tmp_path: Path
) -> None:
    async def once(seed: int) -> Result:
        async with SagaWorld([nats_server.url], ns(), tmp_path / str(seed), seed, plan.n) as w:
            switch = w.workdir / "poison.on"
            switch.write_text("on")
            consumer = w.nodes.node("consumer", "consumer", env={"CORPS_FAULT_POISON": str(switch)})
            await w.nodes.start(consumer)
            orders = make_orders(w.rng, plan.n, f"c{seed}")
            poison = make_orders(w.rng, 2, f"poison{seed}", only="ok")  # good orders, poison to this consumer
            everything = {**orders, **poison}
            out = Outcomes(w.system, set(orders))
            acked = await publish_orders(w, everything)
            published_at = now()
            assert await out.until(out.all_ended, CHOREO_SETTLE), "the good orders did not end while the poison waited"
            dead: list[Any] = []

            async def dead_lettered() -> bool:
                dead[:] = await w.system.events.dead_letters()
                return len(dead) >= len(poison)

            await wait_for(dead_lettered, 30, "the poison events in the dead-letter stream", interval=0.2)
            detect_s = now() - published_at
            switch.unlink()  # the fix is deployed
            redriven_at = now()
            for entry in dead:
                await w.system.events.redrive(entry.dlq_seq)
            out.order_ids = set(everything)
            out.redriven = {entry.headers.get("Corps-Dlq-Msg-Id", "").removeprefix("placed-") for entry in dead}
            await out.until(out.all_ended, CHOREO_SETTLE)
            result = Result("poison-redrive", seed)
            check_orders(result, everything, acked, out)
            attempts = Counter(e["key"] for e in read_effects([w.nodes.effects("consumer")])
                               if e["kind"] == "poisoned")
            result.dlq = len(dead)
            result.detect_s = detect_s
            ends = [out.ended_at[o] for o in poison if o in out.ended_at]
            result.recover_s = max(ends) - redriven_at if len(ends) == len(poison) else None
            result.extra["attempts"] = "/".join(str(attempts[k]) for k in sorted(attempts))
            result.extra["reasons"] = ",".join(sorted({d.reason for d in dead}))
            result.extra["dlq_after"] = await w.dlq()
            if len(attempts) != len(poison) or any(c > 5 for c in attempts.values()):
                result.problems.append(f"poison attempts {dict(attempts)}: expected at most max_deliver=5 each")
            if result.extra["dlq_after"] != 0:
                result.problems.append(f"{result.extra['dlq_after']} dead letters left after the redrive")
            return result

    await run(plan.seeds, once, report)


# -- 7. 3-node cluster: the saga log's stream leader dies ---------------------------------------

OUTAGE = 3.0
"""Seconds an R1 saga log's only node stays dead (the fault's length, watched, not a wait)."""


@pytest.mark.cluster
@pytest.mark.parametrize("log", ["default", pytest.param("r1", marks=pytest.mark.soak)])
async def test_sagas_continue_when_the_saga_log_stream_leader_dies(
    nats_cluster_factory: Callable[..., NatsCluster], plan: Plan, report: Report, tmp_path: Path, log: str
) -> None:
    async def once(seed: int) -> Result:
        cluster = nats_cluster_factory()
        name = ns()
        async with SagaWorld(cluster.urls, name, tmp_path / str(seed), seed, plan.n, replicas=3,
                             saga_replicas=1 if log == "r1" else 0) as w:
            js = w.nc.jetstream()
            await w.nodes.start(w.participants(), w.coordinator("a"))
            await w.start_orders("a")
            await w.strike_when_in_flight()
            info = await js.stream_info(f"KV_{saga_bucket(name)}")
            replicas = info.config.num_replicas
            # corps's default follows the cluster: the saga log must be R3 here without being told.
            assert replicas == (1 if log == "r1" else 3), f"the saga log has {replicas} replicas"
            leader = info.cluster.leader if info.cluster else None
            assert leader in cluster.server_names, f"no leader for the saga log: {info.cluster}"
            fault_at = await w.mark_fault()
            dead = cluster.node(leader)
            dead.kill()
            if log == "r1":  # its only replica is gone: nothing may advance until it is back
                before = {sid: len(r) for sid, r in w.monitor.seen.items()}
                await w.monitor.until(lambda: False, OUTAGE)
                frozen = all(len(w.monitor.seen[sid]) == n for sid, n in before.items())
                await anyio.to_thread.run_sync(dead.start)  # same ports, same store
            await w.settle()
            result = await w.verdict(f"cluster-log-leader-kill-{log}", fault_at, may_compensate=True)
            info = await js.stream_info(f"KV_{saga_bucket(name)}")
            result.extra["log_replicas"] = replicas
            result.extra["leader"] = f"{leader[-2:]}->{(info.cluster.leader or '?')[-2:] if info.cluster else '?'}"
            if log == "r1":
                result.extra["frozen_while_down"] = frozen
            return result

    await run(plan.seeds, once, report)


# -- 7b. 3-node cluster: the JetStream meta leader dies; quorum lost, then back -----------------

QUORUM_OUTAGE = 3.0
"""Seconds two of the three nodes stay dead (the fault's length, watched, not a wait)."""
IN_FLIGHT_GRACE = 1.0
"""After the kill, effects already past their idempotency record may still land (0.07 s each)."""


async def move_stream_leader_off(w: SagaWorld, stream: str, server: str) -> None:
    """Step ``stream``'s leader down until another server than ``server`` leads it (bounded)."""
    js = w.nc.jetstream()
    for _ in range(10):
        info = await js.stream_info(stream)
        leader = info.cluster.leader if info.cluster else None
        if leader is not None and leader != server:
            return
        if leader == server:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await w.nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=2)
        await anyio.sleep(0.5)
    raise AssertionError(f"{stream} is still led by {server}")


@pytest.mark.cluster
@pytest.mark.parametrize("loss", ["meta-leader", "quorum"])
async def test_sagas_survive_the_meta_leader_dying_and_fail_closed_without_quorum(
    nats_cluster_factory: Callable[..., NatsCluster], plan: Plan, report: Report, tmp_path: Path, loss: str
) -> None:
    async def once(seed: int) -> Result:
        cluster = nats_cluster_factory()
        name = ns()
        async with SagaWorld(cluster.urls, name, tmp_path / str(seed), seed, plan.n, replicas=3) as w:
            js = w.nc.jetstream()
            await w.nodes.start(w.participants(), w.coordinator("a"))
            meta = await anyio.to_thread.run_sync(cluster.meta_leader)
            assert meta in cluster.server_names, "no agreed JetStream meta leader"
            log_stream = f"KV_{saga_bucket(name)}"
            if loss == "meta-leader":  # the saga log led elsewhere, so this is not scenario 7 again
                await move_stream_leader_off(w, log_stream, meta)
            await w.start_orders("a")
            await w.strike_when_in_flight()
            info = await js.stream_info(log_stream)
            log_leader = info.cluster.leader if info.cluster else None
            dead = [meta]
            if loss == "quorum":  # the meta leader and one more (the saga log's leader if it is another)
                dead.append(log_leader if log_leader not in (None, meta) else
                            next(n for n in cluster.server_names if n != meta))
            fault_at = await w.mark_fault()
            down_at = time.time()
            for server in dead:
                cluster.node(server).kill()
            extra: dict[str, Any] = {}
            if loss == "quorum":  # no node has a majority: nothing may advance until one is back
                await w.monitor.until(lambda: False, QUORUM_OUTAGE)
                up_at = time.time()
                for server in dead:
                    await anyio.to_thread.run_sync(cluster.node(server).start)  # same ports, same store
                while_down = [e for e in read_effects(sorted(w.workdir.glob("*.effects.jsonl")))
                              if e["kind"] in ("effect", "undo") and down_at + IN_FLIGHT_GRACE < e["t"] < up_at]
                extra["effects_while_down"] = len(while_down)
            await w.settle()
            result = await w.verdict(f"cluster-{loss}-kill", fault_at, may_compensate=True)
            new_meta: list[str | None] = [None]

            def elected() -> bool:
                new_meta[0] = cluster.meta_leader()
                return new_meta[0] is not None and (loss == "quorum" or new_meta[0] not in dead)

            await wait_for(lambda: anyio.to_thread.run_sync(elected), 20, "a new JetStream meta leader", interval=0.2)
            result.extra["meta_elected_s"] = round(now() - fault_at, 2)
            result.extra["killed"] = "+".join(s[-2:] for s in dead)
            result.extra["meta"] = f"{meta[-2:]}->{(new_meta[0] or '?')[-2:]}"
            result.extra["log_leader"] = (log_leader or "?")[-2:]
            result.extra.update(extra)
            if extra.get("effects_while_down"):
                result.problems.append(f"{extra['effects_while_down']} effects applied while quorum was lost "
                                       f"(more than {IN_FLIGHT_GRACE}s after the kill)")
            return result

    await run(plan.seeds, once, report)


# -- 8. the coordinator's link to its server: cut, blackhole, delay (a TCP proxy) --------------


@pytest.mark.parametrize("mode", ["cut", "blackhole", "delay"])
async def test_sagas_survive_a_broken_link_between_the_coordinator_and_its_server(
    nats_server: EmbeddedServer, plan: Plan, report: Report, tmp_path: Path, mode: str
) -> None:
    async def once(seed: int) -> Result:
        async with Proxy("127.0.0.1", nats_server.port) as proxy, \
                SagaWorld([nats_server.url], ns(), tmp_path / str(seed), seed, plan.n) as w:
            a = w.coordinator("a", url=proxy.url)
            b = w.coordinator("b")  # the standby, on a sound link
            await w.nodes.start(w.participants(), a, b)
            await w.start_orders("a")
            await w.strike_when_in_flight()
            fault_at = await w.mark_fault()
            if mode == "delay":
                proxy.delay(0.1)  # from here, 200 ms round trips for every log write and ask of A
            elif mode == "cut":  # reset, and refused until A has tried to reconnect twice
                proxy.cut()
                await wait_for(lambda: proxy.stats["refused"] >= 2, 15, "the coordinator to try reconnecting")
                proxy.heal()
            elif mode == "blackhole":  # silence past A's leases: B takes over; then the held bytes flow
                proxy.blackhole()

                def b_owns_the_rest() -> bool:
                    return all(i is not None and (i.terminal or i.owner == b.node_id) for i in w.monitor.info.values())

                assert await w.monitor.until(b_owns_the_rest, 30), "the standby took nothing over"
                proxy.heal()
            await w.settle()
            proxy.heal()
            await a.stop()
            # A cut or a blackhole makes asks time out (uncertain steps): compensation is explained.
            result = await w.verdict(f"link-{mode}", fault_at, may_compensate=mode != "delay")
            if mode == "blackhole":
                result.detect_s = w.monitor.first(fault_at, lambda s: s.owner == b.node_id)
            elif mode == "delay":
                result.detect_s = None  # no moment of failure to detect: the link is slow throughout
            result.extra["taken_over"] = sum(any(s.owner == b.node_id for s in r) for r in w.monitor.seen.values())
            result.extra["stale_writes_refused"] = a.count_in_log("lost to another coordinator")
            result.extra["connections"] = proxy.stats["accepted"]
            return result

    await run(plan.seeds, once, report)
