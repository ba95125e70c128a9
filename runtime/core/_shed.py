"""Refusing messages without awaiting: what overload does, from the parser or a mailbox.

Under overload nothing waits. A message that would exceed a bound (the class's pending messages
for its slow path, or an instance's mailbox held above its high-water mark) is refused at once:
each ask in it gets ``MailboxFull`` (a reply published without awaiting), each tell becomes a
dead letter, and the class counts them as ``overloaded``. Waiting instead (back-pressure) held up
the whole class's subscription behind one busy instance, and let nats-py buffer without bound.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from corps.core._intake import decode
from corps.core._metrics import ClassMetrics, DeadLetters
from corps.wire._client import Throttled
from corps.wire._codec import Envelope, ErrorReply, Reply, encode_as, join_frame
from corps.wire._headers import service_error_headers

if TYPE_CHECKING:
    from corps.wire._client import CorpsClient
    from corps.wire._codec import Decoders, WireCodec

log = logging.getLogger("corps.actor")
_quiet = Throttled(log)


def send_bare_error(nc: CorpsClient, reply: str, body: ErrorReply, is_json: bool) -> None:
    """Answer a non-corps requester with an error: corps's typed error as the (bare) body, plus
    the NATS services API's ``Nats-Service-Error`` and ``Nats-Service-Error-Code`` headers, which
    nats.micro, nats.js and the ``nats`` CLI read. Without awaiting (safe inside the parser)."""
    hpub_now(nc, reply, service_error_headers(body.kind, body.type, body.message), encode_as(body, is_json))


def hpub_now(nc: CorpsClient, reply: str, headers: bytes, payload: bytes) -> None:
    try:
        nc.hpublish_now(reply, headers, payload)
    except Exception as exc:  # noqa: BLE001 -- a closed connection or an oversized reply: the asker times out
        _quiet.warning("bare-error-reply", "error reply to %r not sent: %s", reply[:80], exc)


class Shedder:
    """Refuses messages for one actor class, synchronously (safe inside the protocol parser)."""

    def __init__(self, nc: CorpsClient, codec: WireCodec, metrics: ClassMetrics, dead_letters: DeadLetters,
                 decoders: Decoders | None, limit: int, mailbox_size: int) -> None:
        self._nc = nc
        self._codec = codec
        self._metrics = metrics
        self._dead = dead_letters
        self._decoders = decoders
        self._limit = limit
        self._size = str(mailbox_size)  # MailboxFull carries the bound in its type field
        full = ErrorReply("MailboxFull", self._size, "overloaded")
        self._full_bare = service_error_headers(full.kind, full.type, full.message), encode_as(full, False)
        self._quiet = Throttled(log)

    def shed_raw(self, subject: bytes, reply: bytes, data: bytes) -> None:
        """A message the class's subscription cannot hold: decode it only to answer its asks."""
        intake = decode(self._decoders, self._limit, data, bool(reply))
        subj, rep = subject.decode(errors="replace"), reply.decode(errors="replace")
        why = "the class's pending messages are at their bound"
        if intake.envelopes:
            self.refuse(subj, rep, intake.envelopes, intake.is_json, why)
        else:  # nothing readable: one dead letter for the payload
            self._metrics.overloaded += 1
            self._dead.tally(subj, f"overloaded: {why}", payload=data)

    def shed_bare(self, subject: str, reply: bytes, data: bytes, why: str) -> bool:
        """A bare message (a map, from a client in another language) for an instance held in
        overload, refused without reading it: MailboxFull if it is a request, else a counted
        dead letter. The cheapest refusal there is: a flood of these must not outrun the reader."""
        self._metrics.overloaded += 1
        if reply:
            hpub_now(self._nc, reply.decode(errors="replace"), *self._full_bare)
        else:
            self._dead.tally(subject, f"overloaded: {why}", payload=data)
        return True

    def refuse(self, subject: str, reply: str, envs: list[Envelope[Any]], is_json: bool, why: str) -> None:
        """Answer every ask in ``envs`` with MailboxFull and record the tells as dead letters."""
        self._metrics.overloaded += len(envs)
        self._quiet.warning(f"shed:{subject}", "overload on %s: refusing %d message(s): %s", subject, len(envs), why)
        tells = 0
        for env in envs:
            if env.rid and reply:
                self._reply(reply, env.rid, is_json, ErrorReply("MailboxFull", self._size, why))
            elif not env.rid:
                tells += 1
        if tells:
            self._dead.tally(subject, f"overloaded: {why}", type(envs[0].msg).__name__, tells)

    def _reply(self, reply: str, rid: int, is_json: bool, body: ErrorReply) -> None:
        if rid == -1:  # a bare request from a non-corps client: a bare reply with the error headers
            send_bare_error(self._nc, reply, body, is_json)
            return
        payload = join_frame([self._codec.encode(Reply(rid, False, body))], self._codec.is_json)
        try:
            self._nc.publish_now(reply, payload, "")  # no await: nats-py's flusher sends it
        except Exception as exc:  # noqa: BLE001 -- a closed connection: the asker times out
            self._quiet.warning("shed-reply", "overload reply to %r not sent: %s", reply, exc)
