"""Learners: policies, rollout buffers, PPO (and, as they land, SAC and self-play)."""
