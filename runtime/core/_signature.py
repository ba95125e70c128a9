"""The method shape that @handler and @on_event both check when an actor class is created."""

from __future__ import annotations

import inspect
import typing
from typing import Any


def check_signature(where: str, what: str, fn: Any, problems: list[str]) -> tuple[str, dict[str, Any]] | None:
    """What @handler and @on_event both require of a method: async, one parameter after self, and
    annotations that resolve. Returns (parameter name, type hints), or None after recording why not."""
    if not inspect.iscoroutinefunction(fn):
        problems.append(f"{where} must be async")
        return None
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 2:
        problems.append(f"{where} must take exactly one {what} parameter after self")
        return None
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # noqa: BLE001 -- any failure to resolve annotations is a definition problem
        problems.append(f"{where} has annotations that cannot be resolved: {exc}")
        return None
    return params[1].name, hints
