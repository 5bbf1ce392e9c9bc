"""What the benchmarks against Stable-Baselines3 share: when a run reached the return threshold, and
the interleaved runs, their table and the ratios line.

Runs are interleaved (sparring seed 0, SB3 seed 0, sparring seed 1, ...) so machine noise hits both
sides alike; the figures are medians over seeds.
"""

from __future__ import annotations

import argparse
import statistics
from collections import deque
from collections.abc import Callable, Iterable

import numpy as np
import torch

Run = Callable[[int, int], "tuple[float, int | None]"]
"""``(seed, steps) -> (env steps per second, env step the threshold was reached at or None)``."""


class ThresholdWatch:
    """First checked env step (a multiple of ``check_every``) at which the mean of the last ``window``
    finished episode returns reaches ``threshold``."""

    def __init__(self, threshold: float, window: int, check_every: int = 1) -> None:
        self.threshold, self.check_every = threshold, check_every
        self.recent: deque[float] = deque(maxlen=window)
        self.reached_at: int | None = None

    def add(self, returns: Iterable[float]) -> None:
        self.recent.extend(float(r) for r in returns)

    def check(self, step: int) -> None:
        if (self.reached_at is None and step % self.check_every == 0 and len(self.recent) == self.recent.maxlen
                and np.mean(self.recent) >= self.threshold):
            self.reached_at = step

    def sparring_callback(self, behaviour: str) -> Callable:
        """A sparring ``learn`` callback that feeds ``behaviour``'s finished episodes in and checks."""
        def on_report(model, report) -> None:
            self.add(report.behaviours[behaviour].episode_returns)
            self.check(model.num_steps)
        return on_report

    def sb3_callback(self, check_per_rollout: bool = False):
        """A Stable-Baselines3 callback that feeds finished episodes in and checks after every env step,
        or once per rollout (to match a sparring side that checks once per update)."""
        from stable_baselines3.common.callbacks import BaseCallback

        watch = self

        class Watch(BaseCallback):
            def _on_step(self) -> bool:
                watch.add([info["episode"]["r"] for info in self.locals["infos"] if "episode" in info])
                if not check_per_rollout:
                    watch.check(self.num_timesteps)
                return True

            def _on_rollout_end(self) -> None:
                if check_per_rollout:
                    watch.check(self.num_timesteps)

        return Watch()


def compare(doc: str, env_id: str, metric: str, threshold: float, default_steps: int,
            run_sparring: Run, run_sb3: Run) -> None:
    """Parse ``--steps --seeds --threads``, run both sides per seed, print the table and end with
    ``<metric> throughput_ratio=<...> steps_to_<threshold>_ratio=<...>``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--steps", type=int, default=default_steps)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    goal = f"steps to {threshold:.0f}"
    print(f"{env_id}, {args.steps} env steps per run, torch {torch.__version__}, {args.threads} torch thread(s)")
    print(f"{'library':<10} {'seed':>4} {'env steps/s':>12} {goal:>14}")
    results: dict[str, list[tuple[float, int | None]]] = {"sparring": [], "sb3": []}
    for seed in args.seeds:
        for name, run in (("sparring", run_sparring), ("sb3", run_sb3)):
            rate, reached = run(seed, args.steps)
            results[name].append((rate, reached))
            print(f"{name:<10} {seed:>4} {rate:>12,.1f} {reached if reached is not None else 'never':>14}", flush=True)

    def median_reached(rows):  # a run that never reached the threshold counts as needing more than all steps
        return statistics.median(r if r is not None else float("inf") for _, r in rows)

    rates = {k: statistics.median(r for r, _ in v) for k, v in results.items()}
    reached = {k: median_reached(v) for k, v in results.items()}
    print(f"median env steps/s: sparring {rates['sparring']:,.1f}, sb3 {rates['sb3']:,.1f}")
    print(f"median {goal}: sparring {reached['sparring']}, sb3 {reached['sb3']}")
    throughput_ratio = rates["sparring"] / rates["sb3"]
    steps_ratio = reached["sparring"] / reached["sb3"] if np.isfinite(reached["sb3"]) else float("nan")
    print(f"{metric} throughput_ratio={throughput_ratio:.3f} steps_to_{threshold:.0f}_ratio={steps_ratio:.3f}")
