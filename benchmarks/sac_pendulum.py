"""sparring SAC against Stable-Baselines3 SAC on Pendulum-v1: same settings, same machine, one run.

Runs are interleaved (sparring seed 0, SB3 seed 0, sparring seed 1, ...) so
machine noise hits both sides alike. Both take one gradient step per env step
after 100 random steps, with 256x256 ReLU MLPs, Adam at 1e-3, batch 256, a 1e6
replay buffer, tau 0.005, gamma 0.99 and automatic entropy tuning (target -1,
initial coefficient 1). Both are checked for the return threshold every 1000 env
steps, on the mean of the last 10 finished training episodes.

    python benchmarks/sac_pendulum.py [--steps 20000] [--seeds 0 1 2] [--threads 1]

Last line: ``sac_pendulum throughput_ratio=<...> steps_to_-200_ratio=<...>``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import deque

import numpy as np
import torch

SETTINGS = dict(learning_rate=1e-3, buffer_size=1_000_000, batch_size=256, tau=0.005, gamma=0.99,
                learning_starts=100, hidden=[256, 256])
THRESHOLD, WINDOW, CHECK_EVERY = -200.0, 10, 1000


class ThresholdWatch:
    """First multiple of CHECK_EVERY env steps at which the mean of the last WINDOW returns reaches THRESHOLD."""

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=WINDOW)
        self.reached_at: int | None = None

    def add(self, returns) -> None:
        self.recent.extend(float(r) for r in returns)

    def check(self, step: int) -> None:
        if (self.reached_at is None and step % CHECK_EVERY == 0 and len(self.recent) == WINDOW
                and np.mean(self.recent) >= THRESHOLD):
            self.reached_at = step


def run_sparring(seed: int, steps: int) -> tuple[float, int | None]:
    from sparring.agents import SAC
    from sparring.envs.gymnasium import GymnasiumEnv

    s = SETTINGS
    env = GymnasiumEnv("Pendulum-v1")
    model = SAC(
        env, seed=seed, learning_rate=s["learning_rate"], buffer_size=s["buffer_size"], batch_size=s["batch_size"],
        tau=s["tau"], gamma=s["gamma"], buffer_init_steps=s["learning_starts"], steps_per_update=1,
        hidden_sizes=s["hidden"], activation="relu", init_entcoef=1.0,
    )
    watch = ThresholdWatch()

    def on_step(m, report) -> None:
        watch.add(report.behaviours["Pendulum"].episode_returns)
        watch.check(m.num_steps)

    start = time.perf_counter()
    model.learn(steps, callback=on_step)
    elapsed = time.perf_counter() - start
    env.close()
    return model.num_steps / elapsed, watch.reached_at


def run_sb3(seed: int, steps: int) -> tuple[float, int | None]:
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    s = SETTINGS
    watch = ThresholdWatch()

    class Watch(BaseCallback):
        def _on_step(self) -> bool:
            watch.add([info["episode"]["r"] for info in self.locals["infos"] if "episode" in info])
            watch.check(self.num_timesteps)
            return True

    env = make_vec_env("Pendulum-v1", n_envs=1, seed=seed)
    model = SB3SAC(
        "MlpPolicy", env, seed=seed, device="cpu", learning_rate=s["learning_rate"], buffer_size=s["buffer_size"],
        batch_size=s["batch_size"], tau=s["tau"], gamma=s["gamma"], learning_starts=s["learning_starts"],
        train_freq=1, gradient_steps=1, ent_coef="auto", policy_kwargs=dict(net_arch=s["hidden"]),
    )
    start = time.perf_counter()
    model.learn(steps, callback=Watch())
    elapsed = time.perf_counter() - start
    env.close()
    return model.num_timesteps / elapsed, watch.reached_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"Pendulum-v1, {args.steps} env steps per run, torch {torch.__version__}, {args.threads} torch thread(s)")
    print(f"{'library':<10} {'seed':>4} {'env steps/s':>12} {'steps to -200':>14}")
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
    print(f"median steps to {THRESHOLD:.0f}: sparring {reached['sparring']}, sb3 {reached['sb3']}")
    throughput_ratio = rates["sparring"] / rates["sb3"]
    steps_ratio = reached["sparring"] / reached["sb3"] if np.isfinite(reached["sb3"]) else float("nan")
    print(f"sac_pendulum throughput_ratio={throughput_ratio:.3f} steps_to_-200_ratio={steps_ratio:.3f}")


if __name__ == "__main__":
    main()
