"""Learners: policies, rollout buffers, PPO (and, as they land, SAC and self-play)."""

from sparring.agents.ppo import PPO, PPOSettings

__all__ = ["PPO", "PPOSettings"]
