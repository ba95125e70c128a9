"""``corps run``'s own checks (runtime/cli/_run.py), before anything is loaded or connected, and
/healthz of a system that is not connected."""

from __future__ import annotations

import argparse

import pytest

from corps import ActorSystem
from corps.cli._run import Probes, add_run_parser


def corps_run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="corps")
    add_run_parser(parser.add_subparsers(dest="command"), argparse.RawDescriptionHelpFormatter)
    args = parser.parse_args(["run", *argv])
    code: int = args.func(args, parser)
    return code


@pytest.mark.parametrize(("argv", "message"), [
    (["--instances", "0"], "--instances must be at least 1, not 0"),
    (["--http-port", "65536"], "--http-port must be 0..65535, not 65536"),
    (["--http-port", "-1"], "--http-port must be 0..65535, not -1"),
])
def test_bad_numbers_are_refused_with_exit_2_before_loading(argv: list[str], message: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        corps_run("no_such_module_anywhere:App", "--id", "a", *argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"corps run: error: {message}\n"


def test_healthz_and_readyz_are_503_without_a_connection() -> None:
    probes = Probes(ActorSystem("nats://127.0.0.1:1"))  # never started: no connection
    assert probes.healthz() == (503, {"connected": False, "node": probes.system.node})
    assert probes.readyz()[0] == 503
