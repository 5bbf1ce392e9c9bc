"""ML-Agents' release-21 example trainer configs (tests/data/mlagents_release21.json), as files to load."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

CORPUS: dict[str, dict] = json.loads((Path(__file__).resolve().parent / "data" / "mlagents_release21.json").read_text())
"""Per file, keyed by its path under ML-Agents' ``config/`` (``"ppo/3DBall.yaml"``), the mapping its YAML reads as."""


def example_file(name: str, folder: Path) -> Path:
    """ML-Agents' ``config/<name>`` written to ``folder`` as the YAML file ``sparring train`` reads."""
    path = folder / Path(name).name
    path.write_text(yaml.safe_dump(CORPUS[name]))
    return path
