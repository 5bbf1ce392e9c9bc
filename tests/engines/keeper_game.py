"""A Python engine whose goalkeepers its own built-in AI plays, while the trainer plays the shooters.

    python tests/engines/keeper_game.py [--no-report] --sparring-port N ...

``games`` penalty shoot-outs at once, one kick per episode; in game ``g`` shooter ``g`` (behaviour ``Shooter``)
faces keeper ``g`` (behaviour ``Keeper``, a policy group of its own). Both see the keeper's tell (one of 3
corners, one-hot, drawn per kick) and choose a corner. The game plays every keeper itself, with its built-in AI
(it dives at its tell), ignores the trainer's rows for them, and reports each dive as a played action
(``--no-report``: it does not). The shooter scores (+1, the keeper -1) unless the keeper dives at its corner (-1,
the keeper +1). A shooter aiming at random scores 2/3 of kicks; one that avoids the tell, every kick.
"""

from __future__ import annotations

import argparse

import numpy as np

import sparring_engine as se

TELL = se.Box(0.0, 1.0, (3,), np.float32)
SPECS = {"Shooter": se.BehaviourSpec("Shooter", TELL, se.Discrete(3)),
         "Keeper": se.BehaviourSpec("Keeper", TELL, se.Discrete(3))}


class Shootout:
    specs = SPECS

    def __init__(self, games: int = 8, report: bool = True) -> None:
        self.played = se.ActionReports()
        self.ids = np.arange(games, dtype=np.int64)
        self.report = report
        self.rng = np.random.default_rng(0)

    def reset(self, seed: int) -> se.StepResult:
        self.rng = np.random.default_rng(seed)
        self.tell = self.rng.integers(3, size=len(self.ids))
        return {name: self._step(name, None) for name in SPECS}

    def step(self, actions: dict[str, np.ndarray]) -> se.StepResult:
        dives = self.tell.copy()  # the built-in keeper: whatever the trainer sent for it
        if self.report:
            self.played.report("Keeper", self.ids, dives)
        saved = np.asarray(actions["Shooter"]) == dives
        scored = np.where(saved, -1.0, 1.0).astype(np.float32)
        ended = {"Shooter": scored, "Keeper": -scored}
        self.tell = self.rng.integers(3, size=len(self.ids))
        return {name: self._step(name, ended[name]) for name in SPECS}

    def _step(self, name: str, final: np.ndarray | None) -> se.BehaviourStep:
        obs = np.eye(3, dtype=np.float32)[self.tell]
        n = len(self.ids)
        decisions = se.DecisionSteps(self.ids, obs, np.zeros(n, np.float32))
        if final is None:
            return se.BehaviourStep(decisions, se.TerminalSteps.empty(SPECS[name]))
        return se.BehaviourStep(decisions, se.TerminalSteps(self.ids, obs, final, np.zeros(n, bool)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-report", action="store_true")
    known, rest = parser.parse_known_args()
    se.run(Shootout(report=not known.no_report), se.from_command_line(rest), engine_name="shootout")
