"""Fault scenarios with real processes: nats-servers, coordinators, participants and consumers are OS
processes, faults are real signals (SIGKILL, SIGSTOP/SIGCONT) and a TCP proxy. See docs/reliability.md.

Each scenario prints one line (``scenario started completed compensated failed stuck lost unexpected
dup_effects dlq detect_s recover_s``) and fails on any stuck, lost, unexpected or duplicated effect,
except inside the window the README documents (a participant killed between its effect and its
idempotency record applies the effect again): that test is a strict xfail raising KnownWindow.
"""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from corps import EmbeddedServer
from corps.saga._log import saga_bucket
from corps.testing import NatsCluster
from tests.fault.choreo import Outcomes, check_orders, publish_orders, redeliveries
from tests.fault.conftest import Plan
from tests.fault.driver import Result, make_orders, read_effects
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
])
async def test_a_participant_killed_mid_step_is_restarted_and_no_effect_applies_twice(
    nats_server: EmbeddedServer, plan: Plan, report: Report, tmp_path: Path, point: str
) -> None:
    async def once(seed: int) -> Result:
        async with SagaWorld([nats_server.url], ns(), tmp_path / str(seed), seed, plan.n) as w:
            # Payments alone in the process that dies: a kill cannot land inside another actor's
            # effect (that window is the after-effect case, not the on-receipt one).
            crash = {"CORPS_FAULT_CRASH": point, "CORPS_FAULT_STEP": "charge", "CORPS_FAULT_AT": str(plan.n // 3)}
            payments = w.participants("payments", "--classes", "Payments", env=crash)
            others = w.participants("others", "--classes", "Inventory,Shipping")
            await w.nodes.start(others, payments, w.coordinator("a"))
            await w.start_orders("a")
            await payments.wait_exit(30)  # it SIGKILLs itself at the crash point
            fault_at = await w.mark_fault()
            await payments.start(extra_env={"CORPS_FAULT_CRASH": ""})  # restarted, without the crash
            restart_s = now() - fault_at
            await w.settle()
            # A step whose participant stayed down through its attempts is compensated: explained.
            result = await w.verdict(f"participant-kill-{point}", fault_at, may_compensate=True)
            result.extra["restart_s"] = round(restart_s, 2)
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
