"""What every ``corps`` command shares: the connection flags, ``--json``, and the exit codes.

Flags may stand anywhere on the command line: a command with actions (``corps saga list``)
declares them on each action too (``default=SUPPRESS`` there, so a flag given before the action
is not reset by the action's default).
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Final

from corps.cli._connect import add_security_arguments
from corps.errors import (
    AppDefinitionError,
    AskTimeout,
    CorpsError,
    InvalidActorId,
    InvalidMessage,
    MailboxFull,
    NatsUnavailable,
    NoResponders,
    NotProvisioned,
    RemoteError,
    SagaNotFound,
    SagaTimeout,
)

OK: Final = 0
ERROR: Final = 1
USAGE: Final = 2
INVALID_INPUT: Final = 3
NO_SERVER: Final = 4
NOT_FOUND: Final = 5
NO_RESPONDERS: Final = 6
TIMEOUT: Final = 7
REMOTE_ERROR: Final = 8
OVERLOADED: Final = 9
INTERRUPTED: Final = 130

EXIT_CODES: Final = f"""\
exit codes (every command):
  {OK}    ok (also after a clean drain on Ctrl-C)
  {ERROR}    a corps error not listed below (a saga that ended FAILED, nothing found for a trace)
  {USAGE}    usage: bad flags, a module, class or message type that cannot be found or loaded
  {INVALID_INPUT}    invalid input: JSON that does not parse or does not fit the message type (InvalidMessage)
  {NO_SERVER}    no server: none given (--nats, NATS_URL), none answers, or no JetStream (NatsUnavailable)
  {NOT_FOUND}    not found: a stream, consumer or bucket is missing (NotProvisioned), or no such saga or entry
  {NO_RESPONDERS}    no responders: no instance of the actor runs (NoResponders)
  {TIMEOUT}    timeout: no reply in time (AskTimeout, SagaTimeout)
  {REMOTE_ERROR}    the handler raised (RemoteError)
  {OVERLOADED}    the actor's mailbox is full (MailboxFull)
  {INTERRUPTED}  interrupted before anything could drain"""

_CODES: Final[tuple[tuple[type[BaseException], int], ...]] = (
    (InvalidMessage, INVALID_INPUT), (InvalidActorId, INVALID_INPUT), (NatsUnavailable, NO_SERVER),
    (NotProvisioned, NOT_FOUND), (SagaNotFound, NOT_FOUND), (NoResponders, NO_RESPONDERS),
    (AskTimeout, TIMEOUT), (SagaTimeout, TIMEOUT), (RemoteError, REMOTE_ERROR), (MailboxFull, OVERLOADED),
    (AppDefinitionError, USAGE),
)


def exit_code(exc: CorpsError) -> int:
    """The documented exit code of an error (EXIT_CODES)."""
    return next((code for kind, code in _CODES if isinstance(exc, kind)), ERROR)


def error_json(exc: BaseException) -> str:
    """An error as one JSON object: its type, message, and its data fields."""
    fields = {k: v for k, v in vars(exc).items() if not k.startswith("_") and isinstance(v, str | int | float | list)}
    return json.dumps({"error": type(exc).__name__, "message": str(exc), **fields})


def add_connection_arguments(p: argparse.ArgumentParser, *, security: bool = True, anywhere: bool = False) -> None:
    """``--nats``, ``--namespace`` (and the security flags). ``anywhere``: on an action's parser,
    repeating its command's flags so that they may also come after the action."""
    kw: dict[str, Any] = {"default": argparse.SUPPRESS} if anywhere else {}
    p.add_argument("--nats", metavar="URL", help="server(s), comma-separated (default: NATS_URL)",
                   **({"default": None} | kw))
    p.add_argument("--namespace", metavar="NS", help="the namespace (default: corps)", **({"default": "corps"} | kw))
    if security and not anywhere:
        add_security_arguments(p)


def add_json_argument(p: argparse.ArgumentParser, *, anywhere: bool = False) -> None:
    kw: dict[str, Any] = {"default": argparse.SUPPRESS} if anywhere else {"default": False}
    p.add_argument("--json", action="store_true", help="print JSON (one object per line for streams)", **kw)
