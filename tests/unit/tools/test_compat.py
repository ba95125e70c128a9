"""``corps schema --diff``: each compatibility rule, and a property over generated message versions."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corps import IncompatibleSchema, Message
from corps.tools._compat import Change, check, diff, schemas_of


def schemas(*types: type) -> dict[str, Any]:
    return msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")[1]


def version(name: str, fields: list[tuple[str, type, bool]], tag: str | None = None) -> dict[str, Any]:
    """The schemas of a message ``name`` with ``fields`` (name, type, optional)."""
    spec = [(f, tp, msgspec.field(default=None)) if optional else (f, tp) for f, tp, optional in
            sorted(fields, key=lambda f: f[2])]  # fields with defaults last
    cls = msgspec.defstruct(name, spec, bases=(Message,), tag=tag or name)
    return schemas(cls)


OLD = version("Order", [("id", str, False), ("qty", int, False), ("note", str | None, True)])


def changes(new: dict[str, Any], old: dict[str, Any] = OLD) -> list[tuple[str, str, bool]]:
    return [(c.where, c.what, c.breaking) for c in diff(old, new)]


def test_an_added_optional_field_is_compatible() -> None:
    new = version("Order", [("id", str, False), ("qty", int, False), ("note", str | None, True),
                            ("gift", bool | None, True)])
    assert changes(new) == [("Order.gift", "optional field added", False)]
    check(diff(OLD, new))  # raises nothing


def test_an_added_required_field_is_breaking() -> None:
    new = version("Order", [("id", str, False), ("qty", int, False), ("note", str | None, True), ("sku", str, False)])
    assert changes(new) == [("Order.sku", "required field added", True)]
    with pytest.raises(IncompatibleSchema) as err:
        check(diff(OLD, new))
    assert err.value.problems == ["BREAKING: Order.sku: required field added"]


def test_a_removed_field_is_breaking() -> None:
    assert changes(version("Order", [("id", str, False), ("note", str | None, True)])) == [
        ("Order.qty", "field removed", True)]


def test_a_retyped_field_is_breaking_even_when_widened() -> None:
    assert changes(version("Order", [("id", str, False), ("qty", float, False), ("note", str | None, True)])) == [
        ("Order.qty", "type changed", True)]
    assert changes(version("Order", [("id", str, False), ("qty", int | str, False), ("note", str | None, True)])) == [
        ("Order.qty", "type changed", True)]


def test_optional_to_required_breaks_and_required_to_optional_does_not() -> None:
    assert changes(version("Order", [("id", str, False), ("qty", int, False), ("note", str | None, False)])) == [
        ("Order.note", "optional field made required", True)]
    assert changes(version("Order", [("id", str, False), ("qty", int | None, True), ("note", str | None, True)])) \
        == [("Order.qty", "type changed", True)]  # int -> int | None is a retype
    relaxed = version("Order", [("id", str, False), ("qty", int, True), ("note", str | None, True)])
    assert changes(relaxed) == [("Order.qty", "required field made optional", False)]


def test_removed_messages_and_changed_tags_break_added_messages_do_not() -> None:
    other = version("Refund", [("id", str, False)])
    assert changes({**OLD, **other}) == [("Refund", "added", False)]
    assert changes(OLD, {**OLD, **other}) == [("Refund", "removed", True)]
    retagged = version("Order", [("id", str, False), ("qty", int, False), ("note", str | None, True)], tag="order.v2")
    assert changes(retagged) == [("Order.$type", "wire tag changed", True)]


def test_descriptions_do_not_count() -> None:
    new = {"Order": {**OLD["Order"], "description": "now documented", "title": "Order!"}}
    assert diff(OLD, new) == []


def test_a_document_without_schemas_is_refused_or_empty() -> None:
    assert schemas_of({"asyncapi": "3.0.0"}) == {}
    for bad in ([], {"components": {"schemas": []}}, {"components": {"schemas": {"A": 1}}}):
        with pytest.raises(ValueError, match=r"not an AsyncAPI document|not an object"):
            schemas_of(bad)
    assert str(Change("A.b", "field removed", True)) == "BREAKING: A.b: field removed"


FIELD_TYPES: list[type] = [int, str, bool, float, bytes, list[int], dict[str, int]]
names = st.lists(st.sampled_from("abcdefghij"), min_size=1, max_size=6, unique=True)


@st.composite
def message_versions(draw: st.DrawFn) -> list[tuple[str, type, bool]]:
    fields = draw(names)
    return [(f, draw(st.sampled_from(FIELD_TYPES)), draw(st.booleans())) for f in fields]


def _optional(tp: type, optional: bool) -> Any:
    return tp | None if optional else tp


@given(old=message_versions(), extra=names, data=st.data())
def test_a_version_is_compatible_iff_it_only_adds_optional_fields_or_relaxes(
    old: list[tuple[str, type, bool]], extra: list[str], data: st.DataObject,
) -> None:
    base = [(f, _optional(tp, opt), opt) for f, tp, opt in old]
    assert diff(version("M", base), version("M", base)) == []  # a version is compatible with itself
    added = [(f, int | None, True) for f in extra if f not in {b[0] for b in base}]
    new = version("M", base + added)
    assert not any(c.breaking for c in diff(version("M", base), new))  # optional additions: compatible
    # Any one removal, retype or required addition breaks it, and is named.
    victim, tp, opt = data.draw(st.sampled_from(base))
    kept = [b for b in base if b[0] != victim]
    assert [c.where for c in diff(version("M", base), version("M", kept)) if c.breaking] == [f"M.{victim}"]
    other = next(t for t in FIELD_TYPES if t is not tp and t is not (tp.__args__[0] if opt else tp))
    retyped = [*kept, (victim, _optional(other, opt), opt)]
    assert [c.where for c in diff(version("M", base), version("M", retyped)) if c.breaking] == [f"M.{victim}"]
    required = [*base, ("z", str, False)]
    assert [(c.where, c.breaking) for c in diff(version("M", base), version("M", required))] == [("M.z", True)]


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3), max_leaves=12)


@given(old=st.dictionaries(st.sampled_from(["A", "B"]), st.dictionaries(
    st.sampled_from(["properties", "required", "type"]), json_values, max_size=3), max_size=2),
       new=st.dictionaries(st.sampled_from(["A", "B"]), st.dictionaries(
    st.sampled_from(["properties", "required", "type"]), json_values, max_size=3), max_size=2))
def test_any_schemas_from_a_file_give_changes_never_an_exception(old: dict[str, Any], new: dict[str, Any]) -> None:
    for change in diff(old, new):  # a hand-edited or foreign document: judged, never crashed on
        assert change.where.split(".")[0] in old.keys() | new.keys()
