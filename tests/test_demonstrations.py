"""ML-Agents demonstration files (envs/demonstrations.py): Unity's layout read, written, and refused when broken.

Unity-made files are built here with mlagents_envs' own message classes, in the order Unity's DemonstrationWriter
writes them (meta, header region, brain parameters, records, then the final meta at offset 0 and its undelimited
copy at the end), and read back the way the Unity env source reads a build's observations (rpc_utils).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces

from sparring.envs.demonstrations import (
    HEADER_SIZE, Demonstration, DemonstrationError, DemonstrationWriter, load_demonstrations,
)
from sparring.envs.unity import behaviour_spec, channels_first, sensor_keys
from sparring.spec import BehaviourSpec, hybrid_space

# mlagents_envs message modules after sparring.envs.unity: they need its protobuf compatibility layer.
from mlagents_envs import rpc_utils  # noqa: E402
from mlagents_envs.base_env import (  # noqa: E402
    ActionSpec, BehaviorSpec, DimensionProperty, ObservationSpec, ObservationType,
)
from mlagents_envs.communicator_objects.agent_info_action_pair_pb2 import AgentInfoActionPairProto  # noqa: E402
from mlagents_envs.communicator_objects.brain_parameters_pb2 import BrainParametersProto  # noqa: E402
from mlagents_envs.communicator_objects.demonstration_meta_pb2 import DemonstrationMetaProto  # noqa: E402
from mlagents_envs.communicator_objects.observation_pb2 import PNG  # noqa: E402
from PIL import Image  # noqa: E402  (a dependency of mlagents_envs, which decodes PNG observations with it)

pytestmark = pytest.mark.timeout(60)

NONE, TRANSLATIONAL = DimensionProperty.NONE, DimensionProperty.TRANSLATIONAL_EQUIVARIANCE
BEHAVIOUR = "Expert?team=1"
ACTIONS = {"discrete": ActionSpec(0, (3, 2)), "continuous": ActionSpec(2, ()), "hybrid": ActionSpec(2, (3,))}
# Sensors as Unity sends them: a vector, a 2.x camera (H, W, C) as PNG, a 3.x grid sensor (C, H, W) uncompressed,
# a 3.x camera (C, H, W) as PNG.
SENSORS = [
    ObservationSpec((5,), (NONE,), ObservationType.DEFAULT, "VectorSensor"),
    ObservationSpec((6, 8, 3), (TRANSLATIONAL, TRANSLATIONAL, NONE), ObservationType.DEFAULT, "CameraSensor"),
    ObservationSpec((2, 4, 4), (NONE, TRANSLATIONAL, TRANSLATIONAL), ObservationType.DEFAULT, "GridSensor"),
    ObservationSpec((3, 5, 7), (NONE, TRANSLATIONAL, TRANSLATIONAL), ObservationType.DEFAULT, "Camera3"),
]
COMPRESSED = {"CameraSensor", "Camera3"}


# --- Unity's side, rebuilt with mlagents_envs' message classes ----------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def delimited(message) -> bytes:
    payload = message.SerializeToString()
    return varint(len(payload)) + payload


def read_varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def unity_file(path: Path, brain: BrainParametersProto, records: list[AgentInfoActionPairProto],
               closed: bool = True, api_version: int = 1) -> Path:
    """A .demo as Unity's DemonstrationWriter writes one: the meta with zero counts, the brain parameters after the
    header region, the records, and on closing the final meta appended undelimited, then rewritten at offset 0."""
    out = io.BytesIO()
    meta = DemonstrationMetaProto(api_version=api_version, demonstration_name="Expert")
    out.write(delimited(meta))
    out.seek(HEADER_SIZE)
    out.write(delimited(brain))
    cumulative = np.float32(0)
    for record in records:
        meta.number_steps += 1
        cumulative = np.float32(cumulative + np.float32(record.agent_info.reward))
        meta.number_episodes += record.agent_info.done
        out.write(delimited(record))
    if closed:
        meta.number_episodes += 1
        meta.mean_reward = float(cumulative / np.float32(meta.number_episodes))
        out.write(meta.SerializeToString())
        out.seek(0)
        out.write(delimited(meta))
    path.write_bytes(out.getvalue())
    return path


def brain_parameters(actions: ActionSpec, name: str = BEHAVIOUR) -> BrainParametersProto:
    brain = BrainParametersProto(brain_name=name, is_training=False)
    brain.action_spec.num_continuous_actions = actions.continuous_size
    brain.action_spec.num_discrete_actions = len(actions.discrete_branches)
    brain.action_spec.discrete_branch_sizes.extend(actions.discrete_branches)
    return brain


def unity_records(actions: ActionSpec, n: int = 6, seed: int = 0) -> tuple[list[AgentInfoActionPairProto], dict]:
    """Records of two episodes (agent ids 7 then 8), with every sensor of SENSORS; also the values put in."""
    rng = np.random.default_rng(seed)
    truth = {"rewards": rng.normal(size=n).astype(np.float32), "dones": np.arange(n) % 3 == 2,
             "max_step": np.arange(n) == n - 1, "ids": np.repeat([7, 8], n // 2),
             "continuous": rng.uniform(-1, 1, (n, actions.continuous_size)).astype(np.float32),
             "discrete": np.stack([rng.integers(0, b, n) for b in actions.discrete_branches] or [np.zeros((n, 0))],
                                  1).reshape(n, -1).astype(np.int64),
             "masked": rng.random((n, sum(actions.discrete_branches))) < 0.3, "images": {}}
    records = []
    for i in range(n):
        record = AgentInfoActionPairProto()
        info = record.agent_info
        info.reward, info.done, info.id = float(truth["rewards"][i]), bool(truth["dones"][i]), int(truth["ids"][i])
        info.max_step_reached = bool(truth["max_step"][i])
        if i != 1 and actions.discrete_branches:  # record 1 carries no mask: everything allowed
            info.action_mask.extend(truth["masked"][i].tolist())
        for sensor in SENSORS:
            observation = info.observations.add()
            observation.shape.extend(sensor.shape)
            observation.dimension_properties.extend(int(d) for d in sensor.dimension_property)
            observation.name = sensor.name
            if sensor.name in COMPRESSED:
                channels_last = sensor.shape if sensor.name == "CameraSensor" else (*sensor.shape[1:], sensor.shape[0])
                image = rng.integers(0, 256, channels_last, np.uint8)
                truth["images"].setdefault(sensor.name, []).append(image)
                observation.compression_type = PNG
                observation.compressed_data = png(image)
            else:
                observation.float_data.data.extend(rng.normal(size=int(np.prod(sensor.shape))).tolist())
        record.action_info.continuous_actions.extend(truth["continuous"][i].tolist())
        record.action_info.discrete_actions.extend(truth["discrete"][i].tolist())
        records.append(record)
    return records, truth


def env_observations(records: list[AgentInfoActionPairProto], unity_spec: BehaviorSpec) -> dict[str, np.ndarray]:
    """Observations the way the Unity env source gets them: rpc_utils.steps_from_proto (decision and terminal steps),
    then sparring's keys and channels-last images; rows back in record order."""
    infos = [record.agent_info for record in records]
    decisions, terminals = rpc_utils.steps_from_proto(infos, unity_spec)
    done = np.array([info.done for info in infos])
    out = {}
    for index, (key, sensor) in enumerate(zip(sensor_keys(unity_spec), unity_spec.observation_specs)):
        parts = [decisions.obs[index], terminals.obs[index]]
        if channels_first(sensor):
            parts = [part.transpose(0, 2, 3, 1) for part in parts]
        rows = np.empty((len(infos), *parts[0].shape[1:]), np.float32)
        rows[~done], rows[done] = parts
        out[key] = rows
    return out


def file_messages(path: Path) -> tuple[DemonstrationMetaProto, BrainParametersProto, list[AgentInfoActionPairProto]]:
    """A file walked the way ML-Agents' demo_loader walks it: meta at 0, brain parameters at 33, then number_steps
    records."""
    data = path.read_bytes()
    size, start = read_varint(data, 0)
    meta = DemonstrationMetaProto.FromString(data[start:start + size])
    size, start = read_varint(data, HEADER_SIZE)
    brain = BrainParametersProto.FromString(data[start:start + size])
    records, position = [], start + size
    while len(records) < meta.number_steps:
        size, start = read_varint(data, position)
        records.append(AgentInfoActionPairProto.FromString(data[start:start + size]))
        position = start + size
    assert position == len(data)
    return meta, brain, records


def record_offsets(path: Path) -> list[int]:
    _, _, records = file_messages(path)
    data = path.read_bytes()
    size, start = read_varint(data, HEADER_SIZE)
    offsets, position = [], start + size
    for _ in records:
        offsets.append(position)
        size, start = read_varint(data, position)
        position = start + size
    return offsets


# --- reading Unity's files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(ACTIONS))
def test_a_unity_recording_loads_as_the_unity_env_source_would_give_it(kind, tmp_path):
    actions = ACTIONS[kind]
    records, truth = unity_records(actions)
    demo = load_demonstrations(unity_file(tmp_path / "expert.demo", brain_parameters(actions), records))

    unity_spec = BehaviorSpec(SENSORS, actions)
    assert demo.spec == behaviour_spec(BEHAVIOUR, unity_spec)
    assert demo.spec.team_id == 1
    assert list(demo.obs) == ["VectorSensor", "CameraSensor", "GridSensor", "Camera3"]
    assert demo.obs["CameraSensor"].shape == (6, 6, 8, 3) and demo.obs["Camera3"].shape == (6, 5, 7, 3)
    assert demo.obs["GridSensor"].shape == (6, 4, 4, 2)
    expected = env_observations(records, unity_spec)
    for key, values in demo.obs.items():
        assert values.dtype == np.float32
        np.testing.assert_array_equal(values, expected[key], err_msg=key)
    for key in COMPRESSED:  # the PNG's pixels, / 255
        np.testing.assert_array_equal(demo.obs[key], np.stack(truth["images"][key]).astype(np.float32) / 255.0)

    if kind == "continuous":
        np.testing.assert_array_equal(demo.actions, truth["continuous"])
    elif kind == "discrete":
        assert demo.actions.dtype == np.int64
        np.testing.assert_array_equal(demo.actions, truth["discrete"])
    else:
        np.testing.assert_array_equal(demo.actions["continuous"], truth["continuous"])
        np.testing.assert_array_equal(demo.actions["discrete"], truth["discrete"][:, 0])  # one branch: Discrete(3)
    if actions.discrete_branches:
        allowed = ~truth["masked"]
        allowed[1] = True
        np.testing.assert_array_equal(demo.action_masks, allowed)
    else:
        assert demo.action_masks is None
    np.testing.assert_array_equal(demo.rewards, truth["rewards"])
    np.testing.assert_array_equal(demo.dones, truth["dones"])
    np.testing.assert_array_equal(demo.max_step_reached, truth["max_step"])
    np.testing.assert_array_equal(demo.agent_ids, truth["ids"])
    assert demo.agent_ids.dtype == np.int64
    assert len(demo) == 6 and demo.episodes == 2
    assert demo.files == (tmp_path / "expert.demo",)


def test_a_recording_unity_never_closed_is_read_to_its_end(tmp_path):
    records, _ = unity_records(ACTIONS["continuous"])
    demo = load_demonstrations(unity_file(tmp_path / "crashed.demo", brain_parameters(ACTIONS["continuous"]),
                                          records, closed=False))
    assert len(demo) == 6


def test_old_files_with_vector_actions_are_read(tmp_path):
    records, truth = unity_records(ACTIONS["discrete"])
    for record in records:
        legacy = [float(a) for a in record.action_info.discrete_actions]
        record.action_info.ClearField("discrete_actions")
        record.action_info.vector_actions_deprecated.extend(legacy)
    demo = load_demonstrations(unity_file(tmp_path / "old.demo", brain_parameters(ACTIONS["discrete"]), records))
    np.testing.assert_array_equal(demo.actions, truth["discrete"])


# --- writing ------------------------------------------------------------------------------------------------------

OBS = spaces.Box(-np.inf, np.inf, (4,), np.float32)
DICT_OBS = spaces.Dict({"zone": spaces.Box(-np.inf, np.inf, (3,), np.float32),  # not sorted: Unity's order stays
                        "ammo": spaces.Box(-np.inf, np.inf, (4, 5, 3), np.float32),
                        "entities": spaces.Box(-np.inf, np.inf, (6, 2), np.float32)})
CONTINUOUS = spaces.Box(-1.0, 1.0, (2,), np.float32)
SPECS = {
    "discrete": BehaviourSpec("Picker", OBS, spaces.Discrete(4)),
    "multidiscrete": BehaviourSpec("Picker", OBS, spaces.MultiDiscrete([3, 2])),
    "continuous": BehaviourSpec("Walker", OBS, CONTINUOUS),
    "hybrid": BehaviourSpec("Striker?team=0", OBS, hybrid_space(CONTINUOUS, spaces.MultiDiscrete([3, 2])), team_id=0),
    "dict": BehaviourSpec("Scout", DICT_OBS, hybrid_space(CONTINUOUS, spaces.Discrete(5))),
}


def random_batch(spec: BehaviourSpec, n: int, rng: np.random.Generator, done_every: int = 4) -> dict:
    def sample(space):
        return np.stack([space.sample() for _ in range(n)]) if n else np.zeros((0, *space.shape), space.dtype)
    spec.action_space.seed(int(rng.integers(1 << 30)))
    if isinstance(spec.observation_space, spaces.Dict):
        obs = {key: rng.normal(size=(n, *box.shape)).astype(np.float32) for key, box in spec.observation_space.items()}
    else:
        obs = rng.normal(size=(n, *spec.observation_space.shape)).astype(np.float32)
    if spec.is_hybrid:
        actions = {key: sample(spec.action_space[key]) for key in ("continuous", "discrete")}
        actions["discrete"] = actions["discrete"].astype(np.int64)
    else:
        actions = sample(spec.action_space)
        actions = actions.astype(np.float32 if spec.is_continuous else np.int64)
    masks = None
    if spec.mask_size:
        masks = rng.random((n, spec.mask_size)) < 0.8
    return {"agent_ids": np.arange(n) % 2, "obs": obs, "actions": actions,
            "rewards": rng.normal(size=n).astype(np.float32), "dones": rng.integers(0, done_every, n) == 0,
            "max_step_reached": np.zeros(n, bool), "action_masks": masks}


def written(path: Path, spec: BehaviourSpec, batches: list[dict], **kwargs) -> Path:
    with DemonstrationWriter(path, spec, **kwargs) as writer:
        for batch in batches:
            writer.add(**batch)
    return path


def assert_rows(demo: Demonstration, batches: list[dict]) -> None:
    def joined(key):
        parts = [b[key] for b in batches]
        if isinstance(parts[0], dict):
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return np.concatenate(parts)
    for key, value in (("obs", demo.obs), ("actions", demo.actions)):
        expected = joined(key)
        if isinstance(expected, dict):
            assert list(value) == list(expected)
            for k in expected:
                assert value[k].dtype == expected[k].dtype
                np.testing.assert_array_equal(value[k], expected[k], err_msg=f"{key}[{k}]")
        else:
            assert value.dtype == expected.dtype
            np.testing.assert_array_equal(value, expected, err_msg=key)
    np.testing.assert_array_equal(demo.rewards, joined("rewards"))
    np.testing.assert_array_equal(demo.dones, joined("dones"))
    np.testing.assert_array_equal(demo.max_step_reached, joined("max_step_reached"))
    np.testing.assert_array_equal(demo.agent_ids, joined("agent_ids"))
    if batches[0]["action_masks"] is None:
        assert demo.action_masks is None
    else:
        np.testing.assert_array_equal(demo.action_masks, joined("action_masks"))


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_what_the_writer_writes_reads_back_unchanged(kind, tmp_path):
    spec = SPECS[kind]
    rng = np.random.default_rng(1)
    batches = [random_batch(spec, 5, rng), random_batch(spec, 0, rng), random_batch(spec, 3, rng)]
    demo = load_demonstrations(written(tmp_path / "run.demo", spec, batches))
    assert demo.spec == spec
    assert list(demo.spec.observation_components) == list(spec.observation_components)
    assert_rows(demo, batches)


def test_the_meta_counts_are_unitys(tmp_path):
    spec = SPECS["multidiscrete"]
    batches = [random_batch(spec, 7, np.random.default_rng(2)), random_batch(spec, 6, np.random.default_rng(3))]
    path = written(tmp_path / "counted.demo", spec, batches, name="Level 1: the_cave (hard)")
    meta, brain, records = file_messages(path)
    rewards = np.concatenate([b["rewards"] for b in batches])
    dones = int(sum(b["dones"].sum() for b in batches))
    assert meta.api_version == 1
    assert meta.demonstration_name == "Level 1 thecave "  # Unity's recorder: letters, digits, space, hyphen; 16
    assert meta.number_steps == len(records) == 13
    assert meta.number_episodes == dones + 1  # closing ends one more episode, as Unity's writer does
    running = np.float32(0)
    for reward in rewards:
        running = np.float32(running + reward)
    assert meta.mean_reward == np.float32(running / np.float32(dones + 1))
    assert brain.brain_name == "Picker" and list(brain.action_spec.discrete_branch_sizes) == [3, 2]
    assert brain.action_spec.num_discrete_actions == 2 and brain.action_spec.num_continuous_actions == 0
    assert list(records[0].agent_info.action_mask) == (~batches[0]["action_masks"][0]).tolist()  # True = masked


def test_the_name_gives_way_when_large_counts_fill_the_header(tmp_path):
    spec = SPECS["continuous"]
    path = tmp_path / "long.demo"
    with DemonstrationWriter(path, spec, name="abcdefghijklmnopqrstuvwxyz") as writer:
        writer.add(**random_batch(spec, 2, np.random.default_rng(0)))
        writer._steps, writer._done = 2**30, 2**20  # as after a very long recording
    data = path.read_bytes()
    size, start = read_varint(data, 0)
    assert start + size <= HEADER_SIZE
    meta = DemonstrationMetaProto.FromString(data[start:start + size])
    assert meta.number_steps == 2**30 and "abcdefghijklmnop".startswith(meta.demonstration_name)


def test_the_writer_refuses_actions_of_another_behaviour(tmp_path):
    spec = SPECS["discrete"]
    with DemonstrationWriter(tmp_path / "bad.demo", spec) as writer:
        batch = random_batch(spec, 2, np.random.default_rng(0))
        with pytest.raises(DemonstrationError, match="bad.demo.*actions"):
            writer.add(**{**batch, "actions": np.array([0, 4])})  # Discrete(4) has 0..3
        with pytest.raises(DemonstrationError, match="bad.demo.*observation 'obs'"):
            writer.add(**{**batch, "obs": np.zeros((2, 5), np.float32)})


# --- refusing broken files ----------------------------------------------------------------------------------------


@pytest.fixture
def five_records(tmp_path) -> Path:
    spec = SPECS["hybrid"]
    return written(tmp_path / "five.demo", spec, [random_batch(spec, 5, np.random.default_rng(4))])


def test_a_file_cut_inside_a_record_names_the_file_and_the_record(five_records):
    five_records.write_bytes(five_records.read_bytes()[:-7])
    with pytest.raises(DemonstrationError, match=r"five\.demo: record 4: .*truncated"):
        load_demonstrations(five_records)


def test_a_file_missing_its_last_records_names_the_first_missing_one(five_records):
    five_records.write_bytes(five_records.read_bytes()[:record_offsets(five_records)[3]])
    with pytest.raises(DemonstrationError, match=r"five\.demo: record 3: missing.* 3 of the 5 records.*truncated"):
        load_demonstrations(five_records)


def test_a_corrupted_record_names_the_file_and_the_record(five_records):
    offsets = record_offsets(five_records)
    data = bytearray(five_records.read_bytes())
    data[offsets[2] + 2:offsets[3]] = b"\xff" * (offsets[3] - offsets[2] - 2)  # keeps the length prefix
    five_records.write_bytes(bytes(data))
    with pytest.raises(DemonstrationError, match=r"five\.demo: record 2: .*corrupted"):
        load_demonstrations(five_records)


def test_observation_shapes_changing_mid_file_are_refused(tmp_path):
    records, _ = unity_records(ACTIONS["continuous"])
    vector = records[3].agent_info.observations[0]
    vector.shape[:] = [6]
    vector.float_data.data.append(0.5)
    path = unity_file(tmp_path / "changing.demo", brain_parameters(ACTIONS["continuous"]), records)
    with pytest.raises(DemonstrationError, match=r"changing\.demo: record 3: observation 'VectorSensor' has shape "
                                                 r"\(6,\), record 0's is \(5,\)"):
        load_demonstrations(path)


def test_a_file_without_brain_parameters_is_refused(tmp_path):
    path = tmp_path / "header.demo"
    path.write_bytes(delimited(DemonstrationMetaProto(api_version=1, demonstration_name="x")).ljust(HEADER_SIZE, b"\0"))
    with pytest.raises(DemonstrationError, match=r"header\.demo: no brain parameters at offset 33"):
        load_demonstrations(path)


def test_an_unknown_api_version_is_refused(tmp_path):
    records, _ = unity_records(ACTIONS["continuous"])
    path = unity_file(tmp_path / "future.demo", brain_parameters(ACTIONS["continuous"]), records, api_version=2)
    with pytest.raises(DemonstrationError, match=r"future\.demo: demonstration api_version 2"):
        load_demonstrations(path)


def test_a_missing_path_and_an_empty_folder_are_refused(tmp_path):
    with pytest.raises(DemonstrationError, match=r"nowhere\.demo: no such demonstration file or folder"):
        load_demonstrations(tmp_path / "nowhere.demo")
    (tmp_path / "notes.txt").write_text("not a demo")
    with pytest.raises(DemonstrationError, match="a folder with no .demo files"):
        load_demonstrations(tmp_path)


# --- matching the behaviour being trained -------------------------------------------------------------------------


def test_matching_another_observation_shape_says_which_and_how(tmp_path):
    spec = SPECS["dict"]
    batch = random_batch(spec, 3, np.random.default_rng(5))
    demo = load_demonstrations(written(tmp_path / "scout.demo", spec, [batch]))
    other = BehaviourSpec("Scout", spaces.Dict({**DICT_OBS.spaces, "ammo": spaces.Box(0, 1, (8, 8, 3))}),
                          spec.action_space)
    with pytest.raises(DemonstrationError, match=r"scout\.demo: .*observation 'ammo': recorded shape \(4, 5, 3\), "
                                                 r"the behaviour's \(8, 8, 3\)"):
        demo.matching(other)
    fewer = BehaviourSpec("Scout", spaces.Dict({"zone": DICT_OBS["zone"], "radar": DICT_OBS["zone"]}),
                          spec.action_space)
    with pytest.raises(DemonstrationError, match=r"observations \['radar'\] are not recorded.*recorded observations "
                                                 r"\['ammo', 'entities'\] are not the behaviour's"):
        demo.matching(fewer)


def test_matching_other_actions_says_which_and_how(tmp_path):
    spec = SPECS["hybrid"]
    batch = random_batch(spec, 3, np.random.default_rng(6))
    demo = load_demonstrations(written(tmp_path / "striker.demo", spec, [batch]))
    other = BehaviourSpec("Striker", OBS, hybrid_space(spaces.Box(-1, 1, (3,)), spaces.MultiDiscrete([3, 3])))
    with pytest.raises(DemonstrationError, match=r"striker\.demo: the recorded behaviour 'Striker\?team=0' does not "
                                                 r"match behaviour 'Striker': continuous actions: recorded 2, the "
                                                 r"behaviour has 3; discrete action branches: recorded \(3, 2\), the "
                                                 r"behaviour has \(3, 3\)"):
        demo.matching(other)
    with pytest.raises(DemonstrationError, match=r"observation shape: recorded \(4,\), the behaviour's \(5,\)"):
        demo.matching(BehaviourSpec("Striker", spaces.Box(-1, 1, (5,)), spec.action_space))


def test_matching_lays_the_demonstration_out_for_the_behaviour(tmp_path):
    spec = BehaviourSpec("Picker", DICT_OBS, spaces.Discrete(4))
    batch = random_batch(spec, 4, np.random.default_rng(7))
    path = written(tmp_path / "picker.demo", spec, [batch])
    trained = BehaviourSpec("Picker", spaces.Dict({key: DICT_OBS[key] for key in ("ammo", "entities", "zone")}),
                            spaces.MultiDiscrete([4]))
    demo = load_demonstrations(path, trained)
    assert demo.spec is trained
    assert list(demo.obs) == ["ammo", "entities", "zone"]
    np.testing.assert_array_equal(demo.obs["zone"], batch["obs"]["zone"])
    np.testing.assert_array_equal(demo.actions, batch["actions"][:, None])  # MultiDiscrete([4]): (n, 1)


# --- folders ------------------------------------------------------------------------------------------------------


def test_a_folder_of_files_loads_as_one_in_name_order(tmp_path):
    spec = SPECS["hybrid"]
    rng = np.random.default_rng(8)
    second = [random_batch(spec, 4, rng)]
    first = [random_batch(spec, 3, rng)]
    written(tmp_path / "b.demo", spec, second)
    written(tmp_path / "a.demo", spec, first)
    (tmp_path / "notes.txt").write_text("ignored")
    demo = load_demonstrations(tmp_path)
    assert demo.files == (tmp_path / "a.demo", tmp_path / "b.demo")
    assert_rows(demo, first + second)
    np.testing.assert_array_equal(demo.file_index, [0, 0, 0, 1, 1, 1, 1])
    assert demo.episodes == int(demo.dones.sum()) + _unfinished(first) + _unfinished(second)


def _unfinished(batches: list[dict]) -> int:
    """Agents whose last record in a file is not done."""
    last = {}
    for batch in batches:
        for agent, done in zip(batch["agent_ids"], batch["dones"]):
            last[int(agent)] = bool(done)
    return sum(not done for done in last.values())


def test_a_file_without_records_adds_nothing_but_must_agree_on_the_actions(tmp_path):
    spec = SPECS["continuous"]
    written(tmp_path / "a.demo", spec, [random_batch(spec, 3, np.random.default_rng(10))])
    written(tmp_path / "b.demo", spec, [])
    demo = load_demonstrations(tmp_path)
    assert len(demo) == 3 and demo.files == (tmp_path / "a.demo", tmp_path / "b.demo")
    with pytest.raises(DemonstrationError, match=r"b\.demo: no recorded decisions"):
        load_demonstrations(tmp_path / "b.demo")
    written(tmp_path / "c.demo", SPECS["discrete"], [])
    with pytest.raises(DemonstrationError, match=r"c\.demo, .*a\.demo: the files disagree on the behaviour's actions"):
        load_demonstrations(tmp_path)


def test_files_that_disagree_on_the_behaviour_are_refused_together(tmp_path):
    rng = np.random.default_rng(9)
    written(tmp_path / "a.demo", SPECS["continuous"], [random_batch(SPECS["continuous"], 2, rng)])
    written(tmp_path / "b.demo", SPECS["multidiscrete"], [random_batch(SPECS["multidiscrete"], 2, rng)])
    with pytest.raises(DemonstrationError, match=r"b\.demo, .*a\.demo: the files disagree on the behaviour's spaces: "
                                                 r"continuous actions: recorded 0, the behaviour has 2"):
        load_demonstrations(tmp_path)
