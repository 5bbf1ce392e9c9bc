"""Arena: an example multi-agent game that trains over the sparring bridge (the demo's default game).

Run it against a trainer that waits for it (editor mode), or let the trainer launch it::

    python engines/python/examples/arena.py --sparring-port 5105                       # gRPC
    python engines/python/examples/arena.py --sparring-port 5106 --sparring-transport tcp

Every engine runs ``--arenas`` independent 7x7 arenas (default 8), all stepped at
once with numpy. In each arena:

- two **Runners** (behaviour ``Runner``) decide every tick: stay, up, down, left or
  right (moves off the grid are masked out). They see their own position, the
  offset to the nearest coin, the offsets to the hazards (nearest first) and the
  time left. +1 for each coin picked up (it reappears elsewhere); -1 for stepping
  onto a hazard, which also ends the Runner's episode (terminated) and puts it
  back somewhere safe to start the next.
- one **Turret** (behaviour ``Turret``) in the centre decides every 3rd tick: hold,
  or fire along one of the 8 compass rays (3 cells long). It sees where the
  hazards are (a 7x7 occupancy grid). +1 for each hazard hit (it reappears
  elsewhere), -0.1 per shot.
- two **hazards** wander at random. Every 60 ticks the arena's time is up: every
  episode still running ends (truncated) and a fresh layout starts.

Random play scores about -0.04 per Runner episode and 0.4 per Turret episode.
PPO through the bridge (two engines, 150k decisions, 10-15 s on two CPU cores)
reaches 4.6-5.0 and 11.7-12.0; ``tests/test_bridge_learning.py`` asks for 3 and 8.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import sparring_engine as se

# stay, up, down, left, right as (dx, dy)
MOVES = np.array([[0, 0], [0, -1], [0, 1], [-1, 0], [1, 0]], np.int64)
# the Turret's 8 rays, N, NE, E, SE, S, SW, W, NW (action 0 holds fire)
RAYS = np.array([[0, -1], [1, -1], [1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1]], np.int64)
SHOT_COST = 0.1


class Arena:
    """``arenas`` independent arenas with Runners, a Turret and hazards (see the module docstring).

    Runner ``r`` of arena ``a`` has agent id ``a * runners + r``; the Turret of arena ``a`` has id ``a``.
    """

    def __init__(self, arenas: int = 8, size: int = 7, runners: int = 2, coins: int = 2, hazards: int = 2,
                 episode_length: int = 60, turret_period: int = 3) -> None:
        self.arenas, self.size, self.runners, self.coins, self.hazards = arenas, size, runners, coins, hazards
        self.episode_length, self.turret_period = episode_length, turret_period
        runner_obs = se.Box(-1.0, 1.0, (5 + 2 * hazards,), np.float32)
        self.specs = {
            "Runner": se.BehaviourSpec("Runner", runner_obs, se.Discrete(len(MOVES)), team_id=0),
            "Turret": se.BehaviourSpec("Turret", se.Box(0.0, 1.0, (size * size,), np.float32),
                                       se.Discrete(1 + len(RAYS)), team_id=0),
        }
        self.action_masks = {"Runner"}
        centre = size // 2
        self._ray_cells = np.zeros((1 + len(RAYS), size * size), bool)  # [action, cell]: the shot covers it
        for a, (dx, dy) in enumerate(RAYS, start=1):
            for k in range(1, centre + 1):
                self._ray_cells[a, (centre + k * dy) * size + centre + k * dx] = True
        self._runner_ids = np.arange(arenas * runners, dtype=np.int64)
        self._turret_ids = np.arange(arenas, dtype=np.int64)
        self.rng = np.random.default_rng()
        self.t = 0

    # -- the sparring env API ------------------------------------------------

    def reset(self, seed: int | None = None) -> se.StepResult:
        self.rng = np.random.default_rng(seed)
        self._new_layout(np.ones(self.arenas, bool))
        self.t = 0
        zero_r = np.zeros(len(self._runner_ids), np.float32)
        return {"Runner": self._runner_step(zero_r, None), "Turret": self._turret_step(None)}

    def step(self, actions: dict[str, np.ndarray]) -> se.StepResult:
        A, R = self.arenas, self.runners
        runner_reward = np.zeros((A, R), np.float32)
        if self.t % self.turret_period == 0:  # the Turrets decided last tick: fire
            shot = np.clip(actions["Turret"], 0, len(RAYS))
            hit = self._ray_cells[shot[:, None], self._cells(self.hazard_xy)]  # (A, H)
            self.turret_reward += hit.sum(1) - SHOT_COST * (shot > 0)
            for h in range(self.hazards):
                self._respawn(self.hazard_xy[:, h], hit[:, h], avoid_runners=True)
        move = MOVES[np.clip(actions["Runner"], 0, len(MOVES) - 1)].reshape(A, R, 2)
        self.runner_xy = np.clip(self.runner_xy + move, 0, self.size - 1)
        wander = MOVES[1 + self.rng.integers(4, size=(A, self.hazards))] * (self.rng.random((A, self.hazards, 1)) < 0.5)
        self.hazard_xy = np.clip(self.hazard_xy + wander, 0, self.size - 1)

        on_coin = (self.runner_xy[:, :, None] == self.coin_xy[:, None]).all(-1)  # (A, R, C)
        runner_reward += on_coin.sum(2)
        taken = on_coin.any(1)
        for c in range(self.coins):
            self._respawn(self.coin_xy[:, c], taken[:, c])
        burnt = (self.runner_xy[:, :, None] == self.hazard_xy[:, None]).all(-1).any(2)  # (A, R)
        runner_reward -= burnt
        self.t += 1
        time_up = self.t >= self.episode_length

        # Runners: terminals (burnt: terminated; at time up: everyone else truncated), then decisions.
        ended = np.ones((A, R), bool) if time_up else burnt
        rewards = runner_reward.reshape(-1)
        terminals = None
        if ended.any():
            rows = ended.reshape(-1)
            final = self._runner_obs()[rows]
            terminals = se.TerminalSteps(self._runner_ids[rows], final, rewards[rows], ~burnt.reshape(-1)[rows])
            rewards = np.where(rows, 0.0, rewards).astype(np.float32)  # the next episode starts at 0
            for r in range(R):
                self._respawn(self.runner_xy[:, r], burnt[:, r], avoid_hazards=True)
        turret_final = self._turret_obs() if time_up else None
        if time_up:
            self._new_layout(np.ones(A, bool))
            self.t = 0
        return {"Runner": self._runner_step(rewards, terminals), "Turret": self._turret_step(turret_final)}

    # -- helpers -------------------------------------------------------------

    def _new_layout(self, arenas: np.ndarray) -> None:
        A = self.arenas
        self.runner_xy = np.full((A, self.runners, 2), -9, np.int64)  # off the grid until placed
        self.coin_xy = np.full((A, self.coins, 2), -9, np.int64)
        self.hazard_xy = np.full((A, self.hazards, 2), -9, np.int64)
        for h in range(self.hazards):
            self._respawn(self.hazard_xy[:, h], arenas)
        for r in range(self.runners):
            self._respawn(self.runner_xy[:, r], arenas, avoid_hazards=True)
        for c in range(self.coins):
            self._respawn(self.coin_xy[:, c], arenas)
        self.turret_reward = np.zeros(A, np.float32)

    def _cells(self, xy: np.ndarray) -> np.ndarray:
        return xy[..., 1] * self.size + xy[..., 0]

    def _respawn(self, xy: np.ndarray, where: np.ndarray, avoid_runners: bool = False,
                 avoid_hazards: bool = False) -> None:
        """Move the entity ``xy`` (A, 2) to a random free cell in the arenas flagged by ``where``."""
        if not where.any():
            return
        n = self.size
        busy = np.zeros((self.arenas, n * n), bool)
        for group in (self.coin_xy, self.hazard_xy) + ((self.runner_xy,) if avoid_runners else ()):
            a, k = np.nonzero((group >= 0).all(-1))  # entities not yet placed sit at -9
            busy[a, self._cells(group[a, k])] = True
        if avoid_hazards:  # nor next to one
            for step in MOVES[1:]:
                a, k = np.nonzero((self.hazard_xy >= 0).all(-1))
                near = np.clip(self.hazard_xy[a, k] + step, 0, n - 1)
                busy[a, self._cells(near)] = True
        score = self.rng.random(busy.shape)
        score[busy] = -1.0
        cell = score.argmax(1)
        xy[where] = np.stack([cell % n, cell // n], 1)[where]

    def _runner_obs(self) -> np.ndarray:
        A, R, n = self.arenas, self.runners, self.size
        scale = 1.0 / (n - 1)
        pos = self.runner_xy
        to_coin = self.coin_xy[:, None] - pos[:, :, None]  # (A, R, C, 2)
        nearest = np.abs(to_coin).sum(-1).argmin(2)
        coin = np.take_along_axis(to_coin, nearest[:, :, None, None], 2)[:, :, 0]
        to_hazard = self.hazard_xy[:, None] - pos[:, :, None]  # (A, R, H, 2)
        order = np.abs(to_hazard).sum(-1).argsort(2, kind="stable")
        hazards = np.take_along_axis(to_hazard, order[..., None], 2).reshape(A, R, -1)
        time_left = np.full((A, R, 1), 1.0 - self.t / self.episode_length)
        obs = np.concatenate([pos * (2 * scale) - 1, coin * scale, hazards * scale, time_left], -1)
        return obs.reshape(A * R, -1).astype(np.float32)

    def _runner_mask(self) -> np.ndarray:
        x, y = self.runner_xy[..., 0].reshape(-1), self.runner_xy[..., 1].reshape(-1)
        top = self.size - 1
        return np.stack([np.ones_like(x, bool), y > 0, y < top, x > 0, x < top], 1)

    def _runner_step(self, rewards: np.ndarray, terminals: se.TerminalSteps | None) -> se.BehaviourStep:
        decisions = se.DecisionSteps(self._runner_ids, self._runner_obs(), rewards, self._runner_mask())
        return se.BehaviourStep(decisions, terminals or se.TerminalSteps.empty(self.specs["Runner"]))

    def _turret_obs(self) -> np.ndarray:
        grid = np.zeros((self.arenas, self.size * self.size), np.float32)
        np.put_along_axis(grid, self._cells(self.hazard_xy), 1.0, 1)
        return grid

    def _turret_step(self, final_obs: np.ndarray | None) -> se.BehaviourStep:
        spec = self.specs["Turret"]
        terminals = se.TerminalSteps.empty(spec)
        if final_obs is not None:  # time up: every Turret's episode was cut short
            terminals = se.TerminalSteps(self._turret_ids, final_obs, self.turret_reward.copy(),
                                         np.ones(self.arenas, bool))
            self.turret_reward[:] = 0
        decisions = se.DecisionSteps.empty(spec)
        if self.t % self.turret_period == 0:
            decisions = se.DecisionSteps(self._turret_ids, self._turret_obs(), self.turret_reward.copy())
            self.turret_reward[:] = 0
        return se.BehaviourStep(decisions, terminals)

    def render(self, arena: int = 0) -> str:
        """Arena ``arena`` as text: R runner, $ coin, X hazard, T turret."""
        grid = [["." for _ in range(self.size)] for _ in range(self.size)]
        grid[self.size // 2][self.size // 2] = "T"
        for sign, group in (("$", self.coin_xy), ("X", self.hazard_xy), ("R", self.runner_xy)):
            for x, y in group[arena]:
                grid[y][x] = sign
        return f"t={self.t}\n" + "\n".join("".join(row) for row in grid)


class _Rendered(Arena):
    def step(self, actions):
        result = super().step(actions)
        print(self.render(), flush=True)
        return result


class Ticking:
    """A game whose every tick costs at least ``tick_ms``, spent waiting, as a build that renders or runs its
    physics elsewhere would. It reports, summed per summary, the seconds it spent in ticks (``Engine/Busy
    Seconds``) and in all (``Engine/Wall Seconds``): the rest it spent waiting for the trainer."""

    def __init__(self, game: Arena, tick_ms: float) -> None:
        self.game, self.tick = game, tick_ms / 1000
        self.specs, self.action_masks = game.specs, game.action_masks
        self.stats = se.StatsRecorder()
        self._last_end: float | None = None

    def reset(self, seed: int | None = None) -> se.StepResult:
        self._last_end = None
        return self.game.reset(seed)

    def step(self, actions: dict[str, np.ndarray]) -> se.StepResult:
        start = time.perf_counter()
        result = self.game.step(actions)
        time.sleep(max(0.0, self.tick - (time.perf_counter() - start)))
        end = time.perf_counter()
        if self._last_end is not None:
            self.stats.record_stat("Engine/Busy Seconds", end - start, "sum")
            self.stats.record_stat("Engine/Wall Seconds", end - self._last_end, "sum")
        self._last_end = end
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], allow_abbrev=False,
        epilog="Bridge flags: --sparring-port N, --sparring-token T, --sparring-transport grpc|tcp, "
               "--sparring-host H (see sparring_engine.from_command_line).")
    parser.add_argument("--arenas", type=int, default=8, help="arenas stepped together in this engine")
    parser.add_argument("--episode-length", type=int, default=60, help="ticks before the arena's time is up")
    parser.add_argument("--render", action="store_true", help="print arena 0 after every tick")
    parser.add_argument("--headless", action="store_true", help="accepted for launchers; nothing is drawn anyway")
    parser.add_argument("--tick-ms", type=float, default=0.0,
                        help="each tick costs at least this long, spent waiting (a build that renders); reported "
                             "with the time spent waiting for the trainer as Engine/Busy Seconds, Engine/Wall Seconds")
    options, _ = parser.parse_known_args(argv)  # the --sparring-* flags are the SDK's
    game = (_Rendered if options.render else Arena)(arenas=options.arenas, episode_length=options.episode_length)
    if options.tick_ms > 0:
        game = Ticking(game, options.tick_ms)
    try:
        se.run(game, se.from_command_line(argv), engine_name="arena")
    except ConnectionError as exc:
        print(f"arena: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
