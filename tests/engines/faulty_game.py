"""A Python engine that breaks the protocol on purpose, for check-engine's tests.

    python tests/engines/faulty_game.py --fault short-obs --sparring-port N --sparring-token T
"""

import argparse

import numpy as np
from gymnasium import spaces

import sparring_engine as se

SPEC = se.BehaviourSpec("Walker", spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2))
WATCHER = se.BehaviourSpec("Watcher", spaces.Box(-1, 1, (1,), np.float32), spaces.Discrete(2))


class Faulty:
    """Two walkers whose episodes last 4 steps, and a watcher deciding on even steps only. The fault:

    - ``short-obs``, ``nan-obs``: from step 3 on, a wrong observation shape, or a NaN;
    - ``terminals-at-reset``: a Reset after the first reports the episodes it cut off as terminals;
    - ``empty-entry``: the game cannot take an empty action entry for the watcher when it has no decision;
    - ``nan-group-reward``, ``short-group-ids``: from step 3 on, the walkers (group 1) report a NaN group
      reward, or one group id for the two of them.
    """

    specs = {"Walker": SPEC, "Watcher": WATCHER}

    def __init__(self, fault: str) -> None:
        self.fault, self.t, self.resets = fault, 0, 0

    def _result(self):
        n = 2
        obs = np.zeros((n, 3), np.float32)
        if self.t >= 3 and self.fault == "short-obs":
            obs = np.zeros((n, 2), np.float32)
        if self.t >= 3 and self.fault == "nan-obs":
            obs[1, 0] = np.nan
        ended = self.t > 0 and self.t % 4 == 0
        ids = np.arange(n, dtype=np.int64)
        terminals = se.TerminalSteps(ids, np.zeros((n, 3), np.float32), np.ones(n, np.float32), np.zeros(n, bool)) \
            if ended else se.TerminalSteps.empty(SPEC)
        decisions = se.DecisionSteps(ids, obs, np.zeros(n, np.float32) if ended else np.ones(n, np.float32),
                                     group_ids=np.ones(n, np.int64), group_rewards=np.zeros(n, np.float32))
        if self.t >= 3 and self.fault == "nan-group-reward":
            decisions.group_rewards[1] = np.nan
        if self.t >= 3 and self.fault == "short-group-ids":
            decisions.group_ids = np.ones(n - 1, np.int64)
        watching = np.arange(1 if self.t % 2 == 0 else 0, dtype=np.int64)
        watcher = se.DecisionSteps(watching, np.zeros((len(watching), 1), np.float32), np.zeros(len(watching), np.float32))
        return {"Walker": se.BehaviourStep(decisions, terminals), "Watcher": se.BehaviourStep(watcher, se.TerminalSteps.empty(WATCHER))}

    def reset(self, seed):
        cut_off = self.t > 0
        self.t, self.resets = 0, self.resets + 1
        result = self._result()
        if self.fault == "terminals-at-reset" and cut_off:
            ids = np.arange(2, dtype=np.int64)
            result["Walker"].terminals = se.TerminalSteps(ids, np.zeros((2, 3), np.float32), np.zeros(2, np.float32),
                                                          np.ones(2, bool))
        return result

    def step(self, actions):
        if self.fault == "empty-entry" and "Watcher" in actions and len(actions["Watcher"]) == 0:
            raise RuntimeError("no watcher decided, yet an action entry for it came")
        self.t += 1
        return self._result()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--fault", default="none")
    known, rest = parser.parse_known_args()
    se.run(Faulty(known.fault), se.from_command_line(rest))
