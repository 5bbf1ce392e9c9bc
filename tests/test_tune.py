"""`sparring tune`: population-based training on a real Ray cluster, and search spaces refused before Ray starts."""

import json
from pathlib import Path

import pytest
import yaml

from sparring.cli import main
from sparring.config import load_config

SUMMARY_FREQ = 2048

CARTPOLE = {  # RL Zoo's CartPole settings, trained for 16k steps (~2.5 s a trial on one core)
    "env": {"source": "gymnasium", "id": "CartPole-v1", "num_envs": 8},
    "trainer": {
        "max_steps": 16384, "summary_freq": SUMMARY_FREQ, "checkpoint_interval": 8192, "keep_checkpoints": 2,
        "hyperparameters": {"n_steps": 32, "batch_size": 256, "n_epochs": 20, "gamma": 0.98, "gae_lambda": 0.8,
                            "learning_rate": 0.001, "clip_range": 0.2, "ent_coef": 0.0},
    },
    "tune": {
        # One trial learns, one barely moves: at the first perturbation past 4096 steps where both have scored,
        # the second is in the lower half and continues from the first's checkpoint.
        "search_space": {"trainer.hyperparameters.learning_rate": {"grid": [0.001, 0.00001]}},
        "num_samples": 1, "scheduler": "pbt", "perturbation_interval": 4096,
    },
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def results(trial: Path) -> list[dict]:
    """What the trial reported to Tune, in order (Tune's result.json)."""
    return [json.loads(line) for line in (trial.parent / "tune" / trial.name / "result.json").read_text().splitlines()]


def last_summary(trial: Path) -> dict:
    return json.loads((trial / "metrics.jsonl").read_text().splitlines()[-1])


def test_population_based_training_exploits_and_writes_the_best_config(tmp_path, ray_cluster, learning_seed,
                                                                       measured):
    """Two trials of CartPole on a 2-CPU cluster, one that learns and one whose learning rate barely moves it.

    Seeds 0-6: the slow trial went on from the other's checkpoint on every seed (first reporting at 6144 or 10240
    steps), and the best trial's last summary was 144-437 (random play: about 22).
    """
    config = write(tmp_path, {**CARTPOLE, "seed": learning_seed})
    argv = ["tune", str(config), "--results-dir", str(tmp_path / "results"), "--run-id", "pbt", "--ray",
            ray_cluster.address]
    assert main(argv) == 0

    run = tmp_path / "results" / "pbt"
    trials = sorted(run.glob("trial_*"))
    assert [t.name for t in trials] == ["trial_00000", "trial_00001"]
    for trial in trials:  # each a sparring run folder that trained to the end
        assert (trial / "configuration.yaml").is_file() and (trial / "final.pt").is_file()
        assert last_summary(trial)["step"] >= CARTPOLE["trainer"]["max_steps"]

    exploits = [(trial.name, row) for trial in trials for row in results(trial)
                if row["restored_from"] not in ("", trial.name)]
    assert exploits, "no trial continued from another trial's checkpoint"
    for name, row in exploits:  # it loaded the other's model: its steps go on from there, not from 0
        assert row["agent_steps"] > SUMMARY_FREQ

    best = load_config(run / "best.yaml")
    assert best.tune is None
    scores = {trial.name: last_summary(trial)["Environment/Cumulative Reward"] for trial in trials}
    top = max(scores.values())
    hyperparameters = [load_config(trial / "configuration.yaml").trainer.hyperparameters
                       for trial in trials if scores[trial.name] == top]
    assert best.trainer.hyperparameters in hyperparameters
    measured(best=top, scores=scores, exploits=[(name, row["restored_from"], row["agent_steps"])
                                                for name, row in exploits])
    assert top > 75  # random play: ~22


@pytest.mark.parametrize("space, message", [
    ({"trainer.hyperparameters.learnin_rate": {"loguniform": [1e-4, 1e-2]}},
     "tune.search_space.trainer.hyperparameters.learnin_rate: 0.0001 makes the config invalid: "
     "trainer.hyperparameters.learnin_rate: unknown key"),
    ({"trainer.hyperparameters.learning_rate": {"normal": [0.001, 0.1]}},
     "tune.search_space.trainer.hyperparameters.learning_rate.normal: unknown key"),
    ({"trainer.hyperparameters.learning_rate": {"loguniform": [0, 0.1]}},
     "tune.search_space.trainer.hyperparameters.learning_rate: loguniform: [low, high] needs low < high and 0 < low"),
    ({"trainer.hyperparameters.gamma": {"uniform": [0.9, 1.5]}},
     "tune.search_space.trainer.hyperparameters.gamma: 1.5 makes the config invalid: trainer.hyperparameters.gamma"),
    ({"trainer.hyperparameters.n_epochs": {"uniform": [5, 20]}},
     "tune.search_space.trainer.hyperparameters.n_epochs: a whole-number setting"),
    ({"seed.value": {"choice": [1, 2]}}, "tune.search_space.seed.value: not a config key (seed is a value"),
])
def test_a_search_space_the_config_cannot_take_is_refused_before_ray_starts(tmp_path, capsys, space, message):
    config = write(tmp_path, {**CARTPOLE, "tune": {**CARTPOLE["tune"], "search_space": space}})
    assert main(["tune", str(config), "--results-dir", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert message in err and str(config) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()
