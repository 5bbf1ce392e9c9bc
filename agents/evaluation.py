"""Play a trained model in an env and collect its episode returns (the way a game would run it)."""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol

import numpy as np

from sparring.envs.base import MultiAgentEnv, random_actions
from sparring.spec import BehaviourSpec, Obs, batch_len


class Predictor(Protocol):
    def predict(
        self, obs: Obs, behaviour: str | None = None, action_mask: np.ndarray | None = None, deterministic: bool = True
    ) -> np.ndarray: ...


class RandomPolicy:
    """Uniformly random valid actions: the baseline a trained policy should clearly beat."""

    def __init__(self, specs: dict[str, BehaviourSpec], seed: int = 0) -> None:
        self.specs = specs
        self.rng = np.random.default_rng(seed)

    def predict(
        self, obs: Obs, behaviour: str | None = None, action_mask: np.ndarray | None = None, deterministic: bool = True
    ) -> np.ndarray:
        return random_actions(self.specs[behaviour], batch_len(obs), action_mask, self.rng)


def evaluate(
    model: Predictor, env: MultiAgentEnv, episodes: int, seed: int | None = None, deterministic: bool = True
) -> dict[str, np.ndarray]:
    """Returns of the first ``episodes`` agent-episodes to finish, per behaviour.

    Each agent's rewards are summed from the start of its episode to its
    terminal step. Episodes already under way when ``reset`` returns count
    from their start, so every episode is complete.
    """
    result = env.reset(seed=seed)
    running: dict[tuple[str, int], float] = defaultdict(float)
    finished: dict[str, list[float]] = {name: [] for name in env.specs}
    while sum(len(v) for v in finished.values()) < episodes:
        actions = {}
        for name, step in result.items():
            decisions = step.decisions
            if len(decisions):
                actions[name] = model.predict(decisions.obs, name, decisions.action_mask, deterministic)
        result = env.step(actions)
        for name, step in result.items():
            # terminals first: a decision for the same id in this result starts its next episode
            for agent, reward in zip(step.terminals.agent_ids.tolist(), step.terminals.rewards.tolist()):
                finished[name].append(running.pop((name, agent), 0.0) + reward)
            for agent, reward in zip(step.decisions.agent_ids.tolist(), step.decisions.rewards.tolist()):
                running[(name, agent)] += reward
    return {name: np.array(v) for name, v in finished.items()}
