"""Answering what a class's host handled: replies in the asker's format, errors (with the
services API's headers for clients that are not corps), dead letters for refused tells, and
replies held until work the handler started off the mailbox is done (a mixin of ``ClassHost``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from corps.core._cell import Cell, Item
from corps.core._context import Current
from corps.core._shed import send_bare_error
from corps.wire._codec import Envelope, ErrorReply, Reply, encode_as

if TYPE_CHECKING:
    from corps.core._metrics import ClassMetrics, EndpointStats
    from corps.core._node import Node

log = logging.getLogger("corps.actor")

_RAISED: Any = object()
"""The result of a handler that raised (and was answered already), for a held reply."""


class Replies:
    """The host's replies (``ClassHost`` provides the state)."""

    system: Node
    metrics: ClassMetrics
    endpoints: EndpointStats
    _reply_types: dict[type, Any]

    async def _reject(self, subject: str, reply: str, rid: int, is_json: bool, kind: str, why: str,
                      message_type: str = "?", payload: bytes = b"") -> None:
        """Answer an ask with an error, or record a tell as a dead letter (and count it)."""
        if kind == "InvalidMessage":
            self.metrics.invalid += 1
        if rid and reply:
            await self._send_reply(reply, rid, is_json, False, ErrorReply(kind, kind, why))
        if kind != "NoResponders" or not rid:
            self.system.dead_letters.record(subject, f"{kind}: {why}", message_type, payload=payload)

    async def _stopped(self, cell: Cell, reply: str, envs: list[Envelope[Any]], is_json: bool) -> None:
        for env in envs:
            await self._reject(cell.subject, reply, env.rid, is_json, "NoResponders", "the instance has stopped",
                               type(env.msg).__name__)

    def _finish_held(self, here: Current, item: Item, result: Any, began: int) -> None:
        """Await what the handler held (``hold_reply``) in a task of its own, then reply with
        ``result`` (``_RAISED``: the handler raised, and was answered already). Counted as a busy
        mailbox, so a draining system waits for it."""
        held, here.held = here.held, None
        self.system._start_drain(self._answer_held, (item, result, held, began))

    async def _answer_held(self, job: tuple[Item, Any, list[Any], int]) -> None:
        item, result, held, began = job
        try:
            for work in held:
                await work
        except Exception as exc:
            log.error("work held before the reply to %s failed", type(item[0].msg).__name__, exc_info=exc)
            if item[0].rid and result is not _RAISED:
                if began:
                    self.endpoints.answered(type(item[0].msg), began, f"{type(exc).__name__}: {exc}")
                await self._send_reply(item[1], item[0].rid, item[2], False,
                                       ErrorReply("RemoteError", type(exc).__name__, str(exc)))
            return
        if item[0].rid and result is not _RAISED:
            await self._answer(item, result, began)

    async def _answer(self, item: Item, result: Any, began: int) -> None:
        env, reply, is_json = item
        expected = self._reply_types[type(env.msg)]
        if expected is not None and not isinstance(result, expected):
            self.endpoints.answered(type(env.msg), began, f"TypeError: handler returned {type(result).__name__}")
            await self._send_reply(reply, env.rid, is_json, False, ErrorReply(
                "RemoteError", "TypeError", f"handler returned {type(result).__name__}, expected {expected.__name__}"))
        else:
            self.endpoints.answered(type(env.msg), began)
            await self._send_reply(reply, env.rid, is_json, True, result)

    async def _send_reply(self, reply: str, rid: int, is_json: bool, ok: bool, body: Any) -> None:
        if not reply:
            return
        outbox = self.system._outbox
        if rid == -1 and not ok:  # an error for a non-corps client: bare, with the services API's headers
            send_bare_error(self.system._nc, reply, body, is_json)
        elif rid == -1:  # a bare request from a non-corps client: a bare reply, in its format
            await outbox.send_raw(reply, encode_as(body, is_json))
        else:  # a corps asker reads either format; frames are joined in this system's codec
            await outbox.send(reply, self.system.codec.encode(Reply(rid, ok, body)), track=False)
