"""Operating corps from a shell (issue 15): ``corps run MODULE:APP`` with probes, ``ask``/``tell``/
``publish``, ``ps``, ``provision``, read-only inspection and ``--reload``, each a real process
against a real nats-server (or none). Waits are bounded and driven by what the processes print.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import IO, Any

import anyio
import nats
import pytest

from corps import ActorSystem, EmbeddedServer, NoResponders
from corps.cli._run import Probes
from corps.examples.demo import Pricing
from corps.examples.shop import app as shop_app
from corps.examples.shop.choreographed import GetOrder, Order
from corps.examples.shop.messages import OrderPlaced, OrderRequest
from corps.examples.shop.orchestrated import PlaceOrder
from corps.system._app import Ready
from corps.tools import _inspect
from corps.tools._inspect import inspector
from corps.wire._transport import flush
from tests.integration.test_cli import CORPS, ENV, REPO, Running
from tests.integration.test_cli import corps_process as process
from tests.integration.test_cli import stderr_log as stderr_log

SHOP = "corps.examples.shop.app:app"


def corps(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CORPS, *args], cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=60)


async def acorps(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(lambda: corps(*args, cwd=cwd))


async def http_get(port: int, path: str, raw: bytes | None = None) -> tuple[int, Any]:
    """One HTTP/1.0 request to the probe server; (status, JSON body)."""
    with anyio.fail_after(5):
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(raw if raw is not None else f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
            data = b""
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    data += await s.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


async def server_state(url: str) -> str:
    """Every stream (KV buckets are streams) with its config and message counts, and every
    consumer with its config, as one JSON text: what inspection must leave unchanged."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        out = {}
        for s in await js.streams_info():
            name = s.config.name or ""
            consumers = await js.consumers_info(name)
            out[name] = {"config": s.config.as_dict(), "messages": s.state.messages, "last": s.state.last_seq,
                         "consumers": {c.name: c.config.as_dict() for c in consumers}}
        return json.dumps(out, sort_keys=True, default=str)
    finally:
        await nc.close()


# -- no server ----------------------------------------------------------------------------------


def test_commands_that_read_a_deployment_refuse_to_run_without_a_server() -> None:
    # One per way in: the read-only connection (saga, dlq, trace, events, ps, provision share it), and ask's.
    for args in (["saga", "list", "--log-format", "json"], ["events", "tail", ">"], ["ps"],
                 ["ask", "Inventory", "main", "GetStock", '{"sku": "a"}', "--app", SHOP]):
        result = corps(*args)
        assert result.returncode == 4, (args, result.stderr)
        assert "no server given: pass --nats URL or set NATS_URL" in result.stderr, args
        assert "Traceback" not in result.stderr


# -- run, probes, ask, tell, publish, ps ----------------------------------------------------------------


async def test_run_hosts_the_shop_app_answers_probes_asks_publishes_and_ps_then_drains(
        nats_server: EmbeddedServer, corps_namespace: str, stderr_log: IO[bytes], tmp_path: Path) -> None:
    where = ["--nats", nats_server.url, "--namespace", corps_namespace]
    async with process("--log-format", "json", "--log-level", "info", "run", SHOP, "--http-port", "0", *where,
                       stderr=stderr_log) as shop:
        out = await shop.wait_for("ready: shop:")
        assert "6 actor(s), 4 event consumer(s), coordinating PlaceOrder" in out
        port = int(out.split("probes on http://127.0.0.1:")[1].split("/")[0])
        assert await http_get(port, "/healthz") == (200, {"connected": True, "node": await _node(port)})
        status, ready = await http_get(port, "/readyz")
        assert status == 200
        assert (ready["ready"], ready["coordinator"], ready["spawned"]) == (True, True, 6)
        assert sorted(ready["consumers"]) == ["InventoryEvents", "Order", "PaymentsEvents", "ShippingEvents"]
        assert (await http_get(port, "/nope"))[0] == 404
        assert (await http_get(port, "", raw=b"garbage\r\n\r\n"))[0] == 400
        assert (await http_get(port, "", raw=b"GET /readyz HTTP/1.0\r\n" + b"x" * 9000 + b"\r\n\r\n"))[0] == 431

        app = ["--app", SHOP, "--namespace", corps_namespace, "--nats", nats_server.url]
        asked = await acorps("ask", "Inventory", "main", "GetStock", '{"sku": "sku-1"}', *app)
        assert asked.returncode == 0, asked.stderr
        reply = json.loads(asked.stdout)
        assert reply["$type"] == "StockLevel"
        assert reply["sku"] == "sku-1"
        told = await acorps("tell", "InventoryEvents", "inventory", "GetStock", '{"sku": "sku-1"}', *app)
        assert told.returncode == 0, told.stderr
        assert json.loads(told.stdout) == {"sent": f"{corps_namespace}.actor.InventoryEvents.inventory"}
        for bad, code, error in (('{"sku": 1}', 3, "InvalidMessage"), ('{"sku": ', 3, "InvalidMessage"),
                                 ("[" * 100_000, 3, "InvalidMessage")):
            refused = await acorps("ask", "Inventory", "main", "GetStock", bad, *app)
            assert refused.returncode == code, (bad[:20], refused.stderr)
            assert json.loads(refused.stdout)["error"] == error
        nobody = await acorps("ask", "Inventory", "elsewhere", "GetStock", '{"sku": "a"}', *app)
        assert nobody.returncode == 6, nobody.stderr  # NoResponders: one host, and it has no such id
        assert json.loads(nobody.stdout)["error"] == "NoResponders"
        unknown = await acorps("ask", "Inventory", "main", "Nope", "{}", *app)
        assert unknown.returncode == 2
        assert "handles no message 'Nope'; it handles GetStock, ReleaseStock, ReserveStock" in unknown.stderr

        order = {"order": {"order_id": "o1", "sku": "sku-1", "qty": 1, "card": "4242", "amount": 5, "address": "a"}}
        with open(tmp_path / "tail.log", "w+b") as tail_log:  # noqa: ASYNC230 -- a local temp file
            async with process("events", "tail", "OrderPlaced", "--count", "1", *where, stderr=tail_log) as tail:
                await tail.wait_for("tailing")  # printed once new events will be seen
                published = await acorps("publish", "OrderPlaced", json.dumps(order), "--msg-id", "order-o1", *app)
                assert published.returncode == 0, published.stderr
                assert await tail.finish() == 0
        [line] = tail.text.splitlines()[1:]
        assert "OrderPlaced" in line
        assert "corr order-o1" in line  # a published event's correlation is its own id
        again = await acorps("publish", "OrderPlaced", json.dumps(order), "--msg-id", "order-o1", *app)
        first, second = json.loads(published.stdout), json.loads(again.stdout)
        assert (first["duplicate"], second["duplicate"], second["seq"]) == (False, True, first["seq"])

        ps = await acorps("ps", "--json", *where)
        assert ps.returncode == 0, ps.stderr
        [node] = json.loads(ps.stdout)
        assert node["name"] == "shop"
        assert node["classes"] == {"Inventory": 1, "Payments": 1, "Shipping": 1, "InventoryEvents": 1,
                                   "PaymentsEvents": 1, "ShippingEvents": 1, "Order": node["classes"]["Order"]}
        shop.process.send_signal(signal.SIGTERM)
        assert await shop.finish() == 0
        assert "SIGTERM: draining" in shop.text
        assert "drained:" in shop.text
    stderr_log.seek(0)
    lines = [json.loads(line) for line in stderr_log.read().decode().splitlines() if line.strip()]
    assert lines, "info logs expected"
    assert all({"ts", "level", "logger", "message", "correlation_id"} <= set(line) for line in lines)


async def wait_count(running: Running, needle: str, n: int, timeout: float = 30.0) -> None:
    """Read the process's stdout until ``needle`` appeared ``n`` times."""
    assert running.process.stdout is not None
    with anyio.fail_after(timeout):
        while running.text.count(needle) < n:
            running.out += await running.process.stdout.receive()


async def until_order_settles(system: ActorSystem, order_id: str) -> None:
    """Ask the choreographed Order until it is completed or cancelled (its outcome is its last event)."""
    with anyio.fail_after(20):
        while True:
            try:
                state = await system.ref(Order, order_id).ask(GetOrder(), timeout=1.0)
                if state.status != "placed":
                    return
            except NoResponders:  # not activated by its event yet
                pass
            await anyio.sleep(0.02)  # polling a condition, bounded above


async def _node(port: int) -> str:
    node: str = (await http_get(port, "/healthz"))[1]["node"]
    return node


# -- inspection changes nothing ----------------------------------------------------------------


async def test_inspection_leaves_the_server_unchanged_and_reports_a_missing_namespace(
        nats_server: EmbeddedServer, corps_namespace: str) -> None:
    system = shop_app.app.system(nats_server.url, namespace=corps_namespace)
    async with system:
        await shop_app.app.start(system)
        sid = await system.start_saga(PlaceOrder, OrderRequest("o1", "sku-1", 1, "4242", 5, "somewhere"))
        await system.wait_saga(sid, timeout=10)
        await system.publish(OrderPlaced(OrderRequest("o2", "sku-1", 1, "4242", 5, "x")))
        await until_order_settles(system, "o2")
    # Stopped (drained): nothing else writes, so any change below would be the commands'.
    where = ["--nats", nats_server.url, "--namespace", corps_namespace]
    before = await server_state(nats_server.url)
    assert f"KV_{corps_namespace}-sagas" in before
    results: dict[str, str] = {}
    for args, code in ((["saga", "list"], 0), (["saga", "show", sid, "--json"], 0), (["dlq", "list"], 0),
                       (["dlq", "show", "1"], 5), (["trace", sid], 0), (["ps"], 5),
                       (["events", "tail", ">", "--all", "--count", "1", "--json"], 0),
                       (["events", "tail", ">", "--all", "--no-follow"], 0),
                       (["provision", SHOP, "--dry-run"], 0)):
        result = await acorps(*args, *where)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert await server_state(nats_server.url) == before, args
        results.setdefault(args[0], result.stdout)
    tailed = json.loads(results["events"])
    assert tailed["type"] == "OrderPlaced"
    assert tailed["correlation_id"] == tailed["event_id"]  # published outside a handler: its own chain
    # A namespace with a typo: each command says what is missing, and nothing is created.
    typo = ["--nats", nats_server.url, "--namespace", corps_namespace + "x"]
    for args in (["saga", "show", sid], ["dlq", "show", "1"], ["trace", sid], ["events", "tail", ">"]):
        result = await acorps(*args, *typo)
        assert result.returncode == 5, (args, result.stderr)
        assert "does not exist (nothing was created" in result.stderr
    assert await server_state(nats_server.url) == before


# -- provision ----------------------------------------------------------------------------------


async def test_provision_creates_once_then_checks_and_reports_differences(
        nats_server: EmbeddedServer, corps_namespace: str, tmp_path: Path) -> None:
    where = ["--nats", nats_server.url, "--namespace", corps_namespace]
    plan = await acorps("provision", SHOP, "--dry-run", "--json", *where)
    assert plan.returncode == 1
    assert {r["status"] for r in json.loads(plan.stdout)} == {"missing"}
    assert corps_namespace not in await server_state(nats_server.url)  # a dry run creates nothing
    done = await acorps("provision", SHOP, *where)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("created") == 7  # no idempotency bucket: the shop's participants keep records in memory
    again = await acorps("provision", SHOP, "--dry-run", *where)
    assert again.returncode == 0
    assert "create" not in again.stdout
    # The application then starts on what was provisioned (no ProvisioningConflict).
    async with shop_app.app.system(nats_server.url, namespace=corps_namespace) as system:
        await shop_app.app.start(system)
    (tmp_path / "other.py").write_text(
        "from corps import App, EventsConfig\n"
        "from corps.examples.shop.app import choreography\n"
        "app = App(name='x', actors=choreography.actors, events=EventsConfig(max_age=60.0))\n")
    differs = await acorps("provision", "other:app", "--dry-run", *where, cwd=tmp_path)
    assert differs.returncode == 1
    assert "DIFFERS  stream    " in differs.stdout
    assert "max_age is" in differs.stdout
    refused = await acorps("provision", "other:app", *where, cwd=tmp_path)
    assert refused.returncode == 1
    assert "exists with other settings" in refused.stderr


# -- reload ---------------------------------------------------------------------------------------

APP_SOURCE = '''
import logging
from corps import Actor, App, Message, Request, handler

class Version(Message):
    value: str

class GetVersion(Request[Version]):
    pass

class Versioned(Actor):
    @handler
    async def get(self, msg: GetVersion) -> Version:
        logging.getLogger("app").warning("asked for the version")
        return Version("{version}")

app = App(name="versioned", actors={{Versioned: "v"}})
'''


async def test_reload_restarts_the_app_when_its_source_changes(
        nats_server: EmbeddedServer, corps_namespace: str, tmp_path: Path, stderr_log: IO[bytes]) -> None:
    source = tmp_path / "versioned.py"
    source.write_text(APP_SOURCE.format(version="one"))
    where = ["--nats", nats_server.url, "--namespace", corps_namespace]
    ask = ["ask", "versioned:Versioned", "v", "GetVersion", "{}", *where]
    async with process("--log-format", "json", "run", "versioned:app", "--reload", *where, stderr=stderr_log,
                       cwd=tmp_path) as running:
        await running.wait_for("ready: versioned")
        assert json.loads((await acorps(*ask, cwd=tmp_path)).stdout)["value"] == "one"
        source.write_text(APP_SOURCE.format(version="two"))
        touch_later(source)
        await running.wait_for("versioned.py changed; restarting")
        await wait_count(running, "ready: versioned", 2)
        assert "drained:" in running.text.split("restarting")[0] + running.text.split("restarting")[1]
        assert json.loads((await acorps(*ask, cwd=tmp_path)).stdout)["value"] == "two"
        running.process.send_signal(signal.SIGINT)
        assert await running.finish() == 0
    stderr_log.seek(0)
    logged = [json.loads(line) for line in stderr_log.read().decode().splitlines() if line.startswith("{")]
    asked = [line for line in logged if line["message"] == "asked for the version"]
    assert len(asked) == 2
    assert all(line["correlation_id"] for line in asked)  # the ask's correlation id, as a field


def touch_later(path: Path) -> None:
    later = path.stat().st_mtime + 2
    os.utime(path, (later, later))  # a distinct mtime even on a coarse clock


async def test_reload_waits_for_a_fix_when_the_app_fails_to_start_then_stops_on_sigterm(
        nats_server: EmbeddedServer, corps_namespace: str, tmp_path: Path, stderr_log: IO[bytes]) -> None:
    source = tmp_path / "versioned.py"
    source.write_text(APP_SOURCE.format(version="one"))
    where = ["--nats", nats_server.url, "--namespace", corps_namespace]
    async with process("run", "versioned:app", "--reload", *where, stderr=stderr_log, cwd=tmp_path) as running:
        await running.wait_for("ready: versioned")
        source.write_text("raise RuntimeError('broken on purpose')\n")
        touch_later(source)
        await running.wait_for("reload: the application exited with 2; waiting for a change")
        source.write_text(APP_SOURCE.format(version="two"))
        touch_later(source)
        await wait_count(running, "ready: versioned", 2)
        ask = ["ask", "versioned:Versioned", "v", "GetVersion", "{}", *where]
        assert json.loads((await acorps(*ask, cwd=tmp_path)).stdout)["value"] == "two"
        running.process.send_signal(signal.SIGTERM)
        assert await running.finish() == 0
    assert running.text.count("drained:") == 2  # each child drained: the first on the change, the last on SIGTERM


HOLDER_SOURCE = '''
import pathlib
import anyio
from corps import Actor, App, Message, handler

class Hold(Message):
    path: str

class Holder(Actor):
    @handler
    async def hold(self, msg: Hold) -> None:
        print("holding", flush=True)
        with anyio.fail_after(20):
            while not pathlib.Path(msg.path).exists():
                await anyio.sleep(0.02)  # polling a file, bounded above

app = App(name="holder", actors={Holder: "h"})
'''


async def test_readyz_answers_503_while_the_app_drains_an_in_flight_message(
        nats_server: EmbeddedServer, corps_namespace: str, tmp_path: Path, stderr_log: IO[bytes]) -> None:
    (tmp_path / "holder.py").write_text(HOLDER_SOURCE)
    release = tmp_path / "release"
    where = ["--nats", nats_server.url, "--namespace", corps_namespace]
    async with process("run", "holder:app", "--http-port", "0", *where, stderr=stderr_log, cwd=tmp_path) as running:
        out = await running.wait_for("ready: holder")
        port = int(out.split("probes on http://127.0.0.1:")[1].split("/")[0])
        assert (await http_get(port, "/readyz"))[0] == 200
        told = await acorps("tell", "holder:Holder", "h", "Hold", json.dumps({"path": str(release)}), *where,
                            cwd=tmp_path)
        assert told.returncode == 0, told.stderr
        await running.wait_for("holding")
        running.process.send_signal(signal.SIGTERM)
        await running.wait_for("SIGTERM: draining")
        status, body = await http_get(port, "/readyz")  # the message is still in flight
        assert (status, body["ready"], body["draining"]) == (503, False, True)
        assert (await http_get(port, "/healthz"))[0] == 200
        release.touch()
        assert await running.finish() == 0
    assert "drained: 1 message(s) processed" in running.text


# -- probes -------------------------------------------------------------------------------------


async def test_readyz_is_503_until_the_app_started_and_again_while_draining(actor_system: ActorSystem) -> None:
    probes = Probes(actor_system)
    assert probes.healthz()[0] == 200
    assert probes.readyz() == (503, {"ready": False, "connected": True, "draining": False})
    probes.ready = Ready(spawned=2, consumers=("Order",), coordinator=True)
    status, body = probes.readyz()
    assert (status, body["ready"], body["spawned"], body["consumers"]) == (200, True, 2, ["Order"])
    probes.draining = True
    assert probes.readyz()[0] == 503


async def test_ps_counts_forged_answers_and_keeps_a_bounded_number_of_nodes(
        actor_system: ActorSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(2):  # a service group: two instances of one id
        await actor_system.spawn(Pricing, "prices")
    nc = await nats.connect(actor_system.url)
    try:
        async def forge(msg: Any) -> None:  # anyone may answer on {ns}.nodes
            await nc.publish(msg.reply, b"not a report")
            forged = {"node": "f" * 12, "name": "forged", "namespace": "x", "started": 0.0, "classes": {}}
            await nc.publish(msg.reply, json.dumps(forged).encode())

        await nc.subscribe(f"{actor_system.namespace}.nodes", cb=forge)
        await flush(nc)
        async with inspector(actor_system.url, actor_system.namespace) as look:
            reports, bad = await look.nodes(wait=0.5)
            assert bad == 1
            assert sorted(r.node for r in reports) == sorted([actor_system.node, "f" * 12])
            assert next(r for r in reports if r.node == actor_system.node).classes == {"Pricing": 2}
            monkeypatch.setattr(_inspect, "MAX_NODES", 1)
            reports, bad = await look.nodes(wait=0.5)
            assert (len(reports), bad) == (1, 2)
    finally:
        await nc.close()
