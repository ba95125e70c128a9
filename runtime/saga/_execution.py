"""Carrying out a saga's commands: asks to participants and retry timers (a mixin of ``Coordinator``).

One idea: what the coordinator does once a transition is written. A lone request with nothing
else of the saga pending is asked from the saga's own task (``_execute`` returns it, ``_drive``
asks it); otherwise each ask and each retry timer runs in a task of its own and posts its
outcome to the saga's event queue (``Drive.events``); a Finish is reported. The step's span,
under an observer, is current while it asks. The drive loop itself is ``corps.saga._coordinator``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from corps.saga._outcome import ask_participant, report_finish
from corps.saga._state import Command, Event, Finish, RetryDue, ScheduleRetry, SendStep, SendUndo
from corps.saga._takeover import Drive

if TYPE_CHECKING:
    from corps.core._node import Node


class Execution:
    """The coordinator's asks and timers (``Coordinator`` provides the state and ``_hook``)."""

    system: Node
    _tg: anyio.abc.TaskGroup | None

    if TYPE_CHECKING:  # Coordinator's
        def _hook(self, point: str) -> None: ...

    def _execute(self, saga_id: str, d: Drive, commands: list[Command]) -> SendStep | SendUndo | None:
        """Carry out ``commands``; the one to ask inline, when it is a lone request and nothing
        else of the saga is pending (``_drive`` asks it), else None (each runs in its own task)."""
        if (len(commands) == 1 and not d.outstanding and isinstance(commands[0], SendStep | SendUndo)):
            return commands[0]
        assert self._tg is not None
        for cmd in commands:
            if isinstance(cmd, SendStep | SendUndo):
                d.outstanding += 1
                self._tg.start_soon(self._send, saga_id, d, cmd)
            elif isinstance(cmd, ScheduleRetry):
                d.outstanding += 1
                self._tg.start_soon(self._retry_later, d, cmd)
            elif isinstance(cmd, Finish):
                report_finish(d.state, cmd)
                if self.system.observer is not None:
                    self.system.observer.saga_ended(d.engine.saga.__name__, saga_id, str(cmd.status))
        return None

    async def _ask(self, saga_id: str, d: Drive, cmd: SendStep | SendUndo) -> Event:
        to = d.engine.saga.step_named(cmd.step).to  # the engine checked it: an Actor class
        obs = self.system.observer
        if obs is None:
            return await ask_participant(self.system, saga_id, to, cmd, self._hook)
        # The step's span is current while it asks: the request carries its traceparent.
        token = obs.step_begin(d.engine.saga.__name__, saga_id, cmd.step, isinstance(cmd, SendUndo), to.actor_name)
        try:
            event = await ask_participant(self.system, saga_id, to, cmd, self._hook)
        except BaseException as exc:
            obs.step_end(token, type(exc).__name__)
            raise
        obs.step_end(token, type(event).__name__)
        return event

    async def _send(self, saga_id: str, d: Drive, cmd: SendStep | SendUndo) -> None:
        try:
            d.events.post(await self._ask(saga_id, d, cmd))
        finally:
            d.outstanding -= 1

    async def _retry_later(self, d: Drive, cmd: ScheduleRetry) -> None:
        try:
            await anyio.sleep(max(0.0, cmd.due_at - time.time()))
            d.events.post(RetryDue(step=cmd.step, attempt=cmd.attempt, compensation=cmd.compensation,
                                   at=time.time()))
        finally:
            d.outstanding -= 1
