"""SagaConfig: where saga state lives and how coordinators share it, and the buckets it provisions.

Two JetStream KV buckets hold a namespace's saga state: the saga log (``{ns}-sagas``, written by
coordinators) and the participants' idempotency records (``{ns}-idempotency``). Both are created
with this config's replicas and storage if missing, and checked if present: a bucket with fewer
replicas than wanted, or another storage, raises ProvisioningConflict listing the differences,
as streams do (``corps.events._provision``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType, StreamInfo
from nats.js.kv import KeyValue

from corps.errors import ProvisioningConflict, SagaStoreUnavailable

if TYPE_CHECKING:
    from corps.core._node import Node

log = logging.getLogger("corps.saga")

DEFAULT_LEASE: Final = 10.0
"""Seconds a coordinator holds a saga without renewing; the fallback when liveness says nothing."""
DEFAULT_SCAN_INTERVAL: Final = 2.0
DEFAULT_HEARTBEAT: Final = 0.5
DEFAULT_LIVENESS_TIMEOUT: Final = 1.5
CLUSTER_REPLICAS: Final = 3
DEFAULT_MEMORY_RECORDS: Final = 200_000
DEFAULT_MEMORY_HORIZON: Final = 600.0


class SagaConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Saga state and coordination: ``ActorSystem(..., saga=SagaConfig(...))``.

    Raises:
        ValueError: a value out of range (say a heartbeat no shorter than the liveness timeout).
    """

    replicas: int | None = None
    """Replicas of the saga log and idempotency buckets. None follows the cluster: 3 when the
    server says it is in a cluster of 3 or more servers (its INFO's ``cluster`` and
    ``connect_urls``; a cluster with ``no_advertise`` lists none, so set it there), else 1."""
    storage: Literal["file", "memory"] = "file"
    lease: float = DEFAULT_LEASE
    """Seconds a coordinator holds a saga without renewing it: another takes the saga over once the
    lease ran out, if liveness did not tell it sooner that the owner died."""
    scan_interval: float = DEFAULT_SCAN_INTERVAL
    """Seconds between a coordinator's scans for sagas to take over (sooner when an owner dies)."""
    heartbeat: float = DEFAULT_HEARTBEAT
    """Seconds between a coordinator's liveness writes (and its checks of the others')."""
    liveness_timeout: float = DEFAULT_LIVENESS_TIMEOUT
    """A coordinator whose liveness key has not changed for this long (on the watcher's own clock)
    is taken for dead: its sagas are taken over at once, whatever their leases say."""
    memory_records: int = DEFAULT_MEMORY_RECORDS
    """Most idempotency records one participant instance keeps in memory (``@idempotent(effect=
    "memory")``; compensations may add a quarter more). At the bound, with none older than
    ``memory_horizon``, a new step is refused (ParticipantRecordsFull). About 0.4 KB each with a
    small reply (measured: 367 B with a 59-byte reply and a 45-character key): 75 MB at the default."""
    memory_horizon: float = DEFAULT_MEMORY_HORIZON
    """Seconds a participant keeps a record in memory at least: the sagas' retry horizon (their
    steps' retries, a coordinator's takeover after its lease). A copy of a request arriving later
    may find its record evicted and run again. One instance takes at most ``memory_records /
    memory_horizon`` new steps per second, sustained."""

    def __post_init__(self) -> None:
        problems = []
        if self.replicas is not None and not (isinstance(self.replicas, int) and 1 <= self.replicas <= 5):
            problems.append(f"replicas must be None or 1..5, not {self.replicas!r}")
        if not (isinstance(self.memory_records, int) and self.memory_records >= 1):
            problems.append(f"memory_records must be an int >= 1, not {self.memory_records!r}")
        for name in ("lease", "scan_interval", "heartbeat", "liveness_timeout", "memory_horizon"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a finite number > 0, not {value!r}")
        if not problems and self.liveness_timeout < 2 * self.heartbeat:
            problems.append(f"liveness_timeout ({self.liveness_timeout}) must be at least twice the heartbeat "
                            f"({self.heartbeat}): one late heartbeat must not look like a death")
        if problems:
            raise ValueError("invalid SagaConfig: " + "; ".join(problems))


def config_of(system: object) -> SagaConfig:
    """The system's SagaConfig (``ActorSystem.saga_config``), or the defaults for a bare Node."""
    config = getattr(system, "saga_config", None)
    return config if isinstance(config, SagaConfig) else SagaConfig()


def cluster_size(server_info: dict[str, Any]) -> int:
    """How many servers the server we are connected to says its cluster has (1 if none)."""
    if not server_info.get("cluster"):
        return 1
    # Every server of the cluster advertises its client URL, its own included; the list is
    # current as of our CONNECT (later changes reach the client's server pool, not this INFO).
    return max(len(set(server_info.get("connect_urls") or ())), 1)


def replicas_for(config: SagaConfig, server_info: dict[str, Any]) -> int:
    """The replicas the saga buckets get: the configured number, or the cluster's (see SagaConfig)."""
    if config.replicas is not None:
        return config.replicas
    size = cluster_size(server_info)
    if server_info.get("cluster") and size == 1:
        log.warning("the server is in cluster %r but advertises no peers (no_advertise?): the saga buckets "
                    "get 1 replica; set SagaConfig(replicas=3)", server_info.get("cluster"))
    return CLUSTER_REPLICAS if size >= CLUSTER_REPLICAS else 1


async def ensure_bucket(js: JetStreamContext, want: KeyValueConfig, *, why: str = "") -> KeyValue:
    """Open the KV bucket ``want.bucket``, creating it if missing, checking it if present.

    Args:
        why: said after a replicas difference (how the wanted number was chosen).

    Raises:
        ProvisioningConflict: it exists with fewer replicas or another storage (each difference listed).
        SagaStoreUnavailable: JetStream is not enabled, refused, or did not answer.
    """
    bucket = want.bucket
    assert bucket is not None
    try:
        try:
            info = await js.stream_info(f"KV_{bucket}")
        except nats.js.errors.NotFoundError:
            try:
                return await js.create_key_value(want)
            except nats.js.errors.BadRequestError:  # created meanwhile by another node, or differently
                info = await js.stream_info(f"KV_{bucket}")
        if not info.config.allow_direct:
            info = await _allow_direct(js, info)
        have_replicas = info.config.num_replicas or 1
        problems = []
        if have_replicas < want.replicas:
            problems.append(f"replicas is {have_replicas} on the server, {want.replicas} in the code{why}")
        have_storage, want_storage = _name(info.config.storage or StorageType.FILE), _name(want.storage)
        if have_storage != want_storage:
            problems.append(f"storage is {have_storage} on the server, {want_storage} in the code")
        if problems:
            raise ProvisioningConflict("kv", bucket, problems)
        return await js.key_value(bucket)
    except (nats.errors.Error, TimeoutError) as exc:
        raise SagaStoreUnavailable(f"cannot open KV bucket {bucket!r}: {exc!r}") from exc


async def _allow_direct(js: JetStreamContext, info: StreamInfo) -> StreamInfo:
    """Turn on direct get for a bucket created without it (by an older corps): reads then skip the
    JSON API. Best effort: a server that refuses leaves the bucket as it is, read through the API."""
    try:
        return await js.update_stream(dataclasses.replace(info.config, allow_direct=True))
    except nats.js.errors.APIError as exc:
        log.info("KV stream %s: direct get stays off (%s)", info.config.name, exc)
        return info


def _name(storage: object) -> str:
    return str(getattr(storage, "value", storage))


def bucket_config(config: SagaConfig, server_info: dict[str, Any], bucket: str, description: str,
                  ttl: float | None = None) -> tuple[KeyValueConfig, str]:
    """The KeyValueConfig of one saga bucket, and the note ``ensure_bucket`` adds to a replicas difference."""
    replicas = replicas_for(config, server_info)
    why = "" if config.replicas is not None else f" (SagaConfig(replicas=None) follows the cluster: {replicas})"
    kv = KeyValueConfig(bucket=bucket, history=1, ttl=ttl, replicas=replicas, description=description, direct=True,
                        storage=StorageType.FILE if config.storage == "file" else StorageType.MEMORY)
    return kv, why


def idempotency_bucket(namespace: str) -> str:
    """The KV bucket that holds a namespace's participant idempotency records."""
    return f"{namespace}-idempotency"


async def open_idempotency_bucket(system: Node, *, ttl: float) -> KeyValue:
    """Open (creating or checking) the namespace's idempotency bucket, as the system's SagaConfig says.

    For ``corps.saga._participant``: records expire after ``ttl`` seconds.

    Raises:
        ProvisioningConflict: it exists with fewer replicas or another storage.
        SagaStoreUnavailable: JetStream is not enabled, refused, or did not answer.
    """
    want, why = bucket_config(config_of(system), system._nc._server_info, idempotency_bucket(system.namespace),
                              "corps participant idempotency records", ttl=ttl)
    return await ensure_bucket(system._nc.jetstream(), want, why=why)
