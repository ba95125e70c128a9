"""The only place NATS subjects are built. Users never write a subject by hand."""

from __future__ import annotations

import re
from typing import Final, NewType

from corps.errors import InvalidActorId

Subject = NewType("Subject", str)

MAX_TOKEN_LENGTH: Final = 200
_BAD_TOKEN = re.compile(r"[.*>\s\x00-\x1f\x7f-\x9f]")


def check_token(token: str, what: str = "actor id") -> str:
    """Return ``token`` if it is one safe subject token, else raise InvalidActorId.

    Refuses '.', '*', '>', whitespace and control characters, so that an id can never
    add tokens or wildcards to a subject (no wildcard injection).
    """
    if not isinstance(token, str):
        raise InvalidActorId(repr(token), f"{what} must be a str, not {type(token).__name__}")
    if not token:
        raise InvalidActorId(token, f"{what} must not be empty")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidActorId(token, f"{what} is longer than {MAX_TOKEN_LENGTH} characters")
    bad = _BAD_TOKEN.search(token)
    if bad is not None:
        raise InvalidActorId(token, f"{what} must not contain {bad.group()!r} ('.', '*', '>', whitespace)")
    return token


def actor_subject(namespace: str, actor_name: str, actor_id: str) -> Subject:
    """The subject of one actor instance: ``{ns}.actor.{ActorName}.{id}``."""
    return Subject(f"{namespace}.actor.{actor_name}.{check_token(actor_id)}")


def actor_class_wildcard(namespace: str, actor_name: str) -> Subject:
    """The one wildcard subject a node subscribes to for all its instances of a class."""
    return Subject(f"{namespace}.actor.{actor_name}.*")


def actor_id_of(namespace: str, actor_name: str, subject: str) -> str:
    """Inverse of actor_subject, for subjects known to match the class wildcard."""
    return subject[len(namespace) + len(actor_name) + 8 :]


def presence_subject(namespace: str, actor_name: str) -> Subject:
    """Where nodes that host a class of entity actors announce themselves to each other."""
    return Subject(f"{namespace}.host.{actor_name}")


def inbox_subject(namespace: str, node: str) -> Subject:
    """The prefix of a node's reply inbox; replies arrive on ``{prefix}.{n}``."""
    return Subject(f"{namespace}.inbox.{node}")


def nodes_subject(namespace: str) -> Subject:
    """Where every node of a namespace answers "what do you host?" (``corps ps``)."""
    return Subject(f"{namespace}.nodes")
