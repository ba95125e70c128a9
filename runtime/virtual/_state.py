"""Durable state of virtual instances: the ``state`` attribute (a msgspec Struct) in KV.

``{ns}_state`` / ``{Class}.{id}`` -> msgpack of the Struct. Loaded on activation (before
``on_start``), saved after each handled message (``durable="message"``) and when the instance is
deactivated or moved. Every save is a compare-and-set on the revision this activation last read
or wrote, so an activation that was fenced off (its id taken over) cannot overwrite the state
of the one that replaced it: its save raises ``StateFenced``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import nats.js.errors
from nats.js.api import KeyValueConfig

from corps.errors import StateFenced
from corps.virtual._kv import open_bucket

if TYPE_CHECKING:
    from nats.js.kv import KeyValue


def state_bucket(namespace: str) -> str:
    return f"{namespace}_state"


class StateStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._encode = msgspec.msgpack.Encoder().encode

    @classmethod
    async def open(cls, js: object, namespace: str, replicas: int) -> StateStore:
        kv = await open_bucket(js, KeyValueConfig(bucket=state_bucket(namespace), history=1, replicas=replicas,
                                                  description="corps virtual actors: durable state"), "state")
        return cls(kv)

    async def load(self, key: str, decoder: msgspec.msgpack.Decoder[Any]) -> tuple[Any, int]:
        """(the stored state or None, its revision: 0 if none).

        Raises:
            StateFenced: the stored bytes do not decode as the class's state type.
        """
        try:
            entry = await self.kv.get(key, validate_keys=False)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None, 0
        try:
            return decoder.decode(entry.value or b""), entry.revision or 0
        except Exception as exc:  # untrusted bytes (re-raised typed): the activation is refused
            raise StateFenced(key, f"stored state unreadable: {type(exc).__name__}: {exc}"[:300]) from exc

    async def save(self, key: str, state: Any, revision: int) -> int:
        """Write ``state`` if the record is still at ``revision``; the new revision.

        Raises:
            StateFenced: the record changed since (another activation wrote it).
        """
        data = self._encode(state)
        try:
            if revision:
                return await self.kv.update(key, data, last=revision, validate_keys=False)
            return await self.kv.create(key, data, validate_keys=False)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise StateFenced(key, "another activation wrote it since this one loaded it") from exc
