"""GymnasiumEnv: N copies of a single-agent Gymnasium env as one behaviour."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from sparring.envs.base import check_env
from sparring.envs.gymnasium import GymnasiumEnv


class Beacon(gym.Env):
    """Dict observations of two dtypes and MultiDiscrete actions; ends after 4 steps."""

    observation_space = spaces.Dict(
        {
            "position": spaces.Box(-1.0, 1.0, (2,), np.float32),
            "signal": spaces.Box(0, 3, (1,), np.int8),
        }
    )
    action_space = spaces.MultiDiscrete([3, 2])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        assert self.action_space.contains(action)
        self.t += 1
        return self._obs(), float(action[0]), self.t >= 4, False, {}

    def _obs(self):
        return {
            "position": self.np_random.uniform(-1, 1, 2).astype(np.float32),
            "signal": np.array([self.t % 4], np.int8),
        }


@pytest.mark.parametrize(
    "make",
    [
        lambda: GymnasiumEnv("CartPole-v1", num_envs=3),
        lambda: GymnasiumEnv("Pendulum-v1", num_envs=2, env_kwargs={"max_episode_steps": 20}),
        lambda: GymnasiumEnv([Beacon, Beacon]),
    ],
    ids=["cartpole", "pendulum", "dict-obs-multidiscrete"],
)
def test_random_rollout_meets_the_env_contract(make):
    check_env(make(), steps=100, seed=0)


def test_behaviour_is_named_after_the_env_id_without_version():
    assert list(GymnasiumEnv("CartPole-v1").specs) == ["CartPole"]
    assert list(GymnasiumEnv([Beacon]).specs) == ["agent"]
    assert list(GymnasiumEnv("CartPole-v1", behaviour="pole").specs) == ["pole"]


def test_every_copy_decides_every_step_with_its_index_as_id():
    env = GymnasiumEnv("CartPole-v1", num_envs=4)
    env.reset(seed=1)
    result = env.step({"CartPole": np.zeros(4, np.int64)})
    assert result["CartPole"].decisions.agent_ids.tolist() == [0, 1, 2, 3]


def test_rewards_add_up_to_gymnasiums_episode_returns():
    env = GymnasiumEnv("CartPole-v1", num_envs=2)
    mirrors = [gym.make("CartPole-v1") for _ in range(2)]
    result = env.reset(seed=5)
    for i, mirror in enumerate(mirrors):
        mirror.reset(seed=5 + i)
    rng = np.random.default_rng(5)
    ours, theirs = np.zeros(2), np.zeros(2)
    our_returns, their_returns = [], []
    for _ in range(300):
        actions = rng.integers(2, size=2)
        result = env.step({"CartPole": actions})
        step = result["CartPole"]
        for i, mirror in enumerate(mirrors):
            _, reward, terminated, truncated, _ = mirror.step(int(actions[i]))
            theirs[i] += reward
            if terminated or truncated:
                their_returns.append((i, theirs[i]))
                theirs[i] = 0.0
                mirror.reset()
        for agent_id, reward in zip(step.terminals.agent_ids, step.terminals.rewards):
            ours[agent_id] += reward
            our_returns.append((int(agent_id), ours[agent_id]))
            ours[agent_id] = 0.0
        ours += step.decisions.rewards
    assert len(our_returns) >= 10
    assert sorted(our_returns) == sorted(their_returns)


def test_ended_copy_restarts_in_the_same_result():
    env = GymnasiumEnv("CartPole-v1", num_envs=2)
    mirror = gym.make("CartPole-v1")
    env.reset(seed=3)
    mirror.reset(seed=3)
    while True:  # always push left: copy 0 falls over within a few dozen steps
        result = env.step({"CartPole": np.zeros(2, np.int64)})
        final, _, terminated, _, _ = mirror.step(0)
        if terminated:
            break
    step = result["CartPole"]
    assert 0 in step.terminals.agent_ids
    row = step.terminals.agent_ids.tolist().index(0)
    np.testing.assert_array_equal(step.terminals.obs[row], final)
    assert not step.terminals.truncated[row]
    first, _ = mirror.reset()
    np.testing.assert_array_equal(step.decisions.obs[0], first)
    assert step.decisions.rewards[0] == 0.0


def test_time_limit_ends_episodes_as_truncated():
    env = GymnasiumEnv("Pendulum-v1", num_envs=2, env_kwargs={"max_episode_steps": 5})
    env.reset(seed=0)
    for _ in range(4):
        assert len(env.step({"Pendulum": np.zeros((2, 1), np.float32)})["Pendulum"].terminals) == 0
    terminals = env.step({"Pendulum": np.zeros((2, 1), np.float32)})["Pendulum"].terminals
    assert terminals.agent_ids.tolist() == [0, 1]
    assert terminals.truncated.all()


def test_same_seed_repeats_the_run_and_copies_differ():
    def run(seed):
        env = GymnasiumEnv("CartPole-v1", num_envs=3)
        rng = np.random.default_rng(0)
        observations = [env.reset(seed=seed)["CartPole"].decisions.obs]
        for _ in range(50):
            observations.append(env.step({"CartPole": rng.integers(2, size=3)})["CartPole"].decisions.obs)
        return np.stack(observations)

    first = run(11)
    np.testing.assert_array_equal(first, run(11))
    assert not np.array_equal(first, run(12))
    assert not np.array_equal(first[0, 0], first[0, 1])


def test_observations_keep_the_space_dtype():
    env = GymnasiumEnv([Beacon])
    obs = env.reset(seed=0)["agent"].decisions.obs
    assert obs["position"].dtype == np.float32 and obs["position"].shape == (1, 2)
    assert obs["signal"].dtype == np.int8 and obs["signal"].shape == (1, 1)


def test_box_actions_reach_the_env_as_float_rows():
    env = GymnasiumEnv("Pendulum-v1", num_envs=2)
    spec = env.specs["Pendulum"]
    assert spec.is_continuous and spec.action_space.shape == (1,)
    env.reset(seed=0)
    env.step({"Pendulum": np.array([[2.0], [-2.0]], np.float32)})
    torques = [copy.unwrapped.last_u for copy in env.envs]
    assert torques == [pytest.approx(2.0), pytest.approx(-2.0)]


def test_unsupported_space_raises_type_error_naming_it():
    with pytest.raises(TypeError, match=r"FrozenLake-v1.*Discrete\(16\)"):
        GymnasiumEnv("FrozenLake-v1")


def test_an_id_from_a_module_names_the_behaviour_without_the_module():
    """``module:Id-v0`` imports the module first (gymnasium's form); the module is no part of the behaviour's name,
    which becomes file and folder names (a ':' is not allowed in every file system)."""
    import broken_envs  # noqa: F401  (registers the ids)

    assert list(GymnasiumEnv("broken_envs:StallingCorridor-v0").specs) == ["StallingCorridor"]
