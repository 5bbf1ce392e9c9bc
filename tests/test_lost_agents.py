"""Agents lost mid-episode (a crashed game) are dropped by PPO, and may come back under the same id."""

import numpy as np
from gymnasium import spaces

from sparring.agents import PPO
from sparring.envs.base import BehaviourStep, DecisionSteps, MultiAgentEnv, TerminalSteps, check_step_result
from sparring.spec import BehaviourSpec

SPEC = BehaviourSpec("npc", spaces.Box(-1, 1, (2,), np.float32), spaces.Discrete(2))


class CrashyGame(MultiAgentEnv):
    """Agents 0 and 1 earn 1 per step in 10-step episodes; agent 1's engine dies at step 5 and
    comes back 3 steps later, reusing id 1 for a fresh episode."""

    def __init__(self):
        self.specs = {"npc": SPEC}
        self.t = 0

    def reset(self, seed=None):
        self.t, self.age = 0, {0: 0, 1: 0}
        return self._result([0, 1], first=True)

    def _result(self, deciders, first=False, ended=(), lost=()):
        ids = np.array(deciders, np.int64)
        decisions = DecisionSteps(ids, np.zeros((len(ids), 2), np.float32),
                                  np.zeros(len(ids), np.float32) if first else np.ones(len(ids), np.float32))
        t_ids = np.array(ended, np.int64)
        terminals = TerminalSteps(t_ids, np.zeros((len(t_ids), 2), np.float32), np.ones(len(t_ids), np.float32),
                                  np.zeros(len(t_ids), bool))
        return {"npc": BehaviourStep(decisions, terminals, np.array(lost, np.int64))}

    def step(self, actions):
        self.t += 1
        alive = [a for a in (0, 1) if not (a == 1 and 5 <= self.t % 20 < 8)]
        lost = [1] if self.t % 20 == 5 else []
        ended = []
        for a in alive:
            self.age[a] += 1
            if self.age[a] == 10:
                ended.append(a)
                self.age[a] = 0
        if self.t % 20 == 8:
            self.age[1] = 0  # relaunched: a new episode for id 1 starts with this decision
        deciders = alive
        result = self._result(deciders, ended=ended, lost=lost)
        fresh = set(ended) | ({1} if self.t % 20 == 8 else set())
        for a in fresh:  # an episode's first decision carries no reward
            result["npc"].decisions.rewards[deciders.index(a)] = 0.0
        return result


def test_lost_agents_are_dropped_and_only_whole_episodes_are_reported():
    env = CrashyGame()
    returns = []
    model = PPO(env, seed=0, n_steps=16, batch_size=32, n_epochs=1)
    model.learn(400, callback=lambda m, r: returns.extend(r.behaviours["npc"].episode_returns.tolist()))
    assert returns and set(returns) == {10.0}  # a partial episode (the lost one) would report less


def test_lost_ids_pass_the_contract_check():
    env = CrashyGame()
    result = env.reset()
    for _ in range(25):
        result = env.step({"npc": np.zeros(len(result["npc"].decisions), np.int64)})
        check_step_result(env.specs, result)
