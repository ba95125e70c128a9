"""Choreography on JetStream: publish, durable ``@on_event`` consumers, dead letters, replay.

The public names are re-exported by ``corps``; see runtime/README.md for the modules.
"""

from corps.events._config import EventsConfig as EventsConfig
from corps.events._dlq import DeadLetterEvent as DeadLetterEvent
from corps.events._spec import Backoff as Backoff
from corps.events._spec import on_event as on_event
from corps.events._wire import PubAck as PubAck

__all__ = ["Backoff", "DeadLetterEvent", "EventsConfig", "PubAck", "on_event"]
