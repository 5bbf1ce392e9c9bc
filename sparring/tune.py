"""``sparring tune``: search a run config's settings on Ray Tune, by population-based training (PBT) by default.

Each trial trains a copy of the config with its own values of the ``tune:`` section's search space, in a
run folder of its own (see :mod:`sparring.tune_trial`). Layout of ``results/<run-id>/``::

    trial_00000/      a sparring run folder per trial: configuration.yaml (its latest values), checkpoints,
                      metrics.jsonl, tensorboard/, final.pt
    tune/             Ray Tune's experiment: each trial's reported results and checkpoints, PBT's logs
    best.yaml         the best trial's config, without the tune: section: ``sparring train best.yaml``

The best trial is the one whose last reported metric is best: under PBT, the settings it ended with.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from sparring.config import ConfigError, RunConfig, describe_validation_error
from sparring.tune_config import Distribution

if TYPE_CHECKING:
    from rich.table import Table

SCORE, STEPS, RESTORED_FROM = "score", "agent_steps", "restored_from"
"""What a trial reports to Tune at each summary: the metric, its agent steps, and whose checkpoint it continues."""


def trial_data(config: RunConfig) -> dict[str, Any]:
    """The config every trial starts from, as plain data (the tune: section is never part of it)."""
    return config.model_dump(mode="json")


def with_values(data: Mapping[str, Any], values: Mapping[str, Any]) -> RunConfig:
    """The config ``data`` with each dotted key of ``values`` set, validated (pydantic's ``ValidationError``).

    Raises ``ValueError`` for a key that runs through a value as if it were a section.
    """
    data = copy.deepcopy(dict(data))
    for path, value in values.items():
        *sections, leaf = path.split(".")
        node = data
        for depth, key in enumerate(sections):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"{'.'.join(sections[:depth + 1])} is a value, not a section with keys")
        node[leaf] = value
    return RunConfig.model_validate(data)


def check_search(config: RunConfig) -> None:
    """Refuse, before any trial starts, a search that cannot run: a key of the search space the config does not
    have, a value it refuses (each bound of a range, each listed value), a range over a whole-number setting, or
    a schedule longer than the training. Raises :class:`ConfigError` naming the key."""
    settings = config.tune
    data = trial_data(config)
    for path, distribution in settings.search_space.items():
        where = f"tune.search_space.{path}"
        if path.split(".")[0] == "tune":
            raise ConfigError(f"{where}: the tune: section itself is not searched")
        for value in distribution.extremes:
            try:
                trial = with_values(data, {path: value})
            except ValidationError as exc:
                raise ConfigError(f"{where}: {value!r} makes the config invalid: {describe_validation_error(exc)}"
                                  ) from None
            except ValueError as exc:
                raise ConfigError(f"{where}: not a config key ({exc})") from None
            if distribution.bounds is not None and type(_value_at(trial, path)) is int:
                raise ConfigError(f"{where}: a whole-number setting, and {distribution.kind} draws fractions; "
                                  f"list its values with choice: or grid:")
    steps = config.trainer.max_steps
    if settings.scheduler == "pbt" and settings.perturbation_interval > steps:
        raise ConfigError(f"tune.perturbation_interval: {settings.perturbation_interval} is more than "
                          f"trainer.max_steps ({steps}), so population-based training would never exploit")
    if settings.scheduler == "asha" and (settings.grace_period or 0) > steps:
        raise ConfigError(f"tune.grace_period: {settings.grace_period} is more than trainer.max_steps ({steps})")


def _value_at(config: RunConfig, path: str) -> Any:
    node: Any = config.model_dump()
    for key in path.split("."):
        node = node[key]
    return node


@dataclass
class TrialOutcome:
    """One trial as the search ended it."""

    name: str
    values: dict[str, Any]
    """Its values of the search space (under PBT, the last it trained with)."""
    score: float | None
    """Its last reported metric (None if it reported none)."""
    steps: int | None
    error: str | None

    @property
    def ranked(self) -> bool:
        """Whether it can be the best: it finished and reported its metric."""
        return self.error is None and self.score is not None


def run_search(config: RunConfig, path: Path, address: str | None = None) -> list[TrialOutcome]:
    """Run ``config``'s search into the run folder ``path``, on the Ray cluster at ``address`` (or on a local
    Ray started for it), and write the best trial's config to ``path/best.yaml``.

    Returns the trials, best first (those that failed or reported no metric last).
    """
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from sparring.tune_trial import run_trial

    settings = config.tune
    path.mkdir(parents=True, exist_ok=True)
    threads = max(1, int(settings.resources_per_trial.get("cpu", 1)))
    with _ray(address):
        trainable = tune.with_parameters(
            run_trial, data=trial_data(config), folder=str(path.resolve()), cwd=os.getcwd(), threads=threads,
            metric=settings.metric, behaviour=settings.behaviour)
        tuner = tune.Tuner(
            tune.with_resources(trainable, settings.resources_per_trial),
            param_space={key: _domain(d) for key, d in settings.search_space.items()},
            tune_config=tune.TuneConfig(
                metric=SCORE, mode=settings.mode, scheduler=_scheduler(config), num_samples=settings.num_samples,
                max_concurrent_trials=settings.max_concurrent_trials, reuse_actors=True,
                search_alg=BasicVariantGenerator(random_state=config.seed),  # the same config samples the same trials
                trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(
                # Every checkpoint is kept: under PBT a trial's checkpoints may be another trial's, which Tune's
                # num_to_keep would delete under the other trial's feet (Ray 2.60).
                name="tune", storage_path=str(path.resolve()), verbose=1),
        )
        results = tuner.fit()
    outcomes = [TrialOutcome(Path(r.path).name, {key: r.config[key] for key in settings.search_space},
                             r.metrics.get(SCORE), r.metrics.get(STEPS), None if r.error is None else str(r.error))
                for r in results]
    sign = 1 if settings.mode == "min" else -1
    outcomes.sort(key=lambda o: (not o.ranked, sign * (o.score or 0.0), o.name))
    if outcomes and outcomes[0].ranked:
        write_best(config, outcomes[0], path / "best.yaml")
    return outcomes


def write_best(config: RunConfig, best: TrialOutcome, path: Path) -> None:
    """The config with ``best``'s values, as ``sparring train`` reads it."""
    trial = with_values(trial_data(config), best.values)
    header = f"# the best trial of sparring tune ({best.name}: {config.tune.metric} {best.score:.4g})\n"
    path.write_text(header + yaml.safe_dump(trial.model_dump(mode="json"), sort_keys=False))


def trial_table(config: RunConfig, outcomes: list[TrialOutcome]) -> Table:
    """The trials, best first: their values, agent steps and metric."""
    from rich.table import Table

    keys = list(config.tune.search_space)
    short = [key.rsplit(".", 1)[-1] for key in keys]
    headers = [s if short.count(s) == 1 else k for s, k in zip(short, keys)]  # a full key where a short one is ambiguous
    table = Table("trial", *headers, "steps", config.tune.metric)
    for outcome in outcomes:
        score = "failed" if outcome.error else "-" if outcome.score is None else f"{outcome.score:.4g}"
        table.add_row(outcome.name, *(_show(outcome.values[k]) for k in keys),
                      "-" if outcome.steps is None else str(outcome.steps), score)
    return table


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _trial_name(trial) -> str:
    """``trial_00003``: Tune's trial id ends in the trial's number; the run folder and Tune's folder take it."""
    return f"trial_{trial.trial_id.rsplit('_', 1)[-1]}"


@contextmanager
def _ray(address: str | None) -> Iterator[None]:
    """Connected to the cluster at ``address`` ("auto": Ray's own discovery), or to a local Ray started for this
    search (None), and disconnected (the local Ray stopped) after."""
    import ray

    ray.init(address=address or "local", logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()


def _domain(distribution: Distribution):
    """A trial's first value of the setting, as Tune samples it."""
    from ray import tune

    low, high = distribution.bounds or (None, None)
    if distribution.loguniform is not None:
        return tune.loguniform(low, high)
    if distribution.uniform is not None:
        return tune.uniform(low, high)
    if distribution.choice is not None:
        return tune.choice(distribution.choice)
    return tune.grid_search(distribution.grid)


def _scheduler(config: RunConfig):
    """Tune's scheduler for the tune: section, its time the trials' agent steps."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    settings = config.tune
    if settings.scheduler == "asha":
        return ASHAScheduler(time_attr=STEPS, max_t=config.trainer.max_steps,
                             grace_period=settings.grace_period or min(config.trainer.summary_freq,
                                                                       config.trainer.max_steps))
    if settings.scheduler == "fifo":
        return FIFOScheduler()
    # A continuous setting is scaled by 0.8 or 1.2 (or drawn again), a listed one moves to a neighbouring value.
    mutations = {key: _domain(d) if d.bounds else list(d.choice or d.grid)
                 for key, d in settings.search_space.items()}
    bounds = {key: d.bounds for key, d in settings.search_space.items() if d.bounds}
    return PopulationBasedTraining(time_attr=STEPS, perturbation_interval=settings.perturbation_interval,
                                   hyperparam_mutations=mutations,
                                   custom_explore_fn=functools.partial(_within, bounds=bounds))


def _within(values: dict[str, Any], bounds: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """PBT's mutated values, each range's clipped to its bounds: checked against the config before the search,
    every value a trial trains with stays valid."""
    for key, (low, high) in bounds.items():
        values[key] = min(max(values[key], low), high)
    return values
