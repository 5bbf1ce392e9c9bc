"""sparring PPO against Stable-Baselines3 PPO on CartPole-v1: same settings, same machine, one run.

Runs are interleaved (sparring seed 0, SB3 seed 0, sparring seed 1, ...) so
machine noise hits both sides alike. Both sides are checked for the return
threshold at the same granularity, once per rollout (256 env steps), on the
mean of the last 20 finished training episodes.

    python benchmarks/ppo_cartpole.py [--steps 100000] [--seeds 0 1 2] [--threads 1]

Last line: ``ppo_cartpole throughput_ratio=<...> steps_to_475_ratio=<...>``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_sb3 import ThresholdWatch, compare  # noqa: E402

SETTINGS = dict(  # RL Zoo's tuned CartPole-v1 settings
    num_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
    learning_rate=1e-3, clip_range=0.2, ent_coef=0.0, hidden=[64, 64],
)
THRESHOLD, WINDOW = 475.0, 20


def run_sparring(seed: int, steps: int) -> tuple[float, int | None]:
    from sparring.agents import PPO
    from sparring.envs.gymnasium import GymnasiumEnv

    s = SETTINGS
    env = GymnasiumEnv("CartPole-v1", num_envs=s["num_envs"])
    model = PPO(
        env, seed=seed, n_steps=s["n_steps"], batch_size=s["batch_size"], n_epochs=s["n_epochs"],
        gamma=s["gamma"], gae_lambda=s["gae_lambda"], learning_rate=s["learning_rate"], lr_schedule="linear",
        clip_range=s["clip_range"], clip_schedule="linear", ent_coef=s["ent_coef"], hidden_sizes=s["hidden"],
        activation="tanh",
    )
    watch = ThresholdWatch(THRESHOLD, WINDOW)
    start = time.perf_counter()
    model.learn(steps, callback=watch.sparring_callback("CartPole"))
    elapsed = time.perf_counter() - start
    env.close()
    return model.num_steps / elapsed, watch.reached_at


def run_sb3(seed: int, steps: int) -> tuple[float, int | None]:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env

    s = SETTINGS
    watch = ThresholdWatch(THRESHOLD, WINDOW)
    env = make_vec_env("CartPole-v1", n_envs=s["num_envs"], seed=seed)
    model = SB3PPO(
        "MlpPolicy", env, seed=seed, device="cpu", n_steps=s["n_steps"], batch_size=s["batch_size"],
        n_epochs=s["n_epochs"], gamma=s["gamma"], gae_lambda=s["gae_lambda"],
        learning_rate=lambda remaining: remaining * s["learning_rate"],
        clip_range=lambda remaining: remaining * s["clip_range"],
        ent_coef=s["ent_coef"], policy_kwargs=dict(net_arch=dict(pi=s["hidden"], vf=s["hidden"]), activation_fn=torch.nn.Tanh),
    )
    start = time.perf_counter()
    model.learn(steps, callback=watch.sb3_callback(check_per_rollout=True))  # once per rollout, like sparring
    elapsed = time.perf_counter() - start
    env.close()
    return model.num_timesteps / elapsed, watch.reached_at


def main() -> None:
    compare(__doc__, "CartPole-v1", "ppo_cartpole", THRESHOLD, 100_000, run_sparring, run_sb3)


if __name__ == "__main__":
    main()
