"""`sparring train` on a bridge config: game processes launched, trained, logged, and closed."""

import json
from pathlib import Path

import pytest
import yaml

from sparring.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("transport", ["grpc", "tcp"])
def test_train_launches_the_arena_and_records_bridge_metrics(tmp_path, transport):
    config = {
        "env": {"source": "bridge", "executable": str(ROOT / "engines/python/examples/arena.py"),
                "args": ["--arenas", "2"], "num_envs": 2, "transport": transport},
        "trainer": {"max_steps": 2000, "summary_freq": 1000, "hyperparameters": {"n_steps": 32, "batch_size": 128}},
    }
    path = tmp_path / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--results-dir", str(tmp_path / "results"), "--run-id", "a"]) == 0
    run = tmp_path / "results" / "a"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["behaviour"] for r in rows} == {"Runner", "Turret", None}
    assert rows[-1]["Engines/Restarts"] == 0
    assert sorted(p.name for p in (run / "engines").iterdir()) == ["slot0-1.log", "slot1-1.log"]


def test_a_game_that_cannot_start_is_a_clear_error(tmp_path, capsys):
    config = {"env": {"source": "bridge", "executable": str(tmp_path / "no-such-game"), "num_envs": 1},
              "trainer": {"max_steps": 100}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--results-dir", str(tmp_path / "results")]) == 2
    assert "no-such-game" in capsys.readouterr().err
