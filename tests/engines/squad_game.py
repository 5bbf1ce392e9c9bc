"""A Python engine whose agents play in groups, record statistics and read an environment parameter, for the tests.

    python tests/engines/squad_game.py --sparring-port N --sparring-token T [--squads K]

``K`` squads (default 2) of two ``Mate`` agents: agents 2k and 2k + 1 are group k + 1. Every agent
decides every step; its action:

- 0: nothing;
- 1: its group earns 1 (every member, this agent included while it is one);
- 2: it leaves its group and ends its episode (terminated), after the group earnings of this step;
  it plays on in no group until the next Reset;
- 3: its group's episode ends (EndGroupEpisode), after this step's earnings: every member terminated;
- 4: its group's episode is interrupted (GroupEpisodeInterrupted): every member truncated (unless the
  group's episode ends this step anyway).

An agent observes ``[its id, the parameter "speed" as it was when its episode started, decisions in
this episode]``; it earns no reward of its own. Statistics per step: ``Squads/Earned`` (sum), the
number of group rewards given, ``Squads/Speed`` (most_recent) and ``Squads/Action`` (histogram),
each agent's action.
"""

import argparse

import numpy as np

import sparring_engine as se

SPEC = se.BehaviourSpec("Mate", se.Box(-1e6, 1e6, (3,), np.float32), se.Discrete(5))


class Squads:
    specs = {"Mate": SPEC}

    def __init__(self, squads: int = 2) -> None:
        self.ids = np.arange(2 * squads, dtype=np.int64)
        self.team = self.ids // 2 + 1
        self.groups = {"Mate": se.AgentGroups()}
        self.stats = se.StatsRecorder()
        self.parameters: dict[str, float] = {}
        self.speed = np.zeros(len(self.ids), np.float32)
        self.steps = np.zeros(len(self.ids), np.float32)
        self.member = np.ones(len(self.ids), bool)

    def configure(self, parameters: dict[str, float]) -> None:
        self.parameters = parameters

    def reset(self, seed: int) -> se.StepResult:
        self.groups["Mate"].register_agent(self.ids, self.team)
        self.member[:] = True
        self._start(np.ones(len(self.ids), bool))
        return {"Mate": se.BehaviourStep(self._decisions(), se.TerminalSteps.empty(SPEC))}

    def step(self, actions: dict[str, np.ndarray]) -> se.StepResult:
        acts, groups = actions["Mate"], self.groups["Mate"]
        self.steps += 1
        earning = (acts == 1) & self.member
        groups.add_group_reward(self.team[earning], 1.0)
        leaving = (acts == 2) & self.member
        groups.unregister_agent(self.ids[leaving])
        self.member &= ~leaving
        ending = self.team[(acts == 3) & self.member]
        ended, end_truncated = groups.end_group_episode(ending)
        cut, cut_truncated = groups.group_episode_interrupted(np.setdiff1d(self.team[(acts == 4) & self.member], ending))
        terminals = self._terminals(np.concatenate([self.ids[leaving], ended, cut]),
                                    np.concatenate([np.zeros(leaving.sum(), bool), end_truncated, cut_truncated]))
        self.stats.record_stat("Squads/Earned", float(earning.sum()), "sum")
        self.stats.record_stat("Squads/Speed", float(self.parameters.get("speed", 0.0)), "most_recent")
        for action in acts.tolist():
            self.stats.record_stat("Squads/Action", action, "histogram")
        return {"Mate": se.BehaviourStep(self._decisions(), terminals)}

    def _terminals(self, ids: np.ndarray, truncated: np.ndarray) -> se.TerminalSteps:
        order = np.argsort(ids)
        ids, truncated = ids[order], truncated[order]
        final = self._obs()[ids]
        starting = np.zeros(len(self.ids), bool)
        starting[ids] = True
        self._start(starting)
        return se.TerminalSteps(ids, final, np.zeros(len(ids), np.float32), truncated)

    def _start(self, agents: np.ndarray) -> None:
        self.speed[agents] = self.parameters.get("speed", 0.0)
        self.steps[agents] = 0

    def _obs(self) -> np.ndarray:
        return np.stack([self.ids.astype(np.float32), self.speed, self.steps], axis=1)

    def _decisions(self) -> se.DecisionSteps:
        return se.DecisionSteps(self.ids, self._obs(), np.zeros(len(self.ids), np.float32))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--squads", type=int, default=2)
    known, rest = parser.parse_known_args()
    se.run(Squads(known.squads), se.from_command_line(rest), engine_name="squads")
