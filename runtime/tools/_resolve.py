"""Find the classes ``corps ask``, ``tell`` and ``publish`` name, and decode the shell's JSON into
the message type: an untrusted input, turned into InvalidMessage whatever goes wrong."""

from __future__ import annotations

import importlib
from typing import Any, Final

import msgspec

from corps.core._actor import Actor
from corps.core._messages import Message
from corps.errors import InvalidMessage
from corps.events._classes import event_handlers_of
from corps.system._app import App
from corps.tools._loader import LoadError, load_object

MAX_JSON: Final = 1024 * 1024
"""Bytes of JSON accepted from the command line (NATS's default max_payload)."""


def scope(app_spec: str | None) -> tuple[list[Any], App | None]:
    """The objects names are looked up in: an App's classes and its module's attributes (``--app
    MODULE:APP``), or a module's attributes (``--app MODULE``)."""
    if not app_spec:
        return [], None
    if ":" in app_spec:
        obj = load_object(app_spec, "MODULE:APP")
        app = obj() if callable(obj) and not isinstance(obj, App | type) else obj
        if not isinstance(app, App):
            raise LoadError(f"--app {app_spec} is not a corps.App (nor a function returning one)")
        module = importlib.import_module(app_spec.partition(":")[0])
        events = [t for c in app.actor_classes for t in event_handlers_of(c)]
        return [*app.actor_classes, *events, *vars(module).values()], app
    load_object(f"{app_spec}:__name__", "MODULE")  # imports it with the loader's errors
    return list(vars(importlib.import_module(app_spec)).values()), None


def _named(name: str, candidates: list[Any], kind: type, what: str, app_spec: str | None) -> Any:
    if ":" in name:
        obj = load_object(name, f"MODULE:{what}")
        if not (isinstance(obj, type) and issubclass(obj, kind)):
            raise LoadError(f"{name} is not a{'n' if what[0] in 'AEIOU' else ''} {what}")
        return obj
    if not app_spec:
        raise LoadError(f"{what} {name!r}: give MODULE:{name}, or --app MODULE[:APP] to look it up in")
    classes = {c for c in candidates if isinstance(c, type) and issubclass(c, kind) and c is not kind}
    # The wire name first (an actor's actor_name, unique per namespace), then the Python name.
    found = {c for c in classes if getattr(c, "actor_name", None) == name} or \
        {c for c in classes if c.__name__ == name}
    if len(found) != 1:
        which = "no" if not found else f"{len(found)} classes:"
        listed = ", ".join(sorted(f"{c.__module__}:{c.__qualname__}" for c in found))
        raise LoadError(f"{which} {what} named {name!r} in {app_spec} {listed}".rstrip() +
                        ("; name it as MODULE:CLASS" if found else ""))
    return found.pop()


def actor_class(name: str, app_spec: str | None, candidates: list[Any]) -> type[Actor]:
    cls: type[Actor] = _named(name, candidates, Actor, "Actor class", app_spec)
    return cls


def request_type(actor_cls: type[Actor], name: str) -> type[Message]:
    """The message type ``name`` (class name or wire tag) that ``actor_cls`` handles."""
    handled = list(actor_cls._handlers)
    for tp in handled:
        if name in (tp.__name__, tp.__struct_config__.tag):
            return tp
    raise LoadError(f"{actor_cls.__qualname__} handles no message {name!r}; it handles "
                    f"{', '.join(sorted(t.__name__ for t in handled)) or 'nothing'}")


def event_type(name: str, app_spec: str | None, candidates: list[Any]) -> type[Message]:
    tp: type[Message] = _named(name, candidates, Message, "Message class", app_spec)
    return tp


def decode(tp: type[Message], text: str, subject: str) -> Message:
    """``text`` as a ``tp``: its fields as a JSON object (``$type`` optional).

    Raises:
        InvalidMessage: not JSON, too long, too deep, or not a ``tp`` (wrong or missing fields).
    """
    data = text.encode("utf-8", "surrogateescape")
    if len(data) > MAX_JSON:
        raise InvalidMessage(subject, f"the JSON is {len(data)} bytes, over the {MAX_JSON} accepted")
    try:
        msg: Message = msgspec.json.decode(data, type=tp)
    except msgspec.ValidationError as exc:
        raise InvalidMessage(subject, f"not a {tp.__name__}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 -- untrusted input: DecodeError, RecursionError on deep nesting
        raise InvalidMessage(subject, f"not JSON: {type(exc).__name__}: {exc}"[:300]) from None
    return msg
