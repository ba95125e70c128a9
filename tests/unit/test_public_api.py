"""One public surface (STYLE.md practice 2): ``corps`` re-exports it, ``actors/`` uses only it."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import corps
import corps.errors

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_INIT = ROOT / "runtime" / "__init__.py"
ACTORS = ROOT / "actors"


def _public_names(module: object) -> set[str]:
    # isidentifier(): pytest's assertion rewriting adds names such as "@py_builtins".
    return {
        name
        for name, value in vars(module).items()
        if name.isidentifier() and not name.startswith("_") and not inspect.ismodule(value)
    }


def test_every_name_in_all_exists() -> None:
    missing = [name for name in corps.__all__ if not hasattr(corps, name)]
    assert missing == []
    assert len(set(corps.__all__)) == len(corps.__all__)


def test_every_public_name_is_in_all() -> None:
    assert _public_names(corps) - {"annotations"} == set(corps.__all__)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from corps import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(corps.__all__)


@pytest.mark.parametrize("name", sorted(corps.__all__))
def test_every_public_object_is_defined_inside_corps(name: str) -> None:
    module = getattr(getattr(corps, name), "__module__", "")
    assert module.startswith("corps."), f"corps.{name} comes from {module!r}"


def test_the_package_init_only_re_exports() -> None:
    tree = ast.parse(RUNTIME_INIT.read_text())
    strays = []
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # the docstring
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("corps."):
            strays += [alias.name for alias in node.names if alias.asname != alias.name]  # "X as X" only
            continue
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["__all__"]:
            continue
        strays.append(ast.unparse(node).splitlines()[0])
    assert strays == []


def _is_private_corps(module: str) -> bool:
    first, *rest = module.split(".")
    return first == "corps" and any(part.startswith("_") for part in rest)


def _private_corps_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_private_corps(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _is_private_corps(node.module):
                found.append(node.module)
            else:  # from corps import _codec
                found += [m for alias in node.names if _is_private_corps(m := f"{node.module}.{alias.name}")]
    return found


def test_the_private_import_scan_finds_private_modules() -> None:
    source = """
import corps.core._ref
from corps.core._actor import Actor
from corps.wire import _codec
from corps.saga._engine import advance
from corps import Actor, handler
import corps.errors
from corps.saga import Saga
"""
    assert _private_corps_imports(source) == [
        "corps.core._ref",
        "corps.core._actor",
        "corps.wire._codec",
        "corps.saga._engine",
    ]


def test_reference_actors_import_no_private_runtime_module() -> None:
    # An empty (or absent) actors/ passes: there is nothing to break the rule yet.
    sources = sorted(ACTORS.rglob("*.py")) if ACTORS.is_dir() else []
    offenders = {
        str(path.relative_to(ROOT)): found for path in sources if (found := _private_corps_imports(path.read_text()))
    }
    assert offenders == {}


def _error_classes() -> list[type[BaseException]]:
    return [
        obj
        for obj in vars(corps.errors).values()
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == "corps.errors"
    ]


def test_every_error_derives_from_corps_error() -> None:
    classes = _error_classes()
    assert len(classes) > 10
    assert [c.__name__ for c in classes if not issubclass(c, corps.CorpsError)] == []


def test_every_error_is_exported() -> None:
    assert {c.__name__ for c in _error_classes()} <= set(corps.__all__)


def test_ask_timeout_is_a_timeout_error() -> None:
    assert issubclass(corps.AskTimeout, TimeoutError)
    assert issubclass(corps.AskTimeout, corps.AskError)


def test_the_error_tree_in_the_docstring_names_every_error() -> None:
    doc = corps.errors.__doc__ or ""
    missing = [c.__name__ for c in _error_classes() if f" {c.__name__} " not in doc.replace("\n", " \n")]
    assert missing == []
