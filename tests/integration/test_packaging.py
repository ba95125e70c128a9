"""Installing corps: one top-level package, and a pytest plugin that never breaks another project.

These build the wheel from a copy of the source and install it into a fresh venv, as a user's
``pip install corps pytest`` would (dependencies from the package index or pip's cache).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "runtime", "actors", "bench")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """corps's wheel, built from a copy of the sources (the checkout is left untouched)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", "-w", str(out), str(src)],
                   check=True, capture_output=True, timeout=180)
    (built,) = out.glob("corps-*.whl")
    return built


def test_the_wheel_installs_one_top_level_package_corps(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"corps"}
    # the reference services and the benchmark suite are sub-packages, and the marker ships
    for expected in ("corps/__init__.py", "corps/py.typed", "corps/examples/demo.py",
                     "corps/examples/shop/orchestrated.py", "corps/bench/__main__.py",
                     "corps/testing/plugin.py", "corps/core/_node.py", "corps/wire/_parser.py"):
        assert expected in names
    (dist_info,) = {t for t in tops if t.endswith(".dist-info")}
    with zipfile.ZipFile(wheel) as zf:
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    assert "corps = corps.cli._main:main" in entry_points
    assert "corps = corps.testing.plugin" in entry_points


UNRELATED_TESTS = '''
import pytest

from corps import Actor, Message, Request, handler


def test_arithmetic() -> None:
    assert 1 + 1 == 2


class Pong(Message):
    n: int


class Ping(Request[Pong]):
    n: int


class Echo(Actor):
    @handler
    async def ping(self, msg: Ping) -> Pong:
        return Pong(msg.n)


@pytest.mark.anyio
async def test_the_fixtures_work_without_hypothesis(actor_system) -> None:
    ref = await actor_system.spawn(Echo, "e")
    assert (await ref.ask(Ping(3))).n == 3
'''

CHECK_LAZY = '''
import importlib.util
import corps.testing

assert importlib.util.find_spec("hypothesis") is None, "the venv must not have hypothesis"
assert corps.testing.NatsCluster.__name__ == "NatsCluster"   # no hypothesis needed
try:
    corps.testing.SagaMachine
except ImportError as exc:
    print(exc)
else:
    raise SystemExit("SagaMachine imported without hypothesis")
'''


def test_pytest_on_another_project_passes_with_corps_installed_without_its_test_extra(
        wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", str(wheel), "pytest"],
                   check=True, capture_output=True, timeout=600)
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_unrelated.py").write_text(textwrap.dedent(UNRELATED_TESTS))
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "PYTHONPATH", "HYPOTHESIS_PROFILE")}
    run = subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=project,
                         env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout
    lazy = subprocess.run([str(py), "-c", CHECK_LAZY], cwd=project, env=env, capture_output=True, text=True,
                          timeout=60)
    assert lazy.returncode == 0, lazy.stdout + lazy.stderr
    assert "pip install 'corps[test]'" in lazy.stdout
