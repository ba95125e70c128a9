"""Host processes of the virtual benchmarks (``virtual``, ``virtual-events``), both sides.

The parent's: ``hosts(url, ns, n, *args, module=...)`` starts ``n`` children (``python -m module
--url URL --ns NS *args``), each ready once it prints ``ready``, and stops them (SIGTERM, then
SIGKILL after 30 s) on leaving. The child's: ``serve(url, ns, setup)`` runs one ``ActorSystem``
with ``VirtualConfig()``, lets ``setup`` host or spawn what it runs, prints ``ready`` and serves
until SIGTERM/SIGINT or until its parent is gone (a killed benchmark leaves no host behind).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

from corps import ActorSystem, VirtualConfig
from corps.bench._child import child_env

READY_TIMEOUT = 60.0


class Host:
    """One child process, started with its arguments, ready once it says so."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, url: str, ns: str, *extra: str, module: str) -> Host:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, "--url", url, "--ns", ns, *extra,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env=child_env(), start_new_session=True)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT)
        if not line.startswith(b"ready"):
            proc.kill()
            raise RuntimeError(f"bench host did not start: {line!r}")
        return cls(proc)

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
        await self.proc.wait()


@asynccontextmanager
async def hosts(url: str, ns: str, n: int, *extra: str, module: str) -> AsyncIterator[list[Host]]:
    """``n`` host processes of ``module``, all ready; stopped on leaving."""
    started = await asyncio.gather(*(Host.start(url, ns, *extra, module=module) for _ in range(n)))
    try:
        yield list(started)
    finally:
        await asyncio.gather(*(h.stop() for h in started))


async def serve(url: str, ns: str, setup: Callable[[ActorSystem], Awaitable[object]]) -> None:
    """The child's side: a system set up by ``setup``, ``ready`` printed, served until stopped."""
    parent = os.getppid()
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with ActorSystem(url, namespace=ns, virtual=VirtualConfig()) as system:
            await setup(system)
            print("ready", flush=True)
            await _until_stopped(signals, parent)


async def _until_stopped(signals: AsyncIterator[int], parent: int) -> None:
    """Return on SIGTERM/SIGINT, or once the parent is gone."""
    async with anyio.create_task_group() as tg:
        async def until_signal() -> None:
            async for _ in signals:
                break
            tg.cancel_scope.cancel()

        async def until_orphaned() -> None:
            await _orphaned(parent)
            tg.cancel_scope.cancel()
        tg.start_soon(until_signal)
        tg.start_soon(until_orphaned)


async def _orphaned(parent: int) -> None:
    """Return once the parent is gone (the benchmark was killed): no host outlives it."""
    while os.getppid() == parent:  # noqa: ASYNC110 -- nothing signals a parent's death: polled
        await anyio.sleep(1.0)


__all__ = ["Host", "hosts", "serve"]
