"""Cross-language proof (issue 16, item 7): the official NATS JavaScript client (npm ``nats``)
asks an actor, reads a typed error through the services API's headers, publishes a JSON event
that an ``@on_event`` handler consumes, and discovers the actor class through ``$SRV``.

Skipped, with the reason, when ``node`` or the npm package is missing: ``npm install --prefix
tests/interop`` installs it (``.ci/run`` does so when node and npm exist).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import pytest

from corps import ActorSystem
from tests.integration.test_interop import Greeter, Seen

HERE = Path(__file__).parent
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed (Debian: apt-get install -y nodejs npm)"),
    pytest.mark.skipif(not (HERE / "node_modules" / "nats").is_dir(),
                       reason="the npm package 'nats' is not installed: npm install --prefix tests/interop"),
]


async def test_a_nodejs_client_asks_publishes_a_json_event_and_discovers_the_service(
    actor_system: ActorSystem,
) -> None:
    Greeter.seen = seen = Seen()
    ref = await actor_system.spawn(Greeter, "from-node")
    service_id = f"{actor_system.node}-Greeter"
    assert NODE is not None
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [NODE, str(HERE / "interop.mjs"), actor_system.url, ref.subject,
             f"{actor_system.namespace}.events.Shouted", "Greeter", service_id], check=False)
    assert done.returncode == 0, done.stderr.decode()
    out = json.loads(done.stdout)

    assert out["ask"] == {"$type": "Hi", "text": "hi node", "corr": "node-corr-1", "traceparent": ""}
    assert out["askIsServiceError"] is False
    assert out["error"]["code"] == 500
    assert out["error"]["message"] == "ValueError: from node"
    assert out["error"]["body"]["kind"] == "RemoteError"

    await seen.wait_for(1)  # the @on_event handler consumed the JSON event
    assert seen.items == [("from node", "0af7651916cd43dd8448eb211c80319c",
                           "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    assert out["eventSeq"] > 0

    assert (out["ping"]["name"], out["ping"]["id"]) == ("Greeter", service_id)
    assert out["ping"]["type"] == "io.nats.micro.v1.ping_response"
    endpoints = {e["name"]: e for e in out["info"]["endpoints"]}
    assert sorted(endpoints) == ["Boom", "Hello", "Note"]
    assert endpoints["Hello"]["subject"] == f"{actor_system.namespace}.actor.Greeter.*"
    assert "request_schema" in endpoints["Hello"]["metadata"]
    stats = {e["name"]: e for e in out["stats"]["endpoints"]}
    assert (stats["Hello"]["num_requests"], stats["Boom"]["num_errors"]) == (1, 1)
    assert stats["Boom"]["last_error"] == "ValueError: from node"
