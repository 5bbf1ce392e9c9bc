"""Scale-out: does a slow game stop waiting for the learner, and do more copies on Ray train faster?

The arena engine (engines/python/examples/arena.py) with ``--tick-ms``: every tick costs that long, spent
waiting, as a build that renders or runs elsewhere would. PPO trains to the arena's threshold (Runner >= 3,
Turret >= 8, the bridge learning test's) with, in one run of this script:

- two local engines at 20 ms ticks, acting in lock-step with learning (sync), then overlapped with it, over
  three seeds, with an update that takes about half as long as collecting its rollout;
- 1, 2, 4 and 8 engines at 50 ms ticks, one per Ray env worker on a local Ray cluster, acting overlapped with
  learning (the demo's settings, so that the learner keeps up with eight workers on two cores).

For each: the engines' busy fraction (time in ticks / time, the rest spent waiting for the trainer), the
learner's idle fraction, the seconds a rollout took to collect and to learn from, agent steps per second, and
the wall time to the threshold (training only, not start-up). The last line::

    scale overlap_speedup=<median time to threshold, sync / overlapped> engine_busy=<median busy fraction,
          overlapped> ray_scaling_8=<agent steps/s with 8 Ray workers / with 1>

Run: ``python benchmarks/scale.py [--tick-ms 20] [--ray-tick-ms 50] [--steps 150000] [--seeds 3]`` (about 25
minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sparring.agents import PPO
from sparring.env_config import BridgeEnvConfig, ScaleConfig
from sparring.envs.factory import make_env

ARENA = str(Path(__file__).resolve().parents[1] / "engines/python/examples/arena.py")
THRESHOLD = {"Runner": 3.0, "Turret": 8.0}
DEMO = dict(n_steps=64, batch_size=512, n_epochs=4, learning_rate=1e-3, gamma=0.95, gae_lambda=0.9, ent_coef=0.01)
HEAVY = {**DEMO, "batch_size": 256, "n_epochs": 16, "hidden_sizes": [256, 256]}
"""The demo's settings (examples/arena.yaml), and with an update as long as half a rollout's collection at 20 ms ticks:
sync against overlapped needs a workload where both take a similar time, the Ray scaling one where the learner
keeps up with eight workers on this machine's two cores."""
WINDOW = 5_000  # agent steps whose finished episodes are averaged to test the threshold


def measure(engines: int, tick_ms: float, steps: int, overlap: bool, ray: bool, settings: dict, seed: int,
            logs: Path) -> dict[str, float]:
    """Train on ``engines`` arena engines to ``steps`` agent steps; what the run measured."""
    env_config = BridgeEnvConfig(source="bridge", executable=ARENA, args=["--tick-ms", str(tick_ms)],
                                 num_envs=engines, step_timeout=60, transport="tcp")
    scale = ScaleConfig(ray="local" if ray else None, worker_cpus=0, overlap=overlap)
    env = make_env(env_config, log_dir=logs, seed=seed, scale=scale)
    try:
        model = PPO(env, seed=seed, **settings)
        episodes = {name: [] for name in THRESHOLD}
        window = {"start": 0, "reached": None}
        idle, collect, update, busy, wall = [], [], [], 0.0, 0.0
        started = time.perf_counter()

        def on_update(model: PPO, report) -> None:
            nonlocal busy, wall
            for name, behaviour in report.behaviours.items():
                episodes[name].extend(behaviour.episode_returns.tolist())
            stats = next(iter(report.behaviours.values())).stats
            idle.append(stats["Performance/Learner Idle Fraction"])
            collect.append(stats["Performance/Collect Seconds"])
            update.append(stats["Performance/Update Seconds"])
            if model.num_steps - window["start"] < WINDOW:
                return
            stats = env.drain_stats()
            busy += sum(v for v, _ in stats.get("Engine/Busy Seconds", []))
            wall += sum(v for v, _ in stats.get("Engine/Wall Seconds", []))
            means = {name: np.mean(returns) if returns else -np.inf for name, returns in episodes.items()}
            if window["reached"] is None and all(means[name] >= THRESHOLD[name] for name in THRESHOLD):
                window["reached"] = time.perf_counter() - started
            window["start"] = model.num_steps
            for returns in episodes.values():
                returns.clear()

        model.learn(steps, callback=on_update, overlap=overlap)
        elapsed = time.perf_counter() - started
        return {"engine_busy": busy / max(wall, 1e-9), "learner_idle": float(np.mean(idle)),
                "collect_s": float(np.median(collect)), "update_s": float(np.median(update)),
                "steps_per_s": model.num_steps / elapsed,
                "time_to_threshold": np.nan if window["reached"] is None else window["reached"], "wall": elapsed}
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tick-ms", type=float, default=20.0, help="each arena tick's cost, sync against overlapped")
    parser.add_argument("--ray-tick-ms", type=float, default=50.0,
                        help="each tick's cost with Ray workers (eight engines and workers share this machine's CPUs; "
                             "on a cluster each has its own)")
    parser.add_argument("--steps", type=int, default=150_000, help="agent steps per run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of sync and overlapped (time to threshold: median)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8], help="Ray env worker counts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = [(f"local {mode} seed {seed}", 2, mode == "overlap", False, HEAVY, args.tick_ms, seed)
            for seed in range(args.seeds) for mode in ("sync", "overlap")]
    runs += [(f"ray {n} workers", n, True, True, DEMO, args.ray_tick_ms, 0) for n in args.workers]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, engines, overlap, ray, settings, tick_ms, seed in runs:
            rows[name] = r = measure(engines, tick_ms, args.steps, overlap, ray, settings, seed,
                                     Path(tmp) / name.replace(" ", "_"))
            print(f"{name:22} engine busy {r['engine_busy']:.2f}  learner idle {r['learner_idle']:.2f}  "
                  f"rollout: collect {r['collect_s']:.2f} s, update {r['update_s']:.2f} s  "
                  f"{r['steps_per_s']:6.0f} agent steps/s  threshold at {r['time_to_threshold']:6.1f} s  "
                  f"({r['wall']:.1f} s for {args.steps} steps)", flush=True)

    def median(mode: str, key: str) -> float:
        return float(np.median([rows[f"local {mode} seed {seed}"][key] for seed in range(args.seeds)]))

    print(f"sync against overlapped, medians over {args.seeds} seeds: time to threshold {median('sync', 'time_to_threshold'):.1f} "
          f"/ {median('overlap', 'time_to_threshold'):.1f} s, wall time for {args.steps} steps {median('sync', 'wall'):.1f} "
          f"/ {median('overlap', 'wall'):.1f} s")
    first, last = rows[f"ray {args.workers[0]} workers"], rows[f"ray {args.workers[-1]} workers"]
    print(f"scale overlap_speedup={median('sync', 'time_to_threshold') / median('overlap', 'time_to_threshold'):.2f} "
          f"engine_busy={median('overlap', 'engine_busy'):.2f} "
          f"ray_scaling_{args.workers[-1]}={last['steps_per_s'] / first['steps_per_s']:.2f}")


if __name__ == "__main__":
    main()
