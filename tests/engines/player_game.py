"""A Python engine whose agents a scripted "player" moves, as a person would while `sparring record` records.

    python tests/engines/player_game.py --transcript PATH [--no-report] [--quit-after N] --sparring-port N ...

Two behaviours, both played by the game itself (it takes no action from the trainer while recording):

- ``Runner``: agents 5 and 9 observe ``[id, ticks into the episode, episodes begun]`` and choose one of 3 actions
  (action 2 is masked out on odd ticks of an episode). Runner 5 decides every tick and its episodes end after
  3 decisions (terminated, +1); runner 9 decides every other tick (its action holds for two) and its episodes
  are cut after 6 ticks (truncated). Each tick a runner earns ``0.25 * action``, reported with its next row.
- ``Turret``: agent 0 decides every tick and never ends.

The player chooses ``(tick + id) % 3`` (0 where masked). With ``--transcript`` the game appends, as JSON lines,
every Runner decision as it acts on it (``obs``, the ``reward`` and ``mask`` of that decision's row, the
``action``) and every Runner episode end (``obs``, ``reward``, ``truncated``): what a recording must contain.
``--no-report`` plays without reporting its actions; ``--quit-after N`` exits after N ticks, as a player
closing the game.
"""

import argparse
import json
import os

import numpy as np

import sparring_engine as se

RUNNER = se.BehaviourSpec("Runner", se.Box(-100, 100, (3,), np.float32), se.Discrete(3))
TURRET = se.BehaviourSpec("Turret", se.Box(-1, 1, (1,), np.float32), se.Discrete(2))
RUNNERS = np.array([5, 9], np.int64)
PERIOD = {5: 1, 9: 2}  # ticks between decisions


class Players:
    specs = {"Runner": RUNNER, "Turret": TURRET}
    action_masks = {"Runner"}

    def __init__(self, transcript: str | None = None, report: bool = True, quit_after: int | None = None) -> None:
        self.played = se.ActionReports()
        self.transcript = open(transcript, "a") if transcript else None
        self.report, self.quit_after = report, quit_after
        self.ticks = 0

    def reset(self, seed: int) -> se.StepResult:
        self.tick = {5: 0, 9: 0}  # ticks into each runner's episode
        self.episode = {5: 1, 9: 1}
        self.decisions = {5: 0, 9: 0}
        self.acting = {5: 0, 9: 0}  # the action in effect
        self.earned = {5: 0.0, 9: 0.0}  # since the runner's last row
        self.last = {}  # the runner's last decision row: (obs, reward, mask)
        return self._result(list(RUNNERS), [], [0])

    def step(self, actions: dict[str, np.ndarray]) -> se.StepResult:
        assert "Runner" not in actions and "Turret" not in actions, "a recording session sends no actions"
        self.ticks += 1
        if self.quit_after is not None and self.ticks > self.quit_after:
            os._exit(0)  # the player closed the game: the connection drops mid-session
        deciding = [r for r in RUNNERS.tolist() if r in self.last]
        moves = [self._choose(r) for r in deciding]
        if self.report:
            self.played.report("Runner", deciding, moves)
            self.played.report("Turret", 0, self.ticks % 2)
        for runner, move in zip(deciding, moves):
            obs, reward, mask = self.last.pop(runner)
            self._write(runner=runner, obs=obs, reward=reward, mask=mask, action=move)
            self.acting[runner] = move
            self.decisions[runner] += 1
        ended, deciders = [], []
        for runner in RUNNERS.tolist():
            self.tick[runner] += 1
            self.earned[runner] += 0.25 * self.acting[runner]
            if runner == 5 and self.decisions[5] == 3:
                self.earned[5] += 1.0
                ended.append((runner, False))
            elif runner == 9 and self.tick[9] == 6:
                ended.append((runner, True))
            elif self.tick[runner] % PERIOD[runner] == 0:
                deciders.append(runner)
        return self._result(deciders, ended, [0])

    def _choose(self, runner: int) -> int:
        move = (self.tick[runner] + runner) % 3
        return 0 if move == 2 and self.tick[runner] % 2 else move

    def _obs(self, runner: int) -> list[float]:
        return [float(runner), float(self.tick[runner]), float(self.episode[runner])]

    def _result(self, deciders, ended, turret) -> se.StepResult:
        terminal_obs, terminal_rewards = [], []
        for runner, truncated in ended:
            terminal_obs.append(self._obs(runner))
            terminal_rewards.append(self.earned[runner])
            self._write(runner=runner, obs=terminal_obs[-1], reward=self.earned[runner], truncated=truncated)
            self.tick[runner], self.decisions[runner], self.acting[runner], self.earned[runner] = 0, 0, 0, 0.0
            self.episode[runner] += 1
            deciders.append(runner)  # its next episode starts at once
        deciders = sorted(deciders)
        rows = []
        for runner in deciders:
            mask = [True, True, self.tick[runner] % 2 == 0]
            rows.append((self._obs(runner), self.earned[runner], mask))
            self.last[runner] = rows[-1]
            self.earned[runner] = 0.0
        runners = se.BehaviourStep(
            se.DecisionSteps(np.array(deciders, np.int64), np.array([r[0] for r in rows], np.float32).reshape(-1, 3),
                             np.array([r[1] for r in rows], np.float32), np.array([r[2] for r in rows], bool).reshape(-1, 3)),
            se.TerminalSteps(np.array([r for r, _ in ended], np.int64), np.array(terminal_obs, np.float32).reshape(-1, 3),
                             np.array(terminal_rewards, np.float32), np.array([t for _, t in ended], bool)))
        turrets = se.BehaviourStep(
            se.DecisionSteps(np.array(turret, np.int64), np.zeros((len(turret), 1), np.float32), np.zeros(len(turret), np.float32)),
            se.TerminalSteps.empty(TURRET))
        return {"Runner": runners, "Turret": turrets}

    def _write(self, **line) -> None:
        if self.transcript is not None:
            self.transcript.write(json.dumps(line) + "\n")
            self.transcript.flush()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--transcript")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--quit-after", type=int)
    known, rest = parser.parse_known_args()
    se.run(Players(known.transcript, not known.no_report, known.quit_after), se.from_command_line(rest),
           engine_name="players")
