"""docs/testing.md's examples, kept in testing_doc.py: the same lines, mypy --strict clean, the pure ones run."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
EXAMPLES = HERE / "testing_doc.py"
DOC = ROOT / "docs" / "testing.md"


def test_the_examples_of_docs_testing_md_pass_mypy_strict(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path), "--no-error-summary",
         str(EXAMPLES.relative_to(ROOT))],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr


def test_every_line_of_the_docs_python_examples_is_in_testing_doc_py() -> None:
    """Imports aside (testing_doc.py imports for every example at once), line for line."""
    source = {line.strip() for line in EXAMPLES.read_text().splitlines()}
    missing = []
    for block in DOC.read_text().split("```python")[1:]:
        code = block.split("```")[0]
        nodes = [node for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Import | ast.ImportFrom)]
        exec(compile(ast.Module(nodes, []), "docs/testing.md", "exec"), {})  # the doc's own imports work
        imports = {n for node in nodes for n in range(node.lineno, (node.end_lineno or node.lineno) + 1)}
        missing += [line.strip() for n, line in enumerate(code.splitlines(), start=1)
                    if line.strip() and n not in imports and line.strip() not in source]
    assert missing == []


def load_examples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("testing_doc", EXAMPLES)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_pure_examples_run() -> None:
    # Before run_pure built placeholder replies: TypeError: Missing required argument 'order_id'.
    examples = load_examples()
    examples.test_place_order_keeps_the_invariants()
    examples.test_reserve_with_my_replies()
