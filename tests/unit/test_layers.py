"""The layer contracts in pyproject.toml (checked by import-linter in `dev.py lint`) stay honest."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"corps.examples": ROOT / "actors", "corps.bench": ROOT / "bench", "corps": ROOT / "runtime"}


def _source(module: str) -> Path:
    for prefix, folder in FOLDERS.items():  # most specific mapping first
        if module == prefix or module.startswith(prefix + "."):
            rest = module.removeprefix(prefix).lstrip(".").replace(".", "/")
            path = folder / rest
            return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    raise AssertionError(module)


def _ignored_imports() -> list[tuple[str, str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    pairs = []
    for contract in config["contracts"]:
        for line in contract.get("ignore_imports", []):
            importer, imported = (part.strip() for part in line.split("->"))
            pairs.append((importer, imported))
    return pairs


def _runtime_imports(tree: ast.Module) -> set[str]:
    """Modules imported outside ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_the_cycle_contract_ignores_only_annotation_imports() -> None:
    pairs = _ignored_imports()
    assert pairs, "the acyclic contract lists its type-only exceptions"
    offenders = [f"{a} -> {b}" for a, b in pairs if b in _runtime_imports(ast.parse(_source(a).read_text()))]
    assert offenders == []


@pytest.mark.parametrize(("source", "expected"), [
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from a.b import C\n", set()),
    ("from a.b import C\n", {"a.b"}),
    ("def f():\n    from a.b import C\n", {"a.b"}),  # a function-level import still runs
])
def test_the_scan_tells_annotation_imports_from_runtime_ones(source: str, expected: set[str]) -> None:
    assert _runtime_imports(ast.parse(source)) - {"typing"} == expected
