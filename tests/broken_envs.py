"""Gymnasium envs with a fault an RL engineer would spot in the curves, for ``sparring doctor``'s tests.

Importing the module registers them; a config names one as ``broken_envs:<id>``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def _cartpole_rewards_times_1000() -> gym.Env:
    return gym.wrappers.TransformReward(gym.make("CartPole-v1"), lambda r: 1000.0 * r)


def _cartpole_observations_times_1000() -> gym.Env:
    env = gym.make("CartPole-v1")
    space = spaces.Box(-np.inf, np.inf, env.observation_space.shape, np.float32)
    return gym.wrappers.TransformObservation(env, lambda obs: (1000.0 * obs).astype(np.float32), space)


class StallingCorridor(gym.Env):
    """Walk a corridor of 11 cells from the middle: the pit at cell 0 ends the episode with -1, the exit at
    cell 10 with +1. Every step alive also pays 0.05, so standing still until the 100-step time limit (5.0)
    pays more than leaving (about 1.25): a reward that teaches the agent to run out the clock."""

    observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = spaces.Discrete(3)  # left, stay, right
    ALIVE, LIMIT = 0.05, 100

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.position = 5
        return self._obs(), {}

    def step(self, action):
        self.position += int(action) - 1
        if self.position <= 0:
            return self._obs(), -1.0, True, False, {}
        if self.position >= 10:
            return self._obs(), 1.0 + self.ALIVE, True, False, {}
        return self._obs(), self.ALIVE, False, False, {}

    def _obs(self):
        return np.array([self.position / 10], np.float32)


class CoinFlipReward(gym.Env):
    """Every step pays +1 or -1 by a fair coin, whatever the agent does: there is nothing to learn."""

    observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), float(self.np_random.choice([-1.0, 1.0])), False, False, {}


gym.register("CartPoleRewardsTimes1000-v0", entry_point=_cartpole_rewards_times_1000)
gym.register("CartPoleObservationsTimes1000-v0", entry_point=_cartpole_observations_times_1000)
gym.register("StallingCorridor-v0", entry_point=StallingCorridor, max_episode_steps=StallingCorridor.LIMIT)
gym.register("CoinFlipReward-v0", entry_point=CoinFlipReward, max_episode_steps=20)
