"""A training run's folder on disk: checkpoints, metrics (JSONL + TensorBoard) and live progress.

Layout of ``results/<run-id>/``, following ML-Agents' conventions::

    configuration.yaml        the resolved config the run was started with
    checkpoints/step_N.pt     the newest ``keep_checkpoints`` full trainer states
    checkpoints/step_N.curriculum.json   where the environment parameters' curricula stood then
    metrics.jsonl             one JSON object per summary and behaviour
    tensorboard/<Behaviour>/  TensorBoard event files, ML-Agents tag names
    final.pt                  the trainer state at the end of training
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sparring.agents.episodes import UpdateReport
from sparring.agents.ppo import PPO
from sparring.agents.sac import SAC
from sparring.config import RunConfig
from sparring.curriculum import Curriculum
from sparring.envs.base import GameStats

_CHECKPOINT = re.compile(r"step_(\d+)\.pt$")


class RunDirectory:
    """Paths inside one run folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.metrics = self.path / "metrics.jsonl"
        self.tensorboard = self.path / "tensorboard"
        self.config = self.path / "configuration.yaml"
        self.final = self.path / "final.pt"

    def write_config(self, config: RunConfig) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.config.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))

    def checkpoint_files(self) -> list[Path]:
        """Checkpoints oldest first."""
        found = [(int(m.group(1)), p) for p in self.checkpoints.glob("step_*.pt") if (m := _CHECKPOINT.search(p.name))]
        return [p for _, p in sorted(found)]

    def latest_checkpoint(self) -> Path | None:
        files = self.checkpoint_files()
        return files[-1] if files else None

    def curriculum_state(self, checkpoint: Path) -> Path:
        """Where the curricula's state as of ``checkpoint`` is kept (beside it)."""
        return checkpoint.with_suffix(".curriculum.json")

    def save_checkpoint(self, model: PPO | SAC, keep: int, curriculum: Curriculum) -> Path:
        path = self.checkpoints / f"step_{model.num_steps}.pt"
        if curriculum.lessons:  # written first: a checkpoint never lacks its curricula
            state = self.curriculum_state(path)
            state.parent.mkdir(parents=True, exist_ok=True)
            tmp = state.with_suffix(".tmp")
            tmp.write_text(json.dumps(curriculum.state_dict()))
            tmp.replace(state)
        model.save(path)
        league = getattr(model, "league", None)
        if league is not None:  # self-play: league.json for `sparring league`, as of this checkpoint
            league.save()
        for old in self.checkpoint_files()[:-keep]:
            old.unlink()
            self.curriculum_state(old).unlink(missing_ok=True)
        return path


class RunLogger:
    """The ``learn`` callback of a CLI run: the curricula's lessons, summaries, checkpoints and a progress display.

    ``on_summary(model, logger)`` is called after each summary (a Tune trial reports it to Tune).

    Episodes finished between summaries are pooled, so ``Environment/Cumulative
    Reward`` is the mean over every episode that ended in the interval; the
    trainer's statistics (losses, entropy, ...) are averaged over the updates
    reported in it, as ML-Agents' summaries are (SAC reports after every env step).
    Every summary carries each environment parameter's lesson number.
    """

    def __init__(self, run: RunDirectory, config: RunConfig, model: PPO | SAC, curriculum: Curriculum,
                 console: Console | None = None,
                 on_summary: Callable[[PPO | SAC, RunLogger], None] | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # slow import, only when a run logs

        self.run = run
        self.curriculum = curriculum
        self.on_summary = on_summary
        # Counters a fleet of game instances keeps (restarts, crashes, timeouts, lost agents), logged as Engines/...
        self._env_counters = getattr(model.env, "metrics", None)
        self._env_writer = SummaryWriter(str(run.tensorboard / "Engines")) if self._env_counters is not None else None
        self.trainer = config.trainer
        self._league = getattr(model, "league", None)  # self-play runs log the learners' Elo (as ML-Agents does), gate
        self.console = console or Console(stderr=True)
        self.writers = {name: SummaryWriter(str(run.tensorboard / name)) for name in model.specs}
        self._metrics_file = run.metrics.open("a")
        self._episodes: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {name: [] for name in model.specs}
        self._stats: dict[str, list[dict[str, float]]] = {name: [] for name in model.specs}
        self._next_summary = _next_multiple(model.num_steps, self.trainer.summary_freq)
        self._next_checkpoint = _next_multiple(model.num_steps, self.trainer.checkpoint_interval)
        self._last_time, self._last_step = time.perf_counter(), model.num_steps
        self.last_summary: dict[str, dict[str, float]] = {}
        self._progress: Progress | None = None
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} steps/s  mean return {task.fields[ret]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._task = self._progress.add_task(
                "train", total=self.trainer.max_steps, completed=model.num_steps, rate="-", ret="-"
            )
            self._progress.start()

    def __call__(self, model: PPO | SAC, report: UpdateReport) -> None:
        for parameter in self.curriculum(model, report):
            self.console.print(f"step {report.step}: {self.curriculum.describe(parameter)}", highlight=False,
                               soft_wrap=True)
        for name, behaviour in report.behaviours.items():
            self._episodes[name].append(
                (behaviour.episode_returns, behaviour.episode_lengths, behaviour.episode_truncated))
            if behaviour.stats:
                self._stats[name].append(behaviour.stats)
        if self._progress is not None:
            self._progress.update(self._task, completed=report.step)
        if report.step >= self._next_summary or report.step >= self.trainer.max_steps:
            self._summarise(model, report)
            self._next_summary = _next_multiple(report.step, self.trainer.summary_freq)
        if report.step >= self._next_checkpoint:
            self.run.save_checkpoint(model, self.trainer.keep_checkpoints, self.curriculum)
            self._next_checkpoint = _next_multiple(report.step, self.trainer.checkpoint_interval)

    def _summarise(self, model: PPO | SAC, report: UpdateReport) -> None:
        now = time.perf_counter()
        rate = (report.step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, report.step
        lines = []
        game_values = model.env.drain_stats()  # the game keeps them until asked: once per summary, off the step path
        game_stats = summarise_game_stats(game_values)
        for name in report.behaviours:
            returns, lengths, truncated = (np.concatenate(column) for column in zip(*self._episodes[name]))
            self._episodes[name].clear()
            metrics = _means(self._stats[name])
            self._stats[name].clear()
            metrics.update(episode_metrics(returns, lengths, truncated))
            metrics.update(game_stats)  # as ML-Agents does, every behaviour's summary carries the game's statistics
            for tag, values in game_values.items():
                if values[-1][1] == "histogram":
                    self.writers[name].add_histogram(tag, np.array([v for v, _ in values]), report.step)
            recorded = model.learners[name].recorded_obs
            if len(recorded):  # the newest raw observations the learner saw
                metrics["Diagnostics/Observation Max RMS"] = float(recorded.square().mean(0).sqrt().max())
            metrics["Environment/Episodes"] = float(len(returns))
            metrics.update(self.curriculum.lesson_metrics())
            metrics["Performance/Steps per Second"] = rate
            if self._league is not None:
                metrics.update(self._league.metrics(name))
            self._record(self.writers[name], name, metrics, report.step)
            self.last_summary[name] = metrics
            mean = metrics.get("Environment/Cumulative Reward")
            lines.append(f"{name} mean return {mean:.3f} ({len(returns)} episodes)" if mean is not None else f"{name} (no finished episodes)")
        if self._env_writer is not None:
            counters = {f"Engines/{key.replace('_', ' ').title()}": float(v) for key, v in self._env_counters.items()}
            self._record(self._env_writer, None, counters, report.step)
        self._metrics_file.flush()
        for writer in self._all_writers():
            writer.flush()
        if self._progress is not None:
            first = next(iter(self.last_summary.values()))
            ret = first.get("Environment/Cumulative Reward")
            self._progress.update(self._task, rate=f"{rate:,.0f}", ret="-" if ret is None else f"{ret:.2f}")
        else:
            print(f"step {report.step:>9} | {rate:8.0f} steps/s | " + " | ".join(lines), file=sys.stderr, flush=True)
        if self.on_summary is not None:
            self.on_summary(model, self)

    def _record(self, writer, behaviour: str | None, metrics: dict[str, float], step: int) -> None:
        """One summary to TensorBoard (finite values) and to metrics.jsonl."""
        for tag, value in metrics.items():
            if math.isfinite(value):
                writer.add_scalar(tag, value, step)
        self._metrics_file.write(json.dumps({"step": step, "behaviour": behaviour, **metrics}) + "\n")

    def _all_writers(self) -> list:
        return [*self.writers.values(), *([self._env_writer] if self._env_writer is not None else [])]

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        for writer in self._all_writers():
            writer.close()
        self._metrics_file.close()


def episode_metrics(returns: np.ndarray, lengths: np.ndarray, truncated: np.ndarray) -> dict[str, float]:
    """What a summary says of the episodes that ended in it: ML-Agents' return and length, and the spread,
    time limits and reward rates ``sparring doctor`` reads (under ``Diagnostics/``)."""
    if not len(returns):
        return {}
    rates = returns / np.maximum(lengths, 1)  # reward per decision, each episode
    metrics = {
        "Environment/Cumulative Reward": float(returns.mean()),
        "Environment/Episode Length": float(lengths.mean()),
        "Diagnostics/Return Std": float(returns.std()),
        "Diagnostics/Truncated Fraction": float(truncated.mean()),
        "Diagnostics/Reward Per Step": float(np.abs(rates).mean()),
    }
    if not truncated.all():
        metrics["Diagnostics/Best Terminated Reward Per Step"] = float(rates[~truncated].max())
    if truncated.any():
        metrics["Diagnostics/Truncated Reward Per Step"] = float(rates[truncated].mean())
    return metrics


def summarise_game_stats(stats: GameStats) -> dict[str, float]:
    """One figure per statistic of the summary period, by the aggregation the game asked for (its last value's)."""
    out = {}
    for name, values in stats.items():
        numbers = np.array([v for v, _ in values], np.float64)
        how = values[-1][1]
        out[name] = float(numbers[-1] if how == "most_recent" else numbers.sum() if how == "sum" else numbers.mean())
    return out


def _means(reports: list[dict[str, float]]) -> dict[str, float]:
    """Each statistic's mean over the reports that have it."""
    values: dict[str, list[float]] = {}
    for stats in reports:
        for key, value in stats.items():
            values.setdefault(key, []).append(value)
    return {key: float(np.mean(v)) for key, v in values.items()}


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every
