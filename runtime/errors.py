"""corps exception hierarchy.

Every error a user can see is one of these; ``nats.errors`` never escapes the runtime.

* CorpsError
  x ActorDefinitionError (also TypeError)   bad actor or message class; raised when the class is created
  x InvalidActorId (also ValueError)        an id that would inject subject tokens; .actor_id, .reason
  x SpawnError                              the actor could not be started; .subject, .reason
  x InvalidMessage (also ValueError)        could not encode, decode or validate; .subject, .reason
  x NatsUnavailable (also ConnectionError)  no usable NATS server; .url, .reason
  x AskError                                an ask did not produce a reply
    + AskTimeout (also TimeoutError)        no reply in time; .subject, .timeout
    + RemoteError                           the handler raised; .subject, .type, .message
    + NoResponders                          no instance is running for the subject; .subject
    + MailboxFull                           the instance's mailbox is at its bound; .subject
  x PlacementError                          virtual actors: membership or ownership (JetStream KV) unusable; .reason
    + StateFenced                           a durable state write refused: another activation wrote it since
  x EventError                              JetStream events could not be published or set up
    + PublishFailed                         no stream ack after retries; .subject, .msg_id, .reason
    + ProvisioningConflict                  a stream, consumer or KV bucket on the server differs; .differences
  x SagaError                               a saga could not complete
    + SagaDefinitionError (also TypeError)  bad saga class; raised when the class is created; .problems
    + StepRejected                          terminal refusal by a participant: compensate, do not retry
    + CompensationFailed                    never raised: what a FAILED saga means (kept importable)
    + SagaNotFound (also KeyError)          no saga with that id in the log; .saga_id
    + SagaUnreadable                        the saga's log record cannot be decoded; .saga_id, .reason
    + SagaStoreUnavailable                  the saga log (JetStream KV) cannot be read or written; .reason
    + SagaTimeout (also TimeoutError)       wait_saga gave up before a terminal state; .saga_id, .timeout
"""

from __future__ import annotations


class CorpsError(Exception):
    """Root of every error corps raises."""


class ActorDefinitionError(CorpsError, TypeError):
    """An actor or message class is invalid; ``problems`` lists every reason at once."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.name = name
        self.problems = list(problems)
        n = len(self.problems)
        reasons = "; ".join(self.problems)
        super().__init__(f"Invalid actor {name} for {n} reason{'s' if n != 1 else ''}: {reasons}")


class InvalidActorId(CorpsError, ValueError):
    """An actor id (or name) that cannot be one NATS subject token."""

    def __init__(self, actor_id: str, reason: str) -> None:
        self.actor_id = actor_id
        self.reason = reason
        super().__init__(f"invalid actor id {actor_id!r}: {reason}")


class SpawnError(CorpsError):
    """An actor could not be started (duplicate id, failing on_start, class hosted elsewhere)."""

    def __init__(self, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"cannot spawn {subject!r}: {reason}")


class InvalidMessage(CorpsError, ValueError):
    """A message could not be encoded, decoded or validated, or is over the size limit."""

    def __init__(self, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"invalid message on {subject!r}: {reason}")


class NatsUnavailable(CorpsError, ConnectionError):
    """No NATS server could be reached or started."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"NATS unavailable at {url!r}: {reason}")


class AskError(CorpsError):
    """An ask did not produce a reply."""


class AskTimeout(AskError, TimeoutError):
    """No reply within the timeout. The outcome is unknown: the handler may still have run."""

    def __init__(self, subject: str, timeout: float) -> None:
        self.subject = subject
        self.timeout = timeout
        super().__init__(f"no reply on {subject!r} within {timeout}s")


class RemoteError(AskError):
    """The remote handler raised; ``type`` and ``message`` describe the remote exception."""

    def __init__(self, subject: str, type: str, message: str) -> None:
        self.subject = subject
        self.type = type
        self.message = message
        super().__init__(f"{type} in handler for {subject!r}: {message}")


class NoResponders(AskError):
    """No actor instance is running for the subject (never spawned, or stopped)."""

    def __init__(self, subject: str, reason: str = "no actor instance is running") -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"no responders on {subject!r}: {reason}")


class MailboxFull(AskError):
    """The instance's mailbox was full; the message was not accepted (recorded as overload)."""

    def __init__(self, subject: str, size: int) -> None:
        self.subject = subject
        self.size = size
        super().__init__(f"mailbox of {subject!r} is full ({size} messages)")


class PlacementError(CorpsError):
    """Virtual actors cannot be hosted: the membership or ownership buckets (JetStream KV) are
    unusable (no JetStream, no permission), or the class is not virtual."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"virtual actors unavailable: {reason}")


class StateFenced(PlacementError):
    """A virtual instance's durable state could not be saved: the record changed since this
    activation loaded it (another activation owns the id now: this one was fenced off), or it
    cannot be read. The message that was being handled counts as failed."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        super().__init__(f"state of {key!r}: {reason}")


class EventError(CorpsError):
    """Events (JetStream) could not be published, consumed or set up."""


class PublishFailed(EventError):
    """The stream did not acknowledge an event after retries with the same ``Nats-Msg-Id``.

    The outcome is unknown (it may be stored): publishing again with the same ``msg_id`` is safe
    within the stream's duplicate window.
    """

    def __init__(self, subject: str, msg_id: str, reason: str) -> None:
        self.subject = subject
        self.msg_id = msg_id
        self.reason = reason
        super().__init__(f"event on {subject!r} (Nats-Msg-Id {msg_id!r}) not acknowledged: {reason}")


class ProvisioningConflict(EventError):
    """A stream or consumer that exists on the server does not match what the code declares."""

    def __init__(self, kind: str, name: str, differences: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.differences = list(differences)
        super().__init__(
            f"{kind} {name!r} exists with other settings than the code declares: {'; '.join(differences)} "
            f"(delete it, e.g. `nats {kind} rm {name}`, or declare the server's settings)"
        )


class SagaError(CorpsError):
    """A saga could not complete."""


class SagaDefinitionError(SagaError, TypeError):
    """A saga class is invalid; ``problems`` lists every reason at once."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.name = name
        self.problems = list(problems)
        n = len(self.problems)
        reasons = "; ".join(self.problems)
        super().__init__(f"Invalid saga {name} for {n} reason{'s' if n != 1 else ''}: {reasons}")


class StepRejected(SagaError):
    """Raised by a participant: terminal, do not retry; the saga compensates.

    Raise it from a handler; the asking coordinator sees it as a RemoteError whose
    ``type`` is ``"StepRejected"`` and treats it as terminal.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class CompensationFailed(SagaError):
    """A compensation failed after its retries; the saga ends FAILED and waits for an operator."""

    def __init__(self, saga_id: str, step: str, reason: str) -> None:
        self.saga_id = saga_id
        self.step = step
        self.reason = reason
        super().__init__(f"saga {saga_id!r}: compensation of step {step!r} failed: {reason}")


class SagaNotFound(SagaError, KeyError):
    """No saga with this id is in the saga log."""

    def __init__(self, saga_id: str) -> None:
        self.saga_id = saga_id
        super().__init__(f"no saga {saga_id!r}")

    def __str__(self) -> str:
        return str(self.args[0])


class SagaUnreadable(SagaError):
    """The saga's record in the saga log cannot be decoded (corrupt, or written by something else).

    No coordinator drives such a saga; ``list_sagas`` and ``corps saga list`` show it as UNREADABLE.
    """

    def __init__(self, saga_id: str, reason: str) -> None:
        self.saga_id = saga_id
        self.reason = reason
        super().__init__(f"saga {saga_id!r}: its log record cannot be decoded: {reason}")


class SagaStoreUnavailable(SagaError):
    """The saga log cannot be read or written. Coordinators fail closed: no step without its log write."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"saga log unavailable: {reason}")


class SagaTimeout(SagaError, TimeoutError):
    """``wait_saga`` gave up before the saga reached a terminal state (it goes on running)."""

    def __init__(self, saga_id: str, timeout: float) -> None:
        self.saga_id = saga_id
        self.timeout = timeout
        super().__init__(f"saga {saga_id!r} not finished within {timeout}s")
