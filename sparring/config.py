"""The run configuration file: its schema, and loading it with errors a person can act on.

Example::

    env:
      source: gymnasium          # gymnasium | pettingzoo | bridge | unity
      id: CartPole-v1
      num_envs: 8
    trainer:
      algorithm: ppo             # ppo | sac | poca; hyperparameters are checked against its settings
      max_steps: 100000
      hyperparameters:
        learning_rate: 0.001
        n_steps: 32
    environment_parameters:      # optional: numbers, samplers, curricula (see sparring.curriculum)
      gravity: 9.81
    seed: 0

Unknown keys are errors, not silently ignored: a typo in a hyperparameter name
would otherwise train with the default and nobody would know.

An ML-Agents trainer config (top-level ``behaviors:``) is accepted as it is and
translated, see :mod:`sparring.mlagents_config`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from sparring.agents import ppo, sac
from sparring.agents.poca import POCASettings
from sparring.agents.ppo import PPOSettings
from sparring.agents.sac import SACSettings
from sparring.agents.selfplay.league import LeagueSettings
from sparring.curriculum import CURRICULUM, NUMBER, SAMPLER, SAMPLER_TYPES, EnvironmentParameter
from sparring.env_config import EnvConfig, ScaleConfig, _Strict
from sparring.tune_config import TuneConfig

__all__ = ["ConfigError", "EnvConfig", "LoadedConfig", "RunConfig", "TrainerConfig", "load_config", "load_run_config"]


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading numbers as YAML 1.2 does: ``1.0e7`` and ``5e5`` are floats, not the
    strings YAML 1.1 makes of them (ML-Agents config files write ``max_steps: 1.0e7``)."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    """A config file's data (see :class:`_ConfigLoader`)."""
    return yaml.load(text, Loader=_ConfigLoader)


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message is one line naming file and key."""


ALGORITHMS = {"ppo": (PPOSettings, ppo.override_settings), "sac": (SACSettings, sac.override_settings),
              "poca": (POCASettings, ppo.override_settings)}
"""``trainer.algorithm`` -> its hyperparameter settings and how one behaviour's overrides apply to them."""


class TrainerConfig(_Strict):
    """How to learn (names follow ML-Agents' trainer config where the meaning matches)."""

    algorithm: Literal["ppo", "sac", "poca"] = "ppo"
    max_steps: int = Field(ge=1, description="Agent decisions to train for.")
    summary_freq: int = Field(10_000, ge=1, description="Steps between metric summaries.")
    checkpoint_interval: int = Field(50_000, ge=1, description="Steps between checkpoints.")
    keep_checkpoints: int = Field(5, ge=1, description="Newest checkpoints kept on disk.")
    hyperparameters: POCASettings | PPOSettings | SACSettings = Field(
        default_factory=PPOSettings, description="The algorithm's settings (PPOSettings, SACSettings or POCASettings)."
    )
    self_play: LeagueSettings | None = Field(
        None, description="Train by self-play against a league of snapshots (ML-Agents' self_play keys, plus ours; "
        "groups: {Striker: {swap_steps: 4000}} gives a policy group its own values, as ML-Agents' sections per "
        "behaviour do)."
    )
    behaviours: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per behaviour name, hyperparameters that differ from `hyperparameters` (as ML-Agents' behaviors:).",
    )

    @model_validator(mode="before")
    @classmethod
    def _hyperparameters_of_algorithm(cls, data: Any) -> Any:
        # Validated against the algorithm's own settings, so a key of the other algorithm is named as such.
        algorithm = data.get("algorithm", "ppo") if isinstance(data, dict) else None
        if algorithm not in ALGORITHMS:
            return data  # not a mapping, or an unknown algorithm: the field checks report it
        settings, _ = ALGORITHMS[algorithm]
        given = data.get("hyperparameters")
        if isinstance(given, BaseModel):
            given = given.model_dump()
        try:
            return {**data, "hyperparameters": settings.model_validate(given if given is not None else {})}
        except ValidationError as exc:
            raise ValueError(_describe_settings_error(exc, algorithm, "hyperparameters.")) from None

    @model_validator(mode="after")
    def _check_behaviour_overrides(self) -> TrainerConfig:
        if self.algorithm == "sac" and self.self_play is not None:
            raise ValueError("self_play: self-play trains with algorithm ppo or poca; sac self-play is not available yet")
        _, override = ALGORITHMS[self.algorithm]
        for name, overrides in self.behaviours.items():
            try:
                override(self.hyperparameters, overrides)
            except ValidationError as exc:
                raise ValueError(_describe_settings_error(exc, self.algorithm, f"behaviours.{name}.")) from None
            except ValueError as exc:
                raise ValueError(f"behaviours.{name}: {exc}") from None
        return self


def _describe_settings_error(exc: ValidationError, algorithm: str, prefix: str) -> str:
    """A settings error in one line; an unknown key that another algorithm has is named as that algorithm's."""

    def note(key: str) -> str:
        other = next((name for name, (settings, _) in ALGORITHMS.items()
                      if name != algorithm and key in settings.model_fields), None)
        return f" under algorithm {algorithm} (a {other.upper()} setting)" if other else ""

    return describe_validation_error(exc, note, prefix)


class RunConfig(_Strict):
    """A whole training run."""

    env: EnvConfig
    trainer: TrainerConfig
    environment_parameters: dict[str, EnvironmentParameter] = Field(
        default_factory=dict,
        description="Parameters the game reads: a number, a sampler or a curriculum each (see sparring.curriculum).",
    )
    seed: int = Field(0, description="Seeds the networks, sampling and env resets.")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads (None: torch's default).")
    tune: TuneConfig | None = Field(
        None, exclude=True, description="What `sparring tune` searches (see sparring.tune_config); `sparring train` "
        "ignores it, and no run's configuration.yaml carries it.",
    )
    scale: ScaleConfig = Field(
        default_factory=ScaleConfig,
        description="Env copies on a Ray cluster, and acting overlapped with learning (see ScaleConfig).",
    )

    @model_validator(mode="after")
    def _overlap_fits_the_trainer(self) -> RunConfig:
        if self.scale.overlap and self.trainer.algorithm == "sac":
            raise ValueError("scale.overlap: acting overlaps learning for on-policy trainers (ppo, poca); sac "
                             "updates after every env step")
        if self.scale.overlap and self.trainer.self_play is not None:
            raise ValueError("scale.overlap is not available with self_play yet: its opponents and snapshots change "
                             "between rollouts")
        return self


class LoadedConfig(NamedTuple):
    """A config file as ``sparring train`` uses it."""

    config: RunConfig
    unsupported: list[str]
    """Key paths of ML-Agents settings sparring ignores, for one warning (empty for a native file)."""
    run_options: dict[str, Any]
    """An ML-Agents file's checkpoint settings the CLI honours (see :func:`sparring.mlagents_config.run_options`)."""


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run config, raising :class:`ConfigError` on anything wrong.

    An ML-Agents trainer config is translated; :func:`load_run_config` also says what of it is ignored.
    """
    return load_run_config(path).config


def load_run_config(path: str | Path) -> LoadedConfig:
    """Read a native or ML-Agents (``behaviors:``) config file, raising :class:`ConfigError` on anything wrong."""
    from sparring.mlagents_config import is_mlagents_config, run_options, translate  # it builds on RunConfig

    path = Path(path)
    try:
        data = read_yaml(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    if is_mlagents_config(data):
        config, unsupported = translate(data, str(path))
        return LoadedConfig(config, unsupported, run_options(data, str(path)))
    try:
        return LoadedConfig(RunConfig.model_validate(data), [], {})
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from None


_SOURCES = ("gymnasium", "pettingzoo", "bridge", "unity")


def describe_validation_error(
    exc: ValidationError, unknown_key_note: Callable[[str], str] | None = None, prefix: str = ""
) -> str:
    """Pydantic's errors as one line: ``prefix`` + ``key.path: what is wrong``, joined by ``; ``.

    ``unknown_key_note(key)`` may add to the message of an unknown key (the last part of its path).
    """
    parts = []
    for err in exc.errors():
        loc = _without_union_tags(err["loc"])
        key = ".".join(str(p) for p in loc)
        key = prefix + key if key else prefix.rstrip(".") or "(top level)"
        if err["type"] == "extra_forbidden":
            note = unknown_key_note(str(loc[-1])) if unknown_key_note and loc else ""
            parts.append(f"{key}: unknown key{note}")
        elif err["type"] == "union_tag_invalid":
            ctx = err["ctx"]  # pydantic quotes the names: "'source'", "'gymnasium', 'pettingzoo', ..."
            discriminator, expected = ctx["discriminator"].strip("'"), ctx["expected_tags"].replace("'", "")
            parts.append(f"{key}.{discriminator}: must be one of {expected} (got {ctx['tag']!r})")
        elif err["type"] == "union_tag_not_found":
            parts.append(f"{key}.source: required key is missing (one of {', '.join(_SOURCES)})")
        elif err["type"] == "missing":
            parts.append(f"{key}: required key is missing")
        elif err["type"] == "value_error":  # our own validators' messages name the key already
            parts.append(f"{key}.{err['ctx']['error']}")
        else:
            parts.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)


def _without_union_tags(loc: tuple[int | str, ...]) -> list[int | str]:
    """An error's location without the tags pydantic puts in it for a union: an env's source ("env.pettingzoo.id"
    is "env.id"), an environment parameter's kind, and a sampler's type after it."""
    kept = []
    for i, part in enumerate(loc):
        source = i == 1 and loc[0] == "env" and part in _SOURCES
        sampler_type = i > 0 and loc[i - 1] == SAMPLER and part in SAMPLER_TYPES
        if not (source or sampler_type or part in (NUMBER, SAMPLER, CURRICULUM)):
            kept.append(part)
    return kept
