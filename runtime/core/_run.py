"""Run a coroutine on uvloop where installed: the default event loop for corps programs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(main: Callable[..., Awaitable[T]], *args: Any, loop: str | None = None) -> T:
    """``anyio.run(main, *args)`` on uvloop when installed (``loop="asyncio"`` to opt out)."""
    use_uvloop = uvloop_available() if loop in (None, "uvloop") else False
    return anyio.run(main, *args, backend="asyncio", backend_options={"use_uvloop": use_uvloop})
