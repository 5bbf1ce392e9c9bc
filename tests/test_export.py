"""ONNX export: every format matches torch in onnxruntime, carries its metadata, and refuses what it cannot represent."""

import json
from collections import OrderedDict

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from gymnasium import spaces

from sparring.agents.policy import BehaviourPolicy
from sparring.cli import main
from sparring.agents.networks import MemorySettings
from sparring.export.exporter import (
    ExportError,
    NativeGraph,
    _compare,
    _random_mask,
    _sample_box,
    build_graph,
    export_policy,
    sample_feeds,
)
from sparring.export.policy import OnnxPolicy
from sparring.spec import BehaviourSpec, hybrid_space

BOX = spaces.Box(-1, 1, (6,), np.float32)
BEHAVIOURS = {
    "discrete": BehaviourSpec("Guard", BOX, spaces.Discrete(5)),
    "multidiscrete": BehaviourSpec("Driver", BOX, spaces.MultiDiscrete([3, 2, 4])),
    "continuous": BehaviourSpec("Aimer", BOX, spaces.Box(-2, 2, (2,), np.float32)),
    "dict": BehaviourSpec("Scout", spaces.Dict(OrderedDict(
        [("ray", spaces.Box(0, 1, (4, 2), np.float32)), ("hp", spaces.Box(0, 100, (1,), np.float32))])),
        spaces.Discrete(3)),
    "hybrid": BehaviourSpec("Parker", BOX, hybrid_space(spaces.Box(-1, 1, (2,), np.float32), spaces.MultiDiscrete([2, 3]))),
    "sees": BehaviourSpec("Sentry", spaces.Dict(OrderedDict([  # a CNN, an attention encoder and a vector
        ("camera", spaces.Box(0, 255, (24, 20, 3), np.uint8)), ("allies", spaces.Box(-1, 1, (5, 3), np.float32)),
        ("hp", spaces.Box(0, 100, (1,), np.float32))])), spaces.Box(-1, 1, (2,), np.float32)),
}


def trained_looking_policy(spec: BehaviourSpec, memory: MemorySettings | None = None) -> BehaviourPolicy:
    """A policy with non-trivial weights and normalisation statistics (so folding them is tested)."""
    torch.manual_seed(0)
    policy = BehaviourPolicy(spec, normalize=True, memory=memory)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
        policy.normalizer.update(torch.randn(500, policy.obs_size) * 3 + 1)
    return policy


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("kind", sorted(BEHAVIOURS))
@pytest.mark.parametrize("fmt", ["native", "godot", "mlagents"])
def test_export_matches_torch_in_onnxruntime(tmp_path, kind, fmt):
    spec = BEHAVIOURS[kind]
    policy = trained_looking_policy(spec)
    recorded = np.random.default_rng(1).normal(size=(64, policy.obs_size)).astype(np.float32)
    report = export_policy(policy, tmp_path / "m.onnx", fmt, training_step=1234, recorded_obs=recorded)
    text = str(report)
    assert "onnx.checker: ok" in text and "random observations" in text and "64 recorded observations" in text
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert meta["sparring_format"] == fmt and meta["behaviour"] == spec.name and meta["training_step"] == "1234"
    assert json.loads(meta["action_space"])["type"] == type(spec.action_space).__name__
    assert onnx.load(str(tmp_path / "m.onnx")).opset_import[0].version == 15


def test_native_batch_axis_is_dynamic_and_masks_are_obeyed(tmp_path):
    policy = trained_looking_policy(BEHAVIOURS["multidiscrete"])
    export_policy(policy, tmp_path / "m.onnx")
    model = OnnxPolicy(tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    for n in (1, 7, 300):
        obs = rng.uniform(-1, 1, (n, 6)).astype(np.float32)
        mask = np.ones((n, 9), bool)
        mask[:, 0] = mask[:, 3] = False  # forbid action 0 of branch 0 and action 0 of branch 1
        actions = model.predict(obs, action_mask=mask)
        assert actions.shape == (n, 3) and (actions[:, 0] != 0).all() and (actions[:, 1] != 0).all()
        with torch.no_grad():
            expected = policy.deterministic(policy.normalize(torch.from_numpy(obs)), torch.from_numpy(mask))[0]
        np.testing.assert_array_equal(actions, expected.numpy())


def test_native_hybrid_export_acts_like_the_trained_policy(tmp_path):
    policy = trained_looking_policy(BEHAVIOURS["hybrid"])
    export_policy(policy, tmp_path / "m.onnx")
    model = OnnxPolicy(tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (50, 6)).astype(np.float32)
    mask = np.ones((50, 5), bool)
    mask[:, 2] = False  # forbid action 0 of the second branch
    actions = model.predict(obs, action_mask=mask)
    with torch.no_grad():
        expected = policy.env_actions(policy.deterministic(policy.normalize(torch.from_numpy(obs)), torch.from_numpy(mask))[0])
    assert set(actions) == {"continuous", "discrete"} and (actions["discrete"][:, 1] != 0).all()
    np.testing.assert_array_equal(actions["discrete"], expected["discrete"])
    np.testing.assert_allclose(actions["continuous"], expected["continuous"], atol=1e-5)


def test_godot_format_names_and_scaled_continuous_means(tmp_path):
    policy = trained_looking_policy(BEHAVIOURS["continuous"])
    export_policy(policy, tmp_path / "g.onnx", "godot")
    sess = session(tmp_path / "g.onnx")
    assert [i.name for i in sess.get_inputs()] == ["obs", "state_ins"]
    assert [o.name for o in sess.get_outputs()] == ["output", "state_outs"]
    obs = np.random.default_rng(0).uniform(-1, 1, (5, 6)).astype(np.float32)
    output, state = sess.run(None, {"obs": obs, "state_ins": np.zeros(5, np.float32)})
    with torch.no_grad():
        mean = policy.actor_head(policy.trunk(policy.normalize(torch.from_numpy(obs)))[0]).numpy()
    # the Box [-2, 2] onto the plugin's [-1, 1] (tests/test_export_godot_plugin.py reads it as the plugin does)
    np.testing.assert_allclose(output, np.clip(mean, -2, 2) / 2, atol=1e-5)
    assert state.shape == (5,)


def test_verification_catches_a_graph_that_differs(tmp_path):
    spec = BEHAVIOURS["discrete"]
    export_policy(trained_looking_policy(spec), tmp_path / "m.onnx")
    other = NativeGraph(BehaviourPolicy(spec, normalize=True)).eval()
    feeds = sample_feeds(other, spec, 64, np.random.default_rng(0))
    with pytest.raises(ExportError, match="differ"):
        _compare(other, str(tmp_path / "m.onnx"), feeds)


def test_large_logits_pass_verification_within_float32_rounding(tmp_path):
    """Logits in the hundreds differ between onnxruntime and torch by an ulp or two (tens of millionths):
    the limit grows with the output's scale, while the deterministic actions must still agree exactly."""
    spec = BEHAVIOURS["multidiscrete"]
    policy = trained_looking_policy(spec)
    with torch.no_grad():
        policy.actor_head.weight.mul_(100.0)
    text = str(export_policy(policy, tmp_path / "m.onnx"))
    assert "deterministic actions identical" in text


def test_godot_format_takes_one_input_per_observation_key_as_the_plugin_feeds_them(tmp_path):
    """The plugin's ONNXInference.cs (since f93cc07) feeds each key of the agent's get_obs() dictionary,
    flattened to (batch, size), under its own name, plus state_ins: emulated here."""
    policy = trained_looking_policy(BEHAVIOURS["dict"])
    export_policy(policy, tmp_path / "g.onnx", "godot")
    sess = session(tmp_path / "g.onnx")
    components = policy.spec.observation_components
    assert [i.name for i in sess.get_inputs()] == [*components, "state_ins"]
    rng = np.random.default_rng(0)
    obs = {key: rng.uniform(-1, 1, (5, *box.shape)).astype(np.float32) for key, box in components.items()}
    plugin_feeds = {key: value.reshape(5, -1) for key, value in obs.items()}
    output, _ = sess.run(None, {**plugin_feeds, "state_ins": np.zeros(5, np.float32)})
    with torch.no_grad():
        logits = policy.features(policy.normalize(policy.flatten_obs(obs)))[0].numpy()
    np.testing.assert_allclose(output, logits, atol=1e-5)


def test_a_format_that_cannot_represent_the_behaviour_is_refused(tmp_path):
    spec = BEHAVIOURS["dict"]
    clashing = BehaviourSpec(spec.name, spaces.Dict({"state_ins": spaces.Box(-1, 1, (2,), np.float32)}), spec.action_space)
    with pytest.raises(ExportError, match="'state_ins' has the name of one of the Godot RL Agents plugin's own"):
        export_policy(trained_looking_policy(clashing), tmp_path / "g.onnx", "godot")
    assert not (tmp_path / "g.onnx").exists()


CARTPOLE = {
    "env": {"source": "gymnasium", "id": "CartPole-v1", "num_envs": 4},
    "trainer": {"max_steps": 6000, "summary_freq": 3000, "hyperparameters": {"n_steps": 32, "n_epochs": 4}},
}


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    config = root / "cartpole.yaml"
    config.write_text(yaml.safe_dump(CARTPOLE))
    assert main(["train", str(config), "--results-dir", str(root / "results"), "--run-id", "cp"]) == 0
    return root, config, root / "results" / "cp"


def test_training_exports_every_behaviour_and_play_matches_the_torch_policy(cartpole_run, capsys):
    from sparring.agents import PPO
    from sparring.agents.evaluation import evaluate
    from sparring.envs.gymnasium import GymnasiumEnv

    _, config, run = cartpole_run
    assert (run / "CartPole.onnx").exists()
    capsys.readouterr()
    assert main(["play", str(run / "CartPole.onnx"), "--config", str(config), "--episodes", "12", "--seed", "5"]) == 0
    played = capsys.readouterr().out
    torch_returns = evaluate(PPO.load(run / "final.pt"), GymnasiumEnv("CartPole-v1", num_envs=4), 12, seed=5)["CartPole"]
    assert f"CartPole: mean return {torch_returns.mean():.3f} over {len(torch_returns)} episodes" in played


@pytest.mark.parametrize(
    "args,message",
    [(["--behaviour", "Nope"], "no behaviour 'Nope'"), (["--format", "godot", "--out", "x.onnx"], None)],
)
def test_export_command(cartpole_run, tmp_path, capsys, args, message):
    _, _, run = cartpole_run
    args = [a if a != "x.onnx" else str(tmp_path / "x.onnx") for a in args]
    status = main(["export", str(run), *args])
    if message:
        assert status == 2 and message in capsys.readouterr().err
    else:
        assert status == 0 and (tmp_path / "x.onnx").exists()


def test_exporting_an_unfinished_run_is_refused(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert main(["export", str(tmp_path / "run")]) == 2
    assert "no finished checkpoint" in capsys.readouterr().err


def recurrent_policy(spec: BehaviourSpec) -> BehaviourPolicy:
    return trained_looking_policy(spec, MemorySettings(memory_size=16, sequence_length=4)).eval()


@pytest.mark.parametrize("fmt", ["native", "mlagents"])
def test_a_recurrent_export_carries_its_memory_over_50_steps_as_torch_does(tmp_path, fmt):
    """The game feeds recurrent_out back as recurrent_in at each agent's next decision, from zeros."""
    spec = BEHAVIOURS["sees"] if fmt == "native" else BEHAVIOURS["multidiscrete"]
    policy = recurrent_policy(spec)
    export_policy(policy, tmp_path / "m.onnx", fmt)
    sess = session(tmp_path / "m.onnx")
    graph = build_graph(policy, fmt)
    names = [o.name for o in sess.get_outputs()]
    action_name = "action" if fmt == "native" else "deterministic_discrete_actions"
    rng = np.random.default_rng(0)
    n = 4
    memory, state = np.zeros((n, 16), np.float32), torch.zeros(n, 16)
    for _ in range(50):
        obs = {k: _sample_box(box, n, rng) for k, box in spec.observation_components.items()}
        mask = _random_mask(spec, n, rng) if spec.mask_size else None
        got = dict(zip(names, sess.run(None, graph.feeds(obs, mask, memory))))
        with torch.no_grad():
            x = policy.normalize(policy.flatten_obs(obs))
            want, state = policy.deterministic(x, None if mask is None else torch.from_numpy(mask), state)
        memory = got["recurrent_out"].reshape(n, 16)  # each side carries its own: rounding differences add up
        np.testing.assert_allclose(memory, state.numpy(), atol=1e-4)
        have = got[action_name]
        if fmt == "native":
            np.testing.assert_allclose(have, policy.env_actions(want), atol=1e-4)
        else:
            np.testing.assert_array_equal(have, want.numpy().reshape(n, -1))
    assert np.abs(memory).max() > 0.1  # the memory did carry something


def test_mlagents_recurrent_tensors_are_shaped_as_unity_reads_them(tmp_path):
    """RecurrentInputGenerator writes recurrent_in[agent, 0, j]; MemoryOutputApplier reads recurrent_out the same
    way; SentisModelInfo reads the memory size from the float memory_size output."""
    policy = recurrent_policy(BEHAVIOURS["discrete"])
    export_policy(policy, tmp_path / "m.onnx", "mlagents")
    sess = session(tmp_path / "m.onnx")
    assert {i.name: i.shape for i in sess.get_inputs()}["recurrent_in"] == ["batch", 1, 16]
    outputs = [o.name for o in sess.get_outputs()]
    assert outputs[-1] == "recurrent_out" and outputs[:2] == ["version_number", "memory_size"]
    feeds = {"obs_0": np.zeros((3, 6), np.float32), "action_masks": np.ones((3, 5), np.float32),
             "recurrent_in": np.zeros((3, 1, 16), np.float32)}
    got = dict(zip(outputs, sess.run(None, feeds)))
    assert got["memory_size"].dtype == np.float32 and got["memory_size"].tolist() == [16.0]
    assert got["recurrent_out"].shape == (3, 1, 16)


def test_a_recurrent_policy_is_refused_for_the_godot_plugin_which_cannot_carry_memory(tmp_path):
    with pytest.raises(ExportError, match=r"feeds state_ins as one constant per call \(sync.gd: run_inference"):
        export_policy(recurrent_policy(BEHAVIOURS["discrete"]), tmp_path / "g.onnx", "godot")
    assert not (tmp_path / "g.onnx").exists()


def test_a_recurrent_policy_plays_the_same_from_its_export_as_from_torch(tmp_path):
    """The native export, carrying recurrent_out back as a game does, plays exactly the episodes torch plays;
    and what it remembers matters (played without memory, the same policy scores differently)."""
    import toy_envs  # noqa: F401  (registers CueRecall)
    from sparring.agents import PPO
    from sparring.agents.evaluation import evaluate
    from sparring.envs.gymnasium import GymnasiumEnv

    model = PPO(GymnasiumEnv("CueRecall-v0", num_envs=16), seed=0, n_steps=32, batch_size=128, n_epochs=4,
                learning_rate=1e-3, memory={"memory_size": 32, "sequence_length": 8})
    model.learn(30_000)  # about 4 s: a policy whose last decision rests on the cue it remembers
    export_policy(model.policies["CueRecall"], tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="pass predict agent_ids"):
        model.predict(np.zeros((1, 3), np.float32))

    class Forgetful(OnnxPolicy):
        def predict(self, *args, **kwargs):
            self.reset_memory()
            return super().predict(*args, **kwargs)

    played = [evaluate(player, GymnasiumEnv("CueRecall-v0", num_envs=3), 200, seed=7)["CueRecall"]
              for player in (model, OnnxPolicy(tmp_path / "m.onnx"), Forgetful(tmp_path / "m.onnx"))]
    np.testing.assert_array_equal(played[0], played[1])
    assert not np.array_equal(played[1], played[2])


def test_evaluate_tells_a_recurrent_player_whose_decisions_these_are_and_whose_episodes_ended():
    import toy_envs  # noqa: F401  (registers CueRecall)
    from sparring.agents.evaluation import evaluate
    from sparring.envs.gymnasium import GymnasiumEnv

    class Recorder:
        def __init__(self):
            self.calls = []

        def predict(self, obs, behaviour=None, action_mask=None, deterministic=True, agent_ids=None):
            self.calls.append(("predict", agent_ids.tolist()))
            return np.zeros(len(obs), np.int64)

        def reset_memory(self, behaviour=None, agent_ids=None):
            self.calls.append(("forget", None if agent_ids is None else agent_ids.tolist()))

    recorder = Recorder()
    evaluate(recorder, GymnasiumEnv("CueRecall-v0", num_envs=2), 4, seed=0)
    steps = toy_envs.CueRecall.LENGTH
    # everything forgotten first; then both copies decide 6 times, their episodes end together, and again
    assert recorder.calls == [("forget", None), *[("predict", [0, 1])] * steps, ("forget", [0, 1]),
                              *[("predict", [0, 1])] * steps, ("forget", [0, 1])]
