"""``corps schema --diff``: is a new version of some messages compatible with the old one?

Both sides are AsyncAPI documents as ``corps schema`` writes them; what is compared is their
``components.schemas`` (every message, and every Struct a message holds), by name, field by field.
The rules, for peers that run either version side by side (a rolling deploy, events in a stream):

* a field added with a default (optional): compatible (old readers ignore it, new ones default it);
* a field added without a default (required): breaking (old senders do not send it);
* a field removed: breaking (old readers require it or lose it);
* a field whose type changed in any way (widened too): breaking (one side cannot read the other);
* an optional field made required: breaking; a required one made optional: compatible;
* a message or Struct removed: breaking; one added: compatible;
* a change of a message's wire tag (``$type``): breaking.

Descriptions, titles, examples and defaults' values are not compared. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from corps.errors import IncompatibleSchema

TAG: Final = "$type"
_IGNORED: Final = frozenset({"title", "description", "examples", "default"})


class Change(msgspec.Struct, frozen=True):
    """One difference: where (``Message.field``), what, and whether it breaks compatibility."""

    where: str
    what: str
    breaking: bool

    def __str__(self) -> str:
        return f"{'BREAKING' if self.breaking else 'compatible'}: {self.where}: {self.what}"


def schemas_of(doc: Any) -> dict[str, Any]:
    """The named schemas of an AsyncAPI document (``components.schemas``); {} if it has none.

    Raises:
        ValueError: ``doc`` is not a document with an object of schemas.
    """
    if not isinstance(doc, dict):
        raise ValueError("not an AsyncAPI document (a JSON object)")
    schemas = doc.get("components", {}).get("schemas", {}) if isinstance(doc.get("components"), dict) else {}
    if not isinstance(schemas, dict) or not all(isinstance(s, dict) for s in schemas.values()):
        raise ValueError("components.schemas is not an object of schemas")
    return schemas


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """The changes from ``old`` to ``new`` (two ``components.schemas``), in name order."""
    changes: list[Change] = []
    for name in sorted(old.keys() | new.keys(), key=str):
        if name not in new:
            changes.append(Change(name, "removed", True))
        elif name not in old:
            changes.append(Change(name, "added", False))
        else:
            changes += _struct(name, old[name], new[name])
    return changes


def _struct(name: str, old: Any, new: Any) -> list[Change]:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new else [Change(name, "type changed", True)]
    old_props, new_props = old.get("properties"), new.get("properties")
    if not isinstance(old_props, dict) or not isinstance(new_props, dict):  # not a Struct: compared whole
        same = _normal(old) == _normal(new)
        return [] if same else [Change(name, "type changed", True)]
    old_req, new_req = _required(old), _required(new)
    changes: list[Change] = []
    for field in sorted(old_props.keys() | new_props.keys(), key=str):
        where = f"{name}.{field}"
        if field not in new_props:
            changes.append(Change(where, "field removed", True))
        elif field not in old_props:
            required = field in new_req
            changes.append(Change(where, f"{'required' if required else 'optional'} field added", required))
        elif _normal(old_props[field]) != _normal(new_props[field]):
            changes.append(Change(where, "wire tag changed" if field == TAG else "type changed", True))
        elif field in new_req and field not in old_req:
            changes.append(Change(where, "optional field made required", True))
        elif field in old_req and field not in new_req:
            changes.append(Change(where, "required field made optional", False))
    return changes


def _required(schema: dict[str, Any]) -> set[str]:
    """The required field names of a Struct's schema (a document from a file may hold anything)."""
    names = schema.get("required")
    return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()


def _normal(schema: Any) -> Any:
    """The schema without what does not change the wire (descriptions, titles, defaults)."""
    if isinstance(schema, dict):
        return {k: _normal(v) for k, v in schema.items() if k not in _IGNORED}
    if isinstance(schema, list):
        return [_normal(v) for v in schema]
    return schema


def check(changes: list[Change]) -> None:
    """Raises:
    IncompatibleSchema: some change breaks compatibility; ``problems`` lists each.
    """
    problems = [str(c) for c in changes if c.breaking]
    if problems:
        raise IncompatibleSchema(problems)
