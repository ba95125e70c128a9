"""corps: an asyncio actor runtime for Python services on NATS."""

from runtime._actor import Actor as Actor
from runtime._context import current_correlation_id as current_correlation_id
from runtime._embedded import EmbeddedServer as EmbeddedServer
from runtime._handlers import handler as handler
from runtime._messages import Message as Message
from runtime._messages import Request as Request
from runtime._metrics import DeadLetter as DeadLetter
from runtime._options import ActorOptions as ActorOptions
from runtime._ref import ActorRef as ActorRef
from runtime._run import run as run
from runtime._supervision import Restart as Restart
from runtime._supervision import Resume as Resume
from runtime._supervision import Stop as Stop
from runtime._system import ActorSystem as ActorSystem
from runtime.errors import ActorDefinitionError as ActorDefinitionError
from runtime.errors import AskError as AskError
from runtime.errors import AskTimeout as AskTimeout
from runtime.errors import CompensationFailed as CompensationFailed
from runtime.errors import CorpsError as CorpsError
from runtime.errors import EventError as EventError
from runtime.errors import InvalidActorId as InvalidActorId
from runtime.errors import InvalidMessage as InvalidMessage
from runtime.errors import MailboxFull as MailboxFull
from runtime.errors import NatsUnavailable as NatsUnavailable
from runtime.errors import NoResponders as NoResponders
from runtime.errors import ProvisioningConflict as ProvisioningConflict
from runtime.errors import PublishFailed as PublishFailed
from runtime.errors import RemoteError as RemoteError
from runtime.errors import SagaError as SagaError
from runtime.errors import SagaNotFound as SagaNotFound
from runtime.errors import SagaStoreUnavailable as SagaStoreUnavailable
from runtime.errors import SagaTimeout as SagaTimeout
from runtime.errors import SpawnError as SpawnError
from runtime.errors import StepRejected as StepRejected
from runtime.events import Backoff as Backoff
from runtime.events import DeadLetterEvent as DeadLetterEvent
from runtime.events import EventsConfig as EventsConfig
from runtime.events import PubAck as PubAck
from runtime.events import on_event as on_event

__all__ = [
    "Actor",
    "ActorDefinitionError",
    "ActorOptions",
    "ActorRef",
    "ActorSystem",
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
    "InvalidActorId",
    "InvalidMessage",
    "MailboxFull",
    "Message",
    "NatsUnavailable",
    "NoResponders",
    "ProvisioningConflict",
    "PubAck",
    "PublishFailed",
    "RemoteError",
    "Request",
    "Restart",
    "Resume",
    "SagaError",
    "SagaNotFound",
    "SagaStoreUnavailable",
    "SagaTimeout",
    "SpawnError",
    "StepRejected",
    "Stop",
    "current_correlation_id",
    "handler",
    "on_event",
    "run",
]
