"""What the benchmarks against Stable-Baselines3 share: when a run reached the return threshold, and
the interleaved runs, their distributions and the ratios line.

Runs are interleaved (sparring seed 0, SB3 seed 0, sparring seed 1, ...) so machine noise hits both
sides alike. One seed's steps-to-threshold says little (on CartPole they range over 3x between seeds),
so each side is summarised by the median and interquartile range over its seeds, and the ratios are
ratios of medians.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import deque
from collections.abc import Callable, Iterable

import numpy as np
import torch

Run = Callable[[int, int], "tuple[float, ThresholdWatch]"]
"""``(seed, steps) -> (env steps per second, the run's watch: when it reached the threshold, its final return)``."""


class ThresholdWatch:
    """First checked env step (a multiple of ``check_every``) at which the mean of the last ``window``
    finished episode returns reaches ``threshold``."""

    def __init__(self, threshold: float, window: int, check_every: int = 1) -> None:
        self.threshold, self.check_every = threshold, check_every
        self.recent: deque[float] = deque(maxlen=window)
        self.reached_at: int | None = None

    @property
    def final(self) -> float:
        """The mean of the last ``window`` finished episodes (nan before any)."""
        return float(np.mean(self.recent)) if self.recent else float("nan")

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


def ppo_runs(env_id: str, behaviour: str, settings: dict, threshold: float, window: int,
             schedule: str = "linear", normalize: bool = False) -> tuple[Run, Run]:
    """sparring PPO and SB3 PPO on ``env_id`` with the same ``settings`` (num_envs, n_steps, batch_size,
    n_epochs, gamma, gae_lambda, learning_rate, clip_range, ent_coef, hidden), both checked for the
    threshold once per rollout. ``schedule``: "linear" decays learning rate and clip range to 0 on both
    sides, "constant" keeps them. ``normalize``: observations and rewards normalised on both sides
    (sparring's normalize_obs and normalize_reward, SB3's VecNormalize), as RL Zoo's ``normalize: true``."""
    s = settings
    linear = schedule == "linear"

    def run_sparring(seed: int, steps: int) -> tuple[float, ThresholdWatch]:
        from sparring.agents import PPO
        from sparring.envs.gymnasium import GymnasiumEnv

        env = GymnasiumEnv(env_id, num_envs=s["num_envs"])
        model = PPO(
            env, seed=seed, n_steps=s["n_steps"], batch_size=s["batch_size"], n_epochs=s["n_epochs"],
            gamma=s["gamma"], gae_lambda=s["gae_lambda"], learning_rate=s["learning_rate"], lr_schedule=schedule,
            clip_range=s["clip_range"], clip_schedule=schedule, ent_coef=s["ent_coef"], hidden_sizes=s["hidden"],
            activation="tanh", normalize_obs=normalize, normalize_reward=normalize,
        )
        watch = ThresholdWatch(threshold, window)
        start = time.perf_counter()
        model.learn(steps, callback=watch.sparring_callback(behaviour))
        elapsed = time.perf_counter() - start
        env.close()
        return model.num_steps / elapsed, watch

    def run_sb3(seed: int, steps: int) -> tuple[float, ThresholdWatch]:
        from stable_baselines3 import PPO as SB3PPO
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import VecNormalize

        watch = ThresholdWatch(threshold, window)
        env = make_vec_env(env_id, n_envs=s["num_envs"], seed=seed)  # Monitor inside: episodes keep raw returns
        if normalize:
            env = VecNormalize(env, gamma=s["gamma"])
        model = SB3PPO(
            "MlpPolicy", env, seed=seed, device="cpu", n_steps=s["n_steps"], batch_size=s["batch_size"],
            n_epochs=s["n_epochs"], gamma=s["gamma"], gae_lambda=s["gae_lambda"],
            learning_rate=(lambda remaining: remaining * s["learning_rate"]) if linear else s["learning_rate"],
            clip_range=(lambda remaining: remaining * s["clip_range"]) if linear else s["clip_range"],
            ent_coef=s["ent_coef"],
            policy_kwargs=dict(net_arch=dict(pi=s["hidden"], vf=s["hidden"]), activation_fn=torch.nn.Tanh),
        )
        start = time.perf_counter()
        model.learn(steps, callback=watch.sb3_callback(check_per_rollout=True))  # once per rollout, like sparring
        elapsed = time.perf_counter() - start
        env.close()
        return model.num_timesteps / elapsed, watch

    return run_sparring, run_sb3


def compare(doc: str, env_id: str, metric: str, threshold: float, default_steps: int,
            run_sparring: Run, run_sb3: Run) -> None:
    """Parse ``--steps --seeds --threads``, run both sides per seed, print each run, then each side's median
    and interquartile range, and end with ``<metric> throughput_ratio=<...> steps_to_<threshold>_ratio=<...>
    seeds=<n>``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--steps", type=int, default=default_steps)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    goal = f"steps to {threshold:.0f}"
    print(f"{env_id}, {args.steps} env steps per run, torch {torch.__version__}, {args.threads} torch thread(s)")
    print(f"{'library':<10} {'seed':>4} {'env steps/s':>12} {goal:>14} {'final return':>13}")
    rows: dict[str, list[tuple[float, float, float]]] = {"sparring": [], "sb3": []}
    for seed in args.seeds:
        for name, run in (("sparring", run_sparring), ("sb3", run_sb3)):
            rate, watch = run(seed, args.steps)
            # a run that never reached the threshold counts as needing more than all its steps
            reached = float(watch.reached_at) if watch.reached_at is not None else math.inf
            rows[name].append((rate, reached, watch.final))
            print(f"{name:<10} {seed:>4} {rate:>12,.1f} {_steps(reached):>14} {watch.final:>13.1f}", flush=True)

    print(f"\nover {len(args.seeds)} seeds: median [interquartile range]")
    print(f"{'library':<10} {'env steps/s':>26} {goal:>26} {'final return':>26}")
    medians = {}
    for name, runs in rows.items():
        rates, reached, finals = (np.array(column) for column in zip(*runs))
        medians[name] = (float(np.median(rates)), float(np.median(reached)))
        print(f"{name:<10} {_spread(rates, '{:,.0f}'):>26} {_spread(reached, '{:,.0f}'):>26} "
              f"{_spread(finals, '{:.1f}'):>26}")
    throughput_ratio = medians["sparring"][0] / medians["sb3"][0]
    sb3_reached = medians["sb3"][1]
    steps_ratio = medians["sparring"][1] / sb3_reached if math.isfinite(sb3_reached) else float("nan")
    print(f"{metric} throughput_ratio={throughput_ratio:.3f} steps_to_{threshold:.0f}_ratio={steps_ratio:.3f} "
          f"seeds={len(args.seeds)}")


def _steps(reached: float) -> str:
    return "never" if math.isinf(reached) else f"{reached:.0f}"


def _spread(values: np.ndarray, fmt: str) -> str:
    """``median [q1, q3]``; a quartile that never reached the threshold shows as "never"."""
    def show(v: float) -> str:
        return "never" if math.isinf(v) else fmt.format(v)

    q1, q3 = np.percentile(values, [25, 75], method="nearest")  # observed values: a run that never got there stays inf
    return f"{show(float(np.median(values)))} [{show(q1)}, {show(q3)}]"
