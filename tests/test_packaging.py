"""Installed, the code lives only under the sparring namespace (DESIGN section 2)."""

import subprocess
import sys

import pytest


def run_outside_checkout(tmp_path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)


@pytest.mark.parametrize("module", ["sparring.agents", "sparring.envs", "sparring.export", "sparring.protos"])
def test_subpackages_import_under_sparring(tmp_path, module):
    assert run_outside_checkout(tmp_path, f"import {module}").returncode == 0


@pytest.mark.parametrize("bare", ["agents", "envs", "export", "protos"])
def test_bare_top_level_names_do_not_leak(tmp_path, bare):
    out = run_outside_checkout(tmp_path, f"import {bare}")
    assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr


def test_the_trainer_and_the_protocol_share_one_namespace(tmp_path):
    """Two distributions fill ``sparring``: neither may hide the other's modules, however each is installed."""
    out = run_outside_checkout(
        tmp_path,
        "import importlib.metadata, sparring.cli, sparring.protos.wire, sparring.export.exporter; "
        "print(importlib.metadata.version('sparring'))",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0.1.0"
