"""Duel: an example two-player game for self-play over the sparring bridge, with a scripted player to measure by.

Run it against a trainer that waits for it (editor mode), or let the trainer launch it::

    python engines/python/examples/duel.py --sparring-port 5105

Every engine runs ``--games`` independent duels (default 16), all stepped at once
with numpy. In each, two players race for coins on a 5x5 grid: both decide every
tick, stay or move one cell (moves off the grid are masked out), and move at once.
Two coins lie on the grid; a player that steps onto one alone takes it (it reappears
elsewhere); two that arrive together both miss it. The first to 3 coins wins; after
30 ticks the one with more coins wins, and equal counts are a draw.

The two sides are declared as ML-Agents declares them, one behaviour per team of one
policy group: ``Duelist?team=0`` and ``Duelist?team=1``; duel ``g``'s player on each
side has agent id ``g``. Each sees the game from its own side (its position, the
coins' offsets from it and from its rival, the rival's offset, both scores, the time
left), so one policy plays both. A game's last reward is its result: +1 win, -1 loss,
0 draw; before that each coin is worth +0.1 to its taker and -0.1 to the rival.

:func:`chase_nearest_coin` is the scripted player to measure a trained one against:
it walks at its nearest coin by the longer axis first, ignoring its rival, and stumbles
(a random allowed move) one move in five.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import sparring_engine as se

# stay, up, down, left, right as (dx, dy)
MOVES = np.array([[0, 0], [0, -1], [0, 1], [-1, 0], [1, 0]], np.int64)
SIDES = ("Duelist?team=0", "Duelist?team=1")
OBS_SIZE = 15
COIN_VALUE = 0.1


class Duel:
    """``games`` independent duels (see the module docstring)."""

    def __init__(self, games: int = 16, size: int = 5, coins: int = 2, target: int = 3, episode_length: int = 30) -> None:
        self.games, self.size, self.coins, self.target, self.episode_length = games, size, coins, target, episode_length
        obs = se.Box(-1.0, 1.0, (OBS_SIZE,), np.float32)
        self.specs = {name: se.BehaviourSpec(name, obs, se.Discrete(len(MOVES)), team_id=team)
                      for team, name in enumerate(SIDES)}
        self.action_masks = set(SIDES)
        self._ids = np.arange(games, dtype=np.int64)
        self.rng = np.random.default_rng()

    # -- the sparring env API ------------------------------------------------

    def reset(self, seed: int | None = None) -> se.StepResult:
        self.rng = np.random.default_rng(seed)
        self._new_games(np.ones(self.games, bool))
        zero = np.zeros(self.games, np.float32)
        return {name: self._step(side, zero, None) for side, name in enumerate(SIDES)}

    def step(self, actions: dict[str, np.ndarray]) -> se.StepResult:
        moves = np.stack([MOVES[np.clip(actions[name], 0, len(MOVES) - 1)] for name in SIDES], 1)  # (G, 2, 2)
        self.xy = np.clip(self.xy + moves, 0, self.size - 1)
        on_coin = (self.xy[:, :, None] == self.coin_xy[:, None]).all(-1)  # (G, player, coin)
        alone = on_coin & ~on_coin[:, ::-1]  # the rival is not on the same coin
        taken = alone.sum(2)  # (G, player)
        self.score += taken
        for c in range(self.coins):
            self._respawn(c, on_coin[:, :, c].any(1))
        self.t += 1
        done = (self.score >= self.target).any(1) | (self.t >= self.episode_length)
        shaping = (COIN_VALUE * (taken - taken[:, ::-1])).astype(np.float32)
        result = np.sign(self.score - self.score[:, ::-1]).astype(np.float32)  # +1 ahead, -1 behind, 0 level
        steps = {}
        for side, name in enumerate(SIDES):
            terminals = None
            if done.any():
                terminals = se.TerminalSteps(self._ids[done], self._obs(side)[done], result[done, side],
                                             np.zeros(int(done.sum()), bool))
            steps[name] = (np.where(done, 0.0, shaping[:, side]).astype(np.float32), terminals)
        self._new_games(done)
        return {name: self._step(side, *steps[name]) for side, name in enumerate(SIDES)}

    # -- helpers -------------------------------------------------------------

    def _new_games(self, games: np.ndarray) -> None:
        if not games.any():
            return
        if not hasattr(self, "xy"):
            self.xy = np.zeros((self.games, 2, 2), np.int64)
            self.coin_xy = np.full((self.games, self.coins, 2), -9, np.int64)
            self.score = np.zeros((self.games, 2), np.int64)
            self.t = np.zeros(self.games, np.int64)
        n = self.size - 1
        self.xy[games] = [[0, 0], [n, n]]  # opposite corners; the grid is symmetric under the swap
        self.coin_xy[games] = -9
        for c in range(self.coins):
            self._respawn(c, games)
        self.score[games] = 0
        self.t[games] = 0

    def _respawn(self, c: int, where: np.ndarray) -> None:
        """Coin ``c`` to a random cell free of players and other coins, in the games flagged by ``where``."""
        if not where.any():
            return
        n = self.size
        busy = np.zeros((self.games, n * n), bool)
        for group in (self.xy, self.coin_xy):
            g, k = np.nonzero((group >= 0).all(-1))
            busy[g, group[g, k, 1] * n + group[g, k, 0]] = True
        score = self.rng.random(busy.shape)
        score[busy] = -1.0
        cell = score.argmax(1)
        self.coin_xy[where, c] = np.stack([cell % n, cell // n], 1)[where]

    def _obs(self, side: int) -> np.ndarray:
        scale = 1.0 / (self.size - 1)
        me, rival = self.xy[:, side], self.xy[:, 1 - side]
        to_coins = self.coin_xy - me[:, None]  # (G, C, 2)
        order = np.abs(to_coins).sum(-1).argsort(1, kind="stable")  # my nearest coin first
        mine = np.take_along_axis(to_coins, order[..., None], 1)
        theirs = np.take_along_axis(self.coin_xy - rival[:, None], order[..., None], 1)
        parts = [me * (2 * scale) - 1, mine.reshape(self.games, -1) * scale, theirs.reshape(self.games, -1) * scale,
                 (rival - me) * scale, self.score[:, [side, 1 - side]] / self.target,
                 1.0 - self.t[:, None] / self.episode_length]
        return np.concatenate(parts, 1).astype(np.float32)

    def _mask(self, side: int) -> np.ndarray:
        x, y = self.xy[:, side, 0], self.xy[:, side, 1]
        top = self.size - 1
        return np.stack([np.ones_like(x, bool), y > 0, y < top, x > 0, x < top], 1)

    def _step(self, side: int, rewards: np.ndarray, terminals: se.TerminalSteps | None) -> se.BehaviourStep:
        spec = self.specs[SIDES[side]]
        decisions = se.DecisionSteps(self._ids, self._obs(side), rewards, self._mask(side))
        return se.BehaviourStep(decisions, terminals or se.TerminalSteps.empty(spec))


def chase_nearest_coin(obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator, stumble: float = 0.2) -> np.ndarray:
    """The scripted player's moves for a batch of observations (see the module docstring)."""
    dx, dy = obs[:, 2], obs[:, 3]  # offset to my nearest coin
    horizontal = np.abs(dx) >= np.abs(dy)
    move = np.where(horizontal, np.where(dx > 0, 4, 3), np.where(dy > 0, 2, 1))
    move = np.where((dx == 0) & (dy == 0), 0, move)
    random_move = np.argmax(rng.random(mask.shape) * mask, 1)
    return np.where(rng.random(len(obs)) < stumble, random_move, move)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], allow_abbrev=False,
        epilog="Bridge flags: --sparring-port N, --sparring-token T, --sparring-transport grpc|tcp, "
               "--sparring-host H (see sparring_engine.from_command_line).")
    parser.add_argument("--games", type=int, default=16, help="duels stepped together in this engine")
    parser.add_argument("--headless", action="store_true", help="accepted for launchers; nothing is drawn anyway")
    options, _ = parser.parse_known_args(argv)  # the --sparring-* flags are the SDK's
    try:
        se.run(Duel(games=options.games), se.from_command_line(argv), engine_name="duel")
    except ConnectionError as exc:
        print(f"duel: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
