"""Choreography on JetStream: publish, durable ``@on_event`` consumers, dead letters, replay.

The public names are re-exported by ``runtime``; see runtime/README.md for the modules.
"""

from runtime.events._config import EventsConfig as EventsConfig
from runtime.events._dlq import DeadLetterEvent as DeadLetterEvent
from runtime.events._spec import Backoff as Backoff
from runtime.events._spec import on_event as on_event
from runtime.events._wire import PubAck as PubAck

__all__ = ["Backoff", "DeadLetterEvent", "EventsConfig", "PubAck", "on_event"]
