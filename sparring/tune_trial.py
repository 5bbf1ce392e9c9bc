"""One ``sparring tune`` trial, as Ray Tune runs it: a sparring run folder trained with the trial's values.

At every summary the trial reports its metric and a checkpoint to Tune. Tune hands a restarted trial a
checkpoint to continue from: its own (after a failure), or, when population-based training exploits,
another trial's, whose weights, optimiser and step count it loads into a trainer built with its own new
values. The trial's run folder then keeps that checkpoint as its newest, and its reports name the trial it
came from.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.result import DONE
from rich.console import Console

from sparring.run import RunDirectory, RunLogger
from sparring.training import Trained, train_run
from sparring.tune import RESTORED_FROM, SCORE, STEPS, with_values


def run_trial(values: dict[str, Any], data: dict[str, Any], folder: str, cwd: str, threads: int, metric: str,
              behaviour: str | None) -> None:
    """Train the config ``data`` with the trial's ``values`` in ``folder/<trial name>``, in the working
    directory ``cwd`` (where ``sparring tune`` started, if this machine has it: relative paths in the config
    mean what they mean to ``sparring train``) with ``threads`` torch threads unless the config sets them."""
    if os.path.isdir(cwd):
        os.chdir(cwd)  # Tune starts a trial in a folder of its own
    config = with_values(data, values)
    config = config.model_copy(update={"torch_threads": config.torch_threads or threads})
    name = tune.get_context().get_trial_name()
    run = RunDirectory(Path(folder) / name)
    checkpoint, restored_from = None, ""
    given = tune.get_checkpoint()
    if given is not None:
        # The trial goes on from this checkpoint: its own older ones (a lineage PBT dropped) must not outrank it.
        shutil.rmtree(run.checkpoints, ignore_errors=True)
        run.checkpoints.mkdir(parents=True)
        with given.as_directory() as directory:
            for file in Path(directory).glob("step_*"):
                shutil.copy(file, run.checkpoints)
        checkpoint, restored_from = run.latest_checkpoint(), given.get_metadata().get("trial", "")
        print(f"{name}: continuing from {restored_from}'s checkpoint with {values}", file=sys.stderr)
    reporter = _Reporter(name, metric, behaviour, restored_from, config.trainer.max_steps)
    trained = train_run(config, run, checkpoint, on_summary=reporter,
                        console=Console(stderr=True, force_terminal=False))
    reporter.report_final(trained)


class _Reporter:
    """Reports each summary's metric to Tune, with the trial's checkpoint as of it."""

    def __init__(self, trial: str, metric: str, behaviour: str | None, restored_from: str, max_steps: int) -> None:
        self.trial, self.metric, self.behaviour, self.restored_from = trial, metric, behaviour, restored_from
        self.max_steps = max_steps

    def __call__(self, model, logger: RunLogger) -> None:
        score = self.score(logger.last_summary)
        if score is None or model.num_steps >= self.max_steps:
            return  # nothing to compare the trial by yet; or the last summary, reported once the run is saved
        with tempfile.TemporaryDirectory() as directory:
            run = RunDirectory(directory)
            run.save_checkpoint(model, 1, logger.curriculum)
            checkpoint = tune.Checkpoint.from_directory(str(run.checkpoints))
            checkpoint.set_metadata({"trial": self.trial})
            # Tune copies the checkpoint to its storage before report returns.
            tune.report(self.metrics(score, model.num_steps), checkpoint=checkpoint)

    def report_final(self, trained: Trained) -> None:
        """The last summary, as the trial's final result: Tune then stops the trial, so no scheduler acts on it
        (PBT would otherwise restart a finished trial from another's checkpoint)."""
        score = self.score(trained.summary)
        if score is not None:
            tune.report({**self.metrics(score, trained.model.num_steps), DONE: True})

    def metrics(self, score: float, steps: int) -> dict[str, Any]:
        return {SCORE: score, STEPS: steps, RESTORED_FROM: self.restored_from}

    def score(self, summary: dict[str, dict[str, float]]) -> float | None:
        """The metric of ``behaviour``, or the mean over every behaviour; None while one of them lacks it."""
        if self.behaviour is not None and self.behaviour not in summary:
            raise ValueError(f"tune.behaviour: {self.behaviour!r} is not a behaviour of this env "
                             f"({', '.join(sorted(summary))})")
        values = [metrics.get(self.metric, math.nan) for name, metrics in summary.items()
                  if self.behaviour in (None, name)]
        return None if any(not math.isfinite(v) for v in values) else sum(values) / len(values)
