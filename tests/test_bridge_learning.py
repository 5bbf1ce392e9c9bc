"""PPO learns the arena through the bridge: two engine processes, over gRPC and over TCP.

Thresholds, per episode, on the trained policy's own (deterministic) play:
Runners >= 3.0 (random play: about -0.04; walking straight at the nearest coin: about 4.9),
Turrets >= 8.0 (random play: about 0.4; firing whenever a hazard is on a ray: about 12).
Seeds 0-9 (both transports play identically): Runners 4.77 to 5.33, Turrets 11.3 to 12.0; with three
engine crashes, Runners 4.61 to 5.23, Turrets 11.5 to 12.1.
"""

import importlib.util
import os
import signal
import sys
from pathlib import Path

import pytest

from sparring.agents import PPO
from sparring.agents.evaluation import RandomPolicy, evaluate
from sparring.envs.bridge.codec import specs_from_hello
from sparring.envs.bridge.env import MultiEngineEnv
import sparring_engine as se

ENGINES = Path(__file__).resolve().parents[1] / "engines" / "python"
ARENA = ENGINES / "examples" / "arena.py"
THRESHOLDS = {"Runner": 3.0, "Turret": 8.0}


def load_arena_module():
    spec = importlib.util.spec_from_file_location("sparring_example_arena", ARENA)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mean_returns(model, env, episodes: int, seed: int) -> dict[str, float]:
    returns = evaluate(model, env, episodes, seed=seed)
    return {name: float(r.mean()) for name, r in returns.items()}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_random_play_stays_far_below_the_thresholds():
    """The arena stepped in this process (its results have the env API's shapes); random play over the
    behaviours as the trainer reads them from the arena's Hello."""
    arena = load_arena_module().Arena(arenas=16)
    specs, _ = specs_from_hello(se.hello_message(arena.specs))
    returns = mean_returns(RandomPolicy(specs), arena, episodes=3000, seed=1)
    assert returns["Runner"] < THRESHOLDS["Runner"] / 5, returns
    assert returns["Turret"] < THRESHOLDS["Turret"] / 5, returns


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("transport", ["grpc", "tcp"])
def test_ppo_learns_the_arena_through_two_engine_processes(tmp_path, transport, learning_seed, measured):
    with MultiEngineEnv.launch(sys.executable, 2, [str(ARENA)],
                               transport=transport, log_dir=tmp_path, step_timeout=30) as env:
        model = PPO(env, seed=learning_seed, n_steps=64, batch_size=512, n_epochs=4, learning_rate=1e-3,
                    gamma=0.95, gae_lambda=0.9, ent_coef=0.01)
        model.learn(150_000)
        returns = mean_returns(model, env, episodes=1000, seed=1000 + learning_seed)
        assert env.restarts == 0
    measured(transport=transport, **returns)
    assert returns["Runner"] >= THRESHOLDS["Runner"], returns
    assert returns["Turret"] >= THRESHOLDS["Turret"], returns


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ppo_keeps_learning_while_engines_crash_and_come_back(tmp_path, learning_seed, measured):
    """Three engine crashes mid-training: their agents are lost, the engines relaunched, the thresholds still met."""
    with MultiEngineEnv.launch(sys.executable, 2, [str(ARENA)], transport="tcp",
                               log_dir=tmp_path, restart_backoff=0.2) as env:
        model = PPO(env, seed=learning_seed, n_steps=64, batch_size=512, n_epochs=4, learning_rate=1e-3,
                    gamma=0.95, gae_lambda=0.9, ent_coef=0.01)

        def crash_an_engine(model, report):
            if model.num_updates in (5, 20, 40):
                os.kill(env.processes[model.num_updates % 2].pid, signal.SIGKILL)

        model.learn(150_000, callback=crash_an_engine)
        returns = mean_returns(model, env, episodes=1000, seed=1000 + learning_seed)
        assert env.metrics["crashes"] == 3 and env.metrics["lost_agents"] == 3 * 24
    measured(**returns)
    assert returns["Runner"] >= THRESHOLDS["Runner"], returns
    assert returns["Turret"] >= THRESHOLDS["Turret"], returns
