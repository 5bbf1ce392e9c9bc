"""PPO, SAC and self-play train through the godot_rl source on the stand-in game (tests/godot_rl_game.py), launched
as exported games are, from an ``env: source: godot_rl`` config section."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sparring.agents import PPO, SAC
from sparring.agents.evaluation import RandomPolicy, evaluate
from sparring.agents.selfplay import League, LeagueSettings
from sparring.agents.selfplay.trainer import SelfPlay
from sparring.env_config import GodotRLEnvConfig
from sparring.envs.factory import make_env
from sparring.export.exporter import export_policy
from test_export_godot_plugin import game_actions, plugin_reads

GAME = str(Path(__file__).with_name("godot_rl_game.py"))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def godot_game(*flags: str, num_envs: int = 2, seed: int = 0):
    """``num_envs`` stand-in games, each holding an action twice (``--action_repeat=2``)."""
    config = GodotRLEnvConfig(source="godot_rl", executable=GAME, args=list(flags), num_envs=num_envs, action_repeat=2)
    return make_env(config, seed=seed)


@pytest.mark.slow
@pytest.mark.parametrize("actions", ["continuous", "hybrid"])
def test_ppo_walks_every_agent_to_its_target(actions, learning_seed, measured):
    """8 agents in 2 games, 20k decisions. A return is the distance closed, plus 1 for reaching the target: walking
    straight there scores about 1.9, never arriving less than the start distance (under 1 on average). Seeds 0-9, 64
    greedy episodes each (``--learning-seeds 0-9``): 1.87 to 2.12 continuous, 1.85 to 2.12 hybrid (x continuous, y
    discrete); random play -0.03 to 0.22. Thresholds 1.6 and 0.5.
    """
    with godot_game(f"--actions={actions}", "--agents=4", seed=learning_seed) as env:
        model = PPO(env, seed=learning_seed, n_steps=64, batch_size=256, n_epochs=8, learning_rate=3e-3, gamma=0.95)
        model.learn(20_000)
    with godot_game(f"--actions={actions}", "--agents=4", seed=1000 + learning_seed) as env:
        trained = evaluate(model, env, 64, seed=1000 + learning_seed)["shared_policy"]
        random = evaluate(RandomPolicy(env.specs, seed=learning_seed), env, 64, seed=1000 + learning_seed)["shared_policy"]
    measured(mean_return=float(trained.mean()), random_return=float(random.mean()))
    assert trained.mean() >= 1.6 and random.mean() < 0.5, (trained.mean(), random.mean())


def test_sac_trains_through_the_source():
    with godot_game("--agents=2") as env:
        model = SAC(env, seed=0, batch_size=64, buffer_init_steps=256, hidden_sizes=[32, 32]).learn(1024)
        assert model.num_steps >= 1024


def test_self_play_trains_two_teams_of_one_policy_through_the_source(tmp_path):
    """Policy names with ML-Agents' team suffix are two sides of one policy group: one side learns while the other
    plays a snapshot from the league, and the sides change over."""
    settings = LeagueSettings(save_steps=256, swap_steps=128, team_change=512, window=5)
    with godot_game("--agents=2", "--policies=walker?team=0,walker?team=1", "--episode_steps=10") as env:
        assert {name: spec.team_id for name, spec in env.specs.items()} == {"walker?team=0": 0, "walker?team=1": 1}
        league = League(settings, tmp_path / "league", seed=0)
        model = SelfPlay(env, league, seed=0, n_steps=32, batch_size=64, n_epochs=2).learn(1536)
        assert model.num_steps >= 1536
        assert len(league.players) >= 3 and np.isfinite(league.learner_rating("walker"))


def test_a_godot_export_of_a_run_through_the_source_is_read_by_the_plugin_as_the_policy_acts(tmp_path):
    """The game's own action keys (``move_x`` continuous, then ``move_y`` discrete) travel with the behaviour to its
    godot export: the plugin's reading of ``output`` (emulated as in test_export_godot_plugin) gives the policy's
    deterministic actions, key by key."""
    with godot_game("--actions=hybrid", "--agents=2") as env:
        model = PPO(env, seed=0, n_steps=32, batch_size=64, n_epochs=2).learn(512)
        spec = env.specs["shared_policy"]
    assert [(k.name, k.kind) for k in spec.action_keys] == [("move_x", "continuous"), ("move_y", "discrete")]
    recorded = model.learners["shared_policy"].recorded_obs.numpy()
    export_policy(model.policies["shared_policy"], tmp_path / "p.onnx", "godot", recorded_obs=recorded)
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "p.onnx")).metadata_props}
    assert json.loads(meta["godot_action_space"]) == {"move_x": {"size": 1, "action_type": "continuous"},
                                                      "move_y": {"size": 3, "action_type": "discrete"}}
    obs = recorded.reshape(len(recorded), -1)
    sess = ort.InferenceSession(str(tmp_path / "p.onnx"), providers=["CPUExecutionProvider"])
    output, _ = sess.run(None, {"obs": obs, "state_ins": np.zeros(len(obs), np.float32)})
    cont, disc = game_actions(plugin_reads(output, json.loads(meta["godot_action_space"])), meta)
    want = model.predict(obs, "shared_policy")
    np.testing.assert_array_equal(disc[:, 0], want["discrete"])
    np.testing.assert_allclose(cont, want["continuous"].reshape(len(obs), -1), atol=1e-5)
