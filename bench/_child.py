"""Run one measurement in a fresh child process (``python -m corps.bench.X ...``) and read its JSON line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = str(Path(__file__).resolve().parent.parent)
"""Put on the child's PYTHONPATH, so ``-m bench.X`` works from any working directory."""


def child_env() -> dict[str, str]:
    """This process's environment, with the repository on PYTHONPATH (for ``-m corps.bench.X``)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))}


async def run_child(module: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``python -m module *args``; return the JSON object on the last line of its stdout."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=child_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{module} child did not finish in {timeout:.0f}s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{module} child exited with {proc.returncode}:\n{err.decode(errors='replace')}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result
