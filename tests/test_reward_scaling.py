"""Reward normalisation: rewards divided by the running std of the discounted return (SB3's norm_reward)."""

import functools

import gymnasium as gym
import numpy as np
import pytest
import torch

from sparring.agents import PPO, SAC
from sparring.agents.reward_scaling import RewardScaler
from sparring.envs.gymnasium import GymnasiumEnv


def test_scale_is_one_over_the_std_of_every_running_discounted_return():
    scaler = RewardScaler(gamma=0.5)
    slots = np.array([0, 1])
    seen = []
    returns = np.zeros(2)
    for t, rewards in enumerate([[1.0, 2.0], [3.0, -1.0], [0.0, 4.0]]):
        ended = t == 1
        returns = returns * 0.5 + np.array(rewards)
        seen.extend(returns)
        scaler.observe(slots, np.array(rewards, np.float32), ended=ended)
        if ended:
            returns[:] = 0.0  # a new episode starts a new return
    assert scaler.scale == pytest.approx(1 / np.sqrt(np.var(seen) + 1e-8), rel=1e-6)
    scaled = scaler(np.array([1.0, 1e9], np.float32))
    assert scaled[0] == pytest.approx(scaler.scale, rel=1e-6) and scaled[1] == 10.0  # clipped
    assert scaled.dtype == np.float32


def test_a_lost_agent_starts_its_next_return_from_zero():
    scaler = RewardScaler(gamma=0.9)
    scaler.observe(np.array([3]), np.array([5.0], np.float32))
    scaler.forget(np.array([3, 7]))  # 7 never seen: nothing to forget
    assert scaler.returns[3] == 0.0


def scaled_cartpole(factor: float) -> gym.Env:
    return gym.wrappers.TransformReward(gym.make("CartPole-v1"), lambda r: factor * r)


def cartpole(factor: float, copies: int = 4) -> GymnasiumEnv:
    return GymnasiumEnv([functools.partial(scaled_cartpole, factor)] * copies, behaviour="CartPole")


def test_ppo_with_normalized_rewards_learns_the_same_whatever_the_reward_units():
    """Rewards in units 1000 times larger give the same updates: the scale divides them out."""
    models = [PPO(cartpole(factor), seed=3, n_steps=32, batch_size=64, n_epochs=2, normalize_reward=True)
              for factor in (1.0, 1000.0)]
    for model in models:
        model.learn(512)
    for a, b in zip(*(m.policies["CartPole"].parameters() for m in models)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    report_scales = [m.learners["CartPole"].reward_scaler.scale for m in models]
    assert report_scales[0] == pytest.approx(1000 * report_scales[1], rel=1e-4)


def test_ppo_without_normalization_is_not_invariant():
    """The invariance above is the normalisation's doing: without it the units change the updates."""
    models = [PPO(cartpole(factor), seed=3, n_steps=32, batch_size=64, n_epochs=2) for factor in (1.0, 1000.0)]
    for model in models:
        model.learn(512)
    assert any(not torch.allclose(a, b, rtol=1e-4, atol=1e-5)
               for a, b in zip(*(m.policies["CartPole"].parameters() for m in models)))


def test_sac_with_normalized_rewards_learns_the_same_whatever_the_reward_units():
    settings = dict(hidden_sizes=[32, 32], batch_size=32, buffer_init_steps=64, normalize_reward=True)
    models = [SAC(cartpole(factor, copies=2), seed=2, **settings) for factor in (1.0, 1000.0)]
    for model in models:
        model.learn(300)
    for a, b in zip(*(m.learners["CartPole"].actor.parameters() for m in models)):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("algorithm", [PPO, SAC])
def test_the_reward_statistics_are_saved_and_resumed(tmp_path, algorithm):
    settings = dict(normalize_reward=True, **({"n_steps": 32} if algorithm is PPO else {"buffer_init_steps": 32}))
    model = algorithm(cartpole(10.0, copies=2), seed=1, **settings).learn(256)
    model.save(tmp_path / "m.pt")
    loaded = algorithm.load(tmp_path / "m.pt", env=cartpole(10.0, copies=2))
    before, after = (m.learners["CartPole"].reward_scaler for m in (model, loaded))
    assert after.scale == before.scale != 1.0
    assert float(after.stats.count) == float(before.stats.count) > 0
