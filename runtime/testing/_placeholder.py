"""Placeholder replies for ``run_pure``: a step's reply built from its request, for tests that need any.

``placeholder_reply(request)`` builds the request's reply type (``Request[R]`` names it): a field
the request has too, with a value of the right type, is copied from it (``order_id``, ``sku``...);
any other required field gets the zero value of its type (``""``, ``0``, ``False``, ``None``, an
empty collection, a Literal's first value, an Enum's first member, a nested Struct built the same
way). A type with no such value (a datetime, a constrained str) raises TypeError naming
``run_pure(reply=...)``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi

from corps.core._messages import Message, reply_type


def placeholder_reply(request: Message) -> Message:
    """The reply of ``request``, built as the module doc says.

    Raises:
        TypeError: the request names no reply type, or the reply has a field with no zero value.
    """
    expected = reply_type(type(request))
    asked = type(request).__name__
    if expected is None:
        raise TypeError(f"{asked} names no reply type (it is no Request[R]): pass reply= to run_pure")
    try:
        reply: Message = _build(expected, request)
    except TypeError as exc:
        raise TypeError(f"run_pure cannot build a {expected.__name__} reply to {asked} by itself ({exc}): "
                        "pass reply=, a function of the step's SendStep command (cmd.request) returning "
                        "the reply") from None
    return reply


def _build(cls: type[Any], source: object | None) -> Any:
    values: dict[str, Any] = {}
    for f in msgspec.structs.fields(cls):
        copied = _copy(source, f.name, f.type)
        if copied is not _NONE:
            values[f.name] = copied
        elif f.required:
            values[f.name] = _zero(mi.type_info(f.type), f"{cls.__name__}.{f.name}")
    return cls(**values)


_NONE: Any = object()


def _copy(source: object | None, name: str, tp: Any) -> Any:
    if source is None or name not in getattr(type(source), "__struct_fields__", ()):
        return _NONE
    try:
        return msgspec.convert(getattr(source, name), tp)
    except msgspec.ValidationError:  # same name, another type: not a copy
        return _NONE


def _zero(info: mi.Type, where: str) -> Any:
    simple: dict[type[mi.Type], Any] = {
        mi.StrType: "", mi.IntType: 0, mi.FloatType: 0.0, mi.BoolType: False, mi.BytesType: b"",
        mi.NoneType: None, mi.AnyType: None, mi.ListType: [], mi.VarTupleType: (), mi.SetType: set(),
        mi.FrozenSetType: frozenset(), mi.DictType: {},
    }
    constrained = any(getattr(info, c, None) is not None for c in ("ge", "gt", "le", "lt", "min_length", "pattern"))
    if type(info) in simple and not constrained:
        return simple[type(info)]
    if isinstance(info, mi.UnionType):
        if any(isinstance(t, mi.NoneType) for t in info.types):
            return None
        return _zero(info.types[0], where)
    if isinstance(info, mi.LiteralType):
        return info.values[0]
    if isinstance(info, mi.EnumType):
        return next(iter(info.cls))
    if isinstance(info, mi.StructType):
        return _build(info.cls, None)
    raise TypeError(f"{where} has no zero value")
