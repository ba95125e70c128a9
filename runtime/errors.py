"""corps exception hierarchy.

Every error a user can see is one of these; ``nats.errors`` never escapes the runtime.

* CorpsError
  x ActorDefinitionError (also TypeError)   bad actor or message class; raised when the class is created
  x InvalidActorId (also ValueError)        an id that would inject subject tokens; .actor_id, .reason
  x SpawnError                              the actor could not be started; .subject, .reason
  x InvalidMessage (also ValueError)        could not encode, decode or validate; .subject, .reason
  x NatsUnavailable (also ConnectionError)  no usable NATS server; .url, .reason
  x AppDefinitionError (also TypeError)     bad application description (corps.App); .name, .problems
  x NotProvisioned (also LookupError)       a stream, consumer or bucket an inspection reads is missing; .kind, .name
  x AskError                                an ask did not produce a reply
    + AskTimeout (also TimeoutError)        no reply in time; .subject, .timeout
    + RemoteError                           the handler raised; .subject, .type, .message
    + NoResponders                          no instance is running for the subject; .subject
    + MailboxFull                           the instance's mailbox is at its bound; .subject
  x PlacementError                          virtual actors: membership or ownership (JetStream KV) unusable; .reason
    + StateFenced                           a durable state write refused: another activation wrote it since
    + StateTooLarge                         a durable state (with its records) over the server's max_payload
  x EventError                              JetStream events could not be published or set up
    + PublishFailed                         no stream ack after retries; .subject, .msg_id, .reason
    + ProvisioningConflict                  a stream, consumer or KV bucket on the server differs; .differences
  x StoreError                              a lean JetStream operation (corps.wire._jetstream) failed; .subject, .reason
    + StoreTimeout (also TimeoutError)      no answer in time: the write may have been stored; .timeout
    + StoreNoResponders                     no stream listens on the subject (or JetStream is off)
    + StoreConflict                         a compare-and-set lost: the subject's last sequence differs
    + StoreRefused                          the server refused the operation; .code, .err_code
    + StoreUnreadable                       the answer could not be decoded (garbage, hostile bytes)
    + StoreUnavailable                      the connection cannot send (closed, draining, buffer full)
  x SagaError                               a saga could not complete
    + SagaDefinitionError (also TypeError)  bad saga class; raised when the class is created; .problems
    + StepRejected                          terminal refusal by a participant: compensate, do not retry
    + CompensationFailed                    never raised: what a FAILED saga means (kept importable)
    + SagaNotFound (also KeyError)          no saga with that id in the log; .saga_id
    + SagaUnreadable                        the saga's log record cannot be decoded; .saga_id, .reason
    + SagaStoreUnavailable                  the saga log (JetStream KV) cannot be read or written; .reason
      + ParticipantRecordsFull              a memory participant holds its bound of records; .limit, .horizon
    + SagaTimeout (also TimeoutError)       wait_saga gave up before a terminal state; .saga_id, .timeout
  x ExtraNotInstalled (also ImportError)    an optional part needs a pip extra; .extra, .feature
  x IncompatibleSchema                      corps schema --diff found breaking changes; .problems
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


class AppDefinitionError(CorpsError, TypeError):
    """An application description (``corps.App``) is invalid; ``problems`` lists every reason at once."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.name = name
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(f"Invalid application {name} for {n} reason{'s' if n != 1 else ''}: "
                         f"{'; '.join(self.problems)}")


class NotProvisioned(CorpsError, LookupError):
    """A stream, consumer or KV bucket that a read-only command needs does not exist on the server.

    Inspection never creates one: provision explicitly (``corps provision MODULE:APP``) or start
    the application, or check the namespace for a typo.
    """

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} {name!r} does not exist (nothing was created: check --namespace and --nats, "
                         f"or provision it with `corps provision MODULE:APP`)")


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


class StateTooLarge(PlacementError):
    """A virtual instance's durable state (with the records saved with it) would exceed the
    largest value the state bucket takes: nothing is written, and the message that was being
    handled counts as failed (its reply is this error, never a success that is not durable)."""

    def __init__(self, key: str, size: int, limit: int) -> None:
        self.key = key
        self.size = size
        self.limit = limit
        super().__init__(f"state of {key!r}: {size} bytes, over the {limit} a value may have")


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


class StoreError(CorpsError):
    """A JetStream operation of the lean path (``corps.wire._jetstream``) failed."""

    def __init__(self, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"jetstream {subject!r}: {reason}")


class StoreTimeout(StoreError, TimeoutError):
    """No answer within ``timeout`` seconds: a write may still have been stored."""

    def __init__(self, subject: str, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(subject, f"no answer within {timeout:g}s")


class StoreNoResponders(StoreError):
    """Nothing answers on the subject: no stream for it, or JetStream is not enabled (status 503)."""


class StoreConflict(StoreError):
    """A compare-and-set write lost: the subject's last sequence is not the one expected."""


class StoreRefused(StoreError):
    """The server refused the operation (an API error other than a conflict)."""

    def __init__(self, subject: str, code: int, err_code: int, description: str) -> None:
        self.code = code
        self.err_code = err_code
        super().__init__(subject, f"refused: {code}/{err_code} {description}"[:300])


class StoreUnreadable(StoreError):
    """The answer could not be decoded: not a PubAck, not a stored message (garbage or hostile bytes)."""


class StoreUnavailable(StoreError):
    """The connection cannot send now (closed, draining, or its reconnect buffer is full)."""


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


class ParticipantRecordsFull(SagaStoreUnavailable):
    """A participant instance keeping its idempotency records in memory holds as many as its bound
    (``SagaConfig.memory_records``), none older than the saga's retry horizon
    (``SagaConfig.memory_horizon``): a new step is refused before its handler runs (retryable),
    rather than forgetting a record a retry may still need."""

    def __init__(self, limit: int, horizon: float, oldest: float) -> None:
        self.limit = limit
        self.horizon = horizon
        self.oldest = oldest
        self.reason = (f"this instance keeps {limit} idempotency records in memory, the oldest {oldest:.1f}s old, "
                       f"none past the {horizon}s horizon: the step is refused (raise SagaConfig.memory_records, "
                       "or run more instances)")
        SagaError.__init__(self, self.reason)


class SagaTimeout(SagaError, TimeoutError):
    """``wait_saga`` gave up before the saga reached a terminal state (it goes on running)."""

    def __init__(self, saga_id: str, timeout: float) -> None:
        self.saga_id = saga_id
        self.timeout = timeout
        super().__init__(f"saga {saga_id!r} not finished within {timeout}s")


class ExtraNotInstalled(CorpsError, ImportError):
    """An optional part of corps needs packages that are not installed: ``pip install 'corps[extra]'``."""

    def __init__(self, feature: str, extra: str, missing: str) -> None:
        self.feature = feature
        self.extra = extra
        super().__init__(f"{feature} needs {missing}: pip install 'corps[{extra}]'")


class IncompatibleSchema(CorpsError):
    """A new version of a module's messages breaks readers or writers of the old one; ``problems``
    lists every breaking change (``corps schema --diff``)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} breaking change(s): " + "; ".join(problems))
