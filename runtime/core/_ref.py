"""ActorRef: the address of an actor instance anywhere on the NATS network."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import msgspec

from corps.core._context import current
from corps.core._messages import Message, Request, reply_type
from corps.errors import InvalidMessage

if TYPE_CHECKING:
    from corps.core._actor import Actor
    from corps.core._node import Node

_current_get = current.get

A = TypeVar("A", bound="Actor")
R = TypeVar("R", bound=Message)


@final
class ActorRef(Generic[A]):
    """Send messages to one actor instance: ``tell`` (fire and forget) or ``ask`` (typed reply).

    ``subject`` is the instance's NATS subject: clients in other languages can send it a bare
    msgpack (or JSON) map of a message, tagged ``{"$type": "ClassName", ...}``, and get a bare reply.
    """

    __slots__ = ("_handled", "_system", "actor_cls", "actor_id", "subject")

    def __init__(self, system: Node, actor_cls: type[A], actor_id: str, subject: str) -> None:
        self._system = system
        self._handled = actor_cls._handlers  # what the class declares: checked before anything is sent
        self.actor_cls = actor_cls
        self.actor_id = actor_id
        self.subject = subject

    async def tell(self, msg: Message) -> None:
        """Send ``msg`` without waiting for it to be handled.

        At-most-once, over core NATS: if no instance is subscribed, or the connection drops while
        the message is in flight, it is lost. Losses that the runtime can see (no instance, a full
        mailbox, an undecodable message) are recorded as dead letters, never silently.

        Raises:
            InvalidMessage: ``msg`` is not a Message the class handles, cannot be encoded, or is
                over the size limit.
        """
        if type(msg) not in self._handled:  # handled types are Message subclasses
            raise self._unhandled(msg)
        system = self._system
        if system.observer is not None:
            await self._observed(msg, False, None, "", "")
            return
        cur = _current_get()
        root = cur is None or cur.item is None
        if root:
            # The hot path: a root tell is the message alone, sent in a tells frame
            # (corps.wire._codec.Tells) that gets its ids when it is published: no envelope,
            # no id per message.
            try:
                part = system._encode_env(msg)
            except Exception as exc:
                raise encode_error(self.subject, msg, exc) from exc
            batch = system._outbox._tells.get(self.subject)
        else:  # inside a handler: an envelope with its ids
            part = system._encode(self.subject, msg, 0)
            batch = system._outbox._batches.get(self.subject)
        # Outbox.push, inlined (the call cost ~55 ns of a ~600 ns coalesced tell): append to the
        # subject's open batch if the room it was granted (frame limit and memory bound) holds it.
        if batch is not None:
            room = batch.room - len(part) - 1
            if room >= 0:
                batch.room = room
                batch.parts.append(part)
                return
        await system._outbox.send(self.subject, part, tell=root)

    async def ask(self, msg: Request[R], *, timeout: float | None = None, idempotency_key: str | None = None) -> R:
        """Send ``msg`` and wait for the handler's reply.

        Messages from one sender are handled in the order sent, tells and asks alike.

        Args:
            msg: a Request; its type names the reply type.
            timeout: seconds to wait (default: the system's ``ask_timeout``).
            idempotency_key: the same key for every retry of one logical request; handlers
                made ``@idempotent`` answer a repeated key with the first reply.

        Raises:
            AskTimeout: no reply within ``timeout``. The handler may still have run: treat the
                outcome as unknown and make retried asks idempotent.
            RemoteError: the handler raised; carries the remote type and message.
            NoResponders: no instance with this id is running.
            InvalidMessage: the class has no handler for ``msg``'s type (nothing is sent), the
                actor could not decode ``msg``, or ``msg`` could not be encoded.
            MailboxFull: the instance's mailbox was full.
        """
        return await self._ask(msg, timeout, idempotency_key or "", "")

    async def _ask(self, msg: Request[R], timeout: float | None, key: str, corr: str) -> R:
        if self._system.observer is not None:
            observed: R = await self._observed(msg, True, timeout, key, corr)
            return observed
        rid, fut = await self._send_ask(msg, key, corr)
        result: R = await self._wait(rid, fut, timeout)
        return result

    async def _observed(self, msg: Any, ask: bool, timeout: float | None, key: str, corr: str) -> Any:
        """A tell or an ask inside the observer's send hooks (tracing, metrics are on)."""
        system = self._system
        obs = system.observer
        assert obs is not None
        token = obs.send_begin(self.subject, msg, ask)
        try:
            if ask:
                rid, fut = await self._send_ask(msg, key, corr)
                result = await self._wait(rid, fut, timeout)
            else:
                result = None
                part = system._encode(self.subject, msg, 0)  # carries the send span's traceparent
                if not system._outbox.push(self.subject, part):
                    await system._outbox.send(self.subject, part)
        except BaseException as exc:
            obs.send_end(token, exc)
            raise
        obs.send_end(token, None)
        return result

    async def _send_ask(self, msg: Request[R], key: str, corr: str) -> tuple[int, Any]:
        system = self._system
        if not isinstance(msg, Request):
            raise InvalidMessage(self.subject, f"ask needs a Request[...] message, not {type(msg).__name__}; "
                                               f"use tell for a plain Message")
        if type(msg) not in self._handled:
            raise self._unhandled(msg)
        rid, fut = system._inbox.register(reply_type(type(msg)), self.subject)
        try:
            part = system._encode(self.subject, msg, rid, corr, key)
            if not system._outbox.push(self.subject, part, rid):
                await system._outbox.send(self.subject, part, rid)
        except BaseException:
            system._inbox.forget(rid)
            raise
        return rid, fut

    async def _wait(self, rid: int, fut: Any, timeout: float | None) -> Any:
        system = self._system
        return await system._inbox.wait(rid, fut, system.ask_timeout if timeout is None else timeout)

    def _unhandled(self, msg: object) -> InvalidMessage:
        if not isinstance(msg, Message):
            return InvalidMessage(self.subject, f"expected a Message, got {type(msg).__name__}")
        handled = ", ".join(sorted(tp.__name__ for tp in self._handled)) or "nothing (it has no @handler)"
        return InvalidMessage(self.subject, f"{self.actor_cls.__name__} has no handler for "
                                            f"{type(msg).__name__}; it handles {handled}")

    def __repr__(self) -> str:
        return f"ActorRef({self.subject!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other.subject == self.subject

    def __hash__(self) -> int:
        return hash(self.subject)


def encode_error(subject: str, msg: Any, exc: Exception) -> InvalidMessage:
    if not isinstance(msg, Message):
        return InvalidMessage(subject, f"expected a Message, got {type(msg).__name__}")
    if isinstance(exc, msgspec.EncodeError | TypeError | OverflowError):
        return InvalidMessage(subject, f"cannot encode {type(msg).__name__}: {exc}")
    return InvalidMessage(subject, str(exc))
