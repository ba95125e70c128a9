"""The saga face of ActorSystem: start, watch and retry sagas through this system's coordinator."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import anyio.abc

from corps.core._messages import Message
from corps.errors import SagaNotFound, SagaStoreUnavailable, SagaTimeout, SagaUnreadable
from corps.saga._config import SagaConfig
from corps.saga._coordinator import Coordinator
from corps.saga._definition import Saga
from corps.saga._info import SagaInfo
from corps.saga._log import SagaLog

if TYPE_CHECKING:
    from corps.core._host import ClassHost
    from corps.core._node import Node
    from corps.wire._client import CorpsClient

log = logging.getLogger("corps.saga")

I = TypeVar("I", bound=Message)  # noqa: E741 -- a saga's input


class SagaAPI:
    """Mixed into ActorSystem (a Node), which sets the attributes below."""

    namespace: str
    _nc: CorpsClient
    _tg: anyio.abc.TaskGroup | None
    _saga_classes: tuple[type[Saga[Any]], ...]
    _saga_config: SagaConfig
    _coordinator: Coordinator | None
    _coordinator_lock: anyio.Lock

    @property
    def saga_config(self) -> SagaConfig:
        """Where this system keeps saga state and how its coordinator shares it (``SagaConfig``)."""
        return self._saga_config

    async def coordinator(self) -> Coordinator:
        """This system's saga coordinator, started on first use (it opens the saga log).

        Raises:
            SagaStoreUnavailable: JetStream is not available.
            ProvisioningConflict: the saga log bucket exists with fewer replicas or another storage
                than ``saga_config`` wants.
        """
        current = self._coordinator
        if current is not None and not current.dead:
            return current  # the common case, without the lock's trip through the event loop
        async with self._coordinator_lock:
            if self._coordinator is None or self._coordinator.dead:
                assert self._tg is not None
                saga_log = await SagaLog.open(self._nc.jetstream(), self.namespace, self._saga_config)
                coordinator = Coordinator(cast("Node", self), saga_log, self._saga_config)
                for saga in self._saga_classes:
                    coordinator.register(saga)
                await self._tg.start(coordinator.run)
                self._coordinator = coordinator
            return self._coordinator

    async def start_saga(self, saga: type[Saga[I]], input: I, saga_id: str | None = None) -> str:
        """Start a saga and return its id once its first transition is in the saga log.

        Idempotent by id: starting the same ``saga_id`` again returns it without a second saga.

        Raises:
            ValueError: ``saga_id`` is not 1-128 letters, digits, '-' or '_'.
            TypeError: ``input`` is not the saga's input type.
            InvalidMessage: the saga's record would not fit the saga log: its input, plus the
                headroom its class needs for retries and compensation, exceeds the server's
                max_payload (the reason gives the sizes).
            SagaStoreUnavailable: the saga log cannot be written.
        """
        coordinator = await self.coordinator()
        return await coordinator.start(saga, input, saga_id)

    async def saga_status(self, saga_id: str) -> SagaInfo:
        """The saga's status and its step history with timings, as the saga log has it.

        Raises:
            SagaNotFound: no saga with this id.
            SagaUnreadable: its record in the saga log cannot be decoded.
            SagaStoreUnavailable: the saga log cannot be read.
        """
        coordinator = await self.coordinator()
        record, _ = await coordinator.log.read(saga_id)
        return SagaInfo.of(record)

    async def wait_saga(self, saga_id: str, timeout: float = 30.0) -> SagaInfo:
        """Wait until the saga is COMPLETED, COMPENSATED or FAILED; its final status.

        The saga log being unavailable for a while (a nats-server restart) is waited out too.

        Raises:
            SagaTimeout: not terminal within ``timeout`` seconds (it goes on running).
            SagaNotFound: no saga with this id.
            SagaUnreadable: its record in the saga log cannot be decoded.
        """
        coordinator = await self.coordinator()
        delay = 0.01
        with anyio.move_on_after(timeout):
            # Driven here: its end is an event, and its terminal record the one this coordinator
            # just wrote (CAS-durable): answered from memory, no read of the log.
            ended = await coordinator.wait_local(saga_id)
            if ended is not None:
                return SagaInfo.of(ended)
            while True:
                try:
                    info = await self.saga_status(saga_id)
                    if info.terminal:
                        return info
                except SagaStoreUnavailable as exc:
                    log.info("waiting for saga %s: %s", saga_id, exc)
                # Driven here: wake on its end. Driven elsewhere: read the log again, backing off.
                with anyio.move_on_after(delay):
                    if coordinator.drives(saga_id):
                        ended = await coordinator.wait_local(saga_id)
                        if ended is not None:
                            return SagaInfo.of(ended)
                    else:
                        await anyio.sleep(delay)
                delay = min(delay * 2, 0.5)
        raise SagaTimeout(saga_id, timeout)

    async def retry_saga(self, saga_id: str) -> None:
        """Give a FAILED saga's failed compensations a new round (an operator's decision).

        Raises:
            SagaNotFound, SagaUnreadable, SagaStoreUnavailable: as for saga_status.
        """
        coordinator = await self.coordinator()
        await coordinator.retry(saga_id)

    async def list_sagas(self, *, active_only: bool = False) -> list[SagaInfo]:
        """Every saga in the log (or only those not terminal), oldest id first.

        A record that cannot be decoded is listed as ``SagaInfo.unreadable`` (status UNREADABLE).

        Raises:
            SagaStoreUnavailable: the saga log cannot be read.
        """
        coordinator = await self.coordinator()
        ids = await (coordinator.log.active() if active_only else coordinator.log.all())
        infos = []
        for saga_id in ids:
            try:
                record, _ = await coordinator.log.read(saga_id)
            except SagaNotFound:
                continue
            except SagaUnreadable as exc:
                infos.append(SagaInfo.unreadable(saga_id, exc.reason))
                continue
            infos.append(SagaInfo.of(record))
        return infos


class SagaExtension:
    """Starts the coordinator with the node when saga classes were listed (``ActorSystem(sagas=...)``);
    otherwise it starts on the first ``start_saga``."""

    def __init__(self, api: SagaAPI) -> None:
        self._api = api

    async def start(self, node: Node) -> None:
        if self._api._saga_classes:
            await self._api.coordinator()

    async def attach(self, host: ClassHost) -> None:
        pass  # participants need nothing per class: @idempotent opens its store on first use

    async def stop_intake(self) -> None:
        pass  # the coordinator stops with the node's task group
