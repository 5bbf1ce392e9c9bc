"""ML-Agents demonstration files (``.demo``): recorded decisions read as one batch, and written as Unity writes them.

Why this exists: a game team records demonstrations where its players already are. Unity's Demonstration
Recorder writes a ``.demo`` file while a person (or the agent's heuristic) plays; in ML-Agents those files feed
behavioural cloning and GAIL. Here they load as one :class:`Demonstration` whose observations, actions and masks
are laid out exactly as the Unity env source (:mod:`sparring.envs.unity`) gives them for that behaviour (the same
decoding, PNG cameras included, the same sensor keys, images channels last), so a trainer takes them beside live
rollouts with no conversion of its own. :class:`DemonstrationWriter` goes the other way: a scripted bot or a
trained policy playing any sparring env records files that Unity and ``mlagents-learn`` read.

File layout (Unity's ``DemonstrationWriter``; ML-Agents' ``demo_loader`` reads it the same way)::

    offset 0    varint length + DemonstrationMetaProto    api_version 1, demonstration_name,
                                                          number_steps, number_episodes, mean_reward
                ... the rest of the header region          (MetaDataBytes = 32, plus one)
    offset 33   varint length + BrainParametersProto      brain_name (the fully qualified behaviour name,
                                                          "Striker?team=1"), action_spec
    then, one per recorded decision:
                varint length + AgentInfoActionPairProto  agent_info: observations, reward, done,
                                                          max_step_reached, id, action_mask (True = masked);
                                                          action_info: continuous_actions, discrete_actions

- Unity writes the meta twice: with zero counts when recording starts, then the final one, when the recording
  is closed, into the header region reserved for it. Its counts: ``number_steps`` = records;
  ``number_episodes`` = done records + 1 (closing ends one more episode, finished or not); ``mean_reward`` =
  the float32 sum of every record's reward / ``number_episodes``. :class:`DemonstrationWriter` computes them so.
- Unity's recorder keeps the name to 16 characters (letters, digits, space, hyphen) so the meta fits the region;
  the writer does the same and shortens it further if large counts would not fit.
- Closing in Unity also appends a second, undelimited copy of the meta after the last record. Like ML-Agents'
  loader, reading stops after ``number_steps`` records (a recording that was never closed says 0: then every
  record to the end of the file is read). The writer does not append that copy.
- ``api_version``: Unity writes 1 (``DemonstrationMetaData.ApiVersion``) and its importer refuses any other;
  ML-Agents' loader accepts 0 and 1, and so does :func:`load_demonstrations`.
- Observation shapes are not in the brain parameters: they come from the first record
  (``rpc_utils.behavior_spec_from_proto``) and must stay the same in every record after it.
- Each record pairs an observation with the action stored beside it, as ML-Agents' loader pairs them
  (``agent_info`` and ``action_info`` of the same record); older files keep actions in
  ``vector_actions_deprecated``, which is read too.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from gymnasium import spaces

from sparring.envs import mlagents_compat

mlagents_compat.install()

# mlagents_envs must be imported after the compatibility layer is installed.
from google.protobuf.message import DecodeError  # noqa: E402
from mlagents_envs import rpc_utils  # noqa: E402
from mlagents_envs.base_env import ActionSpec, BehaviorSpec, DimensionProperty  # noqa: E402
from mlagents_envs.communicator_objects.agent_info_action_pair_pb2 import AgentInfoActionPairProto  # noqa: E402
from mlagents_envs.communicator_objects.agent_info_pb2 import AgentInfoProto  # noqa: E402
from mlagents_envs.communicator_objects.brain_parameters_pb2 import BrainParametersProto  # noqa: E402
from mlagents_envs.communicator_objects.demonstration_meta_pb2 import DemonstrationMetaProto  # noqa: E402
from mlagents_envs.communicator_objects.observation_pb2 import NONE as UNCOMPRESSED  # noqa: E402
from mlagents_envs.communicator_objects.space_type_pb2 import continuous as LEGACY_CONTINUOUS  # noqa: E402
from mlagents_envs.communicator_objects.space_type_pb2 import discrete as LEGACY_DISCRETE  # noqa: E402
from mlagents_envs.exception import UnityException  # noqa: E402

from sparring.envs.unity import behaviour_spec, channels_first, sensor_keys  # noqa: E402
from sparring.spec import Batch, BehaviourSpec, Obs, batch_concat  # noqa: E402

log = logging.getLogger("sparring.demonstrations")

HEADER_SIZE = 33
"""Where the brain parameters start: Unity's ``DemonstrationWriter.MetaDataBytes`` (32) + 1, ML-Agents'
``INITIAL_POS``. The meta, with its length prefix, must fit before it."""
API_VERSION = 1
"""The ``api_version`` Unity writes and its importer requires."""
READABLE_API_VERSIONS = frozenset({0, 1})
"""The versions ML-Agents' ``demo_loader`` reads (``SUPPORTED_DEMONSTRATION_VERSIONS``)."""
MAX_NAME_LENGTH = 16
"""Unity's ``DemonstrationRecorder.MaxNameLength``."""

_FLOAT_DATA_TAG = b"\x0a"  # ObservationProto.FloatData.data: field 1, packed (length-delimited)
_DIMENSIONS = {  # how Unity's sensors of each rank describe their axes (2.x layout: images channels last)
    1: (DimensionProperty.NONE,),
    2: (DimensionProperty.VARIABLE_SIZE, DimensionProperty.NONE),  # buffer sensor (entities, entity size)
    3: (DimensionProperty.TRANSLATIONAL_EQUIVARIANCE, DimensionProperty.TRANSLATIONAL_EQUIVARIANCE,
        DimensionProperty.NONE),
}


class DemonstrationError(ValueError):
    """A demonstration file (or folder) that cannot be read, or does not fit the behaviour it is used for."""


@dataclass(frozen=True, eq=False)
class Demonstration:
    """Recorded decisions of one behaviour, batched (one row per record, in file order).

    Args:
        spec: the recorded behaviour (``name`` = the file's brain name), as :func:`sparring.envs.unity.behaviour_spec`
            makes it.
        obs: every record's observation in ``spec``'s layout: one array ``(n, *shape)``, or a dict by sensor key.
        actions: what ``env.step`` takes for ``spec``: int64 ``(n,)`` / ``(n, branches)`` discrete, float32
            ``(n, size)`` continuous, ``{"continuous", "discrete"}`` hybrid.
        rewards: float32 ``(n,)``, the reward received at that record (ML-Agents' ``AgentInfo.reward``).
        dones: bool ``(n,)``, the record ends an episode.
        max_step_reached: bool ``(n,)``, the episode ended by its step limit (truncated).
        action_masks: bool ``(n, sum(branches))``, ``True`` = allowed (ML-Agents stores ``True`` = masked); rows
            recorded without a mask allow everything. ``None`` without discrete actions or without any mask.
        agent_ids: int64 ``(n,)``; Unity records its episode id here, a new one per episode.
        files: the files read, in order.
        file_index: int64 ``(n,)``, which of ``files`` each record came from (``None``: all from one).
    """

    spec: BehaviourSpec
    obs: Obs
    actions: Batch
    rewards: np.ndarray
    dones: np.ndarray
    max_step_reached: np.ndarray
    action_masks: np.ndarray | None
    agent_ids: np.ndarray
    files: tuple[Path, ...]
    file_index: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n = len(self.rewards)
        rows = {name: len(value) for name, value in (
            ("dones", self.dones), ("max_step_reached", self.max_step_reached), ("agent_ids", self.agent_ids),
            ("action_masks", self.action_masks), ("file_index", self.file_index)) if value is not None}
        wrong = {name: count for name, count in rows.items() if count != n}
        if wrong:
            raise ValueError(f"demonstration of {self.spec.name!r}: {n} rewards but {wrong} rows")

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def episodes(self) -> int:
        """Episodes the records cover: each done record ends one, and each agent whose last record in a file is
        not done was in one more when the recording stopped."""
        n = len(self)
        if n == 0:
            return 0
        files = np.zeros(n, np.int64) if self.file_index is None else self.file_index
        pairs = np.stack([files, self.agent_ids], axis=1)[::-1]
        _, first_from_end = np.unique(pairs, axis=0, return_index=True)
        last = n - 1 - first_from_end
        return int(self.dones.sum()) + int((~self.dones[last]).sum())

    def matching(self, spec: BehaviourSpec) -> Demonstration:
        """This demonstration laid out for the behaviour being trained (its observation keys and order, dtypes,
        action layout), or a :class:`DemonstrationError` naming the file(s) and saying field by field how the
        recorded spaces differ from the behaviour's. Names may differ ("Striker?team=0" trains "Striker");
        continuous actions compare by size (Unity flattens them); one discrete branch fits ``Discrete(n)`` and
        ``MultiDiscrete([n])`` alike."""
        problems = _differences(self.spec, spec)
        if problems:
            raise DemonstrationError(f"{_names(self.files)}: the recorded behaviour {self.spec.name!r} does not match "
                                     f"behaviour {spec.name!r}: " + "; ".join(problems))
        if isinstance(spec.observation_space, spaces.Dict):
            obs: Obs = {key: self.obs[key].astype(box.dtype, copy=False)
                        for key, box in spec.observation_space.spaces.items()}
        else:
            obs = self.obs.astype(spec.observation_space.dtype, copy=False)
        continuous, discrete = _action_parts(self.spec, self.actions)
        return replace(self, spec=spec, obs=obs, actions=_action_batch(spec, continuous, discrete))


def load_demonstrations(path: str | os.PathLike, spec: BehaviourSpec | None = None) -> Demonstration:
    """A ``.demo`` file, or a folder of them (every ``*.demo`` directly inside, sorted by name; they must agree on
    the behaviour's spaces), as one :class:`Demonstration`. With ``spec``: :meth:`Demonstration.matching` it."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.demo") if p.is_file())
        if not files:
            raise DemonstrationError(f"{path}: a folder with no .demo files")
    elif path.is_file():
        files = [path]
    else:
        raise DemonstrationError(f"{path}: no such demonstration file or folder")
    parts: list[Demonstration] = []
    unrecorded: list[_Recording] = []
    for file in files:  # one file's messages in memory at a time
        recording = _read(file)
        if not recording.records:
            unrecorded.append(recording)
            continue
        part = _decode(recording)
        problems = _differences(part.spec, parts[0].spec) if parts else []
        if problems:
            raise DemonstrationError(f"{file}, {parts[0].files[0]}: the files disagree on the behaviour's spaces: "
                                     + "; ".join(problems))
        parts.append(part)
    if not parts:
        raise DemonstrationError(f"{_names(files)}: no recorded decisions, so the behaviour's observations are unknown")
    first = parts[0]
    wanted = (_continuous_size(first.spec), first.spec.action_branches)
    for recording in unrecorded:
        actions = recording.action_spec
        if (actions.continuous_size, tuple(actions.discrete_branches)) != wanted:
            raise DemonstrationError(
                f"{recording.path}, {first.files[0]}: the files disagree on the behaviour's actions: "
                f"{actions.continuous_size} continuous and discrete branches {tuple(actions.discrete_branches)} "
                f"against {wanted[0]} and {wanted[1]}")
    index = {file: i for i, file in enumerate(files)}
    demo = Demonstration(
        spec=first.spec,
        obs=batch_concat([p.obs for p in parts]),
        actions=batch_concat([p.actions for p in parts]),
        rewards=np.concatenate([p.rewards for p in parts]),
        dones=np.concatenate([p.dones for p in parts]),
        max_step_reached=np.concatenate([p.max_step_reached for p in parts]),
        action_masks=_concat_masks(parts),
        agent_ids=np.concatenate([p.agent_ids for p in parts]),
        files=tuple(files),
        file_index=np.concatenate([np.full(len(p), index[p.files[0]], np.int64) for p in parts]),
    )
    return demo if spec is None else demo.matching(spec)


class DemonstrationWriter:
    """Records decisions of one behaviour to a ``.demo`` file laid out as Unity's Demonstration Recorder writes it
    (see the module docstring); a context manager too. ``name`` (the demonstration name in the meta) defaults to
    the file's stem.

    Records are written in the order they are added, row by row. ``mlagents-learn`` reads a file as one agent's
    trajectory (Unity records one file per agent): give each agent its own writer for it.
    """

    def __init__(self, path: str | os.PathLike, spec: BehaviourSpec, name: str | None = None) -> None:
        self.path = Path(path)
        self.spec = spec
        self.name = _sanitized_name(self.path.stem if name is None else name)
        components = spec.observation_components
        self._sensors = [(key, tuple(box.shape)) for key, box in components.items()]
        self._dict = isinstance(spec.observation_space, spaces.Dict)
        self._steps = 0
        self._done = 0
        self._reward_sum = np.float32(0.0)
        self._file: BinaryIO | None = open(self.path, "wb")
        self._file.write(_header(self._meta(), self.path))
        self._file.write(_delimited(self._brain_parameters()))

    def __enter__(self) -> DemonstrationWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __len__(self) -> int:
        """Records written so far."""
        return self._steps

    def add(self, agent_ids, obs: Obs, actions: Batch, rewards, dones, max_step_reached, action_masks=None) -> None:
        """Append a batch of records (``n`` rows), in the conventions of :class:`Demonstration`'s fields
        (``action_masks``: ``True`` = allowed, or ``None`` to record none)."""
        if self._file is None:
            raise DemonstrationError(f"{self.path}: the demonstration writer is closed")
        ids = np.asarray(agent_ids).reshape(-1)
        n = len(ids)
        if ids.size and (not np.issubdtype(ids.dtype, np.integer)
                         or ids.min() < np.iinfo(np.int32).min or ids.max() > np.iinfo(np.int32).max):
            raise DemonstrationError(f"{self.path}: agent ids must be integers that fit ML-Agents' int32 id")
        rewards = self._rows("rewards", rewards, n, np.float32)
        if not np.isfinite(rewards).all():
            raise DemonstrationError(f"{self.path}: rewards must be finite (a reader refuses NaN and infinity)")
        dones = self._rows("dones", dones, n, bool)
        truncated = self._rows("max_step_reached", max_step_reached, n, bool)
        sensors = self._sensor_rows(obs, n)
        continuous, discrete = self._action_rows(actions, n)
        masks = self._mask_rows(action_masks, n)
        chunks = []
        for i in range(n):
            pair = AgentInfoActionPairProto()
            info = pair.agent_info
            info.reward = float(rewards[i])
            info.done = bool(dones[i])
            info.max_step_reached = bool(truncated[i])
            info.id = int(ids[i])
            if masks is not None:
                info.action_mask.extend(masks[i].tolist())
            for (key, shape), values in zip(self._sensors, sensors):
                observation = info.observations.add()
                observation.shape.extend(shape)
                observation.dimension_properties.extend(_DIMENSIONS.get(len(shape), (0,) * len(shape)))
                observation.name = key
                payload = values[i].tobytes()
                observation.float_data.MergeFromString(_FLOAT_DATA_TAG + _varint(len(payload)) + payload)
            if continuous is not None:
                pair.action_info.continuous_actions.extend(continuous[i].tolist())
            if discrete is not None:
                pair.action_info.discrete_actions.extend(discrete[i].tolist())
            chunks.append(_delimited(pair))
        self._file.write(b"".join(chunks))
        self._steps += n
        self._done += int(dones.sum())
        # Unity adds each record's reward to a float as it records it: a float32 running sum, in record order.
        self._reward_sum = np.add.accumulate(np.concatenate([[self._reward_sum], rewards]), dtype=np.float32)[-1]

    def close(self) -> None:
        """Write the final meta (``number_steps``, ``number_episodes``, ``mean_reward`` as Unity computes them) into
        Unity's header region, and close the file. Closing twice does nothing."""
        if self._file is None:
            return
        try:
            self._file.seek(0)
            self._file.write(_header(self._meta(final=True), self.path))
        finally:
            self._file.close()
            self._file = None

    def _meta(self, final: bool = False) -> DemonstrationMetaProto:
        meta = DemonstrationMetaProto(api_version=API_VERSION, demonstration_name=self.name)
        if final:
            episodes = self._done + 1
            meta.number_steps = self._steps
            meta.number_episodes = episodes
            meta.mean_reward = float(np.float32(self._reward_sum / np.float32(episodes)))
        return meta

    def _brain_parameters(self) -> BrainParametersProto:
        continuous = _continuous_size(self.spec)
        branches = self.spec.action_branches
        brain = BrainParametersProto(brain_name=self.spec.name, is_training=False)
        brain.action_spec.num_continuous_actions = continuous
        brain.action_spec.num_discrete_actions = len(branches)
        brain.action_spec.discrete_branch_sizes.extend(branches)
        if not self.spec.is_hybrid:  # the fields readers before communication API 1.3 use, as Unity fills them
            brain.vector_action_space_type_deprecated = LEGACY_CONTINUOUS if continuous else LEGACY_DISCRETE
            brain.vector_action_size_deprecated.extend([continuous] if continuous else branches)
        return brain

    def _rows(self, what: str, values, n: int, dtype: type) -> np.ndarray:
        array = np.asarray(values, dtype).reshape(-1)
        if len(array) != n:
            raise DemonstrationError(f"{self.path}: {what}: {len(array)} values for {n} agent ids")
        return array

    def _sensor_rows(self, obs: Obs, n: int) -> list[np.ndarray]:
        if self._dict != isinstance(obs, dict):
            layout = "a dict by sensor key" if self._dict else "one array"
            raise DemonstrationError(f"{self.path}: observations of behaviour {self.spec.name!r} are {layout}, "
                                     f"got {type(obs).__name__}")
        if self._dict and set(obs) != {key for key, _ in self._sensors}:
            raise DemonstrationError(f"{self.path}: observation keys {sorted(obs)}, behaviour {self.spec.name!r} has "
                                     f"{[key for key, _ in self._sensors]}")
        rows = []
        for key, shape in self._sensors:
            values = np.asarray(obs[key] if self._dict else obs)
            if values.shape != (n, *shape):
                raise DemonstrationError(f"{self.path}: observation {key!r}: shape {values.shape}, expected "
                                         f"{(n, *shape)} ({n} agents)")
            values = np.ascontiguousarray(values, "<f4")
            if not np.isfinite(values).all():
                raise DemonstrationError(f"{self.path}: observation {key!r} must be finite (a reader refuses NaN "
                                         f"and infinity)")
            rows.append(values)
        return rows

    def _action_rows(self, actions: Batch, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        try:
            continuous, discrete = _action_parts(self.spec, actions)
        except (KeyError, TypeError, ValueError) as exc:
            raise DemonstrationError(f"{self.path}: actions do not fit behaviour {self.spec.name!r} "
                                     f"({self.spec.action_space}): {exc}") from None
        for part in (continuous, discrete):
            if part is not None and len(part) != n:
                raise DemonstrationError(f"{self.path}: {len(part)} actions for {n} agent ids")
        if discrete is not None:
            branches = np.asarray(self.spec.action_branches)
            if ((discrete < 0) | (discrete >= branches)).any():
                raise DemonstrationError(f"{self.path}: discrete actions outside the branches {tuple(branches)}")
        return continuous, discrete

    def _mask_rows(self, masks, n: int) -> np.ndarray | None:
        if masks is None:
            return None
        if not self.spec.mask_size:
            raise DemonstrationError(f"{self.path}: action masks given, but behaviour {self.spec.name!r} has no "
                                     f"discrete actions")
        masks = np.asarray(masks, bool)
        if masks.shape != (n, self.spec.mask_size):
            raise DemonstrationError(f"{self.path}: action masks of shape {masks.shape}, expected "
                                     f"{(n, self.spec.mask_size)}")
        return ~masks  # ML-Agents stores True = masked


# --- reading ---------------------------------------------------------------------------------------------------


@dataclass
class _Recording:
    """One file's messages, parsed."""

    path: Path
    meta: DemonstrationMetaProto
    brain: BrainParametersProto
    records: list[AgentInfoActionPairProto]

    @property
    def action_spec(self) -> ActionSpec:
        return rpc_utils.behavior_spec_from_proto(self.brain, AgentInfoProto()).action_spec


def _read(path: Path) -> _Recording:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DemonstrationError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    view = memoryview(data)
    meta = DemonstrationMetaProto()
    _parse(view, 0, meta, path, "the demonstration meta at offset 0")
    if meta.api_version not in READABLE_API_VERSIONS:
        raise DemonstrationError(f"{path}: demonstration api_version {meta.api_version}; readable are "
                                 f"{sorted(READABLE_API_VERSIONS)} (Unity writes {API_VERSION})")
    if len(data) <= HEADER_SIZE or data[HEADER_SIZE] == 0:
        raise DemonstrationError(f"{path}: no brain parameters at offset {HEADER_SIZE} (the file is "
                                 f"{len(data)} bytes): not a demonstration, or one Unity never started writing")
    brain = BrainParametersProto()
    position = _parse(view, HEADER_SIZE, brain, path, f"the brain parameters at offset {HEADER_SIZE}")
    announced = meta.number_steps
    records: list[AgentInfoActionPairProto] = []
    while position < len(data) and (announced <= 0 or len(records) < announced):
        record = AgentInfoActionPairProto()
        position = _parse(view, position, record, path, f"record {len(records)}")
        records.append(record)
    if len(records) < announced:
        raise DemonstrationError(f"{path}: record {len(records)}: missing; the file ends after {len(records)} of "
                                 f"the {announced} records its meta announces (the file is truncated)")
    if position < len(data) and bytes(view[position:]) != meta.SerializeToString():
        log.warning("%s: %d bytes after the %d records its meta announces are ignored", path,
                    len(data) - position, announced)
    return _Recording(path, meta, brain, records)


def _parse(data: memoryview, position: int, message, path: Path, what: str) -> int:
    """Parse the length-delimited ``message`` at ``position``; the position after it."""
    size, start = 0, position
    for shift in range(0, 64, 7):
        if start >= len(data):
            raise DemonstrationError(f"{path}: {what}: the file ends inside its length prefix at offset {position} "
                                     f"(the file is truncated)")
        byte = data[start]
        start += 1
        size |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
    else:
        raise DemonstrationError(f"{path}: {what}: no valid length prefix at offset {position} (the file is corrupted)")
    end = start + size
    if end > len(data):
        raise DemonstrationError(f"{path}: {what}: its length prefix at offset {position} says {size} bytes, but only "
                                 f"{len(data) - start} remain (the file is truncated)")
    try:
        message.ParseFromString(data[start:end])
    except DecodeError as exc:
        raise DemonstrationError(f"{path}: {what}: the {size} bytes at offset {start} do not parse as a "
                                 f"{type(message).__name__} ({exc}); the file is corrupted") from None
    return end


def _decode(recording: _Recording) -> Demonstration:
    """One file's records as batched arrays, the way the Unity env source converts them."""
    path, records = recording.path, recording.records
    infos = [record.agent_info for record in records]
    try:
        unity_spec = rpc_utils.behavior_spec_from_proto(recording.brain, infos[0])
        spec = behaviour_spec(recording.brain.brain_name, unity_spec)
    except (ValueError, UnityException) as exc:
        raise DemonstrationError(f"{path}: {exc}") from None
    _check_sensor_counts(path, infos, len(unity_spec.observation_specs))
    observations = [_sensor(path, infos, index, key, unity_spec)
                    for index, key in enumerate(sensor_keys(unity_spec))]
    obs: Obs = (dict(zip(sensor_keys(unity_spec), observations))
                if isinstance(spec.observation_space, spaces.Dict) else observations[0])
    n = len(infos)
    rewards = np.fromiter((info.reward for info in infos), np.float32, n)
    _first_bad(path, ~np.isfinite(rewards), "its reward is NaN or infinite")
    continuous, discrete = _recorded_actions(path, records, unity_spec)
    return Demonstration(
        spec=spec,
        obs=obs,
        actions=_action_batch(spec, continuous, discrete),
        rewards=rewards,
        dones=np.fromiter((info.done for info in infos), bool, n),
        max_step_reached=np.fromiter((info.max_step_reached for info in infos), bool, n),
        action_masks=_recorded_masks(path, infos, spec.mask_size),
        agent_ids=np.fromiter((info.id for info in infos), np.int64, n),
        files=(path,),
    )


def _check_sensor_counts(path: Path, infos: list[AgentInfoProto], count: int) -> None:
    counts = np.fromiter((len(info.observations) for info in infos), np.int64, len(infos))
    _first_bad(path, counts != count, lambda i: f"{counts[i]} observations, record 0 has {count} "
                                                f"(the observations change mid-file)")


def _sensor(path: Path, infos: list[AgentInfoProto], index: int, key: str, unity_spec: BehaviorSpec) -> np.ndarray:
    """Sensor ``index`` of every record, ``(n, *shape)`` float32, channels last. Uncompressed values are copied as
    raw little-endian bytes straight into the batch; PNG-compressed ones are decoded by ``rpc_utils``, as the
    Unity env source decodes them."""
    observation_spec = unity_spec.observation_specs[index]
    shape = tuple(observation_spec.shape)
    expected = list(shape)
    size = int(np.prod(shape))
    n = len(infos)
    out = np.empty((n, *shape), np.float32)
    rows = out.reshape(n, size)
    for row, info in enumerate(infos):
        observation = info.observations[index]
        if observation.shape != expected:
            raise DemonstrationError(f"{path}: record {row}: observation {key!r} has shape {tuple(observation.shape)}, "
                                     f"record 0's is {shape} (the observation shapes change mid-file)")
        if observation.compression_type == UNCOMPRESSED:
            values = observation.float_data
            if len(values.data) != size:
                raise DemonstrationError(f"{path}: record {row}: observation {key!r} holds {len(values.data)} "
                                         f"values, its shape {shape} needs {size}")
            raw = values.SerializeToString()  # tag, length, then the packed float32s
            rows[row] = np.frombuffer(raw, "<f4", size, len(raw) - 4 * size)
        else:
            try:
                out[row] = rpc_utils._observation_to_np_array(observation, shape)
            except (UnityException, ValueError, OSError) as exc:
                raise DemonstrationError(f"{path}: record {row}: compressed observation {key!r} does not decode to "
                                         f"shape {shape}: {exc}") from None
    suspect = ~np.isfinite(rows.sum(axis=1))  # NaN and inf carry into the sum (as may an overflow: checked next)
    if suspect.any():
        bad = np.zeros(n, bool)
        bad[suspect] = ~np.isfinite(rows[suspect]).all(axis=1)
        _first_bad(path, bad, f"observation {key!r} has NaN or infinite values")
    if channels_first(observation_spec):  # Unity 3.x+ sends (C, H, W); sparring's images are (H, W, C)
        out = np.ascontiguousarray(out.transpose(0, 2, 3, 1))
    return out


def _recorded_actions(path: Path, records: list[AgentInfoActionPairProto],
                      unity_spec: BehaviorSpec) -> tuple[np.ndarray, np.ndarray]:
    """Continuous ``(n, size)`` float32 and discrete ``(n, branches)`` int64 actions of every record."""
    size = unity_spec.action_spec.continuous_size
    branches = unity_spec.action_spec.discrete_branches
    continuous: list[float] = []
    discrete: list[float] = []
    for row, record in enumerate(records):
        action = record.action_info
        row_continuous, row_discrete = action.continuous_actions, action.discrete_actions
        if not row_continuous and not row_discrete and action.vector_actions_deprecated:
            legacy = action.vector_actions_deprecated  # files from before hybrid actions: one list, either kind
            row_continuous, row_discrete = (legacy, []) if size else ([], legacy)
        if len(row_continuous) != size or len(row_discrete) != len(branches):
            raise DemonstrationError(f"{path}: record {row}: {len(row_continuous)} continuous and "
                                     f"{len(row_discrete)} discrete actions; the behaviour has {size} and "
                                     f"{len(branches)} (branches {tuple(branches)})")
        continuous.extend(row_continuous)
        discrete.extend(row_discrete)
    n = len(records)
    continuous_actions = np.array(continuous, np.float32).reshape(n, size)
    discrete_actions = np.array(discrete, np.int64).reshape(n, len(branches))
    _first_bad(path, ~np.isfinite(continuous_actions).all(axis=1), "its continuous actions are NaN or infinite")
    outside = ((discrete_actions < 0) | (discrete_actions >= np.asarray(branches, np.int64))).any(axis=1)
    _first_bad(path, outside, lambda i: f"discrete actions {discrete_actions[i].tolist()} outside the branches "
                                        f"{tuple(branches)}")
    return continuous_actions, discrete_actions


def _recorded_masks(path: Path, infos: list[AgentInfoProto], width: int) -> np.ndarray | None:
    """``True`` = allowed, rows without a recorded mask allow everything; ``None`` when no record has one."""
    if not width:
        return None
    rows: list[int] = []
    masked: list[bool] = []
    for row, info in enumerate(infos):
        mask = info.action_mask
        if len(mask):
            if len(mask) != width:
                raise DemonstrationError(f"{path}: record {row}: an action mask of {len(mask)} values, the "
                                         f"behaviour's discrete branches need {width}")
            rows.append(row)
            masked.extend(mask)
    if not rows:
        return None
    allowed = np.ones((len(infos), width), bool)
    allowed[rows] = ~np.array(masked, bool).reshape(len(rows), width)
    return allowed


def _first_bad(path: Path, bad: np.ndarray, what) -> None:
    """Refuse the first record flagged in ``bad``; ``what`` is the complaint, or makes it from the record number."""
    if bad.any():
        row = int(np.argmax(bad))
        raise DemonstrationError(f"{path}: record {row}: {what(row) if callable(what) else what}")


# --- layout: spaces, actions, headers ----------------------------------------------------------------------------


def _continuous_size(spec: BehaviourSpec) -> int:
    box = spec.continuous_space
    return 0 if box is None else int(np.prod(box.shape))


def _action_parts(spec: BehaviourSpec, actions: Batch) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A batch of ``spec``'s actions as ML-Agents holds them: continuous ``(n, size)`` float32 and discrete
    ``(n, branches)`` int64 (``None`` for a part the behaviour has not)."""
    if spec.is_hybrid:
        if not isinstance(actions, dict) or set(actions) != {"continuous", "discrete"}:
            raise TypeError("hybrid actions are a dict with 'continuous' and 'discrete' arrays")
        continuous, discrete = actions["continuous"], actions["discrete"]
    elif spec.is_continuous:
        continuous, discrete = actions, None
    else:
        continuous, discrete = None, actions
    if continuous is not None:
        continuous = np.asarray(continuous, np.float32)
        size = _continuous_size(spec)
        if continuous.shape[1:] != spec.continuous_space.shape:
            raise ValueError(f"continuous actions of shape {continuous.shape}, expected (n, {size})")
        continuous = continuous.reshape(len(continuous), size)
    if discrete is not None:
        discrete = np.asarray(discrete)
        branches = len(spec.action_branches)
        one = isinstance(spec.discrete_space, spaces.Discrete)
        if not np.issubdtype(discrete.dtype, np.integer) or discrete.ndim != (1 if one else 2) or (
                not one and discrete.shape[1] != branches):
            raise ValueError(f"discrete actions of shape {discrete.shape} and dtype {discrete.dtype}, expected "
                             f"integers of shape {'(n,)' if one else f'(n, {branches})'}")
        discrete = discrete.astype(np.int64, copy=False).reshape(len(discrete), branches)
    return continuous, discrete


def _action_batch(spec: BehaviourSpec, continuous: np.ndarray, discrete: np.ndarray) -> Batch:
    """ML-Agents' two action parts in ``spec``'s layout (the inverse of :func:`_action_parts`)."""
    parts = {}
    if spec.continuous_space is not None:
        parts["continuous"] = continuous.reshape(len(continuous), *spec.continuous_space.shape)
    if spec.discrete_space is not None:
        single = isinstance(spec.discrete_space, spaces.Discrete)
        parts["discrete"] = discrete[:, 0] if single else discrete
    return parts if spec.is_hybrid else next(iter(parts.values()))


def _differences(recorded: BehaviourSpec, wanted: BehaviourSpec) -> list[str]:
    """How ``recorded``'s spaces differ from ``wanted``'s, field by field (empty: they match)."""
    problems = []
    have, want = recorded.observation_components, wanted.observation_components
    keyed = isinstance(recorded.observation_space, spaces.Dict), isinstance(wanted.observation_space, spaces.Dict)
    if keyed[0] != keyed[1]:
        problems.append(f"observations: recorded {_describe_obs(recorded)}, the behaviour has {_describe_obs(wanted)}")
    elif not keyed[0]:
        if have["obs"].shape != want["obs"].shape:
            problems.append(f"observation shape: recorded {have['obs'].shape}, the behaviour's {want['obs'].shape}")
    else:
        missing = [key for key in want if key not in have]
        extra = [key for key in have if key not in want]
        if missing:
            problems.append(f"observations {missing} are not recorded (recorded: {list(have)})")
        if extra:
            problems.append(f"recorded observations {extra} are not the behaviour's (its: {list(want)})")
        problems += [f"observation {key!r}: recorded shape {have[key].shape}, the behaviour's {box.shape}"
                     for key, box in want.items() if key in have and have[key].shape != box.shape]
    if _continuous_size(recorded) != _continuous_size(wanted):
        problems.append(f"continuous actions: recorded {_continuous_size(recorded)}, "
                        f"the behaviour has {_continuous_size(wanted)}")
    if recorded.action_branches != wanted.action_branches:
        problems.append(f"discrete action branches: recorded {recorded.action_branches}, "
                        f"the behaviour has {wanted.action_branches}")
    return problems


def _describe_obs(spec: BehaviourSpec) -> str:
    if isinstance(spec.observation_space, spaces.Dict):
        return "observations " + ", ".join(f"{key!r} {box.shape}" for key, box in spec.observation_components.items())
    return f"one observation of shape {spec.observation_space.shape}"


def _concat_masks(parts: list[Demonstration]) -> np.ndarray | None:
    if all(part.action_masks is None for part in parts):
        return None
    return np.concatenate([np.ones((len(part), part.spec.mask_size), bool) if part.action_masks is None
                           else part.action_masks for part in parts])


def _names(files: tuple[Path, ...] | list[Path]) -> str:
    return ", ".join(str(file) for file in files)


def _sanitized_name(name: str) -> str:
    """The demonstration name as Unity's recorder keeps it: letters, digits, space and hyphen, 16 at most."""
    return re.sub(r"[^a-zA-Z0-9 -]", "", name)[:MAX_NAME_LENGTH]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(message) -> bytes:
    payload = message.SerializeToString()
    return _varint(len(payload)) + payload


def _header(meta: DemonstrationMetaProto, path: Path) -> bytes:
    """The meta, length-delimited and zero-padded to :data:`HEADER_SIZE` bytes; its name shortened if the counts
    leave it too little room (Unity would overwrite the brain parameters)."""
    meta = DemonstrationMetaProto.FromString(meta.SerializeToString())
    while len(header := _delimited(meta)) > HEADER_SIZE:
        if not meta.demonstration_name:
            raise DemonstrationError(f"{path}: the demonstration meta does not fit Unity's {HEADER_SIZE}-byte header")
        meta.demonstration_name = meta.demonstration_name[:-1]
    return header + bytes(HEADER_SIZE - len(header))
