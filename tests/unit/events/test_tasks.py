"""The event consumers' background tasks (runtime/events/_tasks.py): held while they run (the
event loop keeps only weak references), released when done, a failure logged with its
traceback, a cancellation not logged as one."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from corps.events._tasks import OwnTasks


class Consumer(OwnTasks):
    def __init__(self) -> None:
        self.name = "Ledger"
        self._tasks: set[asyncio.Task[Any]] = set()


async def test_a_running_task_is_held_and_released_when_it_ends() -> None:
    consumer, release = Consumer(), asyncio.Event()
    consumer._spawn(release.wait())
    gc.collect()
    (task,) = consumer._tasks  # held: a task only the loop knows of may be collected mid-flight
    release.set()
    await task  # its done callback was added first: it has run when this await returns
    assert consumer._tasks == set()


async def test_a_failed_task_is_logged_with_its_error_and_a_cancelled_one_is_not(
        caplog: pytest.LogCaptureFixture) -> None:
    async def fail() -> None:
        raise RuntimeError("boom")

    consumer = Consumer()
    with caplog.at_level(logging.ERROR, "corps.events"):
        consumer._spawn(fail())
        (failed,) = consumer._tasks
        await asyncio.gather(failed, return_exceptions=True)
        consumer._spawn(asyncio.Event().wait())
        (waiting,) = consumer._tasks - {failed}
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    [record] = caplog.records
    assert record.getMessage() == "event consumer Ledger: task failed"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert consumer._tasks == set()
