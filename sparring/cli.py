"""The ``sparring`` command line: a thin layer over the Python API.

    sparring train CONFIG.yaml [--run-id ID] [--resume | --force] [--results-dir DIR] [--seed N]

Exit status: 0 done, 1 training stopped by an error (checkpoints kept), 2 the
command or its config was wrong (nothing written).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

USAGE_ERROR = 2


class UsageError(Exception):
    """Something the user asked for cannot be done; exits 2 with the message."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparring", description="Train game NPCs that learn.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train the behaviours of an env described by a YAML config")
    train.add_argument("config", type=Path, help="run config (YAML)")
    train.add_argument("--run-id", help="name of the run folder (default: the config file's name)")
    train.add_argument("--results-dir", type=Path, default=Path("results"), help="where run folders go")
    train.add_argument("--seed", type=int, help="override the config's seed")
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run from its newest checkpoint")
    mode.add_argument("--force", action="store_true", help="delete an existing run folder of the same id first")
    args = parser.parse_args(argv)
    try:
        return _train(args)
    except UsageError as exc:
        print(f"sparring: error: {exc}", file=sys.stderr)
        return USAGE_ERROR


def _train(args: argparse.Namespace) -> int:
    from sparring.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if args.seed is not None:
        config.seed = args.seed
    run_id = args.run_id or args.config.stem
    run_path = args.results_dir / run_id

    from sparring.run import RunDirectory

    run = RunDirectory(run_path)
    checkpoint = None
    if args.resume:
        checkpoint = run.latest_checkpoint()
        if checkpoint is None:
            raise UsageError(f"--resume: {run_path} has no checkpoint to resume from")
    elif run_path.exists():
        if not args.force:
            raise UsageError(
                f"run {run_id!r} already exists at {run_path}; pass --resume to continue it or --force to overwrite it"
            )

    import torch

    from sparring.agents import PPO
    from sparring.envs.factory import make_env
    from sparring.run import RunLogger

    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    try:
        env = make_env(config.env)
    except Exception as exc:  # anything the env's own constructor raises is a problem with env: in the config
        raise UsageError(f"{args.config}: env: cannot build {config.env.id!r}: {type(exc).__name__}: {exc}") from None
    with env:
        model = PPO(env, seed=config.seed, **config.trainer.hyperparameters.model_dump())
        if checkpoint is not None:
            model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False))
            print(f"resuming {run_id} from {checkpoint} at step {model.num_steps}", file=sys.stderr)
        if args.force and run_path.exists():
            shutil.rmtree(run_path)  # only now that the new run is known to start
        run.write_config(config)
        logger = RunLogger(run, config, model)
        try:
            model.learn(config.trainer.max_steps, callback=logger)
        except KeyboardInterrupt:
            path = run.save_checkpoint(model, config.trainer.keep_checkpoints)
            logger.close()
            print(f"interrupted at step {model.num_steps}; saved {path} (continue with --resume)", file=sys.stderr)
            return 1
        except Exception as exc:
            logger.close()
            latest = run.latest_checkpoint()
            kept = f"; checkpoints are intact, newest {latest}" if latest else ""
            print(f"sparring: training stopped at step {model.num_steps}: {exc}{kept}", file=sys.stderr)
            return 1
        logger.close()
        run.save_checkpoint(model, config.trainer.keep_checkpoints)
        model.save(run.final)
    _print_summary(run, logger.last_summary, model.num_steps)
    return 0


def _print_summary(run, summary: dict[str, dict[str, float]], steps: int) -> None:
    print(f"trained {steps} steps; outputs in {run.path}/")
    for name, metrics in summary.items():
        ret = metrics.get("Environment/Cumulative Reward")
        print(f"  {name}: mean return {ret:.3f}" if ret is not None else f"  {name}: no finished episodes")
    print(f"  final model: {run.final}\n  metrics: {run.metrics}\n  tensorboard --logdir {run.tensorboard}")


if __name__ == "__main__":
    sys.exit(main())
