"""Evaluation plays whole episodes and favours no episode length."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sparring.agents.evaluation import RandomPolicy, evaluate
from sparring.envs.gymnasium import GymnasiumEnv


class CoinFlipLength(gym.Env):
    """Each episode is short (1 step, return 0) or long (10 steps, return 1), by a fair coin at reset."""

    observation_space = spaces.Box(0, 1, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.length = 10 if self.np_random.random() < 0.5 else 1
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        done = self.t == self.length
        reward = 1.0 if done and self.length == 10 else 0.0
        return np.zeros(1, np.float32), reward, done, False, {}


def test_long_and_short_episodes_count_as_often_as_they_occur():
    """As many episodes as copies, the way a test evaluates a policy on fresh copies. Counting the first
    episodes to *finish* would count only short ones: a copy that drew a short episode finishes ten of
    them while a long one runs. Counting by start gives the true share of long ones, 0.5."""
    env = GymnasiumEnv([CoinFlipLength] * 100)
    returns = evaluate(RandomPolicy(env.specs), env, episodes=100, seed=0)["agent"]
    assert len(returns) == 100
    assert abs(returns.mean() - 0.5) < 0.15, returns.mean()  # 3 standard errors of 100 fair coins


def test_every_counted_episode_is_whole():
    env = GymnasiumEnv([CoinFlipLength] * 3)
    returns = evaluate(RandomPolicy(env.specs), env, episodes=7, seed=3)["agent"]
    assert len(returns) == 7 and set(returns.tolist()) <= {0.0, 1.0}
