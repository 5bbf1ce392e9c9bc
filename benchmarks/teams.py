"""MA-POCA against independent PPO on a cooperative task that needs one agent to act for the others.

The Dungeon (tests/toy_envs.py, ML-Agents' DungeonEscape distilled): groups of three, only group
rewards, earned only after one agent kills the dragon and dies doing so. Both trainers get the same
settings and the same budget of agent decisions per seed; success is the fraction of group episodes
the greedy policy escapes from, on fresh dungeons. Steps per second are training throughput
(collection and updates), measured in this run for both, so the ratio is the cost of the group critic.

    python benchmarks/teams.py [--steps 80000] [--seeds 0 1 2]

Last line: ``teams poca_success=<median> ppo_success=<median> poca_steps_per_s=<median>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from toy_envs import DUNGEON_SETTINGS, Dungeon, escape_rate  # noqa: E402

from sparring.agents import POCA, PPO  # noqa: E402


def run(trainer: type[PPO], seed: int, steps: int) -> tuple[float, float]:
    """(training steps per second, greedy escape rate) of one seed."""
    model = trainer(Dungeon(areas=32), seed=seed, **DUNGEON_SETTINGS)
    start = time.perf_counter()
    model.learn(steps)
    rate = model.num_steps / (time.perf_counter() - start)
    return rate, escape_rate(model, seed=100 + seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=80_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    trainers = {"poca": POCA, "ppo": PPO}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in trainers}
    print(f"{'trainer':<8} {'seed':>4} {'steps/s':>9} {'success':>8}")
    for seed in args.seeds:
        for name, trainer in trainers.items():
            rate, success = run(trainer, seed, args.steps)
            results[name].append((rate, success))
            print(f"{name:<8} {seed:>4} {rate:>9,.0f} {success:>8.3f}", flush=True)
    median = {name: np.median(np.array(rows), axis=0) for name, rows in results.items()}
    print(f"MA-POCA trains at {median['poca'][0] / median['ppo'][0]:.2f}x PPO's steps per second "
          "(the price of a group critic with attention)")
    print(f"teams poca_success={median['poca'][1]:.3f} ppo_success={median['ppo'][1]:.3f} "
          f"poca_steps_per_s={median['poca'][0]:.0f}")


if __name__ == "__main__":
    main()
