"""The run configuration file: its schema, and loading it with errors a person can act on.

Example::

    env:
      source: gymnasium          # gymnasium | pettingzoo
      id: CartPole-v1
      num_envs: 8
    trainer:
      algorithm: ppo
      max_steps: 100000
      hyperparameters:
        learning_rate: 0.001
        n_steps: 32
    seed: 0

Unknown keys are errors, not silently ignored: a typo in a hyperparameter name
would otherwise train with the default and nobody would know.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sparring.agents.ppo import PPOSettings


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message is one line naming file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnvConfig(_Strict):
    """Where experience comes from."""

    source: Literal["gymnasium", "pettingzoo"] = Field(description="Which adapter builds the env.")
    id: str = Field(
        description=(
            "gymnasium: a registered id ('CartPole-v1'). pettingzoo: a module with env()/parallel_env() "
            "('pettingzoo.classic.tictactoe_v3') or 'module:factory'."
        )
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the env constructor.")
    num_envs: int = Field(1, ge=1, description="Copies of the env stepped together.")
    vector: Literal["serial", "subprocess"] = Field(
        "serial", description="Step copies in this process or in one worker process each."
    )
    api: Literal["aec", "parallel"] = Field("aec", description="pettingzoo: which constructor of the module to call.")
    behaviours: dict[str, str] | None = Field(
        None, description="pettingzoo: agent name -> behaviour name (default: strip a trailing _<digits>)."
    )
    opponent: Literal["random"] | None = Field(
        None, description="pettingzoo: the learner plays one seat per episode, 'random' plays the others."
    )


class TrainerConfig(_Strict):
    """How to learn (names follow ML-Agents' trainer config where the meaning matches)."""

    algorithm: Literal["ppo"] = "ppo"
    max_steps: int = Field(ge=1, description="Agent decisions to train for.")
    summary_freq: int = Field(10_000, ge=1, description="Steps between metric summaries.")
    checkpoint_interval: int = Field(50_000, ge=1, description="Steps between checkpoints.")
    keep_checkpoints: int = Field(5, ge=1, description="Newest checkpoints kept on disk.")
    hyperparameters: PPOSettings = Field(default_factory=PPOSettings)


class RunConfig(_Strict):
    """A whole training run."""

    env: EnvConfig
    trainer: TrainerConfig
    seed: int = Field(0, description="Seeds the networks, sampling and env resets.")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads (None: torch's default).")


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run config, raising :class:`ConfigError` on anything wrong."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """Pydantic's errors as one line: ``key.path: what is wrong``, joined by ``; ``."""
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parts.append(f"{key}: unknown key")
        elif err["type"] == "missing":
            parts.append(f"{key}: required key is missing")
        else:
            parts.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)
