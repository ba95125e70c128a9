"""``corps run --reload``: run the application in a child process; restart it when a source file
changes. For development: no dependency, the watcher polls modification times.

Watched: every ``*.py`` file under the folder of the application's top-level package (or of its
module, for a plain module), skipping virtual environments, build output and caches, up to
``MAX_FILES``. A change (a file edited, added or removed) sends the child SIGTERM, so it drains
as on Ctrl-C, and starts a new one. SIGINT or SIGTERM to this process stops the child and exits.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

from corps.system._app import App

log = logging.getLogger("corps.reload")

POLL_INTERVAL: Final = 0.5
"""Seconds between two scans of the watched files."""
MAX_FILES: Final = 10_000
"""Files watched at most; beyond, a warning names the limit and the rest is not watched."""
STOP_GRACE: Final = 5.0
"""Seconds a child gets beyond its drain timeout to exit after SIGTERM before it is killed."""
_SKIP: Final = frozenset({".venv", "venv", ".git", "__pycache__", "build", "dist", "node_modules", ".tox",
                          ".mypy_cache", ".ruff_cache", ".pytest_cache", "site-packages"})


def watched_root(target: str) -> Path:
    """The folder whose sources make the application ``MODULE:...``."""
    top = target.partition(":")[0].split(".")[0]
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        return Path.cwd()
    return Path(spec.origin).parent  # a package's folder (origin: its __init__.py), or a module's


def snapshot(root: Path) -> dict[str, float]:
    """``{path: mtime}`` of the watched files under ``root``."""
    out: dict[str, float] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP and not d.startswith("."))
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                try:
                    out[path] = os.stat(path).st_mtime
                except OSError:  # removed between the listing and the stat
                    continue
                if len(out) >= MAX_FILES:
                    log.warning("--reload watches the first %d files under %s only", MAX_FILES, root)
                    return out
    return out


def _changed(before: dict[str, float], after: dict[str, float]) -> str | None:
    for path in sorted(before.keys() | after.keys()):
        if before.get(path) != after.get(path):
            return path
    return None


def supervise(target: str, app: App, argv: list[str] | None = None) -> int:
    """Run ``corps`` with ``argv`` (default: this process's, without ``--reload``) as a child;
    restart it on each source change; return when SIGINT or SIGTERM stops it."""
    argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--reload"]
    root = watched_root(target)
    stop: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stop.append(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    print(f"reload: watching {root} (*.py); Ctrl-C to stop", flush=True)
    try:
        while True:
            files = snapshot(root)
            child = subprocess.Popen([sys.executable, "-m", "corps.cli._main", *argv])
            changed = None
            while not stop and child.poll() is None and changed is None:
                time.sleep(POLL_INTERVAL)  # polling the files: the watcher's whole mechanism
                changed = _changed(files, snapshot(root))
            code = _stop(child, stop[0] if stop else signal.SIGTERM, app.drain_timeout + STOP_GRACE)
            if stop:
                return 0 if code in (0, -signal.SIGINT, -signal.SIGTERM) else code
            if changed is None:  # the child ended by itself (an import error, say): wait for a fix
                print(f"reload: the application exited with {code}; waiting for a change", flush=True)
                while not stop and _changed(files, snapshot(root)) is None:
                    time.sleep(POLL_INTERVAL)
                if stop:
                    return code
                continue
            print(f"reload: {os.path.relpath(changed, root)} changed; restarting", flush=True)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _stop(child: subprocess.Popen[bytes], signum: int, grace: float) -> int:
    if child.poll() is None:
        child.send_signal(signum)
        try:
            return child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning("reload: the application did not stop within %.0fs; killed", grace)
            child.kill()
    return child.wait()
