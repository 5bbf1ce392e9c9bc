"""Bridge messages: specs and batches survive the wire (the engine SDK encodes, the trainer's codec decodes, both on
the shared wire format); anything malformed is refused naming its field."""

import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from sparring.envs.base import STAT_AGGREGATIONS as BASE_STAT_AGGREGATIONS
from sparring.envs.base import BehaviourStep, DecisionSteps, TerminalSteps, check_step_result
from sparring.envs.bridge.codec import (
    ProtocolError, decode_observations, decode_stats, encode_actions, serialize_actions, specs_from_hello,
)
from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.protos.wire import STAT_AGGREGATIONS, DTYPES, decode_tensor, encode_tensor, expect, fill_tensor, read_tensor
from sparring_engine import decode_actions, encode_observations, serialize_observations, spec_to_proto
from sparring.spec import BehaviourSpec, hybrid_space

GUARD = BehaviourSpec("Guard", spaces.Box(-1, 1, (8,), np.float32), spaces.MultiDiscrete([3, 2]), team_id=1)
SCOUT = BehaviourSpec(
    "Scout",
    spaces.Dict({"ray": spaces.Box(0, 1, (4, 2), np.float32), "hp": spaces.Box(0, 100, (1,), np.int32)}),
    spaces.Box(-2, 2, (2,), np.float32),
)
SPECS = {"Guard": GUARD, "Scout": SCOUT}
MASKED = {"Guard"}


def sample_result(rng):
    guard = BehaviourStep(
        DecisionSteps(np.array([4, 9], np.int64), rng.uniform(-1, 1, (2, 8)).astype(np.float32),
                      np.array([0.5, -1], np.float32), np.array([[1, 0, 1, 1, 1], [0, 1, 1, 0, 1]], bool)),
        TerminalSteps(np.array([2], np.int64), np.zeros((1, 8), np.float32), np.array([3.0], np.float32),
                      np.array([True])),
    )
    scout = BehaviourStep(
        DecisionSteps(np.array([0], np.int64), {"ray": np.full((1, 4, 2), 0.25, np.float32),
                                                  "hp": np.array([[70]], np.int32)}, np.zeros(1, np.float32)),
        TerminalSteps.empty(SCOUT),
    )
    return {"Guard": guard, "Scout": scout}


def hello(specs=SPECS, masked=MASKED):
    return pb.Hello(protocol_version=1, behaviours=[spec_to_proto(s, s.name in masked) for s in specs.values()])


def test_tensor_round_trip_is_a_view_of_the_bytes():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = encode_tensor(a)
    b = decode_tensor(t, "x")
    np.testing.assert_array_equal(a, b)
    assert not b.flags.writeable  # frombuffer view, no copy


def test_specs_round_trip_with_masks_and_team():
    specs, masked = specs_from_hello(hello())
    assert masked == MASKED
    assert specs["Guard"].team_id == 1 and specs["Guard"].action_branches == (3, 2)
    assert specs["Scout"].observation_space == SCOUT.observation_space
    assert specs["Scout"].action_space == SCOUT.action_space


def test_a_team_in_the_name_is_the_team_unless_team_id_says_otherwise():
    named = BehaviourSpec("Striker?team=1", SCOUT.observation_space, SCOUT.action_space)
    msg = hello(specs={"Striker?team=1": named}, masked={})
    assert specs_from_hello(msg)[0]["Striker?team=1"].team_id == 1
    msg.behaviours[0].has_team, msg.behaviours[0].team_id = True, 0
    with pytest.raises(ProtocolError, match=r"team_id.*0, but the name 'Striker\?team=1' says team 1"):
        specs_from_hello(msg)


def test_hybrid_actions_are_refused_by_the_protocol_naming_the_behaviour():
    hybrid = BehaviourSpec("Parker", spaces.Box(-1, 1, (2,), np.float32),
                           hybrid_space(spaces.Box(-1, 1, (1,), np.float32), spaces.Discrete(2)))
    with pytest.raises(ValueError, match="'Parker'.*not hybrid"):
        spec_to_proto(hybrid)


def test_observations_round_trip_meet_the_env_contract():
    result = sample_result(np.random.default_rng(0))
    msg = pb.Observations.FromString(encode_observations(3, SPECS, result).SerializeToString())
    decoded = decode_observations(msg, SPECS, MASKED)
    check_step_result(SPECS, decoded)
    np.testing.assert_array_equal(decoded["Guard"].decisions.obs, result["Guard"].decisions.obs)
    np.testing.assert_array_equal(decoded["Guard"].decisions.action_mask, result["Guard"].decisions.action_mask)
    np.testing.assert_array_equal(decoded["Scout"].decisions.obs["hp"], [[70]])
    assert decoded["Guard"].terminals.truncated.tolist() == [True]


def test_groups_and_statistics_round_trip():
    result = sample_result(np.random.default_rng(0))
    guard = result["Guard"]
    guard.decisions.group_ids, guard.decisions.group_rewards = np.array([0, 7]), np.array([0, 1.5], np.float32)
    guard.terminals.group_ids, guard.terminals.group_rewards = np.array([7]), np.array([-2], np.float32)
    stats = [pb.GameStat(key="Guard/Hits", value=2, aggregation=pb.SUM), pb.GameStat(key="Guard/Hits", value=1,
                                                                                    aggregation=pb.SUM)]
    msg = encode_observations(1, SPECS, result, stats)
    assert not msg.behaviours[1].HasField("decision_group_ids")  # no Scout is in a group: no group columns
    decoded = decode_observations(msg, SPECS, MASKED)
    check_step_result(SPECS, decoded)
    assert decoded["Guard"].decisions.group_ids.tolist() == [0, 7]
    assert decoded["Guard"].decisions.total_rewards.tolist() == [0.5, 0.5]
    assert decoded["Guard"].terminals.group_rewards.tolist() == [-2]
    assert decoded["Scout"].decisions.group_ids.tolist() == [0] and decoded["Scout"].decisions.group_rewards.tolist() == [0]
    known = {}
    assert decode_stats(msg, known) == {"Guard/Hits": [(2.0, "sum"), (1.0, "sum")]} and known == {"Guard/Hits": "sum"}


def test_the_wire_names_the_env_apis_stat_aggregations():
    assert tuple(STAT_AGGREGATIONS) == BASE_STAT_AGGREGATIONS


def test_missing_behaviours_are_empty():
    result = sample_result(np.random.default_rng(0))
    msg = encode_observations(0, SPECS, {"Guard": result["Guard"]})
    decoded = decode_observations(msg, SPECS, MASKED)
    assert len(decoded["Scout"].decisions) == 0


def corrupt(mutate):
    msg = encode_observations(0, SPECS, sample_result(np.random.default_rng(0)))
    mutate(msg)
    return msg


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda m: setattr(m.behaviours[0], "behaviour", "Ghost"), "observations.behaviours[0].behaviour"),
        (lambda m: m.behaviours[0].decision_obs[0].shape.__setitem__(1, 7), "observations.behaviours[0].decision_obs[0]"),
        (lambda m: m.behaviours[0].decision_ids.CopyFrom(encode_tensor(np.array([4, 4], np.int64))),
         "observations.behaviours[0].decision_ids"),
        (lambda m: m.behaviours[0].decision_obs[0].CopyFrom(encode_tensor(np.full((2, 8), np.nan, np.float32))),
         "observations.behaviours[0].decision_obs[0]"),
        (lambda m: m.behaviours[0].decision_rewards.CopyFrom(encode_tensor(np.zeros(2, np.float64))),
         "observations.behaviours[0].decision_rewards"),
        (lambda m: m.behaviours[0].ClearField("action_mask"), "observations.behaviours[0].action_mask"),
        (lambda m: m.behaviours[0].action_mask.CopyFrom(encode_tensor(np.zeros((2, 5), bool))),
         "observations.behaviours[0].action_mask"),
        (lambda m: m.behaviours[1].decision_obs.pop(), "observations.behaviours[1].decision_obs"),
        (lambda m: m.behaviours[0].decision_ids.CopyFrom(encode_tensor(np.array([-1, 3], np.int64))),
         "observations.behaviours[0].decision_ids"),
        (lambda m: setattr(m.behaviours[0].terminal_obs[0], "data", b"\x00" * 5), "observations.behaviours[0].terminal_obs[0].data"),
        (lambda m: m.behaviours.add().CopyFrom(m.behaviours[0]), "observations.behaviours[2].behaviour"),
        (lambda m: m.behaviours[0].terminal_group_ids.CopyFrom(encode_tensor(np.array([2**32], np.int64))),
         "observations.behaviours[0].terminal_group_ids"),
        (lambda m: m.behaviours[0].terminal_group_rewards.CopyFrom(encode_tensor(np.array([np.inf], np.float32))),
         "observations.behaviours[0].terminal_group_rewards"),
        (lambda m: m.behaviours[0].decision_group_rewards.CopyFrom(encode_tensor(np.ones(3, np.float32))),
         "observations.behaviours[0].decision_group_rewards"),
    ],
    ids=["unknown-behaviour", "wrong-shape", "duplicate-ids", "nan-obs", "reward-dtype", "missing-mask",
         "mask-blocks-branch", "missing-component", "negative-id", "truncated-data", "behaviour-twice",
         "group-id-too-large", "inf-group-reward", "group-rewards-length"],
)
def test_malformed_observations_name_the_field(mutate, field):
    with pytest.raises(ProtocolError) as info:
        decode_observations(corrupt(mutate), SPECS, MASKED)
    assert info.value.field.startswith(field), str(info.value)


def test_bad_specs_are_refused_naming_the_field():
    bad = spec_to_proto(GUARD)
    bad.ClearField("multi_discrete")
    with pytest.raises(ProtocolError, match=r"hello.behaviours\[0\].action"):
        specs_from_hello(pb.Hello(behaviours=[bad]))
    with pytest.raises(ProtocolError, match="declared twice"):
        specs_from_hello(hello({"a": GUARD, "b": GUARD}, set()))
    with pytest.raises(ProtocolError, match="at least one behaviour"):
        specs_from_hello(pb.Hello())


def test_actions_round_trip_and_are_checked_against_decision_counts():
    actions = {"Guard": np.array([[2, 1], [0, 0]], np.int64), "Scout": np.array([[0.5, -1.5]], np.float32)}
    msg = pb.Actions.FromString(encode_actions(7, actions).SerializeToString())
    out = decode_actions(msg, SPECS, {"Guard": 2, "Scout": 1})
    np.testing.assert_array_equal(out["Guard"], actions["Guard"])
    with pytest.raises(ProtocolError, match=r"actions.behaviours\[0\].actions: expected int64 \(3, 2\)"):
        decode_actions(msg, SPECS, {"Guard": 3, "Scout": 1})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_escape_as_anything_but_protocol_or_decode_errors(data):
    from google.protobuf.message import DecodeError

    try:
        msg = pb.Observations.FromString(data)
    except DecodeError:
        return
    try:
        check = decode_observations(msg, SPECS, MASKED)
    except ProtocolError:
        return
    check_step_result(SPECS, check)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_messages_are_decoded_or_refused_cleanly(data):
    from google.protobuf.message import DecodeError

    raw = bytearray(encode_observations(0, SPECS, sample_result(np.random.default_rng(0))).SerializeToString())
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        msg = pb.Observations.FromString(bytes(raw))
    except DecodeError:
        return
    try:
        result = decode_observations(msg, SPECS, MASKED)
    except ProtocolError:
        return
    check_step_result(SPECS, result)


def test_dict_components_travel_in_declared_order_not_sorted_order():
    from collections import OrderedDict

    box_a, box_b = spaces.Box(0, 1, (2,), np.float32), spaces.Box(0, 1, (3, 2), np.float32)
    declared = spaces.Dict(OrderedDict([("zeta", box_b), ("alpha", box_a)]))
    spec = BehaviourSpec("S", declared, spaces.Discrete(2))
    specs, _ = specs_from_hello(pb.Hello(behaviours=[spec_to_proto(spec)]))
    assert list(specs["S"].observation_components) == ["zeta", "alpha"]
    obs = {"zeta": np.ones((1, 3, 2), np.float32), "alpha": np.zeros((1, 2), np.float32)}
    result = {"S": BehaviourStep(DecisionSteps(np.array([0], np.int64), obs, np.zeros(1, np.float32)),
                                 TerminalSteps.empty(spec))}
    decoded = decode_observations(encode_observations(0, specs, result), specs, set())
    np.testing.assert_array_equal(decoded["S"].decisions.obs["zeta"], obs["zeta"])


def test_absent_groups_mean_no_agents():
    msg = pb.Observations(step=0)
    entry = msg.behaviours.add(behaviour="Scout")  # neither decisions nor terminals
    decoded = decode_observations(msg, SPECS, MASKED)
    assert len(decoded["Scout"].decisions) == 0 and len(decoded["Scout"].terminals) == 0
    entry.decision_ids.CopyFrom(encode_tensor(np.array([1], np.int64)))
    with pytest.raises(ProtocolError, match=r"decision_obs"):
        decode_observations(msg, SPECS, MASKED)


def test_bool_tensors_hold_only_zero_or_one():
    t = encode_tensor(np.zeros(3, bool))
    t.data = bytes([0, 1, 7])
    with pytest.raises(ProtocolError, match="0 or 1"):
        decode_tensor(t, "x")


# -- the step messages, serialized by reference ------------------------------------------------------------------------


def _as_protobuf_writes_it(step: int, specs, result, stats=()) -> bytes:
    """The reference: the same EngineMessage built with protobuf's own classes and serialized by them."""
    message = pb.EngineMessage()
    message.observations.step = step
    for name, part in result.items():
        entry = message.observations.behaviours.add(behaviour=name)
        for prefix, steps in (("decision", part.decisions), ("terminal", part.terminals)):
            if prefix == "terminal" and not len(steps.agent_ids):
                continue
            fill_tensor(getattr(entry, f"{prefix}_ids"), np.asarray(steps.agent_ids, np.int64))
            obs = steps.obs if isinstance(steps.obs, dict) else {"obs": steps.obs}
            for key in specs[name].observation_components:
                fill_tensor(getattr(entry, f"{prefix}_obs").add(), obs[key])
            fill_tensor(getattr(entry, f"{prefix}_rewards"), np.asarray(steps.rewards, np.float32))
            if steps.group_ids.any() or steps.group_rewards.any():
                fill_tensor(getattr(entry, f"{prefix}_group_ids"), steps.group_ids)
                fill_tensor(getattr(entry, f"{prefix}_group_rewards"), steps.group_rewards)
        if part.decisions.action_mask is not None:
            fill_tensor(entry.action_mask, part.decisions.action_mask)
        if len(part.terminals.agent_ids):
            fill_tensor(entry.terminal_truncated, part.terminals.truncated)
    message.observations.stats.extend(stats)
    return message.SerializeToString()


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_step_messages_serialized_by_reference_are_the_bytes_protobuf_writes(data):
    """The by-reference writer is a hand-written speed path (benchmarks/bridge.py: the SDK's encoding of a
    1024-agent step from 42 to 12 us): it must write exactly protobuf's own bytes, whatever the arrays'
    layout (sliced, big-endian, empty, 0-d) and however large the step number."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    step = data.draw(st.sampled_from([0, 1, 127, 128, 2**32, 2**64 - 1]))
    result = {}
    for name, spec in SPECS.items():
        n, m = data.draw(st.integers(0, 4)), data.draw(st.integers(0, 2))
        ids = np.arange(n, dtype=np.int64) * data.draw(st.sampled_from([1, 2**31, 2**32 - 1]))
        obs = {key: rng.uniform(-1, 1, (n, *box.shape)).astype(box.dtype) for key, box in
               spec.observation_components.items()}
        if data.draw(st.booleans()):  # another byte order, or a strided view: written as the protocol's layout
            obs = {key: (a.astype(a.dtype.newbyteorder(">")) if a.ndim < 3 else a[:, ::-1]) for key, a in obs.items()}
        obs = obs if isinstance(spec.observation_space, spaces.Dict) else obs["obs"]
        mask = rng.random((n, spec.mask_size)) < 0.7 if name in MASKED else None
        final = {key: np.zeros((m, *box.shape), box.dtype) for key, box in spec.observation_components.items()}
        final = final if isinstance(spec.observation_space, spaces.Dict) else final["obs"]
        grouped = data.draw(st.booleans())  # some agents in groups: group columns travel
        groups = [(rng.integers(0, 3, k) * grouped, rng.normal(size=k).astype(np.float32) * grouped) for k in (n, m)]
        result[name] = BehaviourStep(DecisionSteps(ids, obs, rng.normal(size=n).astype(np.float32), mask, *groups[0]),
                                     TerminalSteps(np.arange(m, dtype=np.int64) + 100, final,
                                                   np.ones(m, np.float32), rng.random(m) < 0.5, *groups[1]))
    stats = [pb.GameStat(key=f"k{i}", value=float(v), aggregation=i % 4)
             for i, v in enumerate(rng.normal(size=data.draw(st.integers(0, 3))))]
    assert (serialize_observations(step, SPECS, result, stats).tobytes() ==
            _as_protobuf_writes_it(step, SPECS, result, stats))
    actions = {name: np.asarray(rng.integers(0, 2, (3, 2))) for name in SPECS}
    reference = pb.TrainerMessage()
    reference.actions.step = step
    for name, batch in actions.items():
        fill_tensor(reference.actions.behaviours.add(behaviour=name).actions, batch)
    parameters = data.draw(st.sampled_from([{}, {"speed": 2.5}, {"speed": -1.0, "gravity": 9.8}]))
    reference.actions.environment_parameters.update(parameters)
    serialized = serialize_actions(step, actions, parameters)
    assert serialized.tobytes() == reference.SerializeToString() and serialized.size == reference.ByteSize()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_reading_a_tensor_as_expected_agrees_with_the_full_diagnosis(data):
    """``read_tensor`` checks the usual case in a few comparisons; on every tensor it must return what the
    field-by-field diagnosis (``decode_tensor`` then ``expect``) returns, or raise its error."""
    dtype = data.draw(st.sampled_from(list(DTYPES.values())))
    shape = tuple(data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3)))
    tensor = encode_tensor(np.zeros(shape, dtype))
    tensor.dtype = data.draw(st.sampled_from([tensor.dtype, *DTYPES, 0, 99]))
    tensor.shape[:] = data.draw(st.sampled_from([list(shape), [-1, *shape[1:]], list(shape[::-1]), [*shape, 1]]))
    tensor.data = data.draw(st.sampled_from([tensor.data, tensor.data + b"\x00", bytes([2]) * len(tensor.data)]))
    wanted = (data.draw(st.sampled_from([None, *shape[:1]])), *shape[1:])
    try:
        expected = expect(decode_tensor(tensor, "t"), "t", dtype, wanted)
    except ProtocolError as exc:
        with pytest.raises(ProtocolError) as raised:
            read_tensor(tensor, "t", dtype, wanted)
        assert str(raised.value) == str(exc)
        return
    got = read_tensor(tensor, "t", dtype, wanted)
    assert got.dtype == expected.dtype and got.shape == expected.shape and not got.flags.writeable
    np.testing.assert_array_equal(got, expected)
