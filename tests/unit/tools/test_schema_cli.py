"""``corps schema`` as a command: the document on stdout or in a file, and --diff's exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from corps.cli._main import main
from corps.tools._asyncapi import asyncapi
from corps.tools._graph import classes_in


def write(path: Path, doc: dict[str, Any]) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def test_schema_writes_the_document_of_modules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "corps.examples.shop.hybrid", "--namespace", "shop", "--app-version", "2.0.0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["version"] == "2.0.0"
    assert doc["channels"]["OrdersContext"]["address"] == "shop.actor.OrdersContext.{id}"
    out = tmp_path / "api.json"
    assert main(["schema", "corps.examples.shop.hybrid", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["channels"]["OrdersContext"]["address"] == "corps.actor.OrdersContext.{id}"


def test_diff_of_a_module_against_its_own_document_is_clean(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from corps.examples.shop import hybrid

    old = write(tmp_path / "old.json", asyncapi(classes_in(hybrid)))
    assert main(["schema", "--diff", old, "corps.examples.shop.hybrid"]) == 0
    assert capsys.readouterr().out == "no changes\n"


def test_diff_exits_1_on_a_breaking_change_and_0_on_a_compatible_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from corps.examples.shop import hybrid

    doc = asyncapi(classes_in(hybrid))
    schema = doc["components"]["schemas"]["OrderDecided"]
    compatible = json.loads(json.dumps(doc))
    compatible["components"]["schemas"]["OrderDecided"]["properties"]["note"] = {"type": "string"}
    breaking = json.loads(json.dumps(doc))
    breaking["components"]["schemas"]["OrderDecided"]["properties"]["reason"] = {"type": "integer"}
    assert "reason" in schema["required"]
    old = write(tmp_path / "old.json", doc)
    assert main(["schema", "--diff", old, write(tmp_path / "ok.json", compatible)]) == 0
    assert "compatible: OrderDecided.note: optional field added" in capsys.readouterr().out
    assert main(["schema", "--diff", old, write(tmp_path / "bad.json", breaking)]) == 1
    captured = capsys.readouterr()
    assert "BREAKING: OrderDecided.reason: type changed" in captured.out
    assert "1 breaking change(s)" in captured.err


@pytest.mark.parametrize(("args", "message"), [
    (["schema"], "give a MODULE"),
    (["schema", "--diff", "missing.json", "x.json"], "cannot read missing.json"),
    (["schema", "corps.examples.nothing_here"], "corps schema: error:"),
    (["schema", "corps.examples.shop.hybrid", "--diff", "a.json", "b.json"], "--diff takes OLD and NEW only"),
])
def test_bad_arguments_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_file_that_is_no_document_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    with pytest.raises(SystemExit) as exit_info:
        main(["schema", "--diff", str(bad), str(bad)])
    assert exit_info.value.code == 2
    assert "cannot read" in capsys.readouterr().err
