"""Durable state of virtual instances: the ``state`` attribute (a msgspec Struct) in KV.

``{ns}_state`` / ``{Class}.{id}`` -> msgpack of the Struct; or, for an instance with durable
extras (``corps.core._extras``: its saga ``effect="memory"`` records), an envelope with both,
written in one write (``corps.virtual._envelope``). Loaded on activation (before
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

from corps.errors import StateFenced, StateTooLarge
from corps.virtual._envelope import decode_value, encode_value
from corps.virtual._kv import open_bucket

if TYPE_CHECKING:
    from nats.js.kv import KeyValue


def state_bucket(namespace: str) -> str:
    return f"{namespace}_state"


_HEADROOM = 512
"""Bytes of a KV write's message that are not its value (subject, headers): kept free under the
server's max_payload."""


class StateStore:
    def __init__(self, kv: KeyValue, max_value: int = 1024 * 1024 - _HEADROOM) -> None:
        self.kv = kv
        self.max_value = max_value
        """The largest value a save writes (the server's max_payload, less headroom)."""
        self.too_large = 0
        """Saves refused with StateTooLarge (counted: nothing is dropped silently)."""

    @classmethod
    async def open(cls, js: object, namespace: str, replicas: int, max_payload: int) -> StateStore:
        kv = await open_bucket(js, KeyValueConfig(bucket=state_bucket(namespace), history=1, replicas=replicas,
                                                  description="corps virtual actors: durable state"), "state")
        return cls(kv, max_payload - _HEADROOM)

    async def load(self, key: str, decoder: msgspec.msgpack.Decoder[Any]) -> tuple[Any, dict[str, bytes], int]:
        """(the stored state or None, the durable extras stored with it, its revision: 0 if none).

        Raises:
            StateFenced: the stored bytes do not decode as the class's state type (or envelope).
        """
        try:
            entry = await self.kv.get(key, validate_keys=False)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None, {}, 0
        state, extras = decode_value(key, entry.value or b"", decoder)
        return state, extras, entry.revision or 0

    async def save(self, key: str, state: Any, revision: int, extras: dict[str, bytes] | None = None) -> int:
        """Write ``state`` (and ``extras``, in the same write) if the record is still at
        ``revision``; the new revision.

        Raises:
            StateFenced: the record changed since (another activation wrote it).
            StateTooLarge: the value would exceed ``max_value`` (nothing written).
        """
        data = encode_value(state, extras or {})
        if len(data) > self.max_value:
            self.too_large += 1
            raise StateTooLarge(key, len(data), self.max_value)
        try:
            if revision:
                return await self.kv.update(key, data, last=revision, validate_keys=False)
            return await self.kv.create(key, data, validate_keys=False)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise StateFenced(key, "another activation wrote it since this one loaded it") from exc
