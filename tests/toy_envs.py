"""Small deterministic envs whose every number says where it came from, for tests.

Module-level classes so subprocess workers (spawn, forkserver) can unpickle
factories such as ``functools.partial(CountingEnv, episode_length=3)``.
"""

from __future__ import annotations

import os
import sys
import time

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from sparring.envs.base import (
    Actions, BehaviourStep, DecisionSteps, MultiAgentEnv, StepResult, TerminalSteps, random_actions,
)
from sparring.envs.gymnasium import GymnasiumEnv
from sparring.spec import BehaviourSpec

RUNNER_FIRST_ID = 10
WATCHER_FIRST_ID = 2**32 - 1  # the largest id a vector env can merge; watchers count down from it


def step_reward(seed_code: int, t: int, slot: np.ndarray) -> np.ndarray:
    """What agent ``slot`` of a behaviour earns on step ``t``: seed, step and agent all readable."""
    return (seed_code * 10_000 + t * 100 + slot).astype(np.float32)


class CountingEnv(MultiAgentEnv):
    """Two behaviours, agents joining and leaving between episodes, decisions at two rates.

    - ``runner``: obs ``[seed, t, last action]``, ``Discrete(n_actions)``, decides
      every step; ``1 + (seed + episode) % 3`` agents with ids 10, 11, ...; masks
      forbid action ``t % n_actions`` when ``masks`` is set. Truncated at the end.
    - ``watcher``: obs ``{"clock": [seed, t], "last": last action}``,
      ``MultiDiscrete([2, 3])``, no masks, decides on even ``t`` only (rewards pile
      up in between); ``(seed + episode) % 2`` agents (often none) with ids
      ``2**32 - 1`` downwards. Terminated at the end.

    Every episode lasts ``episode_length`` steps, then all agents end it and the
    next starts in the same result. ``seed=None`` counts as seed -1.
    """

    def __init__(self, episode_length: int = 3, masks: bool = True, n_actions: int = 5):
        self.episode_length = episode_length
        self.masks = masks
        self.n_actions = n_actions
        self.specs = {
            "runner": BehaviourSpec("runner", spaces.Box(-np.inf, np.inf, (3,), np.float32), spaces.Discrete(n_actions)),
            "watcher": BehaviourSpec(
                "watcher",
                spaces.Dict(
                    {
                        "clock": spaces.Box(-np.inf, np.inf, (2,), np.float32),
                        "last": spaces.Box(-1, 2, (2,), np.int64),
                    }
                ),
                spaces.MultiDiscrete([2, 3]),
            ),
        }
        self.last_seed: int | None = None
        self.closed = False

    def reset(self, seed: int | None = None) -> StepResult:
        self.last_seed = seed
        self.seed_code = -1 if seed is None else seed
        self.episode = 0
        self._start_episode()
        return self._result(self._empty_terminals())

    def step(self, actions: Actions) -> StepResult:
        self._take_actions(actions)
        self.t += 1
        self.runner_pending += step_reward(self.seed_code, self.t, np.arange(len(self.runner_ids)))
        self.watcher_pending += step_reward(self.seed_code, self.t, np.arange(len(self.watcher_ids)))
        if self.t < self.episode_length:
            return self._result(self._empty_terminals())
        terminals = {
            "runner": TerminalSteps(
                self.runner_ids.copy(), self._runner_obs(), self.runner_pending.copy(), np.ones(len(self.runner_ids), bool)
            ),
            "watcher": TerminalSteps(
                self.watcher_ids.copy(),
                self._watcher_obs(np.arange(len(self.watcher_ids))),
                self.watcher_pending.copy(),
                np.zeros(len(self.watcher_ids), bool),
            ),
        }
        self.episode += 1
        self._start_episode()
        return self._result(terminals)

    def close(self) -> None:
        self.closed = True

    def _start_episode(self) -> None:
        self.t = 0
        n_runners = 1 + (self.seed_code + self.episode) % 3
        n_watchers = (self.seed_code + self.episode) % 2
        self.runner_ids = RUNNER_FIRST_ID + np.arange(n_runners, dtype=np.int64)
        self.watcher_ids = WATCHER_FIRST_ID - np.arange(n_watchers, dtype=np.int64)
        self.runner_last = np.full(n_runners, -1, np.int64)
        self.watcher_last = np.full((n_watchers, 2), -1, np.int64)
        self.runner_pending = np.zeros(n_runners, np.float32)
        self.watcher_pending = np.zeros(n_watchers, np.float32)

    def _watchers_decide(self) -> bool:
        return self.t % 2 == 0

    def _take_actions(self, actions: Actions) -> None:
        runner = np.asarray(actions["runner"])
        if runner.shape != (len(self.runner_ids),):
            raise ValueError(f"runner actions: expected shape ({len(self.runner_ids)},), got {runner.shape}")
        self.runner_last = runner.astype(np.int64)
        if self._watchers_decide():
            watcher = np.asarray(actions.get("watcher", np.zeros((0, 2), np.int64)))
            if watcher.shape != (len(self.watcher_ids), 2):
                raise ValueError(f"watcher actions: expected shape ({len(self.watcher_ids)}, 2), got {watcher.shape}")
            self.watcher_last = watcher.astype(np.int64)
        elif "watcher" in actions and len(actions["watcher"]):
            raise ValueError(f"watcher actions sent on odd step {self.t}, when no watcher decides")

    def _runner_obs(self) -> np.ndarray:
        n = len(self.runner_ids)
        return np.stack([np.full(n, self.seed_code), np.full(n, self.t), self.runner_last], axis=1).astype(np.float32)

    def _watcher_obs(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        clock = np.tile(np.array([self.seed_code, self.t], np.float32), (len(rows), 1))
        return {"clock": clock, "last": self.watcher_last[rows]}

    def _result(self, terminals: dict[str, TerminalSteps]) -> StepResult:
        mask = None
        if self.masks:
            mask = np.ones((len(self.runner_ids), self.n_actions), bool)
            mask[:, self.t % self.n_actions] = False
        runner = DecisionSteps(self.runner_ids.copy(), self._runner_obs(), self.runner_pending.copy(), mask)
        self.runner_pending[:] = 0
        rows = np.arange(len(self.watcher_ids) if self._watchers_decide() else 0)
        watcher = DecisionSteps(self.watcher_ids[rows], self._watcher_obs(rows), self.watcher_pending[rows].copy())
        self.watcher_pending[rows] = 0
        return {"runner": BehaviourStep(runner, terminals["runner"]), "watcher": BehaviourStep(watcher, terminals["watcher"])}

    def _empty_terminals(self) -> dict[str, TerminalSteps]:
        return {name: TerminalSteps.empty(spec) for name, spec in self.specs.items()}


class _FailsAtStep(CountingEnv):
    """A CountingEnv that calls ``fail()`` on its ``fail_at``-th step."""

    def __init__(self, fail_at: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.fail_at = fail_at
        self.steps = 0

    def step(self, actions: Actions) -> StepResult:
        self.steps += 1
        if self.steps == self.fail_at:
            self.fail()
        return super().step(actions)

    def fail(self) -> None:
        raise NotImplementedError


class CrashingEnv(_FailsAtStep):
    """Dies like a segfaulting game build."""

    def fail(self) -> None:
        os._exit(3)


class RaisingEnv(_FailsAtStep):
    """Raises like a buggy env."""

    def fail(self) -> None:
        raise ValueError(f"toy env refuses step {self.steps}")


class HangingEnv(_FailsAtStep):
    """Stops answering like a game build stuck in a loop."""

    def fail(self) -> None:
        time.sleep(3600)


def make_missing_build_env() -> MultiAgentEnv:
    """A factory that fails the way launching a missing game build does."""
    raise FileNotFoundError("no game build at /nonexistent/Game.x86_64")


class ImportProbe(gym.Env):
    """Observes which heavy modules its process has imported: ``[torch, sparring.agents]``, 1.0 where loaded."""

    observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def _obs(self) -> np.ndarray:
        return np.array([module in sys.modules for module in ("torch", "sparring.agents")], np.float32)

    def reset(self, seed=None, options=None):
        return self._obs(), {}

    def step(self, action):
        return self._obs(), 0.0, False, False, {}


gym.register("ImportProbe-v0", entry_point=ImportProbe)


class _OneDecision(gym.Env):
    """A one-decision task: reward 1 for the right one of four actions, 0 otherwise; chance is 0.25."""

    action_space = spaces.Discrete(4)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        obs, self._answer = self._draw()
        return obs, {}

    def step(self, action):
        reward = float(int(action) == self._answer)
        obs, self._answer = self._draw()
        return obs, reward, True, False, {}

    def _draw(self) -> tuple[np.ndarray, int]:
        raise NotImplementedError


class RedSquare(_OneDecision):
    """Which quadrant of a noisy ``size`` x ``size`` RGB frame (20 by default) holds the red square? A green
    one sits in another quadrant.

    The answer is only in the pixels (uint8, as a game's frame or Gymnasium's image spaces), and telling
    the squares apart takes their colour: a per-pixel brightness would not do.
    """

    SQUARE = 4

    def __init__(self, size: int = 20) -> None:
        self.size = size
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)

    def _draw(self) -> tuple[np.ndarray, int]:
        rng, half = self.np_random, self.size // 2
        frame = rng.integers(0, 60, (self.size, self.size, 3), dtype=np.uint8)
        red, green = rng.choice(4, 2, replace=False)
        for quadrant, colour in ((red, (255, 0, 0)), (green, (0, 255, 0))):
            top = (quadrant // 2) * half + rng.integers(0, half - self.SQUARE + 1)
            left = (quadrant % 2) * half + rng.integers(0, half - self.SQUARE + 1)
            frame[top : top + self.SQUARE, left : left + self.SQUARE] = colour
        return frame, int(red)


class StrongestEntity(_OneDecision):
    """Which way is the strongest of 1 to 8 entities? Each is ``[strength, one-hot direction of 4]``.

    A list of up to 8 entities (a buffer sensor's shape), the missing ones all-zero rows, in random
    order: the answer depends on every present entity and on none of the padding.
    """

    MAX = 8
    observation_space = spaces.Box(0.0, 1.0, (MAX, 5), np.float32)

    def _draw(self) -> tuple[np.ndarray, int]:
        rng = self.np_random
        count = int(rng.integers(1, self.MAX + 1))
        entities = np.zeros((self.MAX, 5), np.float32)
        strength = rng.uniform(0.1, 1.0, count)
        directions = rng.integers(0, 4, count)
        rows = rng.choice(self.MAX, count, replace=False)
        entities[rows, 0] = strength
        entities[rows, 1 + directions] = 1.0
        return entities, int(directions[np.argmax(strength)])


gym.register("RedSquare-v0", entry_point=RedSquare)
gym.register("StrongestEntity-v0", entry_point=StrongestEntity)


class CueRecall(gym.Env):
    """Remember a cue: it is shown on the first step only, and the decision that counts comes at the last.

    Observations ``[cue left, cue right, decide now]``: the cue one-hot at step 0, zeros after; the
    flag is 1 at the final step, whose action earns 1 if it names the cue (0: left, 1: right), 0
    otherwise. The actions before it earn nothing. A policy without memory sees the same ``[0, 0, 1]``
    at every final step: it scores 0.5 at best.
    """

    observation_space = spaces.Box(0.0, 1.0, (3,), np.float32)
    action_space = spaces.Discrete(2)
    LENGTH = 6

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self._cue, self._t = int(self.np_random.integers(2)), 0
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        obs = np.zeros(3, np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        obs[2] = float(self._t == self.LENGTH - 1)
        return obs

    def step(self, action):
        if self._t == self.LENGTH - 1:
            return self._obs(), float(int(action) == self._cue), True, False, {}
        self._t += 1
        return self._obs(), 0.0, False, False, {}


gym.register("CueRecall-v0", entry_point=CueRecall)


class Dungeon(MultiAgentEnv):
    """A cooperative escape where one agent must give itself up for the others (ML-Agents' DungeonEscape, distilled).

    ``areas`` dungeons play at once, each with a group of ``group_size`` agents of the behaviour ``"escaper"``
    (agent ids ``area * group_size + k``, group id ``area + 1``). Observation (9 floats): the agent's index one-hot
    (3), whether the dragon lives, the door's code one-hot (4, zeros while the dragon lives), time used. Actions:
    0 wait, 1 fight the dragon, 2..5 open the door with code 0..3. All agents act at once:

    - while the dragon lives, every agent that fights kills it and dies: its episode ends (terminated, nothing
      earned) while the others play on, and the code appears;
    - once the dragon is dead, a door opened with the right code lets the group out (group reward +1 to every
      member left, all terminate); the wrong code springs a trap (all terminate, nothing earned);
    - after ``max_steps`` steps, or when nobody is left, the group's episode ends unrewarded (interrupted, or
      terminated when the last agent died fighting); the next starts in the same result with every agent back.

    Only the group reward exists, and the agent that fights never sees it: independent learners learn that
    fighting never pays. ``drain_stats`` reports ``Dungeon/Escaped`` (average) per group episode.
    """

    OBS_SIZE = 9

    def __init__(self, areas: int = 16, group_size: int = 3, max_steps: int = 6) -> None:
        if not 1 <= group_size <= 3:
            raise ValueError(f"group_size must be 1..3, got {group_size}")
        self.areas, self.group_size, self.max_steps = areas, group_size, max_steps
        self.specs = {"escaper": BehaviourSpec("escaper", spaces.Box(0.0, 1.0, (self.OBS_SIZE,), np.float32),
                                               spaces.Discrete(6))}
        self.agent_ids = np.arange(areas * group_size, dtype=np.int64)
        self.group_ids = 1 + self.agent_ids // group_size
        self._escaped: list[tuple[float, str]] = []

    def reset(self, seed: int | None = None) -> StepResult:
        self.rng = np.random.default_rng(seed)
        self.alive = np.ones((self.areas, self.group_size), bool)
        self.dragon = np.ones(self.areas, bool)
        self.code = self.rng.integers(4, size=self.areas)
        self.t = np.zeros(self.areas, np.int64)
        return self._result(TerminalSteps.empty(self.specs["escaper"]))

    def step(self, actions: Actions) -> StepResult:
        deciding = self.alive.reshape(-1)
        act = np.zeros(len(deciding), np.int64)
        act[deciding] = np.asarray(actions["escaper"])
        act = act.reshape(self.areas, self.group_size)
        fights = self.alive & (act == 1) & self.dragon[:, None]
        doors = self.alive & (act >= 2) & ~self.dragon[:, None]
        right = (doors & (act - 2 == self.code[:, None])).any(1)
        escaped, trapped = right, doors.any(1) & ~right
        killed = fights.any(1)
        self.dragon &= ~killed
        self.t += 1
        wiped = killed & ~(self.alive & ~fights).any(1)
        timeout = (self.t >= self.max_steps) & ~(escaped | trapped | wiped)
        over = escaped | trapped | wiped | timeout
        # who ends now: fighters, and every member left in a group whose episode is over
        ending = fights | (self.alive & over[:, None])
        ended = ending.reshape(-1)
        group_reward = np.where(escaped[:, None] & ending & ~fights, 1.0, 0.0).astype(np.float32).reshape(-1)[ended]
        truncated = (timeout[:, None] & ~fights).reshape(-1)[ended]  # a fighter died, whenever it did
        self.alive &= ~ending
        ended_rows = np.flatnonzero(ended)
        final_obs = self._obs(ended_rows)  # before the over areas restart
        self._escaped += [(1.0, "average")] * int(escaped.sum()) + [(0.0, "average")] * int((over & ~escaped).sum())
        self.alive[over] = True
        self.dragon[over] = True
        self.t[over] = 0
        self.code[over] = self.rng.integers(4, size=int(over.sum()))
        return self._result(TerminalSteps(self.agent_ids[ended_rows], final_obs, np.zeros(len(ended_rows), np.float32),
                                          truncated, self.group_ids[ended_rows], group_reward))

    def _obs(self, rows: np.ndarray) -> np.ndarray:
        area, index = np.divmod(rows, self.group_size)
        obs = np.zeros((len(rows), self.OBS_SIZE), np.float32)
        obs[np.arange(len(rows)), index] = 1.0
        obs[:, 3] = self.dragon[area]
        dead = ~self.dragon[area]
        obs[np.flatnonzero(dead), 4 + self.code[area[dead]]] = 1.0
        obs[:, 8] = self.t[area] / self.max_steps
        return obs

    def _result(self, terminals: TerminalSteps) -> StepResult:
        deciding = np.flatnonzero(self.alive.reshape(-1))
        decisions = DecisionSteps(self.agent_ids[deciding], self._obs(deciding), np.zeros(len(deciding), np.float32),
                                  group_ids=self.group_ids[deciding])
        return {"escaper": BehaviourStep(decisions, terminals)}

    def drain_stats(self) -> dict:
        stats, self._escaped = {"Dungeon/Escaped": self._escaped} if self._escaped else {}, []
        return stats


DUNGEON_SETTINGS = dict(n_steps=32, batch_size=256, n_epochs=4, learning_rate=1e-3, ent_coef=0.01, ent_schedule="linear")
"""PPO and MA-POCA on :class:`Dungeon` (32 areas): ML-Agents' entropy schedule, otherwise sparring's defaults."""


def escape_rate(model, seed: int, deterministic: bool = True, areas: int = 64, steps: int = 200) -> float:
    """The fraction of group episodes ``model``'s escapers get out of, over ``steps`` steps of fresh dungeons."""
    env = Dungeon(areas=areas)
    result = env.reset(seed=seed)
    for _ in range(steps):
        decisions = result["escaper"].decisions
        result = env.step({"escaper": model.predict(decisions.obs, "escaper", deterministic=deterministic)})
    return float(np.mean([value for value, _ in env.drain_stats()["Dungeon/Escaped"]]))


class TugOfWar(MultiAgentEnv):
    """Two teams of two pull a rope, team against team (``"puller?team=0"`` and ``"puller?team=1"``, one policy).

    ``areas`` games at once. Every step shows each agent a beat (0 or 1, the same for the whole game);
    an agent that pulls on the beat (action ``beat + 1``) adds 1 to its team's pull, any other action
    (0 rests) adds nothing. The rope moves by the difference; the first team to drag it ``win_distance``
    earns group reward +1, the other -1, and the game ends for all four (terminated). After ``max_steps``
    the game is interrupted with nothing earned. Observation (5 floats): the agent's index in its team
    one-hot (2), the beat one-hot (2), the rope's position from the team's side over ``win_distance``.
    Groups: each team of each game (id ``2 * area + team + 1``).
    """

    def __init__(self, areas: int = 16, win_distance: int = 3, max_steps: int = 10) -> None:
        self.areas, self.win_distance, self.max_steps = areas, win_distance, max_steps
        space = spaces.Box(-1.0, 1.0, (5,), np.float32)
        self.specs = {f"puller?team={team}": BehaviourSpec(f"puller?team={team}", space, spaces.Discrete(3), team)
                      for team in (0, 1)}
        self.ids = [np.arange(areas)[:, None] * 4 + 2 * team + np.arange(2) for team in (0, 1)]  # (areas, 2) each

    def reset(self, seed: int | None = None) -> StepResult:
        self.rng = np.random.default_rng(seed)
        self.rope = np.zeros(self.areas, np.int64)
        self.t = np.zeros(self.areas, np.int64)
        self.beat = self.rng.integers(2, size=self.areas)
        return self._result(np.zeros(self.areas, bool), np.zeros(self.areas), np.zeros(self.areas, bool))

    def step(self, actions: Actions) -> StepResult:
        pulls = [(np.asarray(actions[f"puller?team={team}"]).reshape(self.areas, 2) == self.beat[:, None] + 1).sum(1)
                 for team in (0, 1)]
        self.rope += pulls[0] - pulls[1]
        self.t += 1
        won = np.abs(self.rope) >= self.win_distance
        timeout = ~won & (self.t >= self.max_steps)
        score = np.where(won, np.sign(self.rope), 0).astype(np.float32)  # +1: team 0 won
        result = self._result(won | timeout, score, timeout)
        over = won | timeout
        self.rope[over], self.t[over] = 0, 0
        self.beat = self.rng.integers(2, size=self.areas)
        for name, step in result.items():  # the next games' first decisions, in the same result
            step.decisions = self._decisions(name, np.ones(self.areas, bool))
        return result

    def _obs(self, team: int, rows: np.ndarray) -> np.ndarray:
        obs = np.zeros((len(rows), 2, 5), np.float32)
        obs[:, 0, 0] = obs[:, 1, 1] = 1.0
        obs[np.arange(len(rows)), :, 2 + self.beat[rows]] = 1.0
        obs[:, :, 4] = ((1 - 2 * team) * self.rope[rows] / self.win_distance)[:, None]
        return obs.reshape(-1, 5)

    def _decisions(self, name: str, playing: np.ndarray) -> DecisionSteps:
        team = self.specs[name].team_id
        rows = np.flatnonzero(playing)
        return DecisionSteps(self.ids[team][rows].reshape(-1), self._obs(team, rows), np.zeros(2 * len(rows), np.float32),
                             group_ids=np.repeat(2 * rows + team + 1, 2))

    def _result(self, over: np.ndarray, score: np.ndarray, truncated: np.ndarray) -> StepResult:
        result = {}
        rows = np.flatnonzero(over)
        for name, spec in self.specs.items():
            team = spec.team_id
            terminals = TerminalSteps(
                self.ids[team][rows].reshape(-1), self._obs(team, rows), np.zeros(2 * len(rows), np.float32),
                np.repeat(truncated[rows], 2), np.repeat(2 * rows + team + 1, 2),
                np.repeat((1 - 2 * team) * score[rows], 2).astype(np.float32))
            result[name] = BehaviourStep(self._decisions(name, ~over), terminals)
        return result


def tug_results(model, seed: int, games: int = 400) -> np.ndarray:
    """Scores (+1 won, -1 lost, 0 interrupted) of ``model``'s greedy team 0 against a team pulling at random."""
    env = TugOfWar(areas=64)
    result, rng, scores = env.reset(seed=seed), np.random.default_rng(seed), []
    rival = env.specs["puller?team=1"]
    while len(scores) < games:
        ours, theirs = result["puller?team=0"].decisions, result["puller?team=1"].decisions
        result = env.step({"puller?team=0": model.predict(ours.obs, "puller"),  # self-play names policies by group
                           "puller?team=1": random_actions(rival, len(theirs), None, rng)})
        scores += result["puller?team=0"].terminals.group_rewards[::2].tolist()  # one per game
    return np.array(scores[:games])


def door_keys(cells: np.ndarray, n_actions: int) -> np.ndarray:
    """The action that opens each cell's door in :class:`LockedCorridor`: ``(n_actions - 1) * cell + 1`` modulo
    ``n_actions``, so neighbouring doors differ and every action opens an equal share of them."""
    return ((n_actions - 1) * np.asarray(cells, np.int64) + 1) % n_actions


class LockedCorridor(gym.Env):
    """A sparse-reward exploration task: the only reward is at the far end of a corridor of locked doors.

    The agent starts in cell 0 of ``length`` cells (48 by default); the goal is the last. Each cell's door opens to
    one of ``n_actions`` actions (4 by default), its key (:func:`door_keys`); any other action pushes the agent back
    a cell (cell 0 stays). Reaching the goal ends the episode with reward +1 (terminated); after ``max_steps``
    steps (``2 * length`` by default) it is cut off with nothing earned (truncated). Nothing else is ever earned.
    Observation: the cell one-hot (``length`` floats). The expert, :func:`locked_corridor_expert`, walks
    straight through in ``length - 1`` steps.

    Why this shape. The keys differ from door to door, so no fixed preference for an action goes anywhere: a policy
    must learn every cell's key. Random play drifts back to the start (one step on in four, three back): of 200,000
    episodes of uniformly random actions none reached the goal, 33% got to cell 4, 0.4% to cell 8, 0.0035% to
    cell 12, and none beyond cell 16. A plain corridor (left, right) was too easy: a policy that merely drifts
    towards "right" gets there, and sparring's PPO reached the end of 24 such cells within 7k steps. The length
    is there because plain PPO still creeps forward: its critic's untrained values of unseen cells pay it to step
    into some of them, and at ``length=24`` that carried it to the goal on one seed of five (1M steps). The
    one-hot cells are distinct inputs a novelty model (counts, RND, curiosity) can tell apart, and the moves are
    deterministic, so nothing is unpredictable but the unvisited.

    Measured with 16 copies and 2M env steps (about 75 s of one core for sparring's PPO), PPO with 128-step
    rollouts, minibatches of 256, 4 epochs, learning rate 1e-3 decaying linearly, gamma 0.99, entropy 0.01:
    sparring's PPO (seeds 0-9) and Stable-Baselines3's (seeds 0-2) never reached the goal, the deepest cell any
    run saw being 28; the same PPO with a count bonus ``0.1 / sqrt(visits)`` had a greedy policy through the
    whole corridor by 82k steps on every seed 0-4.
    """

    def __init__(self, length: int = 48, n_actions: int = 4, max_steps: int | None = None) -> None:
        max_steps = 2 * length if max_steps is None else max_steps
        if length < 2 or n_actions < 2:
            raise ValueError(f"LockedCorridor needs length >= 2 and n_actions >= 2, got {length} and {n_actions}")
        if max_steps < length - 1:
            raise ValueError(f"LockedCorridor max_steps={max_steps} is too few to reach the goal: the walk takes "
                             f"length - 1 = {length - 1}")
        self.length, self.n_actions, self.max_steps = length, n_actions, max_steps
        self.keys = door_keys(np.arange(length), n_actions)
        self._keys = self.keys.tolist()
        self.observation_space = spaces.Box(0.0, 1.0, (length,), np.float32)
        self.action_space = spaces.Discrete(n_actions)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.cell, self._t = 0, 0
        return self._obs(), {}

    def step(self, action):
        self.cell = self.cell + 1 if int(action) == self._keys[self.cell] else max(self.cell - 1, 0)
        self._t += 1
        if self.cell == self.length - 1:
            return self._obs(), 1.0, True, False, {}
        return self._obs(), 0.0, False, self._t >= self.max_steps, {}

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.length, np.float32)
        obs[self.cell] = 1.0
        return obs


gym.register("LockedCorridor-v0", entry_point=LockedCorridor)


def locked_corridor_expert(obs: np.ndarray, n_actions: int = 4) -> np.ndarray:
    """The key of each row's cell: from any cell, straight to the goal (demonstrations for imitation)."""
    return door_keys(np.argmax(obs, axis=1), n_actions)


def locked_corridor_success(model, episodes: int = 100, seed: int = 0, deterministic: bool = True,
                            **env_kwargs) -> float:
    """The fraction of ``episodes`` (one per copy of the task, made with ``env_kwargs``) in which ``model`` reaches
    the goal. The moves are deterministic, so a greedy policy scores 0 or 1; ``deterministic=False`` grades
    the sampled policy."""
    env = GymnasiumEnv("LockedCorridor-v0", num_envs=episodes, env_kwargs=env_kwargs)
    name = next(iter(env.specs))
    result, reached = env.reset(seed=seed), np.full(episodes, -1)
    while (reached < 0).any():
        result = env.step({name: model.predict(result[name].decisions.obs, deterministic=deterministic)})
        ended = result[name].terminals
        first = reached[ended.agent_ids] < 0  # each copy's first episode only
        reached[ended.agent_ids[first]] = ~ended.truncated[first]
    return float(reached.mean())


CORRIDOR_SETTINGS = dict(n_steps=128, batch_size=256, n_epochs=4, learning_rate=1e-3, ent_coef=0.01)
"""PPO on the locked corridor (16 copies x 128 steps per rollout, the learning rate decaying linearly to 0)."""


def corridor(length: int) -> dict:
    """The locked corridor of ``length`` doors with twice the steps the walk through takes."""
    return {"length": length, "max_steps": 2 * length}


def train_corridor(length: int, seed: int, steps: int, **settings):
    """sparring PPO (``CORRIDOR_SETTINGS`` updated by ``settings``) on 16 corridors of ``length``: the model, and the
    agent step at which 80% of the episodes an update saw reached the goal (None: never within ``steps``)."""
    from sparring.agents import PPO

    reached: list[int] = []

    def watch(model, report):
        ended = report.behaviours["LockedCorridor"].episode_truncated
        if not reached and len(ended) and (~ended).mean() >= 0.8:
            reached.append(report.step)

    env = GymnasiumEnv("LockedCorridor-v0", num_envs=16, env_kwargs=corridor(length))
    model = PPO(env, seed=seed, **{**CORRIDOR_SETTINGS, **settings}).learn(steps, callback=watch)
    return model, (reached or [None])[0]


class Showdown(ParallelEnv):
    """A one-move game of ``players`` players (PettingZoo Parallel API; agents ``player_0``, ``player_1``, ...).

    Every player sees the target (one of 3, one-hot, drawn per game) and names a number; those who name the
    target win together (+1), the others lose (-1), and when all name it or none does the game is a draw (0).
    A player that always names the target wins or draws every game. Against ``scripted_players:pick_zero``
    (always 0) it scores 5/6 (it draws when the target is 0), random play 1/2.
    """

    metadata = {"name": "showdown_v0"}

    def __init__(self, players: int = 3) -> None:
        self.possible_agents = [f"player_{i}" for i in range(players)]
        self.rng = np.random.default_rng(0)

    def observation_space(self, agent: str) -> spaces.Box:
        return spaces.Box(0, 1, (3,), np.float32)

    def action_space(self, agent: str) -> spaces.Discrete:
        return spaces.Discrete(3)

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.target = int(self.rng.integers(3))
        obs = np.eye(3, dtype=np.float32)[self.target]
        return {a: obs for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict):
        hit = {a: int(actions[a]) == self.target for a in self.agents}
        decided = len(set(hit.values())) > 1
        rewards = {a: (1.0 if hit[a] else -1.0) if decided else 0.0 for a in self.agents}
        obs, _ = self.reset()
        done = {a: True for a in self.agents}
        self.agents = []
        return obs, rewards, done, {a: False for a in done}, {a: {} for a in done}
