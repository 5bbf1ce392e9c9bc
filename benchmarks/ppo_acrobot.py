"""sparring PPO against Stable-Baselines3 PPO on Acrobot-v1 with RL Zoo's tuned settings: same machine, one run.

RL Zoo normalises Acrobot's observations and rewards (``normalize: true``: SB3's VecNormalize);
sparring does the same with ``normalize_obs`` and ``normalize_reward``. The learning rate is
constant on both sides, as in RL Zoo. Both sides are checked for the return threshold once per
rollout (16 x 256 env steps), on the mean of the last 20 finished training episodes.

    python benchmarks/ppo_acrobot.py [--steps 300000] [--seeds 0 1 2 3 4] [--threads 1]

Last line: ``ppo_acrobot throughput_ratio=<...> steps_to_-100_ratio=<...> seeds=<n>`` (ratios of the medians).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_sb3 import compare, ppo_runs  # noqa: E402

SETTINGS = dict(  # RL Zoo's tuned Acrobot-v1 settings (the rest are SB3's defaults)
    num_envs=16, n_steps=256, batch_size=64, gae_lambda=0.94, gamma=0.99, n_epochs=4,
    learning_rate=3e-4, clip_range=0.2, ent_coef=0.0, hidden=[64, 64],
)
THRESHOLD, WINDOW = -100.0, 20


def main() -> None:
    runs = ppo_runs("Acrobot-v1", "Acrobot", SETTINGS, THRESHOLD, WINDOW, schedule="constant", normalize=True)
    compare(__doc__, "Acrobot-v1", "ppo_acrobot", THRESHOLD, 300_000, *runs)


if __name__ == "__main__":
    main()
