"""Fresh games between two fixed policies in an env: player A's score per game, the measure a difficulty ladder
is checked by.

Who plays which rows comes from the env, as in self-play training:

- **Seats** (``env.seats`` answers: one behaviour whose agents play each other in one game, a PettingZoo board
  game). A sits at one seat of each game and B at the others; A's seat alternates from one game to the next, so
  A moves first in half the games of a two-seat game.
- **Sides** (``env.seats`` is None: behaviours of one policy group told apart by team ids,
  ``"Striker?team=0"``). A plays every agent of one side, B the group's other sides. A team (the agents of one
  group id) plays one game; an agent outside any group plays its own.

A game's result is the sign of A's final reward (:func:`~sparring.agents.selfplay.trainer.game_score`): 1 win,
0.5 draw, 0 loss. A game cut short (truncated) or lost with a crashed copy has no result. Games are counted as
they *start*, while the results in hand and the counted games under way are fewer than ``games`` (at most ten
times ``games`` are started), and play goes on until every counted game has ended, so short games are not
favoured (see :func:`~sparring.agents.evaluation.evaluate`).
"""

from __future__ import annotations

import numpy as np

from sparring.agents.evaluation import Predictor
from sparring.agents.selfplay.trainer import game_score
from sparring.envs.base import BehaviourStep, DecisionSteps, MultiAgentEnv
from sparring.spec import batch_put, empty_actions, group_of


def play_match(env: MultiAgentEnv, a: Predictor, b: Predictor, group: str, games: int, *, side: str | None = None,
               seats: int = 2, seed: int | None = None, deterministic: bool = False) -> np.ndarray:
    """A's scores (1, 0.5, 0), one per game with a result, of ``games`` games against B in ``env``.

    Args:
        group: the policy group both play; ``predict`` is asked with this name (a self-play run's policies are
            keyed by group).
        side: in games with sides, the behaviour A plays (``"Striker?team=0"``); the group's other behaviours are
            B's. Not given in games with seats.
        seats: seats per game in games with seats; A's seat cycles through them.
        deterministic: both play their most likely action; by default both sample theirs, so that two fixed
            policies play varied games.
    """
    names = [name for name in env.specs if group_of(name) == group]
    if not names:
        raise ValueError(f"the env has no behaviour of group {group!r}; its behaviours are {sorted(env.specs)}")
    if len(names) < len(env.specs):
        other = sorted(set(env.specs) - set(names))
        raise ValueError(f"behaviours {other} are not of group {group!r}: a match between two policies of one group "
                         "needs every agent to be played by one of them")
    if side is not None and side not in names:
        raise ValueError(f"side {side!r} is not a behaviour of group {group!r} ({sorted(names)})")
    table = _Table(env, side, seats, games)
    forgetting = [p.reset_memory for p in (a, b) if hasattr(p, "reset_memory")]  # policies that remember
    for forget in forgetting:
        forget()
    result = env.reset(seed=seed)
    while True:
        for name, step in result.items():
            table.observe(name, step)
            ended = np.concatenate([step.terminals.agent_ids, step.lost])
            if len(ended):
                for forget in forgetting:
                    forget(group, ended)
        if table.done:
            return np.array(table.scores)
        actions = {}
        for name in names:
            decisions = result[name].decisions
            if not len(decisions):
                continue
            mine = table.is_a(name, decisions)
            out = empty_actions(env.specs[name], len(decisions))
            for player, rows in ((a, mine), (b, ~mine)):
                if rows.any():
                    part = decisions.take(rows)
                    batch_put(out, rows, player.predict(part.obs, group, part.action_mask, deterministic,
                                                        agent_ids=part.agent_ids))
            actions[name] = out
        result = env.step(actions)


class _Table:
    """Which rows are A's, and A's games: started, counted, ended."""

    def __init__(self, env: MultiAgentEnv, side: str | None, seats: int, games: int) -> None:
        self.env, self.side, self.seats, self.games = env, side, seats, games
        self.started = 0
        self.scores: list[float] = []
        self.a_seat: dict[int, int] = {}  # games with seats: game -> A's seat in its current episode
        self.counted: dict[int, bool] = {}  # A's game under way (by game; with sides, -group or agent) -> counts
        self.key_of: dict[int, int] = {}  # with sides: A's agent -> its game

    @property
    def done(self) -> bool:
        return not self._room() and not any(self.counted.values())

    def _room(self) -> bool:
        """Whether another game may be counted."""
        under_way = sum(self.counted.values())
        return len(self.scores) + under_way < self.games and self.started < 10 * self.games

    def is_a(self, name: str, decisions: DecisionSteps) -> np.ndarray:
        """Per row: is it A's to play."""
        agent_ids = decisions.agent_ids
        if self.side is not None:
            if name == self.side:
                keys = np.where(decisions.group_ids > 0, -decisions.group_ids, agent_ids).tolist()
                self.key_of.update(zip(agent_ids.tolist(), keys))
                for key in keys:
                    self._begin(key)
            return np.full(len(agent_ids), name == self.side)
        games, seats = self._seats(name, agent_ids)
        for game in games.tolist():
            self._begin(game)
        return seats == np.array([self.a_seat[g] for g in games.tolist()], np.int64)

    def observe(self, name: str, step: BehaviourStep) -> None:
        """A's games that ended (or were lost) in ``step`` give their results; the next ones begin."""
        ended, lost = step.terminals, step.lost
        for ids, rewards, cut in ((ended.agent_ids, ended.total_rewards, ended.truncated),
                                  (lost, np.zeros(len(lost)), np.ones(len(lost), bool))):
            if not len(ids):
                continue
            if self.side is None:  # of games under way: one that ended before its first decision was never A's
                games, seats = self._seats(name, ids)
                mine = seats == np.array([self.a_seat.get(g, -1) for g in games.tolist()], np.int64)
                self._end(games[mine], rewards[mine], cut[mine])
            elif name == self.side:
                self._end(np.array([self.key_of.get(a, a) for a in ids.tolist()], np.int64), rewards, cut)

    def _seats(self, name: str, agent_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        answer = self.env.seats(name, agent_ids)
        if answer is None:
            raise ValueError(f"behaviour {name!r}: the env does not say which game each agent plays in "
                             "(env.seats is None) and no side was given; a game with sides names the behaviour A plays")
        return answer

    def _begin(self, key: int) -> None:
        if key not in self.counted:
            self.counted[key] = self._room()
            if self.counted[key]:
                self.a_seat[key] = self.started % self.seats
                self.started += 1
            else:
                self.a_seat[key] = 0

    def _end(self, keys: np.ndarray, rewards: np.ndarray, truncated: np.ndarray) -> None:
        for key, score, cut in zip(keys.tolist(), game_score(rewards).tolist(), truncated.tolist()):
            if self.counted.pop(key, False) and not cut:
                self.scores.append(score)
            self.a_seat.pop(key, None)
