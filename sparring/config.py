"""The run configuration file: its schema, and loading it with errors a person can act on.

Example::

    env:
      source: gymnasium          # gymnasium | pettingzoo | bridge | unity
      id: CartPole-v1
      num_envs: 8
    trainer:
      algorithm: ppo             # ppo | sac; hyperparameters are checked against its settings
      max_steps: 100000
      hyperparameters:
        learning_rate: 0.001
        n_steps: 32
    seed: 0

Unknown keys are errors, not silently ignored: a typo in a hyperparameter name
would otherwise train with the default and nobody would know.

An ML-Agents trainer config (top-level ``behaviors:``) is accepted as it is and
translated, see :mod:`sparring.mlagents_config`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sparring.agents import ppo, sac
from sparring.agents.ppo import PPOSettings
from sparring.agents.sac import SACSettings
from sparring.agents.selfplay.league import LeagueSettings


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
            "The game to launch num_envs copies of (a .py file runs with this Python; a relative path is taken from "
            "the working directory, as are relative args). None: editor mode, wait for num_envs engines to "
            "connect to host:port."
        ),
    )
    args: list[str] = Field(default_factory=list, description="Extra command-line arguments for every copy.")
    headless_flag: str | None = Field(None, description="Added to each copy's command line, e.g. '--headless'.")
    num_envs: int = Field(1, ge=1, description="Game instances trained at once.")
    transport: Literal["grpc", "tcp"] = Field("grpc", description="gRPC stream, or length-prefixed frames over TCP.")
    host: str = Field("127.0.0.1", description="Address to listen on; anything but loopback needs a token.")
    port: int = Field(
        0, ge=0, le=65535,
        description="Port to listen on. 0: a free port for launched copies; in editor mode 5105 (gRPC) or 5106 (TCP).",
    )
    token: str | None = Field(
        None,
        description="Shared secret engines must present. None: none is needed on loopback (any is accepted); "
        "launched copies always get one of their own.",
    )
    handshake_timeout: float = Field(10.0, gt=0, description="Seconds a new connection has to send its Hello.")
    connect_timeout: float | None = Field(
        None, gt=0,
        description="Seconds to wait for engines to complete their handshake: a launched copy from its launch "
        "(default 60), the first engines in editor mode (default 600).",
    )
    reset_timeout: float | None = Field(
        None, gt=0, description="Seconds an engine may take to answer a Reset (levels load). None: step_timeout."
    )
    step_timeout: float = Field(60.0, gt=0, description="Seconds an engine may take to answer before it is relaunched.")
    max_restarts: int = Field(5, ge=0, description="Relaunches per game instance before training stops.")
    max_message_bytes: int = Field(64 * 2**20, ge=1024, description="The largest message either side may send.")
    max_behaviours: int = Field(64, ge=1, description="Behaviours an engine may declare.")
    max_observation_elements: int = Field(
        2**16, ge=1, description="Observation values per agent an engine may declare, all components together."
    )
    max_action_choices: int = Field(
        2**16, ge=1, description="Discrete actions per behaviour an engine may declare, all branches together."
    )
    max_action_dims: int = Field(1024, ge=1, description="Continuous action values, or discrete branches, per behaviour.")

    def server_options(self) -> dict[str, Any]:
        """The :class:`~sparring.envs.bridge.server.BridgeServer` settings these keys give."""
        from sparring.envs.bridge.codec import SpecLimits

        limits = SpecLimits(self.max_behaviours, self.max_observation_elements, self.max_action_choices,
                            self.max_action_dims)
        return {"max_message_bytes": self.max_message_bytes, "handshake_timeout": self.handshake_timeout,
                "limits": limits}

    @property
    def label(self) -> str:
        """What the env is, for messages."""
        return self.executable or f"engines connecting to {self.host}:{self.port} (editor mode)"


class UnityEnvConfig(_Strict):
    """Unity ML-Agents builds (or the Editor) through mlagents-envs; names follow ML-Agents' env/engine settings."""

    source: Literal["unity"]
    env_path: str | None = Field(
        None, description="The Unity build to launch num_envs copies of; None: the Editor (press Play) on base_port."
    )
    env_args: list[str] = Field(default_factory=list, description="Extra command-line arguments for every build.")
    num_envs: int = Field(1, ge=1, description="Builds trained at once (worker ids 0..num_envs-1).")
    base_port: int | None = Field(
        None, ge=1, le=65535, description="Worker i listens on base_port + i (default 5005 for builds, 5004 Editor)."
    )
    no_graphics: bool = Field(False, description="Launch builds with -nographics -batchmode.")
    time_scale: float = Field(20.0, gt=0, description="Unity's Time.timeScale during training.")
    width: int = Field(84, ge=1, description="Game window width (pixels).")
    height: int = Field(84, ge=1, description="Game window height (pixels).")
    quality_level: int = Field(5, ge=0, description="Unity quality level.")
    target_frame_rate: int = Field(-1, description="Unity's Application.targetFrameRate (-1: unlimited).")
    capture_frame_rate: int = Field(60, ge=0, description="Unity's Time.captureFramerate.")
    environment_parameters: dict[str, float] = Field(
        default_factory=dict, description="Float parameters the game reads (Academy.Instance.EnvironmentParameters)."
    )
    timeout_wait: float = Field(60.0, gt=0, description="Seconds a build may take to start or answer a step.")
    max_restarts: int = Field(5, ge=0, description="Relaunches per build before training stops.")

    @property
    def label(self) -> str:
        """What the env is, for messages."""
        return self.env_path or f"the Unity Editor on port {self.base_port or 5004}"


EnvConfig = Annotated[
    Union[GymnasiumEnvConfig, PettingZooEnvConfig, BridgeEnvConfig, UnityEnvConfig], Field(discriminator="source")
]


ALGORITHMS = {"ppo": (PPOSettings, ppo.override_settings), "sac": (SACSettings, sac.override_settings)}
"""``trainer.algorithm`` -> its hyperparameter settings and how one behaviour's overrides apply to them."""


class TrainerConfig(_Strict):
    """How to learn (names follow ML-Agents' trainer config where the meaning matches)."""

    algorithm: Literal["ppo", "sac"] = "ppo"
    max_steps: int = Field(ge=1, description="Agent decisions to train for.")
    summary_freq: int = Field(10_000, ge=1, description="Steps between metric summaries.")
    checkpoint_interval: int = Field(50_000, ge=1, description="Steps between checkpoints.")
    keep_checkpoints: int = Field(5, ge=1, description="Newest checkpoints kept on disk.")
    hyperparameters: PPOSettings | SACSettings = Field(
        default_factory=PPOSettings, description="The algorithm's settings (PPOSettings or SACSettings)."
    )
    self_play: LeagueSettings | None = Field(
        None, description="Train by self-play against a league of snapshots (ML-Agents' self_play keys, plus ours)."
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
        if self.algorithm != "ppo" and self.self_play is not None:
            raise ValueError(f"self_play: self-play trains with algorithm ppo; {self.algorithm} self-play is not "
                             "available yet")
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
    seed: int = Field(0, description="Seeds the networks, sampling and env resets.")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads (None: torch's default).")


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
        data = yaml.safe_load(path.read_text())
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
        # drop the union tag pydantic puts in paths ("env.pettingzoo.id" -> "env.id")
        loc = [p for i, p in enumerate(err["loc"]) if not (i == 1 and err["loc"][0] == "env" and p in _SOURCES)]
        key = prefix + (".".join(str(p) for p in loc) or "(top level)")
        if err["type"] == "extra_forbidden":
            note = unknown_key_note(str(loc[-1])) if unknown_key_note and loc else ""
            parts.append(f"{key}: unknown key{note}")
        elif err["type"] == "union_tag_invalid":
            parts.append(f"{key}.source: must be one of {', '.join(_SOURCES)} (got {err['input'].get('source')!r})")
        elif err["type"] == "union_tag_not_found":
            parts.append(f"{key}.source: required key is missing (one of {', '.join(_SOURCES)})")
        elif err["type"] == "missing":
            parts.append(f"{key}: required key is missing")
        elif err["type"] == "value_error":  # our own validators' messages name the key already
            parts.append(f"{key}.{err['ctx']['error']}")
        else:
            parts.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)
