"""corps: an asyncio actor runtime for Python services on NATS."""

from corps.core._context import current_correlation_id as current_correlation_id
from corps.core._handlers import handler as handler
from corps.core._messages import Message as Message
from corps.core._messages import Request as Request
from corps.core._metrics import DeadLetter as DeadLetter
from corps.core._observe import Observer as Observer
from corps.core._options import ActorOptions as ActorOptions
from corps.core._ref import ActorRef as ActorRef
from corps.core._run import run as run
from corps.core._supervision import Restart as Restart
from corps.core._supervision import Resume as Resume
from corps.core._supervision import Stop as Stop
from corps.errors import ActorDefinitionError as ActorDefinitionError
from corps.errors import AppDefinitionError as AppDefinitionError
from corps.errors import AskError as AskError
from corps.errors import AskTimeout as AskTimeout
from corps.errors import CompensationFailed as CompensationFailed
from corps.errors import CorpsError as CorpsError
from corps.errors import EventError as EventError
from corps.errors import ExtraNotInstalled as ExtraNotInstalled
from corps.errors import IncompatibleSchema as IncompatibleSchema
from corps.errors import InvalidActorId as InvalidActorId
from corps.errors import InvalidMessage as InvalidMessage
from corps.errors import MailboxFull as MailboxFull
from corps.errors import NatsUnavailable as NatsUnavailable
from corps.errors import NoResponders as NoResponders
from corps.errors import NotProvisioned as NotProvisioned
from corps.errors import ParticipantRecordsFull as ParticipantRecordsFull
from corps.errors import PlacementError as PlacementError
from corps.errors import ProvisioningConflict as ProvisioningConflict
from corps.errors import PublishFailed as PublishFailed
from corps.errors import RemoteError as RemoteError
from corps.errors import SagaDefinitionError as SagaDefinitionError
from corps.errors import SagaError as SagaError
from corps.errors import SagaNotFound as SagaNotFound
from corps.errors import SagaStoreUnavailable as SagaStoreUnavailable
from corps.errors import SagaTimeout as SagaTimeout
from corps.errors import SagaUnreadable as SagaUnreadable
from corps.errors import SpawnError as SpawnError
from corps.errors import StateFenced as StateFenced
from corps.errors import StateTooLarge as StateTooLarge
from corps.errors import StepRejected as StepRejected
from corps.errors import StoreConflict as StoreConflict
from corps.errors import StoreError as StoreError
from corps.errors import StoreNoResponders as StoreNoResponders
from corps.errors import StoreRefused as StoreRefused
from corps.errors import StoreTimeout as StoreTimeout
from corps.errors import StoreUnavailable as StoreUnavailable
from corps.errors import StoreUnreadable as StoreUnreadable
from corps.events import Backoff as Backoff
from corps.events import DeadLetterEvent as DeadLetterEvent
from corps.events import EventsConfig as EventsConfig
from corps.events import PubAck as PubAck
from corps.events import on_event as on_event
from corps.saga._config import SagaConfig as SagaConfig
from corps.system._actor import Actor as Actor
from corps.system._app import App as App
from corps.system._system import ActorSystem as ActorSystem
from corps.virtual import Activation as Activation
from corps.virtual import VirtualConfig as VirtualConfig
from corps.wire._embedded import EmbeddedServer as EmbeddedServer
from corps.wire._security import Security as Security

__all__ = [
    "Activation",
    "Actor",
    "ActorDefinitionError",
    "ActorOptions",
    "ActorRef",
    "ActorSystem",
    "App",
    "AppDefinitionError",
    "AskError",
    "AskTimeout",
    "Backoff",
    "CompensationFailed",
    "CorpsError",
    "DeadLetter",
    "DeadLetterEvent",
    "EmbeddedServer",
    "EventError",
    "EventsConfig",
    "ExtraNotInstalled",
    "IncompatibleSchema",
    "InvalidActorId",
    "InvalidMessage",
    "MailboxFull",
    "Message",
    "NatsUnavailable",
    "NoResponders",
    "NotProvisioned",
    "Observer",
    "ParticipantRecordsFull",
    "PlacementError",
    "ProvisioningConflict",
    "PubAck",
    "PublishFailed",
    "RemoteError",
    "Request",
    "Restart",
    "Resume",
    "SagaConfig",
    "SagaDefinitionError",
    "SagaError",
    "SagaNotFound",
    "SagaStoreUnavailable",
    "SagaTimeout",
    "SagaUnreadable",
    "Security",
    "SpawnError",
    "StateFenced",
    "StateTooLarge",
    "StepRejected",
    "Stop",
    "StoreConflict",
    "StoreError",
    "StoreNoResponders",
    "StoreRefused",
    "StoreTimeout",
    "StoreUnavailable",
    "StoreUnreadable",
    "VirtualConfig",
    "current_correlation_id",
    "handler",
    "on_event",
    "run",
]
