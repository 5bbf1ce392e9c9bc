"""Sparse rewards and demonstrations: PPO alone, PPO + curiosity, PPO + RND and PPO + GAIL/BC, against
Stable-Baselines3's PPO alone, on the locked corridor (tests/toy_envs.py): one-hot cells, a different key
action per door, any other action a step back, +1 at the far end and nothing else.

- Exploration: 48 doors, 96 steps per episode, ``--steps`` agent steps per run (1M); success is the fraction
  of 100 fresh episodes the greedy policy finishes. Random play: none of 200,000 episodes passed door 16.
- Imitation: 24 doors, where PPO alone gets through now and then: agent steps until 80% of the episodes an
  update saw reached the goal (within ``--imitation-steps``; never counts as the budget, so a ratio against a
  PPO that never got there is an upper bound), PPO alone against GAIL + behavioural cloning learning from
  twenty of the scripted expert's episodes, recorded by ``sparring record`` from the corridor game
  (tests/engines/corridor_game.py) over a loopback bridge, as a person's playing would be.

Every run: 16 copies, 128 steps per rollout, batch 256, 4 epochs, learning rate 1e-3 decaying linearly to 0,
entropy 0.01, tanh 64x64 (SB3 with the same). Figures are medians over the seeds.

    python benchmarks/rewards.py [--seeds 0 1 2] [--steps 1000000] [--imitation-steps 200000]

Last line: ``rewards ppo_success=<..> curiosity_success=<..> rnd_success=<..> gail_steps_ratio=<GAIL+BC's steps to
the threshold / PPO alone's>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from toy_envs import corridor, locked_corridor_success, train_corridor  # noqa: E402

from sparring.cli import main as sparring_cli  # noqa: E402

SIGNALS = {
    "ppo": {},
    "curiosity": {"reward_signals": {"extrinsic": {}, "curiosity": {"strength": 0.02}}},
    "rnd": {"reward_signals": {"extrinsic": {}, "rnd": {"strength": 0.02}}},
}


class SB3Greedy:
    """Stable-Baselines3's model behind sparring's ``predict``, for the task's success helper."""

    def __init__(self, model) -> None:
        self.model = model

    def predict(self, obs, behaviour=None, action_mask=None, deterministic=True, agent_ids=None):
        return self.model.predict(obs, deterministic=deterministic)[0]


def sb3_success(length: int, seed: int, steps: int) -> float:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("LockedCorridor-v0", n_envs=16, seed=seed, env_kwargs=corridor(length))
    model = SB3PPO("MlpPolicy", env, seed=seed, device="cpu", n_steps=128, batch_size=256, n_epochs=4,
                   learning_rate=lambda remaining: remaining * 1e-3, ent_coef=0.01,
                   policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh))
    model.learn(steps)
    return locked_corridor_success(SB3Greedy(model), 100, seed=1000 + seed, **corridor(length))


def record_expert(folder: Path, length: int) -> Path:
    """Twenty expert episodes on ``length``-door corridors, recorded through ``sparring record``."""
    config = folder / "corridors.yaml"
    config.write_text(yaml.safe_dump({
        "env": {"source": "bridge", "executable": str(ROOT / "tests" / "engines" / "corridor_game.py"),
                "transport": "tcp", "args": ["--copies", "4", "--length", str(length)]},
        "trainer": {"max_steps": 1000},
    }))
    out = folder / "expert.demo"
    if sparring_cli(["record", str(config), "--out", str(out), "--episodes", "20"]) != 0:
        raise SystemExit("recording the expert failed")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--imitation-steps", type=int, default=200_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    explore, imitate = 48, 24
    success: dict[str, list[float]] = {name: [] for name in [*SIGNALS, "sb3"]}
    print(f"exploration: {explore} doors, {args.steps:,} steps per run; greedy success on 100 fresh episodes")
    print(f"{'run':<10} {'seed':>4} {'success':>8} {'wall s':>7}")
    for seed in args.seeds:
        for name, settings in SIGNALS.items():
            start = time.perf_counter()
            model, _ = train_corridor(explore, seed, args.steps, **settings)
            success[name].append(locked_corridor_success(model, 100, seed=1000 + seed, **corridor(explore)))
            print(f"{name:<10} {seed:>4} {success[name][-1]:>8.3f} {time.perf_counter() - start:>7.0f}", flush=True)
        start = time.perf_counter()
        success["sb3"].append(sb3_success(explore, seed, args.steps))
        print(f"{'sb3':<10} {seed:>4} {success['sb3'][-1]:>8.3f} {time.perf_counter() - start:>7.0f}", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        demo = str(record_expert(Path(folder), imitate))
        imitation = {"reward_signals": {"extrinsic": {}, "gail": {"strength": 0.01, "demo_path": demo}},
                     "behavioral_cloning": {"demo_path": demo, "strength": 0.5}}
        print(f"\nimitation: {imitate} doors; agent steps until 80% of an update's episodes reach the goal "
              f"(budget {args.imitation_steps:,}, counted where never)")
        print(f"{'seed':>4} {'ppo':>9} {'gail+bc':>9}")
        reached: dict[str, list[float]] = {"ppo": [], "gail": []}
        for seed in args.seeds:
            for name, settings in (("ppo", {}), ("gail", imitation)):
                _, steps = train_corridor(imitate, seed, args.imitation_steps, **settings)
                reached[name].append(args.imitation_steps if steps is None else steps)
            print(f"{seed:>4} {reached['ppo'][-1]:>9,.0f} {reached['gail'][-1]:>9,.0f}", flush=True)

    median = {name: float(np.median(rates)) for name, rates in success.items()}
    ppo_steps, gail_steps = np.median(reached["ppo"]), np.median(reached["gail"])
    ratio = gail_steps / ppo_steps
    print(f"\nsparring PPO alone {median['ppo']:.3f}, SB3 PPO alone {median['sb3']:.3f}; curiosity {median['curiosity']:.3f}, "
          f"RND {median['rnd']:.3f} (targets: >= 0.8 where PPO < 0.2)")
    print(f"GAIL + BC reached the threshold in {ratio:.3f}x PPO alone's steps (target <= 0.5)")
    print(f"rewards ppo_success={median['ppo']:.3f} curiosity_success={median['curiosity']:.3f} "
          f"rnd_success={median['rnd']:.3f} gail_steps_ratio={ratio:.3f} sb3_ppo_success={median['sb3']:.3f}")


if __name__ == "__main__":
    main()
