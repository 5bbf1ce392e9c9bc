"""Locked corridors (tests/toy_envs.py's ``LockedCorridor``) as a game on the bridge, played by a scripted expert.

    python tests/engines/corridor_game.py [--copies N] [--length L] --sparring-port N ...

One ``Corridor`` behaviour, one agent per corridor. In a recording session the game's own player, the
expert that always knows each cell's key, moves every agent and reports its moves, as a person playing
would: this is how the imitation tests make their demonstrations, through ``sparring record``. Given the
trainer's actions (training), the game takes them instead.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

import sparring_engine as se

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: the corridors' rules are the tests'
from tests.toy_envs import LockedCorridor, locked_corridor_expert  # noqa: E402


class CorridorGame:
    action_masks = ()

    def __init__(self, copies: int, length: int) -> None:
        self.corridors = [LockedCorridor(length) for _ in range(copies)]
        space = self.corridors[0].observation_space
        self.spec = se.BehaviourSpec("Corridor", se.Box(0.0, 1.0, space.shape, np.float32), se.Discrete(int(self.corridors[0].action_space.n)))
        self.specs = {"Corridor": self.spec}
        self.ids = np.arange(copies, dtype=np.int64)
        self.played = se.ActionReports()

    def reset(self, seed: int) -> se.StepResult:
        self.obs = np.stack([c.reset(seed=seed + i)[0] for i, c in enumerate(self.corridors)])
        deciding = se.DecisionSteps(self.ids, self.obs, np.zeros(len(self.ids), np.float32))
        return {"Corridor": se.BehaviourStep(deciding, se.TerminalSteps.empty(self.spec))}

    def step(self, actions: dict[str, np.ndarray]) -> se.StepResult:
        moves = actions.get("Corridor")
        if moves is None:  # recording: the player moves every agent
            moves = locked_corridor_expert(self.obs)
            self.played.report("Corridor", self.ids, moves)
        rewards = np.zeros(len(self.ids), np.float32)
        ended, final, truncated = [], [], []
        for i, corridor in enumerate(self.corridors):
            obs, rewards[i], terminated, cut, _ = corridor.step(int(moves[i]))
            if terminated or cut:
                ended.append(i)
                final.append(obs)
                truncated.append(cut and not terminated)
                obs, _ = corridor.reset()
            self.obs[i] = obs
        ended = np.array(ended, np.int64)
        terminals = se.TerminalSteps(ended, np.array(final, np.float32).reshape(len(ended), self.obs.shape[1]), rewards[ended],
                                     np.array(truncated, bool))
        playing = np.isin(self.ids, ended, invert=True)
        rewards[~playing] = 0.0  # paid with the terminal row; the next episode starts at 0
        deciding = se.DecisionSteps(self.ids, self.obs.copy(), rewards)
        return {"Corridor": se.BehaviourStep(deciding, terminals)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--length", type=int, default=16)
    known, rest = parser.parse_known_args()
    se.run(CorridorGame(known.copies, known.length), se.from_command_line(rest), engine_name="corridors")
