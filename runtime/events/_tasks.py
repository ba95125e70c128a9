"""The background tasks of one event consumer: kept referenced, and a failure logged, never lost."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("corps.events")


class OwnTasks:
    """Mixin: ``_spawn`` a coroutine as a task this consumer holds until it ends (a failed one is logged)."""

    name: str
    _tasks: set[asyncio.Task[Any]]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event consumer %s: task failed", self.name, exc_info=task.exception())
