"""Scale-out: acting overlapped with learning, and env copies as Ray actors on a real multi-node cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ray_cluster import RayCluster
from sparring.agents import PPO
from sparring.envs.base import MultiAgentEnv
from sparring.envs.gymnasium import GymnasiumEnv

SPARRING = str(Path(sys.executable).with_name("sparring"))


class SlowCartPole(GymnasiumEnv):
    """CartPole copies whose every step costs ``tick`` seconds spent waiting, as a game that renders would."""

    def __init__(self, num_envs: int, tick: float) -> None:
        super().__init__("CartPole-v1", num_envs=num_envs)
        self.tick = tick

    def step(self, actions):
        time.sleep(self.tick)
        return super().step(actions)


def reports_of(env: MultiAgentEnv, overlap: bool, steps: int = 8 * 32 * 5) -> list[dict[str, float]]:
    model = PPO(env, seed=0, n_steps=32, batch_size=64, n_epochs=8)
    seen = []
    model.learn(steps, callback=lambda m, report: seen.append(next(iter(report.behaviours.values())).stats),
                overlap=overlap)
    return seen


def test_overlapped_collection_runs_while_the_update_does_and_stays_one_update_behind(one_torch_thread):
    overlapped = reports_of(SlowCartPole(8, tick=0.003), overlap=True)
    assert [s["Policy/Lag"] for s in overlapped] == [0, 1, 1, 1, 1]  # the first rollout was acted by the first policy
    for stats in overlapped[:-1]:  # the last update has no next rollout to collect meanwhile
        both, collect, update = (stats[f"Performance/{k} Seconds"] for k in ("Overlap", "Collect", "Update"))
        assert both >= 0.5 * min(collect, update) > 0, stats
    sync = reports_of(SlowCartPole(8, tick=0.003), overlap=False)
    assert {s["Policy/Lag"] for s in sync} == {0} and {s["Performance/Overlap Seconds"] for s in sync} == {0}


def test_acting_copies_act_until_published_and_hand_back_the_observation_statistics():
    model = PPO(GymnasiumEnv("CartPole-v1", num_envs=4), seed=0, n_steps=8, normalize_obs=True)
    learner = next(iter(model.learners.values()))
    learner.act_from_copies()
    with torch.no_grad():
        for p in learner.policy.parameters():  # an update that acting has not seen yet
            p.add_(torch.randn_like(p))
    decisions = next(iter(model.env.reset(seed=0).values())).decisions
    learner.act(decisions, model.generator)
    buf = learner.buffer
    x, actions = torch.from_numpy(buf.obs[:4]), torch.from_numpy(buf.actions[:4])
    acted, _, _ = learner.acting_policy.evaluate(x, actions, None)
    trained, _, _ = learner.policy.evaluate(x, actions, None)
    torch.testing.assert_close(torch.from_numpy(buf.log_probs[:4]), acted)  # the ratio's denominator
    assert not torch.allclose(acted, trained)
    assert learner.acting_policy.normalizer.count > learner.policy.normalizer.count
    learner.updates += 1
    learner.publish()
    for name, value in learner.policy.state_dict().items():
        torch.testing.assert_close(learner.acting_policy.state_dict()[name], value)
    assert learner.acting_version == 1


@pytest.mark.slow
def test_training_spreads_over_two_ray_nodes_and_goes_on_when_one_is_lost(tmp_path, learning_seed, measured):
    """A run's four CartPole workers spread over two real Ray nodes; the second node is switched off after the first
    summary, its two workers come back on the head node, their agents are reported lost, and the run reaches its
    threshold. Seeds 0-2: the mean training return of the last two summaries (20k and 24k steps) was 234, 500 and
    500; asserted: at least 150 (random play: about 22)."""
    cluster = RayCluster(tmp_path)
    try:
        cluster.start_node(num_cpus=4, resources={"game": 4})
        second = cluster.start_node(num_cpus=4, resources={"game": 2})
        config = tmp_path / "cartpole.yaml"
        config.write_text(yaml.safe_dump({
            "env": {"source": "gymnasium", "id": "CartPole-v1", "num_envs": 4},
            "trainer": {"max_steps": 24_000, "summary_freq": 4_000, "checkpoint_interval": 100_000,
                        "hyperparameters": {"n_steps": 64, "batch_size": 64, "n_epochs": 10, "learning_rate": 1e-3,
                                            "gamma": 0.98, "gae_lambda": 0.8}},
            "scale": {"worker_resources": {"game": 1}, "worker_cpus": 0, "overlap": True},
            "torch_threads": 1, "seed": learning_seed,
        }))
        run = subprocess.Popen([SPARRING, "train", str(config), "--ray", cluster.address, "--run-id", "spread",
                                "--results-dir", str(tmp_path / "results")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in run.stdout:
            lines.append(line)
            if line.startswith("step "):  # the first summary: training is under way on both nodes
                cluster.stop_node(second)
                break
        output = "".join(lines) + run.stdout.read()
        assert run.wait(timeout=300) == 0, output
        assert "4 env workers on 2 Ray nodes" in output
        rows = [json.loads(line) for line in (tmp_path / "results/spread/metrics.jsonl").read_text().splitlines()]
        engines = [r for r in rows if r["behaviour"] is None][-1]
        assert engines["Engines/Restarts"] >= 2 and engines["Engines/Lost Agents"] >= 1, engines
        returns = [r["Environment/Cumulative Reward"] for r in rows if "Environment/Cumulative Reward" in r]
        measured(returns=returns, restarts=engines["Engines/Restarts"], lost=engines["Engines/Lost Agents"])
        assert np.mean(returns[-2:]) >= 150, returns
    finally:
        cluster.stop()


@pytest.mark.parametrize(("trainer", "expected"), [
    ({"algorithm": "sac", "max_steps": 10}, "on-policy trainers"),
    ({"max_steps": 10, "self_play": {}}, "not available with self_play"),
])
def test_overlap_is_refused_where_it_does_not_apply(trainer, expected):
    from sparring.config import RunConfig

    with pytest.raises(ValueError, match=expected):
        RunConfig.model_validate({"env": {"source": "gymnasium", "id": "CartPole-v1"}, "trainer": trainer,
                                  "scale": {"overlap": True}})


def test_self_play_with_exploiters_plays_its_games_on_ray_workers(ray_cluster, tmp_path):
    """Each role's games (the main learner's, each exploiter's) are copies of their own; on Ray those copies are
    workers of their own, and every role's results reach the league."""
    from sparring.agents.selfplay import League, LeagueSettings
    from sparring.agents.selfplay.trainer import SelfPlay
    from sparring.env_config import PettingZooEnvConfig, ScaleConfig
    from sparring.envs.factory import make_env

    env = make_env(PettingZooEnvConfig(source="pettingzoo", id="pettingzoo.classic.tictactoe_v3", num_envs=3),
                   scale=ScaleConfig(ray=ray_cluster.address, worker_cpus=0))
    with env:
        assert len(env.worker_nodes) == 3
        settings = LeagueSettings(save_steps=1_000, swap_steps=500, main_exploiters=1, league_exploiters=1)
        model = SelfPlay(env, League(settings, tmp_path / "league"), seed=0, n_steps=64, batch_size=128, n_epochs=2)
        model.learn(3_000)
    payoff = model.league.payoff
    assert all(payoff[f"player/{role}"] for role in ("main", "main_exploiter0", "league_exploiter0")), payoff


@pytest.mark.parametrize("make", ["recurrent", "poca"])
def test_recurrent_and_group_learners_overlap_too(make):
    """A recurrent policy's acting copy keeps each agent's memory going, MA-POCA's acting copies include its group
    critic: both train overlapped, one update behind."""
    from sparring.agents import POCA
    from toy_envs import Dungeon

    if make == "recurrent":
        model = PPO(GymnasiumEnv("CartPole-v1", num_envs=4), seed=0, n_steps=16, batch_size=32, n_epochs=2,
                    memory={"memory_size": 8, "sequence_length": 4})
    else:
        model = POCA(Dungeon(areas=2), seed=0, n_steps=16, batch_size=32, n_epochs=2)
    lags = []
    model.learn(256, callback=lambda m, report: lags.extend(b.stats["Policy/Lag"] for b in report.behaviours.values()),
                overlap=True)
    assert len(lags) >= 3 and lags[0] == 0 and set(lags[1:]) == {1}, lags
