"""Running a class's mailboxes and supervising its instances (a mixin of ``ClassHost``).

One idea: what happens to a message once a mailbox holds it. ``_schedule`` starts a drain task
for a cell with messages; ``_drain`` runs them in order (a tell on the hot path: no clock, no
reply, no tuple; an ask, or any message under an observer, through ``_one``); a handler's error
is answered and counted (``_failed``), then supervised (Resume / Restart with backoff / Stop).
Routing to the mailboxes (``_admit``, ``enqueue_event``) and spawning are ``corps.core._host``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from corps.core._cell import Batch, Cell, Item, TellItem, envelopes_of, index_of
from corps.core._context import Current, current, current_correlation_id
from corps.core._replies import _RAISED
from corps.core._supervision import Restart, Resume, Stop, restart_delay
from corps.errors import StepRejected
from corps.wire._codec import Envelope, ErrorReply, Tells

if TYPE_CHECKING:
    from corps.core._metrics import ClassMetrics, EndpointStats
    from corps.core._observe import Observer
    from corps.core._options import ActorOptions
    from corps.wire._client import CorpsClient

log = logging.getLogger("corps.actor")


class _Drains(Protocol):
    """What the mailbox loop needs of the ``Node``: its connection, observer and drain tasks."""

    _nc: CorpsClient
    observer: Observer | None

    def _start_drain(self, fn: Callable[[Any], Coroutine[Any, Any, None]], cell: Any) -> None: ...


class Mailboxes:
    """The host's mailbox loop and supervision (``ClassHost`` provides the state)."""

    system: _Drains
    options: ActorOptions
    metrics: ClassMetrics
    endpoints: EndpointStats
    cells: dict[str, Cell]
    services: list[Cell]
    dispatch: dict[type, Any]
    fenced: int
    _high: int
    _ext: str

    if TYPE_CHECKING:  # ClassHost's, and Replies'
        async def _start_instance(self, cell: Cell) -> None: ...
        async def _call_on_stop(self, cell: Cell) -> None: ...
        async def _stopped(self, cell: Cell, reply: str, envs: list[Envelope[Any]], is_json: bool) -> None: ...
        def _finish_held(self, here: Current, item: Item, result: Any, began: int) -> None: ...
        async def _answer(self, item: Item, result: Any, began: int) -> None: ...
        async def _send_reply(self, reply: str, rid: int, is_json: bool, ok: bool, body: Any) -> None: ...

    def _schedule(self, cell: Cell) -> None:
        cell.busy = True
        cell.used = True
        self.system._start_drain(self._drain, cell)

    async def _drain(self, cell: Cell) -> None:
        q = cell.queue
        assert q is not None
        here = Current(self._ext)
        current.set(here)  # this task's own context: what handlers send inherits corr/cause
        dispatch = self.dispatch
        high = self._high
        obs = self.system.observer
        actor = cell.actor
        processed = 0
        slow = obs is not None
        guard, marks = cell.guard, cell.marks  # virtual activations only
        unhandled: list[Envelope[Any]] = []  # of the batch being run, if the instance stops
        item: TellItem | None = None  # what here.item is while a tells frame runs
        try:
            while q:
                envs, reply, is_json = q.popleft()
                here.reply, here.is_json = reply, is_json
                if type(envs) is Tells:  # a tells frame (Tells): the messages, no envelope each
                    if item is None:
                        item = TellItem()
                    here.item = item  # the envelope as ids() and the rest read it, updated in place
                    item.base = base = envs.base
                    for i, msg in enumerate(envs.msgs):
                        if cell.stopped:
                            unhandled = envs.envelopes()[i:]
                            break
                        if guard is not None:  # a virtual activation, as in the envelope loop
                            if not guard():
                                self.fenced += cell.depth
                                q.clear()
                                break
                            if marks is not None:
                                marks[reply.rpartition(".")[0]] = base + i
                        cell.depth -= 1
                        item.msg, item.i = msg, i
                        if slow:  # under an observer: as an envelope, through _one
                            env = here.item = Envelope(msg, 0, item.mid)
                            processed += await self._one(obs, cell, (env, reply, is_json), here)
                            here.item = item
                            actor = cell.actor
                        else:  # as the hot path below
                            try:
                                await dispatch[type(msg)](actor, msg)
                            except Exception as exc:  # noqa: BLE001 -- user handler errors, as below
                                await self._tell_raised(cell, (Envelope(msg, 0, item.mid), reply, is_json), exc)
                                actor = cell.actor
                            else:
                                processed += 1
                                if here.held is not None:
                                    await self._tell_held(cell, (Envelope(msg, 0, item.mid), reply, is_json))
                        if cell.over_since is not None and cell.depth < high:
                            cell.over_since = None
                    else:
                        continue
                    break
                if TYPE_CHECKING:  # (type(envs) is Tells, not isinstance: cheaper per message)
                    assert isinstance(envs, list)
                for env in envs:
                    if cell.stopped:
                        unhandled = envs[index_of(envs, env):]
                        break
                    if guard is not None:
                        if not guard():  # fenced off: the id's new owner got these too (every host hears them)
                            self.fenced += cell.depth
                            q.clear()
                            break
                        if marks is not None:
                            marks[reply.rpartition(".")[0]] = env.mid
                    cell.depth -= 1
                    here.item = env
                    if env.rid or slow:  # an ask (timed, answered), or any message under an observer
                        processed += await self._one(obs, cell, (env, reply, is_json), here)
                        actor = cell.actor  # a failure may have restarted the instance
                    else:  # a tell, the hot path: no clock, no reply, no tuple
                        try:
                            await dispatch[type(env.msg)](actor, env.msg)
                        except Exception as exc:  # noqa: BLE001 -- the one place user handler errors are caught
                            await self._tell_raised(cell, (env, reply, is_json), exc)
                            actor = cell.actor
                        else:
                            processed += 1
                            if here.held is not None:  # held work of a tell: awaited off the mailbox
                                await self._tell_held(cell, (env, reply, is_json))
                    if cell.over_since is not None and cell.depth < high:
                        cell.over_since = None  # drained below the high-water mark: admit again
                else:
                    continue
                break
            # Stopped while messages waited: the rest of this batch, then the mailbox.
            rest: list[Batch] = [(unhandled, here.reply, here.is_json)] if unhandled else []
            rest.extend(q)
            q.clear()
            cell.depth = 0
            for left, reply, is_json in rest:
                await self._stopped(cell, reply, envelopes_of(left), is_json)
        finally:
            self.metrics.processed += processed
            cell.busy = False
            if not q:
                cell.queue = None  # idle instances hold no queue

    async def _tell_raised(self, cell: Cell, item: Item, exc: Exception) -> None:
        """A tell's handler raised (``_drain``'s hot paths): what it held fails, then supervision."""
        here = current.get()
        if here is not None and here.held is not None:
            self._finish_held(here, item, _RAISED, 0)
        await self._failed(cell, item, exc, 0)

    async def _tell_held(self, cell: Cell, item: Item) -> None:
        """A tell's handler held work (``hold_reply``): it finishes off the mailbox, and what the
        handler wrote leaves the process before the next message runs (as in ``_one``)."""
        here = current.get()
        assert here is not None
        self._finish_held(here, item, None, 0)
        nc = self.system._nc
        if cell.depth and nc._pending_data_size:
            await nc._flush_pending(force_flush=True)

    async def _one(self, obs: Observer | None, cell: Cell, item: Item, here: Current) -> int:
        """One ask, or one message under an observer, of ``_drain``: 1 if it was handled.
        Asks are timed for the services API's STATS; a tell is not (timing every message cost
        ~0.4 us, a fifth of a coalesced tell: bench tell 4.3x -> 2.9x raw)."""
        env = item[0]
        began = perf_counter_ns() if env.rid else 0
        token = obs.handle_begin(self, cell.subject, env) if obs is not None else None  # type: ignore[arg-type]  # self: the ClassHost
        error: Exception | None = None
        try:
            try:
                result = await self.dispatch[type(env.msg)](cell.actor, env.msg)
            except Exception as exc:  # noqa: BLE001 -- as in _drain: handled by _failed below
                error = exc
                if here.held is not None:
                    self._finish_held(here, item, _RAISED, began)
            else:
                if here.held is not None:  # the reply waits for held work, off the mailbox
                    self._finish_held(here, item, result, began)
                    nc = self.system._nc
                    if cell.depth and nc._pending_data_size:  # read after the handler: what came meanwhile
                        # The next message runs now, in this task: what the held work sent
                        # (a record write) leaves the process first, so a kill while that
                        # message is handled cannot keep it from the server.
                        await nc._flush_pending(force_flush=True)
                elif env.rid:
                    await self._answer(item, result, began)
        except BaseException as exc:
            if obs is not None:
                obs.handle_end(token, exc)
            raise
        if obs is not None:
            obs.handle_end(token, error)
        if error is not None:
            await self._failed(cell, item, error, began)  # after the span: supervision may wait a backoff
            return 0
        return 1

    async def _failed(self, cell: Cell, item: Item, exc: Exception, began: int) -> None:
        env, reply, is_json = item
        if began:
            self.endpoints.answered(type(env.msg), began, f"{type(exc).__name__}: {exc}")
        if isinstance(exc, StepRejected):
            # A business refusal, not a crash: answered, counted, no traceback, no supervision.
            self.metrics.rejected += 1
            log.info("%s refused %s (corr %s): %s", cell.subject, type(env.msg).__name__,
                     current_correlation_id(), exc)
            if env.rid:
                await self._send_reply(reply, env.rid, is_json, False,
                                       ErrorReply("RemoteError", "StepRejected", str(exc)))
            return
        self.metrics.failed += 1
        log.warning("%s failed on %s (corr %s): %r", cell.subject, type(env.msg).__name__,
                    current_correlation_id(), exc, exc_info=exc)
        if env.rid:
            await self._send_reply(reply, env.rid, is_json, False,
                                   ErrorReply("RemoteError", type(exc).__name__, str(exc)))
        await self._supervise(cell, exc)

    # -- supervision ---------------------------------------------------------------------

    async def _supervise(self, cell: Cell, exc: BaseException) -> None:
        policy = self.options.supervision
        if isinstance(policy, Resume):
            return
        if isinstance(policy, Stop):
            await self._stop_cell(cell, f"{type(exc).__name__}: {exc}")
            return
        assert isinstance(policy, Restart)
        while True:
            if cell.restarts is None:
                cell.restarts = []
            delay = restart_delay(policy, cell.restarts, time.monotonic())
            if delay is None:
                await self._stop_cell(cell, f"more than {policy.max_restarts} restarts in {policy.within}s")
                return
            self.metrics.restarts += 1
            await anyio.sleep(delay)
            await self._call_on_stop(cell)
            try:
                await self._start_instance(cell)
                return
            except Exception as again:  # noqa: BLE001 -- a failing restart counts as another failure
                log.warning("restart of %s failed: %r", cell.subject, again)

    async def _stop_cell(self, cell: Cell, why: str) -> None:
        log.warning("stopping %s: %s", cell.subject, why)
        self.metrics.stopped += 1
        cell.stopped = True
        if self.cells.get(cell.actor_id) is cell:
            del self.cells[cell.actor_id]
        if cell in self.services:
            self.services.remove(cell)
        if cell.sub is not None:
            await cell.sub.unsubscribe()
        await self._call_on_stop(cell)
