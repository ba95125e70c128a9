"""``corps run --reload`` (runtime/cli/_reload.py): the watcher on real files (which files it
watches, the bound on them, which changes it sees, which folder an application is), and the
supervisor with a real child process and real signals."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import pytest

import corps
from corps import App
from corps.cli import _reload
from corps.cli._reload import _changed, snapshot, supervise, watched_root
from corps.examples.demo import Account


def tree(root: Path, *files: str) -> None:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x = 1\n")


def test_only_python_sources_are_watched_outside_environments_builds_caches_and_hidden_folders(
        tmp_path: Path) -> None:
    tree(tmp_path, "app.py", "pkg/mod.py", "pkg/sub/deep.py", "notes.txt",
         ".venv/lib/x.py", "venv/y.py", "build/z.py", "__pycache__/c.py", "node_modules/n.py",
         "site-packages/s.py", ".hidden/h.py", "pkg/.git/g.py")
    assert sorted(os.path.relpath(p, tmp_path) for p in snapshot(tmp_path)) == [
        "app.py", "pkg/mod.py", "pkg/sub/deep.py"]


def test_at_most_max_files_are_watched_and_the_limit_is_logged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    tree(tmp_path, *(f"m{i}.py" for i in range(5)))
    monkeypatch.setattr(_reload, "MAX_FILES", 3)
    with caplog.at_level(logging.WARNING, "corps.reload"):
        assert len(snapshot(tmp_path)) == 3
    assert "--reload watches the first 3 files" in caplog.text


def test_an_edited_an_added_and_a_removed_file_are_each_a_change(tmp_path: Path) -> None:
    tree(tmp_path, "a.py", "b.py")
    before = snapshot(tmp_path)
    assert _changed(before, snapshot(tmp_path)) is None
    assert _changed(before, {**before, str(tmp_path / "new.py"): 1.0}) == str(tmp_path / "new.py")
    gone = dict(before)
    del gone[str(tmp_path / "b.py")]
    assert _changed(before, gone) == str(tmp_path / "b.py")
    later = before[str(tmp_path / "a.py")] + 2
    os.utime(tmp_path / "a.py", (later, later))
    assert _changed(before, snapshot(tmp_path)) == str(tmp_path / "a.py")


def test_the_watched_root_is_the_top_level_package_or_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert watched_root("corps.examples.shop.app:app") == Path(corps.__file__).parent
    monkeypatch.chdir(tmp_path)
    assert watched_root("no_such_module_anywhere:app") == tmp_path


# -- the supervisor, with a real child process and real signals ----------------------------------


def fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for ``python -m corps.cli._main ...``: a shell running ``body``."""
    path = tmp_path / "fake-python"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


APP = App(name="x", actors={Account: "a"}, drain_timeout=0.1)


def test_sigterm_stops_the_child_and_a_child_ended_by_that_signal_is_a_clean_exit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The child signals its supervisor (this process) itself: no timing is involved.
    monkeypatch.setattr(sys, "executable", fake_python(tmp_path, "kill -TERM $PPID\nexec sleep 60"))
    monkeypatch.chdir(tmp_path)
    before = signal.getsignal(signal.SIGTERM)
    assert supervise("no_such_module_anywhere:app", APP, []) == 0
    assert signal.getsignal(signal.SIGTERM) == before  # the supervisor's handlers are gone again


def test_a_child_that_ignores_sigterm_is_killed_after_its_grace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sys, "executable", fake_python(tmp_path, "trap '' TERM\nkill -TERM $PPID\nsleep 60"))
    monkeypatch.setattr(_reload, "STOP_GRACE", 0.2)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, "corps.reload"):
        assert supervise("no_such_module_anywhere:app", APP, []) == -signal.SIGKILL
    assert "did not stop within 0s; killed" in caplog.text
