"""Unity ML-Agents builds (or the Editor) as sparring envs, through the real ``mlagents_envs``.

A Unity game made with the ML-Agents package trains here unchanged: its build is
launched and driven by ``mlagents_envs.environment.UnityEnvironment`` exactly as
``mlagents-learn`` drives it (same command line, handshake, communication API
1.5.0, side channels), and what it sends is reshaped into the batched sparring
API:

===========================================  =============================================
ML-Agents                                    sparring
===========================================  =============================================
behaviour ``"Striker?team=1"``               ``specs["Striker?team=1"]`` with ``team_id=1``
one observation (vector or visual)           a ``Box`` observation
several sensors                              a ``Dict`` keyed by sensor name, in Unity's order
camera / grid sensor, (C, H, W) in 3.x+      ``(H, W, C)``, channels last (as 2.x sends them)
buffer sensor (max entities, entity size)    the same rank-2 ``Box``; all-zero rows are padding
continuous actions                           ``Box(-1, 1)`` (ML-Agents clips to that range)
discrete branches                            ``Discrete`` (one branch) / ``MultiDiscrete``
both (hybrid actions)                        ``hybrid_space(Box(-1, 1), Discrete|MultiDiscrete)``
``action_mask``, ``True`` = forbidden         ``action_mask``, ``True`` = allowed
``TerminalSteps.interrupted``                ``TerminalSteps.truncated``
a new episode id after every episode         a new agent id per episode (allowed by the API)
``group_id``, ``group_reward`` (int32 list)  ``group_ids`` (int64), ``group_rewards``
``StatsRecorder.Add`` (stats side channel)   ``drain_stats()``, ``"average"``, ``"sum"``, ...
environment parameters side channel          ``set_parameters``: numbers, and samplers the
                                             build draws from at every read
===========================================  =============================================

- :class:`UnityEnv` is one build (or the Editor, ``file_name=None``). Engine settings
  (time scale, resolution, frame rates), environment parameters and the game's
  statistics travel through ML-Agents' side channels; ``additional_args``
  (``--env-args``) reach the build's command line.
- :class:`MultiUnityEnv` is what the trainer uses: ``num_envs`` builds (worker ids
  ``0..n-1``, ports ``base_port + i``) stepped concurrently as one env. A build that
  crashes, hangs past ``timeout_wait`` or sends unusable data has its agents reported
  lost and is relaunched with backoff while the others keep stepping (see
  :mod:`sparring.envs.supervision`); a relaunched build gets the environment
  parameters set so far.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np
from gymnasium import spaces

from sparring.envs import mlagents_compat

mlagents_compat.install()

# mlagents_envs must be imported after the compatibility layer is installed.
from mlagents_envs.base_env import ActionTuple, BehaviorSpec, DimensionProperty, ObservationSpec  # noqa: E402
from mlagents_envs.base_env import DecisionSteps as UnityDecisions  # noqa: E402
from mlagents_envs.base_env import TerminalSteps as UnityTerminals  # noqa: E402
from mlagents_envs.environment import UnityEnvironment  # noqa: E402
from mlagents_envs.exception import UnityException, UnityTimeOutException  # noqa: E402
from mlagents_envs.side_channel.engine_configuration_channel import EngineConfigurationChannel  # noqa: E402
from mlagents_envs.side_channel.environment_parameters_channel import EnvironmentParametersChannel  # noqa: E402
from mlagents_envs.side_channel.stats_side_channel import StatsAggregationMethod, StatsSideChannel  # noqa: E402

from sparring.envs.base import (  # noqa: E402
    Actions, BehaviourStep, DecisionSteps, GameStats, MultiAgentEnv, StepResult, TerminalSteps, merge_stats,
)
from sparring.envs.parameters import (  # noqa: E402
    GaussianSampler, MultiRangeUniformSampler, ParameterValue, UniformSampler,
)
from sparring.envs.supervision import LiveAgents, RestartBudget, lost_result  # noqa: E402
from sparring.envs.vector import VectorEnv  # noqa: E402
from sparring.spec import Batch, BehaviourSpec, hybrid_space, team_of  # noqa: E402

log = logging.getLogger("sparring.unity")
_TRANSLATIONAL_PAIR = (DimensionProperty.TRANSLATIONAL_EQUIVARIANCE,) * 2

_OPEN: weakref.WeakSet[UnityEnv] = weakref.WeakSet()


def _close_open_builds() -> None:
    """Tell every build still open to quit, before the interpreter joins its threads.

    ``mlagents_envs`` closes builds from an ``atexit`` hook, which runs only after
    Python has joined non-daemon threads; but a gRPC worker thread waits inside each
    open build's pending Exchange until it is closed, so a script that ends without
    closing its env would hang for ever. Threading's own exit hooks run first.
    """
    for env in list(_OPEN):
        _close_quietly(env)


threading._register_atexit(_close_open_builds)  # the hook concurrent.futures uses for the same reason

_AGGREGATIONS = {
    StatsAggregationMethod.AVERAGE: "average",
    StatsAggregationMethod.MOST_RECENT: "most_recent",
    StatsAggregationMethod.SUM: "sum",
    StatsAggregationMethod.HISTOGRAM: "histogram",
}
"""ML-Agents' ``StatsAggregationMethod`` by the names :data:`sparring.envs.base.STAT_AGGREGATIONS` gives them."""

BUILD_FAILURES = (UnityException, RuntimeError)
"""What a build can do wrong: crash, hang, break the protocol, send NaN (``mlagents_envs`` raises RuntimeError)."""


@dataclass(frozen=True)
class EngineSettings:
    """Unity engine settings sent over ML-Agents' engine configuration channel (its defaults)."""

    width: int = 84
    height: int = 84
    quality_level: int = 5
    time_scale: float = 20.0
    target_frame_rate: int = -1
    capture_frame_rate: int = 60


def behaviour_spec(name: str, unity_spec: BehaviorSpec) -> BehaviourSpec:
    """An ML-Agents ``BehaviorSpec`` in sparring's terms (see the module docstring's table)."""
    action = unity_spec.action_spec
    branches = list(action.discrete_branches)
    discrete = spaces.Discrete(branches[0]) if len(branches) == 1 else spaces.MultiDiscrete(branches) if branches else None
    continuous = spaces.Box(-1.0, 1.0, (action.continuous_size,), np.float32) if action.continuous_size else None
    if continuous is not None and discrete is not None:
        action_space: spaces.Space = hybrid_space(continuous, discrete)
    elif continuous is not None or discrete is not None:
        action_space = continuous or discrete
    else:
        raise ValueError(f"behaviour {name!r} has no actions")
    boxes = [spaces.Box(-np.inf, np.inf, _channels_last(obs), np.float32) for obs in unity_spec.observation_specs]
    if not boxes:
        raise ValueError(f"behaviour {name!r} has no observations")
    keys = sensor_keys(unity_spec)
    # In the order Unity sent the sensors (its SensorUtils.SortSensors order, a culture-aware comparison of
    # names), which is how a Unity model numbers its inputs obs_0, obs_1, ...: gymnasium would sort a plain
    # dict's keys by Python's order ("Zone" before "ammo", where Unity has "ammo" first).
    observation_space = boxes[0] if len(boxes) == 1 else spaces.Dict(OrderedDict(zip(keys, boxes)))
    return BehaviourSpec(name, observation_space, action_space, team_of(name))


def channels_first(obs: ObservationSpec) -> bool:
    """Whether a sensor is an image or grid laid out channels first, as ML-Agents 3.x+ sends them
    (``ObservationSpec.Visual(channels, height, width)``, dimension properties (none, translational,
    translational)); 2.x sends them channels last (translational, translational, none)."""
    return len(obs.shape) == 3 and tuple(obs.dimension_property[1:]) == _TRANSLATIONAL_PAIR


def _channels_last(obs: ObservationSpec) -> tuple[int, ...]:
    shape = tuple(obs.shape)
    return (shape[1], shape[2], shape[0]) if channels_first(obs) else shape


def sensor_keys(unity_spec: BehaviorSpec) -> list[str]:
    """Dict keys for a behaviour's sensors: their names, or ``obs_<i>`` where a name is empty or repeated."""
    names = [obs.name for obs in unity_spec.observation_specs]
    return [name if name and names.count(name) == 1 else f"obs_{i}" for i, name in enumerate(names)]


class UnityEnv(MultiAgentEnv):
    """One Unity build, or the Unity Editor, as a sparring env.

    Args:
        file_name: the build (``"builds/Soccer"`` finds ``Soccer.x86_64`` on Linux); ``None``
            waits for the Editor's Play button on ``base_port`` (default 5004).
        worker_id: this build listens on ``base_port + worker_id`` (default base port 5005).
        seed: the seed the build gets at launch (ML-Agents passes it in the handshake).
        no_graphics: launch with ``-nographics -batchmode``.
        timeout_wait: seconds the build may take to start, and to answer each step.
        additional_args: more command-line arguments for the build (mlagents-learn's ``--env-args``).
        engine_settings: time scale, resolution, frame rates.
        environment_parameters: parameters the game reads (``Academy.Instance.EnvironmentParameters``)
            from its first episodes on: numbers or samplers, as :meth:`set_parameters` takes them.
        log_folder: where the build writes its Player log (absolute path).

    The build is launched and reset at construction: ML-Agents announces behaviours
    with their first agents, and the sparring API needs the specs before ``reset``.
    ``reset(seed)`` cannot reseed a running build (Unity takes its seed at launch).

    Attributes:
        parameters: the environment parameters sent to the build so far, by name.
    """

    def __init__(
        self,
        file_name: str | None,
        *,
        worker_id: int = 0,
        base_port: int | None = None,
        seed: int = 0,
        no_graphics: bool = True,
        timeout_wait: float = 60.0,
        additional_args: Sequence[str] = (),
        engine_settings: EngineSettings = EngineSettings(),
        environment_parameters: Mapping[str, ParameterValue] | None = None,
        log_folder: str | None = None,
    ) -> None:
        self.name = file_name or "the Unity Editor"
        self.seed, self.worker_id = seed, worker_id
        if log_folder is not None:
            os.makedirs(log_folder, exist_ok=True)
        engine_channel = EngineConfigurationChannel()
        engine_channel.set_configuration_parameters(**vars(engine_settings))
        self._parameter_channel = EnvironmentParametersChannel()
        self._stats_channel = StatsSideChannel()
        self.parameters: dict[str, ParameterValue] = {}
        self.set_parameters(environment_parameters or {})  # queued: they travel with the first reset
        self.unity = UnityEnvironment(
            file_name, worker_id=worker_id, base_port=base_port, seed=seed, no_graphics=no_graphics,
            timeout_wait=timeout_wait, additional_args=list(additional_args),
            side_channels=[engine_channel, self._parameter_channel, self._stats_channel], log_folder=log_folder)
        try:
            self.unity.reset()
            self.specs = {name: behaviour_spec(name, spec) for name, spec in self.unity.behavior_specs.items()}
            if not self.specs:
                raise ValueError(f"{self.name}: no behaviour sent any agent at reset")
        except BaseException:
            self.unity.close()
            raise
        self._converters = {name: _Converter(spec, self.unity.behavior_specs[name]) for name, spec in self.specs.items()}
        self._live = LiveAgents(list(self.specs))
        self._fresh_reset = True  # the construction's reset has not been handed out yet
        _OPEN.add(self)

    def __repr__(self) -> str:
        return f"<UnityEnv {self.name} port {self.unity._port}>"

    @property
    def process(self):
        """The build's ``subprocess.Popen`` (``None`` for the Editor)."""
        return self.unity._process

    @property
    def live_agents(self) -> dict[str, np.ndarray]:
        """Ids of the agents whose episode is under way, per behaviour."""
        return self._live.snapshot()

    def reset(self, seed: int | None = None) -> StepResult:
        if not self._fresh_reset:
            self.unity.reset()
        self._fresh_reset = False
        return self._collect(fresh=True)

    def step(self, actions: Actions) -> StepResult:
        unknown = set(actions) - set(self._converters)
        if unknown:
            raise ValueError(f"actions for unknown behaviours {sorted(unknown)}; this build has {list(self.specs)}")
        for name, converter in self._converters.items():
            if name in actions:
                if converter.deciding:
                    self.unity.set_actions(name, converter.action_tuple(actions[name]))
            elif converter.deciding:
                raise ValueError(f"actions missing for behaviour {name!r}, which has {converter.deciding} deciding agents")
        self._fresh_reset = False
        self.unity.step()
        return self._collect(fresh=False)

    def _collect(self, fresh: bool) -> StepResult:
        new = set(self.unity.behavior_specs) - set(self.specs)
        if new:
            raise ValueError(f"{self.name}: behaviours {sorted(new)} appeared after the first reset; sparring needs "
                             "every behaviour to have an agent when the game starts")
        result = {name: converter.convert(*self.unity.get_steps(name)) for name, converter in self._converters.items()}
        self._live.update(result, fresh)
        return result

    def set_parameters(self, parameters: Mapping[str, ParameterValue]) -> None:
        """Send parameters over ML-Agents' environment-parameters channel; they travel with the next reset or step.

        Samplers go as samplers, so the build draws a value each time the game reads the parameter, as
        under ``mlagents-learn``; one with seed -1 gets a seed derived from this build's seed, its worker
        index and the parameter's name, so builds and parameters draw differently and a run draws the
        same again. A value equal to the one the build already has is not sent again, so a curriculum
        that re-sends every parameter at a lesson change leaves the unchanged samplers drawing on rather
        than replaying their first values. Parameters set before the first ``reset`` make it a real
        reset, so the first episodes handed out already read them (as ``mlagents-learn`` sets them first).
        """
        _check_parameters(parameters)
        changed = {key: value for key, value in parameters.items() if self.parameters.get(key) != value}
        for key, value in changed.items():
            _send_parameter(self._parameter_channel, key, value, self._sampler_seed(key, value))
        self.parameters = {**self.parameters, **parameters}
        if changed:
            self._fresh_reset = False  # the construction's episodes began without them

    def _sampler_seed(self, key: str, value: ParameterValue) -> int:
        """A sampler's own seed, or for seed -1 (and numbers, which ignore it) the derived one."""
        own = getattr(value, "seed", -1)
        return own if own != -1 else zlib.crc32(f"{self.seed}/{self.worker_id}/{key}".encode()) >> 1  # an int32

    def drain_stats(self) -> GameStats:
        """What the game recorded with ``StatsRecorder.Add`` since the last call, under sparring's aggregation names."""
        return {key: [(value, _AGGREGATIONS[method]) for value, method in values]
                for key, values in self._stats_channel.get_and_reset_stats().items()}

    def close(self) -> None:
        _OPEN.discard(self)
        self.unity.close()


def _check_parameters(parameters: Mapping[str, ParameterValue]) -> None:
    """Refuse, naming it, a parameter that is neither a number nor a sampler, before anything is sent."""
    for key, value in parameters.items():
        if isinstance(value, bool) or not isinstance(value, (Real, UniformSampler, GaussianSampler,
                                                             MultiRangeUniformSampler)):
            raise TypeError(f"environment parameter {key!r}: expected a number or a sampler "
                            f"(sparring.envs.parameters), got {value!r}")


def _send_parameter(channel: EnvironmentParametersChannel, key: str, value: ParameterValue, seed: int) -> None:
    """Queue one parameter on the channel: a number, or a sampler with the seed the build draws it with."""
    if isinstance(value, UniformSampler):
        channel.set_uniform_sampler_parameters(key, value.min_value, value.max_value, seed)
    elif isinstance(value, GaussianSampler):
        channel.set_gaussian_sampler_parameters(key, value.mean, value.st_dev, seed)
    elif isinstance(value, MultiRangeUniformSampler):
        channel.set_multirangeuniform_sampler_parameters(key, value.intervals, seed)
    else:
        channel.set_float_parameter(key, float(value))


class _Converter:
    """Reshapes one behaviour's ML-Agents steps and actions (the module docstring's table, batched)."""

    def __init__(self, spec: BehaviourSpec, unity_spec: BehaviorSpec) -> None:
        self.spec = spec
        self.keys = sensor_keys(unity_spec) if isinstance(spec.observation_space, spaces.Dict) else None
        self.transposed = [channels_first(obs) for obs in unity_spec.observation_specs]
        self.deciding = 0

    def observations(self, obs: list[np.ndarray]) -> Any:
        obs = [o.transpose(0, 2, 3, 1) if t else o for o, t in zip(obs, self.transposed)]
        return obs[0] if self.keys is None else dict(zip(self.keys, obs))

    def convert(self, decisions: UnityDecisions, terminals: UnityTerminals) -> BehaviourStep:
        self.deciding = len(decisions)
        mask = None
        if decisions.action_mask is not None:
            mask = ~np.concatenate(decisions.action_mask, axis=1)
        return BehaviourStep(
            DecisionSteps(decisions.agent_id.astype(np.int64), self.observations(decisions.obs),
                          decisions.reward, mask, *_groups(decisions)),
            TerminalSteps(terminals.agent_id.astype(np.int64), self.observations(terminals.obs),
                          terminals.reward, terminals.interrupted.astype(bool), *_groups(terminals)),
        )

    def action_tuple(self, actions: Batch) -> ActionTuple:
        parts = actions if self.spec.is_hybrid else {"continuous" if self.spec.is_continuous else "discrete": actions}
        rows = {len(np.asarray(part)) for part in parts.values()}
        if rows != {self.deciding}:
            raise ValueError(f"actions for behaviour {self.spec.name!r}: got {sorted(rows)} rows, "
                             f"expected {self.deciding} (one per deciding agent)")
        return ActionTuple(
            continuous=_rows(parts.get("continuous"), self.deciding, np.float32),
            discrete=_rows(parts.get("discrete"), self.deciding, np.int32),
        )


def _groups(steps: UnityDecisions | UnityTerminals) -> tuple[np.ndarray, np.ndarray]:
    """Group ids and group rewards as the sparring API types them (``mlagents_envs`` gives the ids as a list of
    int32, the rewards as float32)."""
    return np.asarray(steps.group_id, np.int64), np.asarray(steps.group_reward, np.float32)


def _rows(part: np.ndarray | None, n: int, dtype: type) -> np.ndarray | None:
    """One action part as the 2-D array ``ActionTuple`` wants (``None``: the behaviour has no such part)."""
    return None if part is None else np.asarray(part).reshape(n, -1).astype(dtype, copy=False)


@dataclass
class _Slot:
    """One build position: ``up`` (stepping) or down (``launch`` pending, or waiting until ``retry_at``)."""

    index: int
    env: UnityEnv | None = None
    launch: Future | None = None
    retry_at: float = 0.0
    last_failure: str = ""
    stats: GameStats = field(default_factory=dict)  # what its failed builds had sent and nobody had drained


class MultiUnityEnv(VectorEnv):
    """``num_envs`` Unity builds as one env that keeps training while builds crash (see the module docstring).

    Args:
        file_name: the build; ``None`` for the Editor (then ``num_envs`` must be 1).
        num_envs: builds launched; build ``i`` is worker ``i`` on port ``base_port + i``.
        seed: build ``i`` is launched with ``seed + i`` (relaunches add ``num_envs`` per restart).
        max_restarts: relaunches allowed per build over the env's life; one more failure raises
            :class:`~sparring.envs.supervision.EngineFailure`.
        restart_backoff, max_backoff: seconds before a relaunch, doubling per restart of that build.
        **options: the rest of :class:`UnityEnv`'s arguments, for every build.

    Attributes:
        parameters: the environment parameters every build gets (``environment_parameters``, then
            :meth:`set_parameters`); a relaunched build is launched with them.
        metrics: ``restarts``, ``crashes`` (the process died), ``timeouts``, ``invalid_messages``,
            ``launch_failures``, ``lost_agents``.
        failures: the most recent failure descriptions.
    """

    copies_seat_agents = False  # game engines declare sides by team ids; they seat nobody

    def __init__(
        self,
        file_name: str | None,
        num_envs: int = 1,
        *,
        seed: int = 0,
        max_restarts: int = 5,
        restart_backoff: float = 0.5,
        max_backoff: float = 30.0,
        **options: Any,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        if file_name is None and num_envs != 1:
            raise ValueError("the Unity Editor is one environment: num_envs must be 1 without a build")
        self.file_name = file_name
        self.seed = seed
        self.parameters: dict[str, ParameterValue] = dict(options.pop("environment_parameters", None) or {})
        self.options = options
        self.budget = RestartBudget(num_envs, ("crashes", "timeouts", "invalid_messages", "launch_failures"),
                                    max_restarts, restart_backoff, max_backoff, log)
        self.metrics = self.budget.metrics
        self.failures = self.budget.failures
        self.slots = [_Slot(i) for i in range(num_envs)]
        # Per build: one thread steps or launches it, one more may be closing its hung predecessor.
        self._pool = ThreadPoolExecutor(max_workers=2 * num_envs, thread_name_prefix="unity")
        try:
            launches = [self._pool.submit(self._launch, slot.index) for slot in self.slots]
            for slot, launch in zip(self.slots, launches):
                slot.env = launch.result()  # a build that cannot start at all is a configuration problem: raise
            VectorEnv.__init__(self, [slot.env.specs for slot in self.slots])
        except BaseException:
            self.close()
            raise
        self._empty = lost_result(self.specs, {})  # what a build that is down answers

    @property
    def restarts(self) -> int:
        """Relaunches so far, over all builds."""
        return self.metrics["restarts"]

    @property
    def builds_up(self) -> int:
        return sum(slot.env is not None for slot in self.slots)

    def _launch(self, index: int) -> UnityEnv:
        seed = self.seed + index + len(self.slots) * self.budget.restarts[index]
        return UnityEnv(self.file_name, worker_id=index, seed=seed, environment_parameters=self.parameters,
                        **self.options)

    def set_parameters(self, parameters: Mapping[str, ParameterValue]) -> None:
        """Every build gets the parameters now (each draws its own samples); builds launched later, with them."""
        _check_parameters(parameters)
        self.parameters = {**self.parameters, **parameters}  # replaced, not changed: launch threads read it
        for slot in self.slots:
            if slot.env is not None:
                slot.env.set_parameters(parameters)

    def drain_stats(self) -> GameStats:
        """Every build's statistics, build by build; a build that failed loses only what it never sent."""
        parts = []
        for slot in self.slots:
            parts.append(slot.stats)
            slot.stats = {}
            if slot.env is not None:
                parts.append(slot.env.drain_stats())
        return merge_stats(parts)

    def _run_copies(self, method: str, args: list[Any]) -> list[StepResult]:
        try:
            return self._round(method, args)
        except BaseException:
            self.close()  # EngineFailure, Ctrl-C or a bug mid-round: builds are out of step
            raise

    def _round(self, method: str, args: list[Any]) -> list[StepResult]:
        results: list[StepResult | None] = [None] * len(self.slots)
        calls = {slot.index: self._pool.submit(getattr(slot.env, method), args[slot.index])
                 for slot in self.slots if slot.env is not None}
        for index, call in calls.items():
            try:
                results[index] = call.result()
            except BUILD_FAILURES as exc:
                results[index] = self._fail(self.slots[index], exc)
        self._tend(results, wait=not calls)
        return [result if result is not None else self._empty for result in results]

    def _tend(self, results: list[StepResult | None], wait: bool) -> None:
        """Relaunch builds that are down; a relaunched build's first decisions join this round.

        ``wait``: no build is up, so block until one comes back (bounded by the restart budget).
        """
        while True:
            for slot in self.slots:
                if slot.env is not None:
                    continue
                if slot.launch is None and time.monotonic() >= slot.retry_at:
                    slot.launch = self._pool.submit(self._launch, slot.index)
                if slot.launch is not None and slot.launch.done():
                    launch, slot.launch = slot.launch, None
                    try:
                        env = launch.result()
                        if env.specs != self.specs:
                            env.close()
                            raise ValueError(f"relaunched build has behaviours {sorted(env.specs)} with different "
                                             f"specs from the first launch's {sorted(self.specs)}")
                        env.set_parameters(self.parameters)  # any set while it was launching
                        results[slot.index] = env.reset()
                        slot.env = env
                        wait = False
                    except (*BUILD_FAILURES, ValueError) as exc:
                        self._fail(slot, exc, "launch_failures")
            if not wait:
                return
            time.sleep(0.05)

    def _fail(self, slot: _Slot, error: BaseException, kind: str | None = None) -> StepResult:
        """Record a build's failure, close it, schedule the relaunch; its live agents come back as lost."""
        env, slot.env = slot.env, None
        lost = env.live_agents if env is not None else {}
        reason = f"{type(error).__name__}: {error}".strip()
        if kind is None:
            process = env.process if env is not None else None
            crashed = process is not None and _wait(process, 0.5) is not None
            kind = "crashes" if crashed else "timeouts" if isinstance(error, UnityTimeOutException) else "invalid_messages"
            if crashed:
                reason += f" (build exited with code {process.returncode})"
        self.budget.record(slot.index, kind, reason, lost)
        slot.last_failure = reason
        if env is not None:
            slot.stats = merge_stats([slot.stats, env.drain_stats()])  # what it sent before failing stays readable
            self._pool.submit(_close_quietly, env)  # a hung build takes timeout_wait to be killed: not here
        slot.retry_at = time.monotonic() + self.budget.next_delay(slot.index, reason)
        return lost_result(self.specs, lost)

    def close(self) -> None:
        """Close every build (each is told to quit, then killed if it does not), then the worker threads."""
        if self._closed:
            return
        self._closed = True
        for slot in getattr(self, "slots", []):
            if slot.launch is not None:
                slot.launch.add_done_callback(lambda launch: launch.exception() or launch.result().close())
            if slot.env is not None:
                _close_quietly(slot.env)
                slot.env = None
        if hasattr(self, "_pool"):
            self._pool.shutdown(wait=True)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _wait(process, timeout: float) -> int | None:
    try:
        return process.wait(timeout)
    except Exception:
        return process.poll()


def _close_quietly(env: UnityEnv) -> None:
    try:
        env.close()
    except Exception as exc:  # a build that is already gone cannot be told to quit
        log.debug("closing %r: %s", env, exc)
