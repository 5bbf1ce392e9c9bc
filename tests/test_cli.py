"""`sparring train`: config validation, run folders, refusal to overwrite, and resume."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sparring.cli import main

TINY = {
    "env": {"source": "gymnasium", "id": "CartPole-v1", "num_envs": 2},
    "trainer": {
        "max_steps": 512,
        "summary_freq": 128,
        "checkpoint_interval": 256,
        "keep_checkpoints": 2,
        "hyperparameters": {"n_steps": 32, "batch_size": 64, "n_epochs": 2, "hidden_sizes": [16, 16]},
    },
    "seed": 3,
}


def write_config(tmp_path: Path, data: dict, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def train(tmp_path: Path, config: Path, *extra: str) -> int:
    return main(["train", str(config), "--results-dir", str(tmp_path / "results"), *extra])


def test_unknown_key_is_one_line_error_naming_key_and_file(tmp_path, capsys):
    bad = {**TINY, "trainer": {**TINY["trainer"], "hyperparameters": {"learning_rat": 0.1}}}
    config = write_config(tmp_path, bad)
    assert train(tmp_path, config) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(config) in err and "trainer.hyperparameters.learning_rat: unknown key" in err
    assert not (tmp_path / "results").exists()


def test_wrong_type_names_the_key(tmp_path, capsys):
    bad = {**TINY, "trainer": {**TINY["trainer"], "max_steps": "lots"}}
    assert train(tmp_path, write_config(tmp_path, bad)) == 2
    err = capsys.readouterr().err
    assert "trainer.max_steps" in err and "lots" in err
    assert not (tmp_path / "results").exists()


def test_invalid_yaml_and_missing_file_are_usage_errors(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("env: [unclosed\n")
    assert train(tmp_path, broken) == 2
    assert train(tmp_path, tmp_path / "nope.yaml") == 2
    err = capsys.readouterr().err
    assert "broken.yaml" in err and "nope.yaml: no such config file" in err


def test_unknown_env_id_is_a_usage_error(tmp_path, capsys):
    bad = {**TINY, "env": {"source": "gymnasium", "id": "NoSuchEnv-v0"}}
    assert train(tmp_path, write_config(tmp_path, bad)) == 2
    assert "NoSuchEnv-v0" in capsys.readouterr().err


def test_run_writes_config_checkpoints_metrics_and_tensorboard(tmp_path, capsys):
    assert train(tmp_path, write_config(tmp_path, TINY), "--run-id", "r1") == 0
    run = tmp_path / "results" / "r1"
    assert yaml.safe_load((run / "configuration.yaml").read_text())["seed"] == 3
    assert (run / "final.pt").exists()
    assert len(list((run / "checkpoints").glob("step_*.pt"))) == 2  # keep_checkpoints
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows and {"step", "behaviour", "Losses/Policy Loss", "Policy/Entropy"} <= set(rows[0])
    assert any("Environment/Cumulative Reward" in r for r in rows)
    assert list((run / "tensorboard" / "CartPole").glob("events.out.tfevents.*"))
    assert "outputs in" in capsys.readouterr().out


def test_existing_run_id_is_refused_without_resume_or_force(tmp_path, capsys):
    config = write_config(tmp_path, TINY)
    assert train(tmp_path, config, "--run-id", "same") == 0
    marker = tmp_path / "results" / "same" / "final.pt"
    before = marker.stat().st_mtime_ns
    assert train(tmp_path, config, "--run-id", "same") == 2
    assert "--resume" in capsys.readouterr().err and marker.stat().st_mtime_ns == before
    assert train(tmp_path, config, "--run-id", "same", "--force") == 0


def test_resume_without_checkpoint_is_refused(tmp_path, capsys):
    assert train(tmp_path, write_config(tmp_path, TINY), "--run-id", "ghost", "--resume") == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_resume_continues_step_count_parameters_and_optimizer(tmp_path):
    config = write_config(tmp_path, TINY)
    assert train(tmp_path, config, "--run-id", "r") == 0
    run = tmp_path / "results" / "r"
    first = torch.load(run / "final.pt", weights_only=False)

    longer = {**TINY, "trainer": {**TINY["trainer"], "max_steps": 1024}}
    config2 = write_config(tmp_path, longer, "tiny.yaml")
    for ckpt in sorted((run / "checkpoints").glob("*.pt")):
        if torch.load(ckpt, weights_only=False)["num_steps"] != first["num_steps"]:
            ckpt.unlink()  # resume from the final checkpoint, which equals final.pt
    assert train(tmp_path, config2, "--run-id", "r", "--resume") == 0
    second = torch.load(run / "final.pt", weights_only=False)

    assert second["num_steps"] >= 1024 > first["num_steps"]
    assert second["num_updates"] == first["num_updates"] + (second["num_steps"] - first["num_steps"]) // 64
    opt_first = first["learners"]["CartPole"]["optimizer"]["state"][0]["step"]
    opt_second = second["learners"]["CartPole"]["optimizer"]["state"][0]["step"]
    updates = second["num_updates"] - first["num_updates"]
    assert float(opt_second) == float(opt_first) + updates * 2 * 1  # n_epochs * minibatches per update
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == second["num_steps"]


def test_resumed_run_starts_from_checkpoint_state(tmp_path):
    """The first update after resuming starts from exactly the saved parameters and RNG state."""
    from sparring.agents import PPO
    from sparring.envs.gymnasium import GymnasiumEnv

    hp = TINY["trainer"]["hyperparameters"]
    a = PPO(GymnasiumEnv("CartPole-v1", num_envs=2), seed=1, **hp).learn(256)
    a.save(tmp_path / "a.pt")
    b = PPO.load(tmp_path / "a.pt", env=GymnasiumEnv("CartPole-v1", num_envs=2))
    assert b.num_steps == a.num_steps and b.num_updates == a.num_updates
    for (k, pa), pb in zip(a.policies["CartPole"].state_dict().items(), b.policies["CartPole"].state_dict().values()):
        assert torch.equal(pa, pb), k
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    # two resumes of the same checkpoint continue identically (the run is reproducible across restarts)
    c = PPO.load(tmp_path / "a.pt", env=GymnasiumEnv("CartPole-v1", num_envs=2))
    b.learn(512)
    c.learn(512)
    for pb, pc in zip(b.policies["CartPole"].parameters(), c.policies["CartPole"].parameters()):
        assert torch.equal(pb, pc)


def test_console_script_is_installed(tmp_path):
    out = subprocess.run([str(Path(sys.executable).parent / "sparring"), "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--resume" in out.stdout


def test_same_seed_reproduces_a_run_exactly():
    from sparring.agents import PPO
    from sparring.envs.gymnasium import GymnasiumEnv

    hp = TINY["trainer"]["hyperparameters"]
    a = PPO(GymnasiumEnv("CartPole-v1", num_envs=2), seed=5, **hp).learn(512)
    b = PPO(GymnasiumEnv("CartPole-v1", num_envs=2), seed=5, **hp).learn(512)
    c = PPO(GymnasiumEnv("CartPole-v1", num_envs=2), seed=6, **hp).learn(512)
    pa, pb, pc = (list(m.policies["CartPole"].parameters()) for m in (a, b, c))
    assert all(torch.equal(x, y) for x, y in zip(pa, pb))
    assert not all(torch.equal(x, z) for x, z in zip(pa, pc))
