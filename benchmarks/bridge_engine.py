"""The engine side of benchmarks/bridge.py: N agents, 64-float observations, 2 discrete branches, no game logic.

It does exactly the per-step work any engine must: decode the actions it is sent
and encode a fresh batch of observations; the simulation itself is free.
"""

import argparse

import numpy as np

import sparring_engine as se


class Bench:
    def __init__(self, agents: int, obs_size: int) -> None:
        self.spec = se.BehaviourSpec("bench", se.Box(-1, 1, (obs_size,), np.float32), se.MultiDiscrete([3, 3]))
        self.specs = {"bench": self.spec}
        self.ids = np.arange(agents, dtype=np.int64)
        self.obs = np.random.default_rng(0).uniform(-1, 1, (agents, obs_size)).astype(np.float32)
        self.rewards = np.zeros(agents, np.float32)
        self.empty = se.TerminalSteps.empty(self.spec)

    def _result(self):
        return {"bench": se.BehaviourStep(se.DecisionSteps(self.ids, self.obs, self.rewards), self.empty)}

    def reset(self, seed):
        return self._result()

    def step(self, actions):
        self.rewards = actions["bench"][:, 0].astype(np.float32)  # touch the decoded actions
        return self._result()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=1024)
    parser.add_argument("--obs-size", type=int, default=64)
    known, rest = parser.parse_known_args()
    se.run(Bench(known.agents, known.obs_size), se.from_command_line(rest))
