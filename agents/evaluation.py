"""Play a trained model in an env and collect its episode returns (the way a game would run it)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from sparring.envs.base import MultiAgentEnv, random_actions
from sparring.spec import BehaviourSpec, Obs, batch_len


class Predictor(Protocol):
    """What plays: ``agent_ids`` say whose decisions these are (a recurrent policy remembers per agent);
    a model that remembers also has ``reset_memory(behaviour, agent_ids)``, called as episodes end."""

    def predict(
        self, obs: Obs, behaviour: str | None = None, action_mask: np.ndarray | None = None, deterministic: bool = True,
        agent_ids: np.ndarray | None = None,
    ) -> np.ndarray: ...


class RandomPolicy:
    """Uniformly random valid actions: the baseline a trained policy should clearly beat."""

    def __init__(self, specs: dict[str, BehaviourSpec], seed: int = 0) -> None:
        self.specs = specs
        self.rng = np.random.default_rng(seed)

    def predict(
        self, obs: Obs, behaviour: str | None = None, action_mask: np.ndarray | None = None, deterministic: bool = True,
        agent_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        return random_actions(self.specs[behaviour], batch_len(obs), action_mask, self.rng)


def evaluate(
    model: Predictor, env: MultiAgentEnv, episodes: int, seed: int | None = None, deterministic: bool = True
) -> dict[str, np.ndarray]:
    """Returns of ``episodes`` whole agent-episodes, per behaviour, with no episode length favoured.

    Episodes are counted as they *start*, over all behaviours, until ``episodes`` have started;
    play then goes on until every counted episode has finished, and the episodes started after
    the cut-off are not counted. Whether an episode is counted never depends on its own length,
    so the returns are an unbiased sample. (Counting the first episodes to *finish* would favour
    short ones: with several copies, a copy that fails fast finishes several episodes while a good
    one finishes its first.) Each agent's rewards are summed from the start of its episode to
    its terminal step; an agent lost mid-episode (its game crashed) is not counted.
    """
    result = env.reset(seed=seed)
    forget = getattr(model, "reset_memory", None)
    if forget is not None:
        forget()  # nothing remembered from earlier play: every episode here starts afresh
    running: dict[tuple[str, int], float] = {}  # counted episodes under way: (behaviour, agent) -> return so far
    uncounted: set[tuple[str, int]] = set()  # episodes started after the cut-off
    started = 0
    finished: dict[str, list[float]] = {name: [] for name in env.specs}

    def begin(key: tuple[str, int]) -> None:
        nonlocal started
        if started < episodes:
            running[key] = 0.0
            started += 1
        else:
            uncounted.add(key)

    while True:
        for name, step in result.items():
            # terminals first: a decision for the same id in this result starts its next episode
            for agent, reward in zip(step.terminals.agent_ids.tolist(), step.terminals.total_rewards.tolist()):
                key = (name, agent)
                if key not in running and key not in uncounted:
                    begin(key)  # an episode that ended before its first decision
                if key in running:
                    finished[name].append(running.pop(key) + reward)
                uncounted.discard(key)
            for agent in step.lost.tolist():
                running.pop((name, agent), None)
                uncounted.discard((name, agent))
            if forget is not None and (len(step.terminals) or len(step.lost)):
                forget(name, np.concatenate([step.terminals.agent_ids, step.lost]))
            for agent, reward in zip(step.decisions.agent_ids.tolist(), step.decisions.total_rewards.tolist()):
                key = (name, agent)
                if key not in running and key not in uncounted:
                    begin(key)
                if key in running:
                    running[key] += reward
        if started >= episodes and not running:
            return {name: np.array(v) for name, v in finished.items()}
        actions = {}
        for name, step in result.items():
            decisions = step.decisions
            if len(decisions):
                actions[name] = model.predict(decisions.obs, name, decisions.action_mask, deterministic,
                                              agent_ids=decisions.agent_ids)
        result = env.step(actions)
