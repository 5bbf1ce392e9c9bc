"""A Python engine that breaks the protocol on purpose, for check-engine's tests.

    python tests/engines/faulty_game.py --fault short-obs --sparring-port N --sparring-token T
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from gymnasium import spaces

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "engines" / "python"))
import sparring_engine as se  # noqa: E402

SPEC = se.BehaviourSpec("Walker", spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2))


class Faulty:
    """Two walkers whose episodes last 4 steps; from step 3 on it commits the chosen fault."""

    specs = {"Walker": SPEC}

    def __init__(self, fault: str) -> None:
        self.fault, self.t = fault, 0

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
        decisions = se.DecisionSteps(ids, obs, np.zeros(n, np.float32) if ended else np.ones(n, np.float32))
        return {"Walker": se.BehaviourStep(decisions, terminals)}

    def reset(self, seed):
        self.t = 0
        return self._result()

    def step(self, actions):
        self.t += 1
        return self._result()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--fault", default="none")
    known, rest = parser.parse_known_args()
    se.run(Faulty(known.fault), se.from_command_line(rest))
