"""Learners: policies, rollout and replay buffers, PPO, MA-POCA, SAC (and self-play)."""

from __future__ import annotations

from pathlib import Path

import torch

from sparring.agents.poca import POCA, POCASettings
from sparring.agents.ppo import PPO, PPOSettings
from sparring.agents.sac import SAC, SACSettings
from sparring.envs.base import MultiAgentEnv

__all__ = ["POCA", "POCASettings", "PPO", "PPOSettings", "SAC", "SACSettings", "load"]


def load(path: str | Path, env: MultiAgentEnv | None = None) -> PPO | SAC:
    """A model saved by ``save()``, PPO, MA-POCA or SAC as its checkpoint says; with ``env`` it can keep learning."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    algorithms = {"ppo": PPO, "poca": POCA, "sac": SAC}
    cls = algorithms.get(state.get("algorithm"))
    if cls is None:
        raise ValueError(f"{path}: not a sparring checkpoint (algorithm {state.get('algorithm')!r}, "
                         f"expected one of {sorted(algorithms)})")
    return cls.from_state(state, env)
