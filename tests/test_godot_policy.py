"""SparringPolicy, the Godot addon's own inference (GDScript), in real headless Godot 3.2: it acts as onnxruntime
acts on the native ONNX file (the same discrete actions, continuous ones within 1e-4), one agent at a time and as a
group; it refuses what it cannot run, at export and at load; and the example game plays its trained policy with no
trainer connected.

One Godot process runs every parity case (``example/checks/policy_parity.gd``).
"""

from __future__ import annotations

import json
import subprocess
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from gymnasium import spaces

from godot_harness import GODOT, PROJECT
from sparring.agents import PPO
from sparring.agents.networks import MemorySettings
from sparring.agents.policy import BehaviourPolicy
from sparring.agents.sac import SACActor
from sparring.envs.bridge.env import MultiEngineEnv
from sparring.export.exporter import export_policy
from sparring.export.godot_addon import sidecar_fields, sidecar_path, write_sidecar
from sparring.spec import BehaviourSpec, hybrid_space

pytestmark = [
    pytest.mark.godot,
    pytest.mark.skipif(GODOT is None, reason="godot3-server is not on PATH (apt-get install godot3-server)"),
]

ROWS = 1000
CONTINUOUS_TOLERANCE = 1e-4
BOX = spaces.Box(-5, 5, (12,), np.float32)
TRAINING_STEPS = 20_000  # seekers: a deterministic policy walks straight to the coin from about 15k agent steps on
TYPE_INT, TYPE_DICTIONARY, TYPE_INT_ARRAY, TYPE_REAL_ARRAY = 2, 18, 21, 22  # Godot 3's typeof() codes


def trained_looking(policy):
    """Weights and normalisation statistics moved away from their initial values, as training moves them."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if policy.normalizer is not None:
            policy.normalizer.update(torch.randn(500, policy.obs_size) * 3 + 1)
    return policy


POLICIES = {  # name -> (policy, what act() returns for one agent)
    "multi-discrete, relu, masked": lambda: trained_looking(BehaviourPolicy(
        BehaviourSpec("Driver", BOX, spaces.MultiDiscrete([3, 4, 2])), activation="relu", normalize=True)),
    "continuous in a Box of +-2, swish": lambda: trained_looking(BehaviourPolicy(
        BehaviourSpec("Aimer", BOX, spaces.Box(-2, 2, (3,), np.float32)), activation="swish", normalize=True)),
    "hybrid, masked": lambda: trained_looking(BehaviourPolicy(
        BehaviourSpec("Parker", BOX, hybrid_space(spaces.Box(-1.5, 1, (2,), np.float32), spaces.MultiDiscrete([2, 3]))),
        normalize=True)),
    "SAC continuous": lambda: trained_looking(SACActor(
        BehaviourSpec("Turret", BOX, spaces.Box(np.array([-2, 0], np.float32), np.array([2, 5], np.float32))),
        [64, 64], "relu", True)),
    "SAC discrete, masked": lambda: trained_looking(SACActor(
        BehaviourSpec("Picker", BOX, spaces.Discrete(6)), [32, 32], "tanh", True)),
    "Dict observation, no normalisation": lambda: trained_looking(BehaviourPolicy(
        BehaviourSpec("Scout", spaces.Dict(OrderedDict([  # flattened in the policy's order: aim, grid, speed
            ("speed", spaces.Box(-1, 1, (3,), np.float32)), ("grid", spaces.Box(0, 1, (3, 3, 2), np.float32)),
            ("aim", spaces.Box(-1, 1, (2,), np.float32))])), spaces.Discrete(4)),
        hidden_sizes=(32, 32))),
}
RETURNS = {  # what act() returns for one agent
    "trained seekers": (TYPE_INT, None),
    "multi-discrete, relu, masked": (TYPE_INT_ARRAY, None),
    "continuous in a Box of +-2, swish": (TYPE_REAL_ARRAY, None),
    "hybrid, masked": (TYPE_DICTIONARY, TYPE_INT_ARRAY),
    "SAC continuous": (TYPE_REAL_ARRAY, None),
    "SAC discrete, masked": (TYPE_INT, None),
    "Dict observation, no normalisation": (TYPE_INT, None),
}
REFUSED = {  # sidecars that describe what SparringPolicy cannot run -> what the refusal says
    "image": ({"observation_kinds": ["image"]}, "an image, read by a CNN encoder"),
    "entity list": ({"observation_kinds": ["entities"]}, "an entity list, read by an attention encoder"),
    "memory": ({"memory_size": 128}, "recurrent (LSTM) policy"),
}


DRAWS = 4000  # one observation, acted on this many times with sampled actions
SAMPLED_MASK = np.array([1, 0, 1, 1, 1, 1, 1], bool)  # branches of 4 and 3 actions; action 1 of the first forbidden


def sampled_policy() -> BehaviourPolicy:
    """Logits of a few units apart, so that every allowed action is drawn hundreds of times in DRAWS."""
    policy = trained_looking(BehaviourPolicy(BehaviourSpec("Dealer", BOX, spaces.MultiDiscrete([4, 3])),
                                             hidden_sizes=(16,)))
    with torch.no_grad():
        policy.actor_head.weight.mul_(0.3)
    return policy


def random_masks(branches: tuple[int, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    masks = rng.random((n, sum(branches))) > 0.4
    firsts = np.cumsum((0, *branches[:-1]))
    masks[np.arange(n)[:, None], firsts + rng.integers(0, branches, (n, len(branches)))] = True
    return masks


def observations(policy, n: int, rng: np.random.Generator) -> np.ndarray:
    """Flat rows in the policy's order, spread as its normalisation expects, a few far outside (clipped)."""
    rows = rng.normal(1, 3, (n, policy.obs_size)).astype(np.float32)
    rows[rng.random(n) < 0.05] *= 20
    return rows


@pytest.fixture(scope="module")
def seekers(tmp_path_factory):
    """A PPO policy trained on the example game through a real Godot process, exported, and 1000 observations
    and masks recorded from the game as it plays."""
    folder = tmp_path_factory.mktemp("seekers")
    torch.set_num_threads(1)
    with MultiEngineEnv.launch(GODOT, 1, ["--path", str(PROJECT)], transport="tcp", log_dir=folder,
                               step_timeout=30) as env:
        model = PPO(env, seed=0, n_steps=128, batch_size=256, n_epochs=4, learning_rate=1e-3, ent_coef=0.01,
                    normalize_obs=True)
        model.learn(TRAINING_STEPS)
        obs, masks = [], []
        result = env.reset(seed=7)
        while sum(map(len, obs)) < ROWS:
            decisions = result["seeker"].decisions
            obs.append(decisions.obs)
            masks.append(decisions.action_mask)
            result = env.step({"seeker": model.predict(decisions.obs, "seeker", decisions.action_mask, False)})
    policy = model.policies["seeker"]
    export_policy(policy, folder / "seeker.onnx", recorded_obs=model.learners["seeker"].recorded_obs.numpy())
    return policy, folder / "seeker.onnx", np.concatenate(obs)[:ROWS], np.concatenate(masks)[:ROWS]


@pytest.fixture(scope="module")
def godot_results(tmp_path_factory, seekers):
    """Every parity case and every refused sidecar, run by one Godot process: name -> what it wrote."""
    folder = tmp_path_factory.mktemp("policies")
    rng = np.random.default_rng(0)
    cases, expected = [], {}
    exported = {name: (make(), folder / f"{i}.onnx") for i, (name, make) in enumerate(POLICIES.items())}
    for name, (policy, path) in exported.items():
        export_policy(policy, path)
    exported["trained seekers"] = seekers[:2]
    for i, (name, (policy, path)) in enumerate(exported.items()):
        rows = seekers[2] if name == "trained seekers" else observations(policy, ROWS, rng)
        masks = seekers[3] if name == "trained seekers" else (
            random_masks(policy.branches, ROWS, rng) if policy.branches else None)
        components = policy.spec.observation_components
        parts = [[key, int(np.prod(box.shape))] for key, box in components.items()] if len(components) > 1 else []
        stem = folder / f"case{i}"
        rows.tofile(f"{stem}.rows")
        if parts:  # the same rows in the game's own order, which act() gets as a Dictionary
            split = parts_of(policy, rows)
            np.concatenate([split[key] for key, _ in parts], 1).tofile(f"{stem}.spec_rows")
        if masks is not None:
            masks.astype(np.uint8).tofile(f"{stem}.masks")
        cases.append({"policy": str(sidecar_path(path)), "count": ROWS, "rows": f"{stem}.rows",
                      "masks": f"{stem}.masks" if masks is not None else "", "parts": parts,
                      "spec_rows": f"{stem}.spec_rows" if parts else "", "out": str(stem)})
        expected[name] = (policy, path, rows, masks, stem)
    fields = sidecar_fields(exported["SAC discrete, masked"][0])
    for i, (name, (changes, _)) in enumerate(REFUSED.items()):
        stem = folder / f"refused{i}"
        write_sidecar({**fields, **changes}, f"{stem}.policy.tres")
        cases.append({"policy": f"{stem}.policy.tres", "count": ROWS, "rows": "", "masks": "", "parts": [],
                      "spec_rows": "", "out": str(stem)})
        expected[name] = (None, None, None, None, stem)
    policy, path, stem = sampled_policy(), folder / "sampled.onnx", folder / "sampled"
    export_policy(policy, path, sample_actions=True)
    row = observations(policy, 1, rng)
    np.repeat(row, DRAWS, 0).tofile(f"{stem}.rows")
    np.tile(SAMPLED_MASK, (DRAWS, 1)).astype(np.uint8).tofile(f"{stem}.masks")
    cases.append({"policy": str(sidecar_path(path)), "count": DRAWS, "rows": f"{stem}.rows", "masks": f"{stem}.masks",
                  "parts": [], "spec_rows": "", "out": str(stem)})
    expected["sampled"] = (policy, path, row, SAMPLED_MASK[None], stem)
    (folder / "cases.json").write_text(json.dumps(cases))
    done = subprocess.run([GODOT, "--no-window", "--path", str(PROJECT), "-s", "res://checks/policy_parity.gd",
                           "--cases", str(folder / "cases.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return expected


def parts_of(policy, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Flat rows in the policy's order -> each observation component's columns, by name."""
    components = policy.spec.observation_components
    sizes = [int(np.prod(components[key].shape)) for key in policy.obs_keys]
    return dict(zip(policy.obs_keys, np.split(rows, np.cumsum(sizes)[:-1], 1)))


def onnxruntime_outputs(path: Path, policy, rows: np.ndarray, masks: np.ndarray | None) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    components = policy.spec.observation_components
    feeds = {key: part.reshape(len(rows), *components[key].shape) for key, part in parts_of(policy, rows).items()}
    if masks is not None:
        feeds["action_mask"] = masks.astype(bool)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


@pytest.mark.parametrize("name", [*POLICIES, "trained seekers"])
def test_sparring_policy_acts_as_onnxruntime_does(godot_results, name):
    policy, path, rows, masks, stem = godot_results[name]
    want = onnxruntime_outputs(path, policy, rows, masks)
    c = policy.continuous_size
    heads = np.concatenate([want[k].reshape(ROWS, -1) for k in ("mean", "logits") if k in want], 1)
    outputs = np.fromfile(f"{stem}.outputs", np.float32).reshape(ROWS, -1)
    assert np.abs(outputs - heads).max() <= CONTINUOUS_TOLERANCE
    for mode in ("single", "group"):  # one act() per agent, then one act_rows() for all of them
        if c:
            continuous = np.fromfile(f"{stem}.{mode}_c", np.float32).reshape(ROWS, c)
            wanted = want.get("continuous_action", want.get("action")).reshape(ROWS, c)
            assert np.abs(continuous - wanted).max() <= CONTINUOUS_TOLERANCE, mode
        if policy.branches:
            discrete = np.fromfile(f"{stem}.{mode}_d", np.int32).reshape(ROWS, len(policy.branches))
            wanted = want.get("discrete_action", want.get("action")).reshape(ROWS, -1)
            assert np.array_equal(discrete, wanted), f"{mode}: {int((discrete != wanted).any(1).sum())} rows differ"
    types = json.loads(Path(f"{stem}.json").read_text())
    assert (types["single"], types.get("discrete")) == RETURNS[name]
    weights = np.concatenate([np.asarray(w, np.float32).reshape(-1) for w in sidecar_fields(policy)["weights"]])
    assert np.array_equal(np.fromfile(f"{stem}.weights", np.float32), weights)  # the text round-trips float32


def test_the_cases_reach_what_they_claim_to_cover(godot_results):
    """Means clipped to the Box, tanh squashed near its ends, normalisation clipped, masks that change actions."""
    policy, path, rows, masks, _ = godot_results["continuous in a Box of +-2, swish"]
    assert (np.abs(onnxruntime_outputs(path, policy, rows, masks)["mean"]) > 2).mean() > 0.05
    policy, path, rows, masks, _ = godot_results["SAC continuous"]
    assert (np.abs(np.tanh(onnxruntime_outputs(path, policy, rows, masks)["mean"])) > 0.99).mean() > 0.05
    norm = policy.normalizer
    assert (np.abs((rows - norm.offset.numpy()) * norm.scale.numpy()) > norm.clip).any()
    policy, path, rows, masks, _ = godot_results["multi-discrete, relu, masked"]
    assert not np.array_equal(onnxruntime_outputs(path, policy, rows, masks)["action"],
                              onnxruntime_outputs(path, policy, rows, np.ones_like(masks))["action"])


def test_a_policy_exported_to_sample_draws_each_allowed_action_as_often_as_its_softmax_says(godot_results):
    """A ladder tier measured with sampled actions plays so in the game: 4000 draws for one observation, one agent
    at a time and as a group, against the softmax of onnxruntime's logits over the allowed actions."""
    policy, path, row, mask, stem = godot_results["sampled"]
    logits = onnxruntime_outputs(path, policy, row, mask)["logits"][0]
    for mode in ("single", "group"):
        draws = np.fromfile(f"{stem}.{mode}_d", np.int32).reshape(DRAWS, 2)
        start = 0
        for branch, size in enumerate(policy.branches):
            allowed = mask[0, start : start + size]
            weights = np.where(allowed, np.exp(logits[start : start + size] - logits[start : start + size].max()), 0)
            probabilities = weights / weights.sum()
            assert probabilities[allowed].min() > 0.03  # the case draws every allowed action often
            frequencies = np.bincount(draws[:, branch], minlength=size) / DRAWS
            spread = np.sqrt(probabilities * (1 - probabilities) / DRAWS)
            assert (np.abs(frequencies - probabilities) <= 5 * spread + 1e-9).all(), (mode, frequencies, probabilities)
            start += size


def test_a_continuous_policy_exported_to_sample_gets_no_sidecar(tmp_path):
    policy = BehaviourPolicy(BehaviourSpec("Aimer", BOX, spaces.Box(-1, 1, (2,), np.float32)), hidden_sizes=(16,))
    report = str(export_policy(policy, tmp_path / "a.onnx", sample_actions=True))
    assert "Godot addon policy: not written: its actions are to be sampled" in report
    assert not sidecar_path(tmp_path / "a.onnx").exists()


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_sidecar_it_cannot_run_is_refused_when_loaded(godot_results, name):
    stem = godot_results[name][4]
    error = Path(f"{stem}.error").read_text()
    assert REFUSED[name][1] in error and "run the native .onnx with onnxruntime instead" in error


@pytest.mark.parametrize("kind", ["image", "entity list", "memory"])
def test_export_writes_no_sidecar_for_what_the_addon_cannot_run(tmp_path, kind):
    obs = {"image": spaces.Dict({"camera": spaces.Box(0, 1, (20, 20, 3), np.float32), "hp": BOX}),
           "entity list": spaces.Dict({"allies": spaces.Box(-1, 1, (5, 3), np.float32), "hp": BOX}),
           "memory": BOX}[kind]
    memory = MemorySettings(memory_size=8) if kind == "memory" else None
    policy = BehaviourPolicy(BehaviourSpec("Sentry", obs, spaces.Discrete(3)), hidden_sizes=(16,), memory=memory)
    report = str(export_policy(policy, tmp_path / "s.onnx"))
    why = {"image": "observation 'camera' is an image read by a CNN encoder",
           "entity list": "observation 'allies' is an entity list read by an attention encoder",
           "memory": "it is a recurrent (LSTM) policy"}[kind]
    assert f"Godot addon policy: not written: {why}" in report
    assert (tmp_path / "s.onnx").exists() and not sidecar_path(tmp_path / "s.onnx").exists()
    with pytest.raises(ValueError, match="SparringPolicy runs"):
        sidecar_fields(policy)


def play(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([GODOT, "--path", str(PROJECT), *args], capture_output=True, text=True, timeout=60)


def test_the_example_game_plays_its_trained_policy_with_no_trainer(seekers, tmp_path):
    _, path, _, _ = seekers
    coins = {}
    for label, folder in (("policy", str(path.parent)), ("random", None)):
        done = play("res://checks/policy_seekers.tscn", "--decisions", "300", *(("--policy-dir", folder) if folder else ()))
        assert done.returncode == 0, done.stdout + done.stderr
        [line] = [line for line in done.stdout.splitlines() if line.startswith("seekers:")]
        coins[label] = int(line.split()[1])
    print(coins)
    assert coins["policy"] >= 5 * coins["random"], coins  # trained: about 5 decisions a coin; random: about 80


def test_a_crowd_plays_its_policy_with_no_trainer(seekers, tmp_path):
    policy, path, rows, masks = seekers
    (tmp_path / "crowd.policy.tres").write_text(sidecar_path(path).read_text())
    rows.tofile(tmp_path / "rows.f32")
    masks.astype(np.uint8).tofile(tmp_path / "masks.u8")
    done = play("res://checks/policy_crowd.tscn", "--policy-dir", str(tmp_path), "--agents", str(ROWS))
    assert done.returncode == 0, done.stdout + done.stderr
    actions = np.fromfile(tmp_path / "actions.i32", np.int32)
    assert np.array_equal(actions, onnxruntime_outputs(path, policy, rows, masks)["action"])


def test_a_policy_that_does_not_fit_the_agents_ends_the_game_saying_why(godot_results, tmp_path):
    _, path, _, _, _ = godot_results["multi-discrete, relu, masked"]
    (tmp_path / "seeker.policy.tres").write_text(sidecar_path(path).read_text())
    done = play("res://checks/policy_seekers.tscn", "--decisions", "10", "--policy-dir", str(tmp_path))
    assert done.returncode == 1
    assert "reads observations {obs:12} (floats per part), the node declares {obs:5}" in done.stdout + done.stderr
