"""Reward normalisation: rewards divided by the running standard deviation of the discounted return.

The same scheme as Stable-Baselines3's ``VecNormalize(norm_reward=True)``: each agent
keeps its running discounted return ``G <- gamma * G + r`` (reset when its episode
ends), every value of ``G`` updates a running variance, and rewards are divided by
its square root and clipped. Dividing by the return's spread (not the reward's)
keeps value targets near unit scale whatever the game's reward units, which is what
the value loss and the advantage estimates are sensitive to. The mean is not
subtracted: shifting rewards would change which behaviour is optimal.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from sparring.agents.policy import RunningNorm
from sparring.envs.base import BehaviourStep


class RewardScaler:
    """Running return-based reward scaling for one behaviour's agents, addressed by dense slots.

    Args:
        gamma: the discount of the return whose spread sets the scale (the learner's own).
        clip: scaled rewards are clipped to ``[-clip, clip]``.
    """

    def __init__(self, gamma: float, clip: float = 10.0) -> None:
        self.gamma, self.clip = gamma, clip
        self.stats = RunningNorm(1)
        self.returns = np.zeros(0, np.float64)  # per slot: the discounted return of its episode so far

    def observe_step(self, step: BehaviourStep, slots_of: Callable[[np.ndarray], np.ndarray]) -> None:
        """Everything one env step says of the behaviour's rewards: episodes that ended, agents lost, and the
        rewards of agents deciding again. ``slots_of`` maps agent ids to the learner's dense slots."""
        if len(step.terminals):
            self.observe(slots_of(step.terminals.agent_ids), step.terminals.total_rewards, ended=True)
        if len(step.lost):
            self.forget(slots_of(step.lost))
        if len(step.decisions):
            self.observe(slots_of(step.decisions.agent_ids), step.decisions.total_rewards)

    def observe(self, slots: np.ndarray, rewards: np.ndarray, ended: bool = False) -> None:
        """Rewards just earned by the agents in ``slots``; ``ended``: their episodes are over (or lost)."""
        if len(slots) == 0:
            return
        if slots.max() >= len(self.returns):
            grown = np.zeros(max(slots.max() + 1, 2 * len(self.returns)), np.float64)
            grown[: len(self.returns)] = self.returns
            self.returns = grown
        returns = self.returns[slots] * self.gamma + rewards
        self.stats.update(torch.from_numpy(returns).unsqueeze(1))
        self.returns[slots] = 0.0 if ended else returns

    def forget(self, slots: np.ndarray) -> None:
        """Agents lost mid-episode: their next rewards start a new return."""
        self.returns[slots[slots < len(self.returns)]] = 0.0

    @property
    def scale(self) -> float:
        """What rewards are multiplied by: 1 / std of the discounted return (1 before any reward)."""
        return float(self.stats.scale[0])

    def __call__(self, rewards: np.ndarray) -> np.ndarray:
        """``rewards`` scaled and clipped (a new array)."""
        return np.clip(rewards * self.scale, -self.clip, self.clip).astype(rewards.dtype, copy=False)

    def state_dict(self) -> dict:
        """The running statistics (the per-agent returns belong to episodes, which a resumed run starts afresh)."""
        return self.stats.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stats.load_state_dict(state)
