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
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sparring.agents.ppo import PPOSettings


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message is one line naming file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _PythonEnvConfig(_Strict):
    """What every in-Python source shares: which env, its arguments, and how many copies."""

    id: str = Field(description="Which env (see each source).")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the env constructor.")
    num_envs: int = Field(1, ge=1, description="Copies of the env stepped together.")
    vector: Literal["serial", "subprocess"] = Field(
        "serial", description="Step copies in this process or in one worker process each."
    )

    @property
    def label(self) -> str:
        """What the env is, for messages."""
        return self.id


class GymnasiumEnvConfig(_PythonEnvConfig):
    """A single-agent Gymnasium env (``id``: a registered id such as 'CartPole-v1'); copies become agents."""

    source: Literal["gymnasium"]


class PettingZooEnvConfig(_PythonEnvConfig):
    """A PettingZoo AEC or Parallel env (``id``: a module with env()/parallel_env(), or 'module:factory')."""

    source: Literal["pettingzoo"]
    api: Literal["aec", "parallel"] = Field("aec", description="Which constructor of the module to call.")
    behaviours: dict[str, str] | None = Field(
        None, description="Agent name -> behaviour name (default: strip a trailing _<digits>)."
    )
    opponent: Literal["random"] | None = Field(
        None, description="The learner plays one seat per episode, 'random' plays the others."
    )


class BridgeEnvConfig(_Strict):
    """Running game instances connected over the sparring bridge (launched by the trainer, or editor mode)."""

    source: Literal["bridge"]
    executable: str | None = Field(
        None,
        description=(
            "The game to launch num_envs copies of (a .py file runs with this Python). "
            "None: editor mode, wait for num_envs engines to connect to host:port."
        ),
    )
    args: list[str] = Field(default_factory=list, description="Extra command-line arguments for every copy.")
    headless_flag: str | None = Field(None, description="Added to each copy's command line, e.g. '--headless'.")
    num_envs: int = Field(1, ge=1, description="Game instances trained at once.")
    transport: Literal["grpc", "tcp"] = Field("grpc", description="gRPC stream, or length-prefixed frames over TCP.")
    host: str = Field("127.0.0.1", description="Address to listen on; anything but loopback needs a token.")
    port: int = Field(0, ge=0, le=65535, description="Port to listen on (0: any free port; editor mode needs a fixed one).")
    token: str | None = Field(None, description="Shared secret engines must present (launched copies get one always).")
    step_timeout: float = Field(60.0, gt=0, description="Seconds an engine may take to answer before it is relaunched.")
    max_restarts: int = Field(5, ge=0, description="Relaunches per game instance before training stops.")

    @property
    def label(self) -> str:
        """What the env is, for messages."""
        return self.executable or f"engines connecting to {self.host}:{self.port} (editor mode)"


EnvConfig = Annotated[
    Union[GymnasiumEnvConfig, PettingZooEnvConfig, BridgeEnvConfig], Field(discriminator="source")
]


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


_SOURCES = ("gymnasium", "pettingzoo", "bridge")


def describe_validation_error(exc: ValidationError) -> str:
    """Pydantic's errors as one line: ``key.path: what is wrong``, joined by ``; ``."""
    parts = []
    for err in exc.errors():
        # drop the union tag pydantic puts in paths ("env.pettingzoo.id" -> "env.id")
        loc = [p for i, p in enumerate(err["loc"]) if not (i == 1 and err["loc"][0] == "env" and p in _SOURCES)]
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            parts.append(f"{key}: unknown key")
        elif err["type"] == "union_tag_invalid":
            parts.append(f"{key}.source: must be one of {', '.join(_SOURCES)} (got {err['input'].get('source')!r})")
        elif err["type"] == "union_tag_not_found":
            parts.append(f"{key}.source: required key is missing (one of {', '.join(_SOURCES)})")
        elif err["type"] == "missing":
            parts.append(f"{key}: required key is missing")
        else:
            parts.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)
