"""sparring SAC against Stable-Baselines3 SAC on Pendulum-v1: same settings, same machine, one run.

Runs are interleaved (sparring seed 0, SB3 seed 0, sparring seed 1, ...) so
machine noise hits both sides alike. Both take one gradient step per env step
after 100 random steps, with 256x256 ReLU MLPs, Adam at 1e-3, batch 256, a 1e6
replay buffer, tau 0.005, gamma 0.99 and automatic entropy tuning (target -1,
initial coefficient 1). Both are checked for the return threshold every 1000 env
steps, on the mean of the last 10 finished training episodes.

    python benchmarks/sac_pendulum.py [--steps 20000] [--seeds 0 1 2 3 4] [--threads 1]

Last line: ``sac_pendulum throughput_ratio=<...> steps_to_-200_ratio=<...> seeds=<n>`` (ratios of the medians over seeds).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_sb3 import ThresholdWatch, compare  # noqa: E402

SETTINGS = dict(learning_rate=1e-3, buffer_size=1_000_000, batch_size=256, tau=0.005, gamma=0.99,
                learning_starts=100, hidden=[256, 256])
THRESHOLD, WINDOW, CHECK_EVERY = -200.0, 10, 1000


def run_sparring(seed: int, steps: int) -> tuple[float, ThresholdWatch]:
    from sparring.agents import SAC
    from sparring.envs.gymnasium import GymnasiumEnv

    s = SETTINGS
    env = GymnasiumEnv("Pendulum-v1")
    model = SAC(
        env, seed=seed, learning_rate=s["learning_rate"], buffer_size=s["buffer_size"], batch_size=s["batch_size"],
        tau=s["tau"], gamma=s["gamma"], buffer_init_steps=s["learning_starts"], steps_per_update=1,
        hidden_sizes=s["hidden"], activation="relu", init_entcoef=1.0,
    )
    watch = ThresholdWatch(THRESHOLD, WINDOW, CHECK_EVERY)
    start = time.perf_counter()
    model.learn(steps, callback=watch.sparring_callback("Pendulum"))
    elapsed = time.perf_counter() - start
    env.close()
    return model.num_steps / elapsed, watch


def run_sb3(seed: int, steps: int) -> tuple[float, ThresholdWatch]:
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.env_util import make_vec_env

    s = SETTINGS
    watch = ThresholdWatch(THRESHOLD, WINDOW, CHECK_EVERY)
    env = make_vec_env("Pendulum-v1", n_envs=1, seed=seed)
    model = SB3SAC(
        "MlpPolicy", env, seed=seed, device="cpu", learning_rate=s["learning_rate"], buffer_size=s["buffer_size"],
        batch_size=s["batch_size"], tau=s["tau"], gamma=s["gamma"], learning_starts=s["learning_starts"],
        train_freq=1, gradient_steps=1, ent_coef="auto", policy_kwargs=dict(net_arch=s["hidden"]),
    )
    start = time.perf_counter()
    model.learn(steps, callback=watch.sb3_callback())
    elapsed = time.perf_counter() - start
    env.close()
    return model.num_timesteps / elapsed, watch


def main() -> None:
    compare(__doc__, "Pendulum-v1", "sac_pendulum", THRESHOLD, 20_000, run_sparring, run_sb3)


if __name__ == "__main__":
    main()
