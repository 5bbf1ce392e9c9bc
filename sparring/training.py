"""One training run from a config into a run folder: what ``sparring train`` and each ``sparring tune`` trial do.

The env is made, the trainer built (and loaded from a checkpoint), the run logged and checkpointed as it
learns, and its final state saved. The callers decide what a stop means: ``sparring train`` prints it and
exits 1, a Tune trial fails and Tune reports it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from sparring.config import ConfigError, RunConfig
from sparring.curriculum import Curriculum
from sparring.run import RunDirectory, RunLogger

if TYPE_CHECKING:
    from rich.console import Console

    from sparring.agents.checkpoint import Checkpointed
    from sparring.envs.base import MultiAgentEnv


class Trained(NamedTuple):
    """A finished run: the trained model and the last summary of each behaviour."""

    model: Checkpointed
    summary: dict[str, dict[str, float]]


class TrainingStopped(Exception):
    """Training ended before ``trainer.max_steps``: interrupted (a checkpoint was saved first) or by an error
    (the checkpoints written until then are intact)."""

    def __init__(self, step: int, cause: BaseException, saved: Path | None = None) -> None:
        super().__init__(f"training stopped at step {step}: {cause}")
        self.step, self.cause, self.saved = step, cause, saved


def train_run(config: RunConfig, run: RunDirectory, checkpoint: Path | None = None,
              on_summary: Callable[[Checkpointed, RunLogger], None] | None = None,
              console: Console | None = None) -> Trained:
    """Train ``config`` into ``run``, continuing from ``checkpoint`` (its step count, weights, optimiser and
    curricula) when given; the trainer is built with ``config``'s own hyperparameters either way.

    ``on_summary(model, logger)`` is called after every summary the logger writes; ``console`` is where the
    logger shows progress (a progress bar only on a terminal).

    Raises :class:`ConfigError` when the env cannot start or the trainer does not fit it (nothing trained),
    :class:`TrainingStopped` when learning ends early.
    """
    import torch

    from sparring.envs.factory import make_env

    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    try:
        env = make_env(config.env, log_dir=run.path / "engines", seed=config.seed, scale=config.scale)
    except Exception as exc:  # anything the env's own constructor raises is a problem with env: in the config
        raise ConfigError(f"env: cannot start {config.env.label!r}: {type(exc).__name__}: {exc}") from None
    with env:
        curriculum = Curriculum(config.environment_parameters, config.seed)
        try:
            model = build_trainer(config, env, run.path / "league")  # a trainer may refuse this env (a group it lacks)
            if checkpoint is not None:
                model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False))
                _resume_curriculum(curriculum, run.curriculum_state(checkpoint))
                print(f"resuming {run.path.name} from {checkpoint} at step {model.num_steps}", file=sys.stderr)
            curriculum.start(env)
        except ValueError as exc:  # the config's trainer or parameters do not fit this env, or this run
            raise ConfigError(str(exc)) from None
        run.write_config(config)
        logger = RunLogger(run, config, model, curriculum, console, on_summary)
        try:
            overlap = {"overlap": True} if config.scale.overlap else {}  # on-policy trainers only (RunConfig checks)
            model.learn(config.trainer.max_steps, callback=logger, **overlap)
        except KeyboardInterrupt as exc:
            raise TrainingStopped(model.num_steps, exc, run.save_checkpoint(model, config.trainer.keep_checkpoints,
                                                                           curriculum)) from exc
        except Exception as exc:
            raise TrainingStopped(model.num_steps, exc) from exc
        finally:
            logger.close()
        run.save_checkpoint(model, config.trainer.keep_checkpoints, curriculum)
        model.save(run.final)
    return Trained(model, logger.last_summary)


def build_trainer(config: RunConfig, env: MultiAgentEnv, league_dir: Path) -> Checkpointed:
    """The config's algorithm (PPO, MA-POCA or SAC); PPO or MA-POCA by self-play against a league in ``league_dir``
    with ``self_play``."""
    from sparring.agents import POCA, PPO, SAC

    options = dict(seed=config.seed, behaviour_settings=config.trainer.behaviours,
                   **config.trainer.hyperparameters.model_dump())
    algorithm = config.trainer.algorithm
    if algorithm == "sac":
        return SAC(env, **options)
    if config.trainer.self_play is None:
        return (POCA if algorithm == "poca" else PPO)(env, **options)
    from sparring.agents.selfplay import League
    from sparring.agents.selfplay.trainer import POCASelfPlay, SelfPlay

    trainer = POCASelfPlay if algorithm == "poca" else SelfPlay
    return trainer(env, League(config.trainer.self_play, league_dir, seed=config.seed), **options)


def _resume_curriculum(curriculum: Curriculum, state: Path) -> None:
    """Continue the curricula where the checkpoint left them (from their first lessons if it kept none)."""
    if state.is_file():
        curriculum.load_state_dict(json.loads(state.read_text()))
    elif curriculum.lessons:
        print(f"sparring: note: {state} is missing; the environment parameters start from their first lessons",
              file=sys.stderr)
