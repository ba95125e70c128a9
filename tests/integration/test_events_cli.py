"""``corps dlq`` and ``corps events tail`` against a real server."""

from __future__ import annotations

import subprocess
import sys

import anyio

from corps import ActorSystem
from tests.integration.events_domain import DeadLetterWatch, Log, Noted, Poison, Recorder


def corps(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "corps.cli._main", *args], capture_output=True, text=True, timeout=60)


async def test_dlq_list_show_redrive_and_events_tail(actor_system: ActorSystem) -> None:
    Recorder.log = Log()
    await actor_system.spawn(Recorder, "r")
    await actor_system.publish(Poison(3))
    await actor_system.publish(Noted("cli", 1))
    async def dead_lettered() -> bool:
        return bool(await actor_system.events.dead_letters())

    watch = await DeadLetterWatch().start(actor_system)
    await watch.wait_until(dead_lettered)
    where = ["--nats", actor_system.url, "--namespace", actor_system.namespace]
    listed = await anyio.to_thread.run_sync(lambda: corps("dlq", "list", *where))
    assert listed.returncode == 0, listed.stderr
    assert "1 dead letter(s)" in listed.stdout
    assert "Recorder" in listed.stdout
    assert "Poison" in listed.stdout
    assert "handler-error after 3" in listed.stdout
    shown = await anyio.to_thread.run_sync(lambda: corps("dlq", "show", "1", *where))
    assert '"$type":"Poison"' in shown.stdout
    assert "ValueError" in shown.stdout
    tail = await anyio.to_thread.run_sync(lambda: corps("events", "tail", ">", "--all", "--count", "2", *where))
    assert tail.returncode == 0, tail.stderr
    assert '"$type":"Poison"' in tail.stdout
    assert '"$type":"Noted"' in tail.stdout
    redriven = await anyio.to_thread.run_sync(lambda: corps("dlq", "redrive", "1", *where))
    assert "redriven 1: Poison for Recorder" in redriven.stdout
    async def dead_lettered_again() -> bool:  # fails 3 more times, then is dead-lettered again
        return any(e.dlq_seq > 1 for e in await actor_system.events.dead_letters())

    await watch.wait_until(dead_lettered_again)
    await watch.stop()
    assert Recorder.log.attempts[("poison", 3)] == 6
