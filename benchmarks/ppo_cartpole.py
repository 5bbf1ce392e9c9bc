"""sparring PPO against Stable-Baselines3 PPO on CartPole-v1: same settings, same machine, one run.

RL Zoo's tuned CartPole-v1 settings on both sides, learning rate and clip range decaying
linearly to 0. Runs are interleaved (sparring seed 0, SB3 seed 0, sparring seed 1, ...) so
machine noise hits both sides alike. Both sides are checked for the return threshold at the
same granularity, once per rollout (256 env steps), on the mean of the last 20 finished
training episodes.

    python benchmarks/ppo_cartpole.py [--steps 100000] [--seeds 0 1 2 3 4] [--threads 1]

Last line: ``ppo_cartpole throughput_ratio=<...> steps_to_475_ratio=<...> seeds=<n>`` (ratios of the medians over seeds).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_sb3 import compare, ppo_runs  # noqa: E402

SETTINGS = dict(  # RL Zoo's tuned CartPole-v1 settings
    num_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
    learning_rate=1e-3, clip_range=0.2, ent_coef=0.0, hidden=[64, 64],
)
THRESHOLD, WINDOW = 475.0, 20


def main() -> None:
    runs = ppo_runs("CartPole-v1", "CartPole", SETTINGS, THRESHOLD, WINDOW, schedule="linear")
    compare(__doc__, "CartPole-v1", "ppo_cartpole", THRESHOLD, 100_000, *runs)


if __name__ == "__main__":
    main()
