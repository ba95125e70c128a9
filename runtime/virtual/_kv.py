"""Opening the KV buckets of virtual actors: created if missing, any failure a PlacementError."""

from __future__ import annotations

from typing import TYPE_CHECKING

from corps.errors import PlacementError

if TYPE_CHECKING:
    from nats.js.api import KeyValueConfig
    from nats.js.kv import KeyValue


async def open_bucket(js: object, config: KeyValueConfig, what: str) -> KeyValue:
    """Create ``config.bucket`` or, if that fails (it exists with other settings, or this login
    may not create it), bind to it.

    Raises:
        PlacementError: neither works (no JetStream, no permission).
    """
    try:
        kv: KeyValue = await js.create_key_value(config)  # type: ignore[attr-defined]
        return kv
    except Exception as exc:  # noqa: BLE001 -- any failure here means: no placement (mapped to our type)
        try:
            kv = await js.key_value(config.bucket)  # type: ignore[attr-defined]
            return kv
        except Exception:  # noqa: BLE001 -- see above
            raise PlacementError(f"{what} bucket {config.bucket!r}: {type(exc).__name__}: {exc}") from exc
