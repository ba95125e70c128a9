"""Pull pacing of an event consumer: pipelined pull requests, counted, and found again when lost.

One idea: how much this node asks the server for, and when. Up to two batches are asked for at a
time, whenever ``max_ack_pending`` leaves room (``_pull_loop``, and ``_pull_now`` from inside a
mailbox run, its request written with the acks that made room); the count of what the open
requests still ask for falls by one per delivery (in ``EventConsumer._delivered``, inline: the
hot path) and by a request's ``Nats-Pending-Messages`` when its end status comes (``_close``).
Requests silent for two heartbeats are gone (``_stalled``): forgotten, and the consumer checked.
``EventConsumer`` (``_consumer.py``) is the rest: routing deliveries, outcomes, dead letters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Protocol

import anyio

if TYPE_CHECKING:
    from nats.aio.client import Client

    from corps.events._config import EventsConfig
    from corps.events._delivery import EventDelivery
    from corps.events._wire import AckBuffer

log = logging.getLogger("corps.events")

OPEN_TOKENS = 16
"""Pull requests remembered for their end status; older ones have long been filled (at most two
batches are asked for at a time)."""
PENDING = "Nats-Pending-Messages"
"""In a pull request's end status: how many messages it did not deliver."""


class _Provisioner(Protocol):
    """What pacing needs of the node's ``Events``: the connection, and the consumer provisioned."""

    nc: Client

    async def ensure_consumer(self, name: str, filters: list[str], max_deliver: int) -> None: ...


class PullPacing:
    """The pull side of ``EventConsumer``: its state is set in ``EventConsumer.__init__``."""

    events: _Provisioner
    cfg: EventsConfig
    name: str
    filters: list[str]
    max_deliver: int
    outstanding: dict[int, EventDelivery]
    stalls: int
    _prefix: str
    _next: str
    _token: int
    _open: dict[int, int]
    _asked: int
    _pace: int
    _heard: float
    _ended: asyncio.Event
    _turn: asyncio.Event
    _room: asyncio.Event
    _room_wanted: bool
    _refused: bool
    _acks: AckBuffer
    _stopping: bool

    async def _pull_loop(self) -> None:
        cfg = self.cfg
        limit = cfg.max_ack_pending
        while not self._stopping:
            if self._refused:  # (_pull_now also waits while it is set)
                await anyio.sleep(cfg.heartbeat / 10)
                self._refused = False
            room = limit - len(self.outstanding) - self._asked
            if room < self._pace // 2 + 1:
                self._room_wanted = True  # (only then does a released delivery set _room)
                await self._wait(self._room)  # handlers must finish (and ack) first
                self._room_wanted = False
                continue
            if self._asked > self._pace:
                await self._wait(self._turn)  # more than a batch still asked for
                continue
            want = min(cfg.batch, room)
            req = self._request(want)
            try:
                await self.events.nc.publish(self._next, req, reply=f"{self._prefix}{self._token}")
            except Exception as exc:  # noqa: BLE001 -- disconnected: wait and pull again
                log.warning("event consumer %s: pull request failed: %r", self.name, exc)
                self._close(self._token, want)
                await anyio.sleep(cfg.heartbeat)

    def _request(self, want: int) -> bytes:
        """The body of the next pull request (token ``self._token``), counted as asked for."""
        cfg = self.cfg
        self._token += 1
        if not self._asked:
            self._heard = time.monotonic()
        self._open[self._token] = want
        if len(self._open) > OPEN_TOKENS:
            del self._open[next(iter(self._open))]  # long filled: a request without end status
        self._asked += want
        self._ended.clear()
        return json.dumps({"batch": want, "expires": int(cfg.fetch_expires * 1e9),
                           "idle_heartbeat": int(cfg.heartbeat * 1e9)}).encode()

    def _pull_now(self) -> None:
        """Ask for the next batch from inside a mailbox run, with the acks that made room for it:
        the pull loop's task would only run after the whole batch (see ``AckBuffer``)."""
        if self._stopping or self._refused or self._asked > self._pace or not self.events.nc.is_connected:
            return
        room = self.cfg.max_ack_pending - len(self.outstanding) - self._asked
        if room < self._pace // 2 + 1:
            return
        body = self._request(min(self.cfg.batch, room))
        reply = f"{self._prefix}{self._token}"
        self._acks.add_command(b"PUB %b %b %d\r\n%b\r\n" % (self._next.encode(), reply.encode(), len(body), body))

    async def _wait(self, event: asyncio.Event) -> None:
        """Wait for ``event`` (at most a heartbeat); then, if requests are open and nothing was heard
        from them for two heartbeats, they are gone: forget them and check the consumer."""
        event.clear()
        with anyio.move_on_after(self.cfg.heartbeat):
            await event.wait()
        if self._asked and time.monotonic() - self._heard > 2 * self.cfg.heartbeat + 0.5:
            await self._stalled()

    def _close(self, token: int, left: int | None) -> None:
        """Request ``token`` is over (its end status came, or its publish failed): the ``left``
        messages it did not deliver (its whole size when the status does not say) are no longer
        asked for."""
        want = self._open.pop(token, None)
        if want is None:
            return  # not ours, or already closed
        self._asked = max(self._asked - min(want if left is None else left, want), 0)
        if not self._asked:
            self._ended.set()
        self._turn.set()
        self._room.set()

    async def _stalled(self) -> None:
        """No delivery, heartbeat or status for two heartbeats: the pull requests are gone."""
        self.stalls += 1
        self._open.clear()
        self._asked = 0
        self._ended.set()
        log.warning("event consumer %s: pull request silent for %.1fs; pulling again",
                    self.name, time.monotonic() - self._heard)
        try:  # the consumer may be gone too (a server that lost its store): provision it again
            await self.events.ensure_consumer(self.name, self.filters, self.max_deliver)
        except Exception as exc:  # noqa: BLE001 -- server still down: the next round retries
            log.warning("event consumer %s: cannot check the consumer yet: %r", self.name, exc)
