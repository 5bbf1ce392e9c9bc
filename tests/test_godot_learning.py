"""The example Godot game, run by the real headless Godot engine, trained over the bridge."""

import shutil
from pathlib import Path

import pytest
import torch

from sparring.agents import PPO
from sparring.agents.evaluation import evaluate
from sparring.envs.bridge.env import MultiEngineEnv

GAME = Path(__file__).resolve().parents[1] / "engines" / "godot" / "example"
THRESHOLD = 0.8  # mean seeker return; random masked play scores about -0.04, walking straight to the coin about 0.95
# Seeds 0-9: 0.952 to 0.955.

pytestmark = [
    pytest.mark.godot,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("godot3-server") is None, reason="godot3-server is not installed"),
]


@pytest.mark.timeout(300)
def test_ppo_learns_the_godot_seekers_through_two_godot_processes(tmp_path, learning_seed, measured):
    torch.set_num_threads(1)
    with MultiEngineEnv.launch("godot3-server", 2, ["--path", str(GAME)], transport="tcp", log_dir=tmp_path,
                               step_timeout=30) as env:
        model = PPO(env, seed=learning_seed, n_steps=128, batch_size=256, n_epochs=4, learning_rate=1e-3, ent_coef=0.01)
        model.learn(40_000)
        returns = evaluate(model, env, episodes=400, seed=1000 + learning_seed)["seeker"]
        assert env.restarts == 0
    measured(mean_return=float(returns.mean()))
    assert returns.mean() >= THRESHOLD, f"mean return {returns.mean():.3f} over {len(returns)} episodes"
