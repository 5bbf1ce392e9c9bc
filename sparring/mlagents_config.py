"""ML-Agents trainer config files (the YAML ``mlagents-learn`` takes), trained as they are.

A Unity game that trains with ``mlagents-learn config.yaml`` trains with ``sparring
train config.yaml``: a file with a top-level ``behaviors:`` is checked as ML-Agents
checks it (a typo or a wrong type is an error naming the key; numbers such as ``1.0e7``
are numbers, as ML-Agents reads them), absent keys take
ML-Agents' defaults rather than sparring's (so the file trains as it did), and it is
translated into a native :class:`~sparring.config.RunConfig` with a Unity env.

Nothing is dropped silently: :func:`translate` also returns the key path of every
setting sparring does not support yet, and ``sparring train`` names them all in one
warning. A setting at a value that asks for nothing sparring doesn't do
(``memory: null``, ``threaded: false``) is not
reported, so the ``configuration.yaml`` mlagents-learn writes for a run (every key spelled
out) translates cleanly too. Behaviours with different trainer types are an error: training
something else than asked is worse than not training.

How it maps (``B``: a behaviour under ``behaviors:``; ``default_settings:`` is
merged under every behaviour first, as ML-Agents does)::

    ML-Agents                                     sparring
    --------------------------------------------  ------------------------------------------------
    B.trainer_type: ppo | poca                    trainer.algorithm: ppo | poca (MA-POCA: PPO's keys)
    B.hyperparameters.learning_rate               hyperparameters.learning_rate
      .learning_rate_schedule                     hyperparameters.lr_schedule (to 1e-10: learning_rate_end)
      .batch_size / .num_epoch                    hyperparameters.batch_size / n_epochs
      .buffer_size                                hyperparameters.buffer_size (1)
      .beta / .beta_schedule                      hyperparameters.ent_coef / ent_schedule (2)
      .epsilon / .epsilon_schedule                hyperparameters.clip_range / clip_schedule (3),
                                                  and clip_range_vf: ML-Agents clips the value loss too
      .lambd                                      hyperparameters.gae_lambda
    B.time_horizon                                hyperparameters.time_horizon (SAC: see 8)
    B.network_settings.hidden_units, num_layers   hyperparameters.hidden_sizes: [hidden_units] * num_layers
      .normalize                                  hyperparameters.normalize_obs
      .vis_encode_type                            hyperparameters.vis_encode_type (4)
      .memory.memory_size, sequence_length        hyperparameters.memory: the same names
    B.reward_signals.extrinsic.gamma              hyperparameters.gamma
    B.reward_signals.extrinsic.strength           hyperparameters.reward_signals.extrinsic.strength
    B.reward_signals.curiosity, rnd, gail         hyperparameters.reward_signals: the same names and keys (strength,
                                                  gamma, learning_rate; gail's demo_path, use_actions, use_vail);
                                                  only the signals named are learned from (10)
      .network_settings.hidden_units              hyperparameters.reward_signals.<signal>.encoding_size (10)
    B.behavioral_cloning                          hyperparameters.behavioral_cloning: the same keys (demo_path,
                                                  strength, steps, batch_size, num_epoch, samples_per_update)
    (swish activation, 0.5 value loss weight)     hyperparameters.activation: swish, vf_coef: 0.5
    B.max_steps                                   trainer.max_steps: the sum over the behaviours named (5)
    B.summary_freq, checkpoint_interval,          trainer.summary_freq, checkpoint_interval,
      keep_checkpoints                              keep_checkpoints: the smallest over the behaviours
    env_settings.env_path, env_args, num_envs,    env (source: unity): the same names; base_port only
      base_port, timeout_wait                       with an env_path (the Editor is on 5004, as in ML-Agents)
    env_settings.max_lifetime_restarts            env.max_restarts (-1, unlimited, is reported; 10 is used)
    env_settings.seed                             seed (ML-Agents' -1, "random", becomes 0: runs repeat)
    engine_settings.*                             env: the same names
    environment_parameters.NAME                   environment_parameters.NAME (see sparring.curriculum): a
                                                  number; a sampler with its sampler_parameters as sampler
                                                  fields (ML-Agents' defaults where absent; constant: its
                                                  value); a curriculum's lessons as they are (7)
    checkpoint_settings.run_id, resume, force,    what ``sparring train``'s flags of the same names do
      results_dir                                   (the flags win), see :func:`run_options`
    B.self_play.save_steps, swap_steps,           trainer.self_play: the same names (a self-play league,
      team_change, window, initial_elo,             snapshots drawn uniformly from the window as ML-Agents
      play_against_latest_model_ratio               does; PFSP and roles are sparring's own keys; PPO, POCA;
                                                    ML-Agents' defaults where absent: team_change 5 * save_steps);
                                                    where behaviours differ, trainer.self_play.groups.B (9)

    With ``trainer_type: sac`` (the network, reward signal and run keys map as above):

    B.trainer_type: sac                           trainer.algorithm: sac
    B.hyperparameters.learning_rate,              hyperparameters: the same names, and
      learning_rate_schedule, batch_size,           lr_schedule for learning_rate_schedule
      buffer_size, buffer_init_steps, tau,
      steps_per_update, init_entcoef (6),
      save_replay_buffer
      .reward_signal_steps_per_update             hyperparameters.reward_signal_steps_per_update (absent: as
                                                  steps_per_update, as in ML-Agents)

    (1) The rollout is shared by all behaviours: differing buffer sizes become the largest (reported).
    (2) ``beta_schedule`` defaults to learning_rate_schedule, as in ML-Agents; linear ends at 1e-5
        (ent_coef_end).
    (3) ``epsilon_schedule`` defaults to learning_rate_schedule; linear ends at 0.1 (clip_range_end), as in
        ML-Agents.
    (4) As named: ML-Agents' CNN for every image, and an image below that CNN's smallest size is an
        error, as in ML-Agents. Where the file names none, sparring's ``auto``: ML-Agents' default
        ``simple`` for images of at least 20x20, and a smaller grid (which ``simple`` refuses) flattened
        into the vector observation.
    (5) ML-Agents counts max_steps per behaviour, sparring counts decisions over all behaviours.
    (6) ML-Agents tunes one temperature per discrete branch towards 0.2 * log(branch size) each;
        sparring tunes one temperature towards SACSettings.target_entropy.
    (7) A last lesson's completion_criteria, which ML-Agents ignores with a warning, is reported. A
        curriculum's progress measure is the run's (see sparring.curriculum).
    (8) SAC learns from one-step targets, so a trajectory's length changes nothing it computes (ML-Agents' SAC
        uses time_horizon only to hand experience to its replay buffer in pieces): it is taken as it is.
    (9) As ML-Agents' GhostTrainer per behaviour, each policy group keeps its own schedules: save_steps and
        team_change count its learner's steps, swap_steps its ghost steps (decisions taken for it while another
        side learns), which is why StrikersVsGoalie gives its two Strikers and one Goalie different swap_steps.
    (10) As ML-Agents' settings.py reads them: a behaviour's ``reward_signals`` replaces the default (the extrinsic
        signal alone), so a file naming ``gail`` alone learns without the game's reward (config/imitation/Crawler);
        where the file has ``default_settings``, each behaviour's signals are merged over that section's (its
        extrinsic signal where it names none). The extrinsic signal's discount is hyperparameters.gamma. A learned
        signal's width (encoding_size) is its network_settings.hidden_units, 128 where it has none; the deprecated
        encoding_size where it has no network_settings; its num_layers are the encoding network's. Its networks
        read the policy's inputs (normalised where the behaviour normalises), encode images as the policy does
        and keep no memory: a normalize or vis_encode_type other than the behaviour's, a memory
        (which ML-Agents ignores too, with a warning) and an encoding_size beside network_settings (which
        ML-Agents ignores) are reported. demo_path is kept as written: a relative path is read from the working
        directory, as ML-Agents reads it.

Per-behaviour values: a setting every behaviour in the file shares goes into
``trainer.hyperparameters``; where they differ, ``trainer.hyperparameters`` holds the
``default_settings`` (or ML-Agents') value and each behaviour with another value gets
it in ``trainer.behaviours``. Behaviours of the game the file does not name train with
``trainer.hyperparameters``. ``self_play`` keys go the same way, into ``trainer.self_play``
and ``trainer.self_play.groups``.

Reported when set (beyond the notes above): ``hyperparameters.shared_critic``,
``network_settings.deterministic``, ``init_path``, ``threaded: true``, ``even_checkpoints: true``,
``env_settings.num_areas`` other than 1, restart rate limits,
``engine_settings.no_graphics_monitor``, ``checkpoint_settings.initialize_from``,
``load_model`` and ``inference``, ``torch_settings.device`` other than cpu, and ``debug``.

Never reported: ``goal_conditioning_type`` (sparring feeds goal observations to its MLP
like any other input, ML-Agents' ``none``; on a reward signal's network_settings too), a reward
signal's ``deterministic`` (it samples no actions), the extrinsic signal's own
``network_settings`` (unused by ML-Agents too), and the deprecated ``train_model``.
Not from the file: sparring keeps its gradient clipping (max_grad_norm 0.5; ML-Agents
has none) and standardises advantages per minibatch (ML-Agents: per buffer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from sparring.config import ConfigError, RunConfig, describe_validation_error
from sparring.curriculum import SAMPLER_TYPES, EnvironmentParameter

Schedule = Literal["linear", "constant"]

CHECKPOINT_OPTIONS = ("run_id", "resume", "force", "results_dir")
"""``checkpoint_settings`` that ``sparring train`` honours, as its flags of the same names."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- the file, as ML-Agents defines it (its defaults) ------------------------------------------


class _Hyperparameters(_Section):
    batch_size: int = Field(1024, ge=1)
    buffer_size: int = Field(10240, ge=1)
    learning_rate: float = Field(3e-4, gt=0)
    learning_rate_schedule: Schedule = "linear"
    beta: float = Field(5e-3, ge=0)
    epsilon: float = Field(0.2, gt=0)
    lambd: float = Field(0.95, ge=0, le=1)
    num_epoch: int = Field(3, ge=1)
    beta_schedule: Schedule | None = None  # None: as learning_rate_schedule
    epsilon_schedule: Schedule | None = None  # None: as learning_rate_schedule
    shared_critic: bool = False


class _SACHyperparameters(_Section):
    batch_size: int = Field(128, ge=1)
    buffer_size: int = Field(50000, ge=1)
    learning_rate: float = Field(3e-4, gt=0)
    learning_rate_schedule: Schedule = "constant"
    buffer_init_steps: int = Field(0, ge=0)
    tau: float = Field(0.005, gt=0, le=1)
    steps_per_update: float = Field(1.0, gt=0)
    save_replay_buffer: bool = False
    init_entcoef: float = Field(1.0, gt=0)
    reward_signal_steps_per_update: float | None = Field(None, gt=0)  # None: as steps_per_update


_HYPERPARAMETERS = {"ppo": _Hyperparameters, "sac": _SACHyperparameters, "poca": _Hyperparameters}


class _Memory(_Section):
    sequence_length: int = Field(64, ge=1)
    memory_size: int = Field(128, ge=2, multiple_of=2)  # ML-Agents: "memory size must be divisible by 2"


class _NetworkSettings(_Section):
    normalize: bool = False
    hidden_units: int = Field(128, ge=1)
    num_layers: int = Field(2, ge=1)
    vis_encode_type: Literal["simple", "nature_cnn", "resnet", "match3", "fully_connected"] = "simple"
    memory: _Memory | None = None
    goal_conditioning_type: Literal["hyper", "none"] = "hyper"
    deterministic: bool = False


class _RewardSignal(_Section):
    gamma: float = Field(0.99, ge=0, le=1)
    strength: float = 1.0
    network_settings: _NetworkSettings | None = None


class _LearnedRewardSignal(_RewardSignal):
    learning_rate: float = Field(3e-4, gt=0)
    encoding_size: int | None = None


class _GailRewardSignal(_LearnedRewardSignal):
    demo_path: str
    use_actions: bool = False
    use_vail: bool = False


class _RNDRewardSignal(_LearnedRewardSignal):
    learning_rate: float = Field(1e-4, gt=0)


class _RewardSignals(_Section):
    """The signals a section names; only those are learned from (ML-Agents: a ``reward_signals`` section replaces
    the default, the extrinsic signal alone)."""

    extrinsic: _RewardSignal | None = None
    curiosity: _LearnedRewardSignal | None = None
    gail: _GailRewardSignal | None = None
    rnd: _RNDRewardSignal | None = None


class _SelfPlay(_Section):
    save_steps: int = 20_000
    team_change: int | None = None  # None: 5 * save_steps, as ML-Agents' SelfPlaySettings
    swap_steps: int = 2000
    window: int = 10
    play_against_latest_model_ratio: float = 0.5
    initial_elo: float = 1200.0

    @model_validator(mode="after")
    def _team_change_follows_save_steps(self) -> _SelfPlay:
        if self.team_change is None:
            self.team_change = 5 * self.save_steps
        return self


class _BehavioralCloning(_Section):
    demo_path: str
    steps: int = 0
    strength: float = 1.0
    samples_per_update: int = 0
    num_epoch: int | None = None
    batch_size: int | None = None


class _Behaviour(_Section):
    trainer_type: Literal["ppo", "sac", "poca"] = "ppo"
    hyperparameters: _Hyperparameters | _SACHyperparameters = Field(default_factory=_Hyperparameters)
    network_settings: _NetworkSettings = Field(default_factory=_NetworkSettings)
    reward_signals: _RewardSignals = Field(default_factory=lambda: _RewardSignals(extrinsic=_RewardSignal()))
    max_steps: int = Field(500_000, ge=1)
    time_horizon: int = Field(64, ge=1)
    summary_freq: int = Field(50_000, ge=1)
    keep_checkpoints: int = Field(5, ge=1)
    checkpoint_interval: int = Field(500_000, ge=1)
    even_checkpoints: bool = False
    threaded: bool = False
    init_path: str | None = None
    self_play: _SelfPlay | None = None
    behavioral_cloning: _BehavioralCloning | None = None

    @model_validator(mode="after")
    def _names_a_reward_signal(self) -> _Behaviour:
        if all(signal is None for signal in dict(self.reward_signals).values()):
            raise ValueError("reward_signals: names no signal; keep at least one (extrinsic is the game's reward)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _hyperparameters_of_trainer(cls, data: Any) -> Any:
        # Checked against the trainer's own section, before the union could take a SAC file's tau for a typo.
        if not isinstance(data, Mapping):
            return data
        kind = data.get("trainer_type", "ppo")
        section = _HYPERPARAMETERS.get(kind)
        if section is None:
            return data  # the trainer_type field reports it
        try:
            return {**data, "hyperparameters": section.model_validate(data.get("hyperparameters") or {})}
        except ValidationError as exc:
            def note(key: str) -> str:
                other = next((name for name, other in _HYPERPARAMETERS.items() if key in other.model_fields), kind)
                return "" if other == kind else f" for trainer_type {kind} (a {other} setting)"

            raise ValueError(describe_validation_error(exc, note, "hyperparameters.")) from None


class _EnvSettings(_Section):
    env_path: str | None = None
    env_args: list[str] | None = None
    base_port: int = Field(5005, ge=1, le=65535)
    num_envs: int = Field(1, ge=1)
    num_areas: int = Field(1, ge=1)
    timeout_wait: float = Field(60, gt=0)
    seed: int = Field(-1, ge=-1)
    max_lifetime_restarts: int = Field(10, ge=-1)
    restarts_rate_limit_n: int = 1
    restarts_rate_limit_period_s: int = 60


class _EngineSettings(_Section):
    width: int = Field(84, ge=1)
    height: int = Field(84, ge=1)
    quality_level: int = Field(5, ge=0)
    time_scale: float = Field(20.0, gt=0)
    target_frame_rate: int = -1
    capture_frame_rate: int = Field(60, ge=0)
    no_graphics: bool = False
    no_graphics_monitor: bool = False


class _CheckpointSettings(_Section):
    run_id: str | None = None
    initialize_from: str | None = None
    load_model: bool = False
    resume: bool = False
    force: bool = False
    train_model: bool = False
    inference: bool = False
    results_dir: str | None = None

    @model_validator(mode="after")
    def _resume_or_force(self) -> _CheckpointSettings:
        if self.resume and self.force:
            raise ValueError("resume: cannot be true together with force (continue the run, or overwrite it)")
        return self


class _TorchSettings(_Section):
    device: str | None = None


class _File(_Section):
    behaviors: dict[str, _Behaviour]
    default_settings: _Behaviour | None = None
    env_settings: _EnvSettings = Field(default_factory=_EnvSettings)
    engine_settings: _EngineSettings = Field(default_factory=_EngineSettings)
    checkpoint_settings: _CheckpointSettings = Field(default_factory=_CheckpointSettings)
    torch_settings: _TorchSettings = Field(default_factory=_TorchSettings)
    environment_parameters: dict[str, Any] | None = None
    debug: bool = False


# -- what is reported ----------------------------------------------------------------------------


def _off(value: Any) -> bool:
    return value is None or value is False


def _never(value: Any) -> bool:
    return False


def _always(value: Any) -> bool:
    return True


# Key path -> whether a value asks for nothing sparring doesn't do. Every key of the file is
# either translated (see translate) or listed here.
_HONOURED_IN_BEHAVIOUR: dict[str, Callable[[Any], bool]] = {
    "hyperparameters.shared_critic": _off,
    "network_settings.goal_conditioning_type": _always,  # goal observations are plain inputs, as with "none"
    "network_settings.deterministic": _off,
    "even_checkpoints": _off,
    "threaded": _off,
    "init_path": _off,
}
_HONOURED_IN_RUN: dict[str, Callable[[Any], bool]] = {
    "env_settings.num_areas": lambda v: v == 1,
    "env_settings.max_lifetime_restarts": lambda v: v >= 0,
    "env_settings.restarts_rate_limit_n": lambda v: v == -1,  # -1: no limit, as sparring
    "env_settings.restarts_rate_limit_period_s": _never,
    "engine_settings.no_graphics_monitor": _off,
    "checkpoint_settings.initialize_from": _off,
    "checkpoint_settings.load_model": _off,
    "checkpoint_settings.train_model": _always,  # deprecated in ML-Agents: training is the default
    "checkpoint_settings.inference": _off,
    "torch_settings.device": lambda v: v in (None, "cpu"),
    "debug": _off,
}


def _reported(written: Mapping[str, Any], honoured: Mapping[str, Callable[[Any], bool]], prefix: str) -> list[str]:
    """Paths (under ``prefix``) of the keys in ``written`` whose value sparring does not honour."""
    found = []
    for path, ok in honoured.items():
        *parents, key = path.split(".")
        section = written
        for parent in parents:
            section = section.get(parent) or {}
        if key in section and not ok(section[key]):
            found.append(prefix + path)
    return found


# -- translation ---------------------------------------------------------------------------------


def is_mlagents_config(data: Mapping[str, Any]) -> bool:
    """Whether a config file's top level is ML-Agents' (``behaviors:``) rather than sparring's."""
    return "behaviors" in data


def translate(data: Mapping[str, Any], source: str) -> tuple[RunConfig, list[str]]:
    """An ML-Agents trainer config as a :class:`RunConfig`, and the key paths of the settings it ignores.

    ``source`` names the file in :class:`~sparring.config.ConfigError` messages. See
    the module docstring for the mapping.
    """
    file = _parse(data, source)
    defaults = _as_applied(data.get("default_settings"))
    base = _Behaviour.model_validate(defaults)
    named = {name: _Behaviour.model_validate(_merged(defaults, raw)) for name, raw in data["behaviors"].items()}
    ignored = _reported(file.model_dump(exclude_unset=True), _HONOURED_IN_RUN, "")
    for prefix, written, merged in [("default_settings.", file.default_settings, base),
                                    *((f"behaviors.{name}.", b, named[name]) for name, b in file.behaviors.items())]:
        if written is not None:
            ignored += _reported(written.model_dump(exclude_unset=True), _HONOURED_IN_BEHAVIOUR, prefix)
            ignored += _signal_networks_reported(written, merged, prefix)

    kinds = {name: b.trainer_type for name, b in named.items()}
    if len(set(kinds.values())) > 1:
        listed = ", ".join(f"{name}: {kind}" for name, kind in kinds.items())
        raise ConfigError(f"{source}: behaviors: trainer_type differs ({listed}); sparring trains all the behaviours "
                          "of a run with one algorithm")
    algorithm = next(iter(kinds.values()), base.trainer_type)
    if algorithm == "sac":
        playing = [name for name, b in named.items() if b.self_play is not None]
        if playing:
            raise ConfigError(f"{source}: behaviors.{playing[0]}.self_play: self-play trains with trainer_type ppo or "
                              "poca; sac self-play is not available in this version of sparring yet")
    if base.trainer_type != algorithm:  # default_settings name another trainer than every behaviour does
        base = _Behaviour.model_validate({**defaults, "trainer_type": algorithm})
    to_settings = _sac_settings if algorithm == "sac" else _ppo_settings
    settings = {name: to_settings(b) for name, b in named.items()}
    fallback = to_settings(base)
    shared = {key: _agreed([s[key] for s in settings.values()], value) for key, value in fallback.items()}
    hyperparameters = shared
    if algorithm != "sac":
        buffer_sizes = {name: b.hyperparameters.buffer_size for name, b in named.items()}
        buffer_size = max(buffer_sizes.values(), default=base.hyperparameters.buffer_size)
        ignored += [f"behaviors.{name}.hyperparameters.buffer_size (all behaviours share the largest, {buffer_size})"
                    for name, size in buffer_sizes.items() if size != buffer_size]
        hyperparameters = {**shared, "buffer_size": buffer_size}
    counted = list(named.values()) or [base]
    trainer = {
        "algorithm": algorithm,
        "max_steps": sum(b.max_steps for b in counted),
        "summary_freq": min(b.summary_freq for b in counted),
        "checkpoint_interval": min(b.checkpoint_interval for b in counted),
        "keep_checkpoints": min(b.keep_checkpoints for b in counted),
        "hyperparameters": hyperparameters,
        "behaviours": {name: diff for name, s in settings.items() if (diff := _differences(s, shared))},
    }
    self_play = _self_play(named, base)
    if self_play is not None:
        trainer["self_play"] = self_play

    env, engine = file.env_settings, file.engine_settings
    parameters, ignored_parameters = _environment_parameters(file.environment_parameters or {}, source)
    unity = {
        "source": "unity",
        "env_path": env.env_path,
        "env_args": env.env_args or [],
        "num_envs": env.num_envs,
        "base_port": env.base_port if env.env_path else None,
        "timeout_wait": env.timeout_wait,
        "max_restarts": env.max_lifetime_restarts if env.max_lifetime_restarts >= 0 else 10,
        **engine.model_dump(exclude={"no_graphics_monitor"}),
    }
    try:
        config = RunConfig.model_validate({"env": unity, "trainer": trainer, "environment_parameters": parameters,
                                           "seed": max(env.seed, 0)})
    except ValidationError as exc:  # the checks above should have caught it; say what it became
        raise ConfigError(f"{source}: translated to sparring's config: {describe_validation_error(exc)}") from None
    return config, ignored + ignored_parameters


def _self_play(named: Mapping[str, _Behaviour], base: _Behaviour) -> dict[str, Any] | None:
    """The league's settings from the behaviours' ``self_play`` sections: what they agree on for every group, and
    each behaviour's own values of the rest under ``groups`` (ML-Agents keeps a section per behaviour)."""
    sections = {name: b.self_play.model_dump() for name, b in named.items() if b.self_play is not None}
    if not sections:
        return None
    fallback = (base.self_play or _SelfPlay()).model_dump()
    shared = {key: _agreed([s[key] for s in sections.values()], value) for key, value in fallback.items()}
    groups = {name: diff for name, section in sections.items() if (diff := _differences(section, shared))}
    # ML-Agents draws uniformly from the window
    return {"opponent_sampling": "uniform", **shared, **({"groups": groups} if groups else {})}


def run_options(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The :data:`CHECKPOINT_OPTIONS` an ML-Agents file sets: run_id, results_dir; resume, force if true.

    mlagents-learn takes them from ``checkpoint_settings`` where its flags don't say; so does ``sparring train``.
    """
    settings = _parse(data, source).checkpoint_settings
    return {key: value for key, value in settings.model_dump(include=set(CHECKPOINT_OPTIONS)).items() if value}


def _parse(data: Mapping[str, Any], source: str) -> _File:
    # A behaviour's hyperparameters are those of its trainer, which it may take from default_settings.
    inherited = (data.get("default_settings") or {}).get("trainer_type")
    behaviors = data.get("behaviors")
    if inherited is not None and isinstance(behaviors, Mapping):
        data = {**data, "behaviors": {name: {"trainer_type": inherited, **raw} if isinstance(raw, Mapping) else raw
                                      for name, raw in behaviors.items()}}
    try:
        return _File.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from None


def _as_applied(defaults: Mapping[str, Any] | None) -> dict[str, Any]:
    """``default_settings`` as ML-Agents merges it under every behaviour: read into its settings first
    (``TrainerSettings.default_override``), so a section that names no reward signals holds the default one,
    extrinsic, and each signal it names has network_settings (a deprecated encoding_size as its hidden_units).
    A behaviour's reward_signals are merged over these, so they add to the section's signals."""
    if defaults is None:
        return {}
    signals = defaults.get("reward_signals")
    if not isinstance(signals, Mapping):
        return {**defaults, "reward_signals": {"extrinsic": {}}} if signals is None else dict(defaults)
    return {**defaults, "reward_signals": {key: _with_network_settings(signal) for key, signal in signals.items()}}


def _with_network_settings(signal: Any) -> Any:
    if not isinstance(signal, Mapping) or "network_settings" in signal:
        return signal
    written = {"hidden_units": signal["encoding_size"]} if "encoding_size" in signal else {}
    return {**signal, "network_settings": written}


def _merged(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` deep-merged over ``defaults``, as ML-Agents applies default_settings."""
    merged = dict(defaults)
    for key, value in overrides.items():
        below = merged.get(key)
        merged[key] = _merged(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
    return merged


PPO_SCHEDULE_ENDS = {"learning_rate": 1e-10, "epsilon": 0.1, "beta": 1e-5}
"""Where ML-Agents' linear schedules end at max_steps (``TorchPPOOptimizer``: ``ModelUtils.DecayedValue(schedule,
initial, min_value, max_steps)``, a straight line from the initial value to min_value)."""


def _ppo_settings(behaviour: _Behaviour) -> dict[str, Any]:
    """A behaviour's PPOSettings fields, except the rollout's buffer_size (see the mapping table)."""
    h, net, extrinsic = behaviour.hyperparameters, behaviour.network_settings, behaviour.reward_signals.extrinsic
    return {
        "learning_rate": h.learning_rate,
        "lr_schedule": h.learning_rate_schedule,
        "learning_rate_end": PPO_SCHEDULE_ENDS["learning_rate"],
        "batch_size": h.batch_size,
        "n_epochs": h.num_epoch,
        "gamma": (extrinsic or _RewardSignal()).gamma,
        "gae_lambda": h.lambd,
        "time_horizon": behaviour.time_horizon,
        "clip_range": h.epsilon,
        "clip_schedule": h.epsilon_schedule or h.learning_rate_schedule,
        "clip_range_end": PPO_SCHEDULE_ENDS["epsilon"],
        "clip_range_vf": h.epsilon,
        "ent_coef": h.beta,
        "ent_schedule": h.beta_schedule or h.learning_rate_schedule,
        "ent_coef_end": PPO_SCHEDULE_ENDS["beta"],
        "vf_coef": 0.5,
        "normalize_obs": net.normalize,
        "hidden_sizes": [net.hidden_units] * net.num_layers,
        "activation": "swish",
        "vis_encode_type": _vis_encode_type(net),
        "memory": None if net.memory is None else net.memory.model_dump(),
        **_signal_settings(behaviour),
    }


def _sac_settings(behaviour: _Behaviour) -> dict[str, Any]:
    """A SAC behaviour's SACSettings fields (see the mapping table)."""
    h, net, extrinsic = behaviour.hyperparameters, behaviour.network_settings, behaviour.reward_signals.extrinsic
    return {
        "learning_rate": h.learning_rate,
        "lr_schedule": h.learning_rate_schedule,
        "buffer_size": h.buffer_size,
        "batch_size": h.batch_size,
        "buffer_init_steps": h.buffer_init_steps,
        "steps_per_update": h.steps_per_update,
        "reward_signal_steps_per_update": h.reward_signal_steps_per_update,
        "tau": h.tau,
        "gamma": (extrinsic or _RewardSignal()).gamma,
        "init_entcoef": h.init_entcoef,
        "save_replay_buffer": h.save_replay_buffer,
        "normalize_obs": net.normalize,
        "hidden_sizes": [net.hidden_units] * net.num_layers,
        "activation": "swish",
        "vis_encode_type": _vis_encode_type(net),
        "memory": None if net.memory is None else net.memory.model_dump(),
        **_signal_settings(behaviour),
    }


LEARNED_SIGNALS = ("curiosity", "rnd", "gail")
"""The reward signals with networks of their own (ML-Agents' reward providers other than the extrinsic one)."""


def _signal_settings(behaviour: _Behaviour) -> dict[str, Any]:
    """A behaviour's SignalSettings fields: the reward signals it names (note 10) and behavioural cloning."""
    signals: dict[str, Any] = {}
    extrinsic = behaviour.reward_signals.extrinsic
    if extrinsic is not None:  # its gamma is hyperparameters.gamma
        signals["extrinsic"] = {"strength": extrinsic.strength, "gamma": None}
    for key in LEARNED_SIGNALS:
        signal = getattr(behaviour.reward_signals, key)
        if signal is not None:
            signals[key] = {"strength": signal.strength, "gamma": signal.gamma, "encoding_size": _encoding_size(signal),
                            "num_layers": (signal.network_settings or _NetworkSettings()).num_layers,
                            "learning_rate": signal.learning_rate}
            if isinstance(signal, _GailRewardSignal):
                signals[key].update(demo_path=signal.demo_path, use_actions=signal.use_actions,
                                    use_vail=signal.use_vail)
    cloning = behaviour.behavioral_cloning
    return {"reward_signals": signals, "behavioral_cloning": None if cloning is None else cloning.model_dump()}


def _encoding_size(signal: _LearnedRewardSignal) -> int:
    """The width of a signal's networks, as ML-Agents' ``RewardSignalSettings.structure`` sets it: its
    network_settings' hidden_units (128 where absent), or a deprecated encoding_size where it has no network_settings."""
    if signal.network_settings is None and signal.encoding_size is not None:
        return signal.encoding_size
    return (signal.network_settings or _NetworkSettings()).hidden_units


def _signal_networks_reported(written: _Behaviour, merged: _Behaviour, prefix: str) -> list[str]:
    """Paths (under ``prefix``) of the learned signals' settings in a written section that sparring's signal networks
    don't follow (note 10): normalize or vis_encode_type other than the behaviour's, any
    memory, and an encoding_size that the signal's network_settings override (ML-Agents ignores it too)."""
    found = []
    policy = merged.network_settings
    for key in LEARNED_SIGNALS:
        signal, used = getattr(written.reward_signals, key), getattr(merged.reward_signals, key)
        if signal is None:
            continue
        path = f"{prefix}reward_signals.{key}."
        net = signal.network_settings
        if net is not None:
            follows = {"normalize": net.normalize == policy.normalize,
                       "vis_encode_type": net.vis_encode_type == policy.vis_encode_type, "memory": net.memory is None}
            found += [f"{path}network_settings.{name}" for name, ok in follows.items()
                      if name in net.model_fields_set and not ok]
        if signal.encoding_size is not None and signal.encoding_size != _encoding_size(used):
            found.append(f"{path}encoding_size")
    return found


def _vis_encode_type(net: _NetworkSettings) -> str:
    """The file's ``vis_encode_type``; where it names none, sparring's ``auto`` (note 4)."""
    return net.vis_encode_type if "vis_encode_type" in net.model_fields_set else "auto"


def _agreed(values: list[Any], fallback: Any) -> Any:
    """The value every behaviour has, else ``fallback``."""
    return values[0] if values and all(v == values[0] for v in values) else fallback


def _differences(settings: Mapping[str, Any], shared: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in settings.items() if value != shared[key]}


def _environment_parameters(parameters: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """The file's environment parameters in sparring's form (:mod:`sparring.curriculum`), and the paths of the
    settings left out: a last lesson's completion_criteria, which ML-Agents ignores too (with a warning)."""
    translated: dict[str, Any] = {}
    ignored = []
    for name, value in parameters.items():
        path = f"environment_parameters.{name}"
        if not (isinstance(value, Mapping) and "curriculum" in value):
            translated[name] = _parameter_value(value, path, source)
            continue
        lessons = value["curriculum"]
        if not isinstance(lessons, list) or not lessons or not all(isinstance(lesson, Mapping) for lesson in lessons):
            raise ConfigError(f"{source}: {path}.curriculum: expected a list of lessons (name, value, "
                              f"completion_criteria), got {lessons!r}")
        lessons = [{**lesson, "value": _parameter_value(lesson.get("value"), f"{path}.curriculum.{i}.value", source)}
                   for i, lesson in enumerate(lessons)]
        if lessons[-1].pop("completion_criteria", None) is not None:
            ignored.append(f"{path}.curriculum.{len(lessons) - 1}.completion_criteria (the last lesson)")
        translated[name] = {**value, "curriculum": lessons}
    try:
        _PARAMETERS.validate_python(translated)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc, prefix='environment_parameters.')}") from None
    return translated, ignored


_PARAMETERS = TypeAdapter(dict[str, EnvironmentParameter])
"""How sparring's run config checks ``environment_parameters`` (here, to name the file's keys in errors)."""

SAMPLER_DEFAULTS = {"uniform": {"min_value": 0.0, "max_value": 1.0}, "gaussian": {"mean": 1.0, "st_dev": 1.0},
                    "multirangeuniform": {"intervals": [(0.0, 1.0)]}}
"""ML-Agents' values for the sampler_parameters a file leaves out (settings.py: UniformSettings, GaussianSettings,
MultiRangeUniformSettings)."""


def _parameter_value(value: Any, path: str, source: str) -> Any:
    """A number, or a sampler (``sampler_type``, ``sampler_parameters``) as sparring's: a constant is its number, the
    others are checked here so that errors name the file's keys."""
    if not isinstance(value, Mapping) or "sampler_type" not in value:
        return value  # a number, or an error the schema names
    unknown = sorted(set(value) - {"sampler_type", "sampler_parameters"})
    if unknown:
        raise ConfigError(f"{source}: {path}.{unknown[0]}: unknown key (a sampler has sampler_type and "
                          "sampler_parameters)")
    kind, parameters = value["sampler_type"], value.get("sampler_parameters")
    if not isinstance(parameters, Mapping):  # ML-Agents requires the section, even for its defaults
        raise ConfigError(f"{source}: {path}.sampler_parameters: expected a mapping of the sampler's parameters "
                          f"(got {parameters!r})")
    if kind == "constant":
        unknown = sorted(set(parameters) - {"value", "seed"})
        if unknown:
            raise ConfigError(f"{source}: {path}.sampler_parameters.{unknown[0]}: unknown key (a constant has value)")
        constant = parameters.get("value", 0.0)
        if isinstance(constant, bool) or not isinstance(constant, (int, float)):
            raise ConfigError(f"{source}: {path}.sampler_parameters.value: expected a number (got {constant!r})")
        return float(constant)
    if kind not in SAMPLER_TYPES:
        raise ConfigError(f"{source}: {path}.sampler_type: must be one of constant, {', '.join(SAMPLER_TYPES)} "
                          f"(got {kind!r})")
    try:
        return SAMPLER_TYPES[kind].model_validate({**SAMPLER_DEFAULTS[kind], **parameters}).model_dump()
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc, prefix=f'{path}.sampler_parameters.')}") from None
