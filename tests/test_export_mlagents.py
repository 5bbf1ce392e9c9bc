"""The mlagents export has exactly the tensors Unity ML-Agents' model loader checks (see export/mlagents.py)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from gymnasium import spaces

from sparring.agents.policy import BehaviourPolicy
from sparring.export.exporter import export_policy
from sparring.export.mlagents import MLAgentsGraph, mlagents_support_problem
from sparring.spec import BehaviourSpec, hybrid_space

OPSET = 15
BOX_OBS = spaces.Box(-1, 1, (5,), np.float32)
DICT_OBS = spaces.Dict({"ray": spaces.Box(0, 1, (2, 3), np.float32), "pos": spaces.Box(-5, 5, (4,), np.float32)})
VISUAL_OBS = spaces.Dict({  # a camera (through the simple CNN), a small grid (flattened by "auto"), a vector
    "camera": spaces.Box(0, 1, (24, 20, 3), np.float32),
    "grid": spaces.Box(0, 1, (5, 6, 2), np.float32),
    "speed": spaces.Box(-3, 3, (2,), np.float32),
})
BEHAVIOURS = {
    "discrete": (BOX_OBS, spaces.Discrete(4)),
    "multidiscrete": (BOX_OBS, spaces.MultiDiscrete([3, 2, 4])),
    "continuous": (BOX_OBS, spaces.Box(-1, 1, (3,), np.float32)),
    "dict_multidiscrete": (DICT_OBS, spaces.MultiDiscrete([2, 5])),
    "dict_continuous_bounds": (DICT_OBS, spaces.Box(np.array([-2, 0], np.float32), np.array([2, 0.5], np.float32))),
    "hybrid": (BOX_OBS, hybrid_space(spaces.Box(-1, 1, (2,), np.float32), spaces.MultiDiscrete([3, 2]))),
    "visual_discrete": (VISUAL_OBS, spaces.Discrete(3)),
}


def make_policy(obs_space, action_space, normalize=True):
    torch.manual_seed(0)
    policy = BehaviourPolicy(BehaviourSpec("b", obs_space, action_space), normalize=normalize)
    with torch.no_grad():
        policy.actor_head.weight.mul_(100)  # well separated logits: argmax is not decided by rounding
        if policy.continuous_size:
            policy.log_std.fill_(-0.5)
    if normalize:
        policy.normalizer.update(torch.randn(64, policy.obs_size) * 2 + 0.5)
    return policy.eval()


def export(policy, path):
    """The shipped path: sparring's exporter, which runs onnx.checker and onnxruntime parity itself."""
    export_policy(policy, path, "mlagents")
    assert onnx.load(str(path)).opset_import[0].version == OPSET
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def unity_shape(box_shape):
    """The obs_i shape (after the batch axis) Unity's loader checks [PL]: channels first for an image or grid,
    (entities, features) for a buffer sensor, the size for a vector."""
    if len(box_shape) == 3:
        height, width, channels = box_shape
        return [channels, height, width]
    return list(box_shape) if len(box_shape) == 2 else [int(np.prod(box_shape))]


def as_unity_writes(batch):
    """A batch of one sensor's observations laid out as Unity writes them into obs_i."""
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)) if batch.ndim == 4 else batch.reshape(len(batch), *unity_shape(batch.shape[1:]))


def random_feeds(policy, n, rng):
    comps = policy.spec.observation_components
    obs = {k: rng.normal(0, 2, (n, *box.shape)).astype(np.float32) for k, box in comps.items()}
    feeds = {f"obs_{i}": as_unity_writes(obs[k]) for i, k in enumerate(comps)}
    mask = None
    if policy.branches:
        mask = rng.random((n, policy.spec.mask_size)) > 0.4
        firsts = np.cumsum((0, *policy.branches[:-1]))
        mask[np.arange(n)[:, None], firsts + rng.integers(0, policy.branches, (n, len(policy.branches)))] = True
        feeds["action_masks"] = mask.astype(np.float32)  # [GI]: 1.0 allowed, 0.0 masked
    return obs, feeds, mask


def as_branches(actions, policy):
    """policy.deterministic() -> (n, branches) like ML-Agents' discrete outputs."""
    a = actions.numpy()[:, policy.continuous_size :] if policy.continuous_size else actions.numpy()
    return a.reshape(len(a), -1).astype(np.int64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = {}
    for name, (obs_space, act_space) in BEHAVIOURS.items():
        policy = make_policy(obs_space, act_space)
        out[name] = (policy, export(policy, tmp_path_factory.mktemp(name) / f"{name}.onnx"))
    return out


@pytest.mark.parametrize("name", list(BEHAVIOURS))
def test_names_shapes_dtypes_and_constants(exported, name):
    policy, session = exported[name]
    n_obs = len(policy.spec.observation_components)
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    # [MS] input / output names and order; [PL] only obs_i and action_masks are accepted inputs
    expected_in = [f"obs_{i}" for i in range(n_obs)] + (["action_masks"] if policy.branches else [])
    assert [i.name for i in session.get_inputs()] == expected_in
    for i, box in enumerate(policy.spec.observation_components.values()):
        assert inputs[f"obs_{i}"].type == "tensor(float)"
        assert inputs[f"obs_{i}"].shape == ["batch", *unity_shape(box.shape)]
    kinds = (["continuous"] if policy.continuous_size else []) + (["discrete"] if policy.branches else [])
    assert outputs == ["version_number", "memory_size", *(name for kind in kinds for name in (
        f"{kind}_actions", f"{kind}_action_output_shape", f"deterministic_{kind}_actions"))]
    rng = np.random.default_rng(1)
    _, feeds, _ = random_feeds(policy, 7, rng)
    got = dict(zip(outputs, session.run(None, feeds)))
    # [NW]/[MI]: float constants, version 3, memory 0
    for const, value in (("version_number", 3.0), ("memory_size", 0.0)):
        assert got[const].dtype == np.float32 and got[const].shape == (1,) and got[const][0] == value
    if policy.continuous_size:
        n_act = policy.continuous_size
        shape = got["continuous_action_output_shape"]
        assert shape.dtype == np.float32 and shape.tolist() == [float(n_act)]
        for out in ("continuous_actions", "deterministic_continuous_actions"):
            assert got[out].dtype == np.float32 and got[out].shape == (7, n_act)
    if policy.branches:
        assert inputs["action_masks"].type == "tensor(float)"
        assert inputs["action_masks"].shape == ["batch", policy.spec.mask_size]
        shape = got["discrete_action_output_shape"]
        assert shape.dtype == np.float32 and shape.tolist() == [[float(b) for b in policy.branches]]
        for out in ("discrete_actions", "deterministic_discrete_actions"):
            assert got[out].dtype == np.int64 and got[out].shape == (7, len(policy.branches))
            assert np.all(got[out] >= 0) and np.all(got[out] < np.array(policy.branches))


@pytest.mark.parametrize("name", list(BEHAVIOURS))
def test_deterministic_actions_match_the_torch_policy(exported, name):
    policy, session = exported[name]
    rng = np.random.default_rng(2)
    obs, feeds, mask = random_feeds(policy, 256, rng)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    x = policy.normalize(policy.flatten_obs(obs))
    c = policy.continuous_size
    with torch.no_grad():
        greedy, _ = policy.deterministic(x, None if mask is None else torch.from_numpy(mask))
        if c:
            box = policy.spec.continuous_space
            want = np.clip(greedy[:, :c].numpy(), box.low.reshape(-1), box.high.reshape(-1))  # as env_actions clips
            assert np.max(np.abs(got["deterministic_continuous_actions"] - want)) <= 1e-5
        if policy.branches:
            np.testing.assert_array_equal(got["deterministic_discrete_actions"], as_branches(greedy, policy))
            out = MLAgentsGraph(policy).actor_output(*(torch.from_numpy(feeds[f"obs_{i}"]) for i in range(len(obs))))
            assert torch.max(torch.abs(out - policy.features(x)[0])) <= 1e-5


def test_sampled_continuous_actions_follow_the_gaussian_and_stay_in_the_box(exported, tmp_path):
    policy = make_policy(*BEHAVIOURS["continuous"])
    with torch.no_grad():
        policy.actor_head.weight.div_(100)  # means near 0, so the clip at +-1 cuts little
    session = export(policy, tmp_path / "m.onnx")
    rng = np.random.default_rng(3)
    _, feeds, _ = random_feeds(policy, 1, rng)
    one = {k: np.repeat(v, 20000, 0) for k, v in feeds.items()}
    sampled, mean = session.run(["continuous_actions", "deterministic_continuous_actions"], one)
    assert np.all(np.abs(sampled) <= 1.0) and np.all(np.abs(mean[0]) < 0.5)
    assert not np.allclose(sampled, mean)  # sampled in the graph, as ML-Agents does
    # mean + N(0, 1) * exp(log_std), then clipped to the Box: compare with the same thing in numpy
    want = np.clip(mean[0] + rng.standard_normal((200000, 3)) * np.exp(-0.5), -1, 1)
    assert np.allclose(sampled.mean(0), want.mean(0), atol=0.02)
    assert np.allclose(sampled.std(0), want.std(0), atol=0.02)

    policy, session = exported["dict_continuous_bounds"]
    _, feeds, _ = random_feeds(policy, 2000, rng)
    sampled, det = session.run(["continuous_actions", "deterministic_continuous_actions"], feeds)
    for actions in (sampled, det):
        assert np.all(actions >= np.array([-2, 0])) and np.all(actions <= np.array([2, 0.5]))


@pytest.mark.parametrize("name", ["discrete", "multidiscrete", "dict_multidiscrete", "hybrid"])
def test_masked_actions_are_never_chosen(exported, name):
    policy, session = exported[name]
    rng = np.random.default_rng(4)
    _, feeds, mask = random_feeds(policy, 2000, rng)
    sampled, greedy = session.run(["discrete_actions", "deterministic_discrete_actions"], feeds)
    offsets = np.cumsum((0, *policy.branches[:-1]))
    for actions in (sampled, greedy):
        assert mask[np.arange(len(mask))[:, None], offsets + actions].all()
    # Sampling really samples: some agent with two allowed actions in a branch picks differently on re-runs.
    again = session.run(["discrete_actions"], feeds)[0]
    assert not np.array_equal(again, sampled)
    # A branch with one allowed action always takes it, even where that action's logit is the lowest.
    only = np.zeros_like(feeds["action_masks"])
    with torch.no_grad():
        logits = MLAgentsGraph(policy).actor_output(*(torch.from_numpy(feeds[f"obs_{i}"][:1])
                                                      for i in range(len(policy.spec.observation_components))))
    worst = [int(np.argmin(part)) for part in np.split(logits[0, policy.continuous_size :].numpy(), offsets[1:])]
    only[:, offsets + np.array(worst)] = 1.0
    sampled, greedy = session.run(["discrete_actions", "deterministic_discrete_actions"],
                                  {**{k: v[:1].repeat(50, 0) for k, v in feeds.items()}, "action_masks": only[:50]})
    assert (sampled == np.array(worst)).all() and (greedy == np.array(worst)).all()


def test_obs_inputs_follow_the_spec_order_not_the_sorted_concatenation(tmp_path):
    from collections import OrderedDict

    obs_space = spaces.Dict(OrderedDict([("zeta", spaces.Box(-1, 1, (3,))), ("alpha", spaces.Box(-1, 1, (2,)))]))
    policy = make_policy(obs_space, spaces.Discrete(3), normalize=False)
    assert list(policy.spec.observation_components) == ["zeta", "alpha"] and policy.obs_keys == ["alpha", "zeta"]
    session = export(policy, tmp_path / "m.onnx")
    assert [i.shape[1] for i in session.get_inputs()[:2]] == [3, 2]  # obs_0 = zeta, obs_1 = alpha
    rng = np.random.default_rng(5)
    obs, feeds, mask = random_feeds(policy, 128, rng)
    greedy = session.run(["deterministic_discrete_actions"], feeds)[0]
    x = policy.flatten_obs(obs)
    np.testing.assert_array_equal(greedy, as_branches(policy.deterministic(x, torch.from_numpy(mask))[0], policy))


def test_support_problem():
    ok = [BehaviourSpec("b", o, a) for o, a in BEHAVIOURS.values()]
    assert all(mlagents_support_problem(s) is None for s in ok)
    assert mlagents_support_problem(BehaviourSpec("b", spaces.Box(-1, 1, (0,)), spaces.Discrete(2)))
    assert mlagents_support_problem(BehaviourSpec("b", BOX_OBS, spaces.Box(-1, 1, (0,))))
    unbounded = BehaviourSpec("b", BOX_OBS, spaces.Box(-np.inf, np.inf, (2,), np.float32))
    assert mlagents_support_problem(unbounded) is None


def test_unbounded_continuous_actions_are_not_clipped(tmp_path):
    policy = make_policy(BOX_OBS, spaces.Box(-np.inf, np.inf, (2,), np.float32), normalize=False)
    session = export(policy, tmp_path / "m.onnx")
    assert not any(n.op_type in ("Min", "Max", "Clip") for n in onnx.load(str(tmp_path / "m.onnx")).graph.node)
    rng = np.random.default_rng(6)
    obs, feeds, _ = random_feeds(policy, 64, rng)
    det = session.run(["deterministic_continuous_actions"], feeds)[0]
    with torch.no_grad():
        want = policy.deterministic(policy.flatten_obs(obs))[0].numpy()
    assert np.max(np.abs(det - want)) <= 1e-5
