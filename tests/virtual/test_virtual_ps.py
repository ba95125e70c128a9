"""``corps ps`` shows each node's virtual counters (active ids, activations, moves, fenced
messages, and partitions when a node reports them), as a real ``corps`` process on a real server."""

from __future__ import annotations

import json
import uuid

import msgspec
import nats
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.msg import Msg

from corps import ActorSystem, EmbeddedServer
from corps.cli._ps import table
from corps.system._nodeinfo import NodeReport
from corps.tools._inspect import inspector
from corps.wire._subjects import nodes_subject
from corps.wire._transport import flush
from tests.integration.test_ops_cli import acorps
from tests.virtual.domain import Hit, Keeper

pytestmark = [pytest.mark.slow]


async def test_corps_ps_shows_the_virtual_counters_of_each_node(nats_server: EmbeddedServer) -> None:
    ns = f"ps{uuid.uuid4().hex[:8]}"
    where = ["--nats", nats_server.url, "--namespace", ns, "--wait", "1"]
    async with ActorSystem(nats_server.url, namespace=ns, name="vps") as system:
        await system.host(Keeper)
        for i in range(5):
            await system.ref(Keeper, f"k{i}").ask(Hit("s", 0))
        as_json, as_table = await acorps("ps", "--json", *where), await acorps("ps", *where)
    assert as_json.returncode == 0, as_json.stderr
    [node] = json.loads(as_json.stdout)
    counts = node["virtual"]["Keeper"]
    assert (counts["active"], counts["activations"], counts["moves_out"], counts["fenced"]) == (5, 5, 0, 0)
    assert node["virtual"]["membership"]["members"] == 1
    assert as_table.returncode == 0, as_table.stderr
    header, row = as_table.stdout.splitlines()[:2]
    assert header.split() == ["NODE", "NAME", "UP", "CLASS", "INSTANCES", "ACTIVATIONS", "MOVES", "FENCED"]
    assert row.split()[3:] == ["Keeper", "5", "5", "0", "0"]
    assert "(members 1, lapses 0)" in as_table.stdout


def test_the_table_shows_partitions_when_a_node_reports_them_and_dashes_for_plain_classes() -> None:
    virtual = {"Orders": {"active": 2, "activations": 3, "moves_out": 1, "fenced": 4, "partitions": 8}}
    r = NodeReport(node="n1", name="app", namespace="ns", started=0.0, classes={"Orders": 2, "Plain": 1},
                   virtual=virtual)
    lines = table([r, NodeReport(node="n2", name="old", namespace="ns", started=0.0, classes={"Plain": 1})],
                  "ns").splitlines()
    assert lines[0].split()[-4:] == ["ACTIVATIONS", "MOVES", "FENCED", "PARTITIONS"]
    assert lines[1].split()[-5:] == ["2", "3", "1", "4", "8"]
    assert lines[2].split()[-5:] == ["1", "-", "-", "-", "-"]
    assert lines[3].split()[:2] == ["n2", "old"]
    assert lines[3].split()[-6:] == ["Plain", "1", "-", "-", "-", "-"]
    assert "MOVES" not in table([NodeReport(node="n", name="a", namespace="ns", started=0.0, classes={})], "ns")


async def test_hostile_answers_to_corps_ps_are_counted_and_skipped(nats_server: EmbeddedServer) -> None:
    """Anyone may answer on ``{ns}.nodes``: answers that are not node reports (a ``virtual``
    field of the wrong shape, deep nesting, not JSON) are counted, and the table still renders."""
    ns = f"ps{uuid.uuid4().hex[:8]}"
    good = {"node": "n1", "name": "app", "namespace": ns, "started": 0.0, "classes": {"T": 1},
            "virtual": {"T": {"activations": 3, "moves_out": 1, "fenced": 0}}}
    hostile = [b"\xff", b"[" * 100_000, json.dumps({**good, "node": "n2", "virtual": {"T": {"fenced": "x"}}}).encode(),
               json.dumps({**good, "node": "n3", "virtual": [1]}).encode(),
               json.dumps({**good, "node": "n4", "virtual": {"T": {"a": {"b": 1}}}}).encode()]
    nc = await nats.connect(nats_server.url)
    try:
        async def answer(msg: Msg) -> None:
            for payload in [*hostile, json.dumps(good).encode()]:
                await nc.publish(msg.reply, payload)

        await nc.subscribe(nodes_subject(ns), cb=answer)
        await flush(nc)
        async with inspector(nats_server.url, ns) as look:
            reports, bad = await look.nodes(1.0)
    finally:
        await nc.close()
    assert bad == len(hostile)
    assert [r.node for r in reports] == ["n1"]
    assert table(reports, ns).splitlines()[1].split()[-3:] == ["3", "1", "0"]


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=20))
def test_any_virtual_field_either_decodes_to_a_report_the_table_renders_or_is_refused(virtual: object) -> None:
    data = json.dumps({"node": "n", "name": "a", "namespace": "ns", "started": 0.0, "classes": {"T": 1},
                       "virtual": virtual}).encode()
    try:
        report = msgspec.json.decode(data, type=NodeReport)
    except msgspec.ValidationError:
        return  # what Inspector.nodes counts as bad
    assert table([report], "ns").startswith("NODE")
