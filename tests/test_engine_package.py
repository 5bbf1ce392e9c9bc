"""The Python engine SDK ships without the trainer: built from its own pyproject files, it runs a game against a
trainer from an environment that has numpy, grpcio and protobuf and nothing else.

No download happens: the two packages are built offline from this checkout, and their three dependencies are the
ones this environment already has, linked into a fresh virtual environment that has nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from sparring.envs.base import check_env
from sparring.envs.bridge.env import MultiEngineEnv

ROOT = Path(__file__).resolve().parents[1]
ARENA = ROOT / "engines" / "python" / "examples" / "arena.py"
DEPENDENCIES = ("numpy", "numpy.libs", "grpc", "typing_extensions.py", "google")  # numpy, grpcio (+ typing_extensions), protobuf


@pytest.fixture(scope="module")
def engine_python(tmp_path_factory) -> str:
    """The interpreter of a fresh venv holding sparring-protocol, sparring-engine and their dependencies only."""
    work = tmp_path_factory.mktemp("engine-venv")
    wheels, packages, dependencies = work / "wheels", work / "packages", work / "dependencies"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(wheels), str(ROOT / "protos"), str(ROOT / "engines" / "python")],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                                "--target", str(packages), *map(str, sorted(wheels.glob("*.whl")))],
                               capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    dependencies.mkdir()
    for name in DEPENDENCIES:
        if (site / name).exists():
            (dependencies / name).symlink_to(site / name)
    venv.create(work / "venv", with_pip=False)
    python = work / "venv" / "bin" / "python"
    fresh_site = Path(subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                                     capture_output=True, text=True, check=True).stdout.strip())
    (fresh_site / "engine.pth").write_text(f"{packages}\n{dependencies}\n")
    return str(python)


def test_the_engine_environment_has_none_of_the_trainer(engine_python):
    probe = ("import importlib.util as u; "
             "print([m for m in ('torch', 'gymnasium', 'sparring.agents', 'sparring.envs') if u.find_spec(m)])")
    found = subprocess.run([engine_python, "-c", probe], capture_output=True, text=True, env={**os.environ,
                           "PYTHONPATH": ""}, cwd="/")
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["grpc", "tcp"])
def test_the_arena_runs_from_the_engine_environment_against_a_trainer(engine_python, tmp_path, transport):
    with MultiEngineEnv.launch(engine_python, 1, [str(ARENA), "--arenas", "2"], transport=transport,
                               env={"PYTHONPATH": ""}, cwd="/", log_dir=tmp_path, step_timeout=20) as env:
        check_env(env, steps=100)
        assert env.restarts == 0
