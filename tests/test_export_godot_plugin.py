"""The godot format as the Godot RL Agents plugin reads it: every check goes through an emulation of the plugin's
own reading of ``output`` (``sync.gd``'s ``_extract_action_dict`` and ``ONNX_wrapper.gd``'s ``set_action_means_only``,
plugin main 2025-09), compared with the policy's deterministic actions."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from gymnasium import spaces

from sparring.agents import PPO
from sparring.agents.policy import BehaviourPolicy
from sparring.agents.sac import SACActor
from sparring.cli import main
from sparring.export.exporter import RELATIVE_TOLERANCE, TOLERANCE, ExportError, actor_heads, export_policy
from sparring.spec import ActionKey, BehaviourSpec, hybrid_space
from test_export import BOX, trained_looking_policy
from toy_envs import CountingEnv


def plugin_reads(output: np.ndarray, action_space: dict) -> list[dict]:
    """Each row of ``output`` as the plugin turns it into the action dictionary it hands the game."""
    continuous_only = all(info["action_type"] == "continuous" for info in action_space.values())
    means_only = continuous_only and sum(info["size"] for info in action_space.values()) == output.shape[1]
    rows = []
    for row in output:
        index, result = 0, {}
        for key, info in action_space.items():  # a Godot Dictionary keeps the order the game declared
            size = info["size"]
            if info["action_type"] == "discrete":
                result[key] = int(np.argmax(row[index : index + size]))  # the first largest, as its strict '>'
                index += size
            else:
                result[key] = np.clip(row[index : index + size], -1.0, 1.0)
                index += size if means_only else 2 * size
        rows.append(result)
    return rows


def exported(policy, path, **kwargs) -> tuple[ort.InferenceSession, dict]:
    export_policy(policy, path, "godot", **kwargs)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), meta


def game_actions(plugin_rows: list[dict], meta: dict) -> tuple[np.ndarray | None, np.ndarray | None]:
    """What the game does with the plugin's dictionaries: continuous keys concatenated in order and mapped back from
    [-1, 1] by the ``godot_action_scale`` metadata; discrete keys as branches in order."""
    declared = json.loads(meta["godot_action_space"])
    continuous = [k for k, info in declared.items() if info["action_type"] == "continuous"]
    discrete = [k for k, info in declared.items() if info["action_type"] == "discrete"]
    cont = disc = None
    if continuous:
        scale = json.loads(meta["godot_action_scale"])
        low, high = np.array(scale["low"]), np.array(scale["high"])
        a = np.array([np.concatenate([row[k] for k in continuous]) for row in plugin_rows])
        cont = low + (a + 1) / 2 * (high - low)
    if discrete:
        disc = np.array([[row[k] for k in discrete] for row in plugin_rows])
    return cont, disc


def deterministic(policy, obs: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The policy's own deterministic actions in the env's units: continuous part clipped to the Box, branches."""
    with torch.no_grad():
        x = policy.normalize(torch.from_numpy(obs))
        if isinstance(policy, BehaviourPolicy):
            actions = policy.env_actions(policy.deterministic(x)[0])
        else:  # a SAC actor
            actions = policy.env_actions(policy.act(x, None, None)[0].numpy())
    spec = policy.spec
    if spec.is_hybrid:
        return actions["continuous"].reshape(len(obs), -1), actions["discrete"].reshape(len(obs), -1)
    if spec.is_continuous:
        return actions.reshape(len(obs), -1), None
    return None, np.asarray(actions).reshape(len(obs), -1)


def rounding(policy, obs: np.ndarray) -> float:
    """What float32 rounding allows between two implementations in the env's units, as the export's own
    verification: the error of a sum grows with its terms (means in the hundreds differ by an ulp or two)."""
    with torch.no_grad():
        heads = actor_heads(policy, policy.core(policy.normalize(torch.from_numpy(obs)))[0])
    largest = max(float(head.abs().max()) for head in heads if head is not None)
    return TOLERANCE + RELATIVE_TOLERANCE * largest


HYBRID_ACTIONS = hybrid_space(spaces.Box(np.array([-2, 0, -1], np.float32), np.array([2, 10, 1], np.float32)),
                              spaces.MultiDiscrete([3, 4]))
LAYOUTS = {
    "continuous key first (default)": (),
    "discrete key first": (ActionKey("jump", "discrete", 3), ActionKey("move", "continuous", 3),
                           ActionKey("weapon", "discrete", 4)),
    "keys interleaved": (ActionKey("move", "continuous", 2), ActionKey("jump", "discrete", 3),
                         ActionKey("throttle", "continuous", 1), ActionKey("weapon", "discrete", 4)),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_hybrid_actions_read_by_the_plugin_are_the_policys_in_any_key_order(tmp_path, layout):
    """Before, output was [means, logits]: with the continuous key first the plugin indexed past the end, with the
    discrete key first it read a mean as a logit."""
    spec = BehaviourSpec("Parker", BOX, HYBRID_ACTIONS, action_keys=LAYOUTS[layout])
    policy = trained_looking_policy(spec)
    with torch.no_grad():
        policy.actor_head.weight.mul_(30.0)  # means well past the Box: the clipping and scaling matter
    sess, meta = exported(policy, tmp_path / "g.onnx")
    obs = np.random.default_rng(1).uniform(-1, 1, (64, 6)).astype(np.float32)
    output, _ = sess.run(None, {"obs": obs, "state_ins": np.zeros(64, np.float32)})
    declared = json.loads(meta["godot_action_space"])
    assert output.shape == (64, 2 * 3 + 3 + 4)  # means and their log-stds, then logits of both branches
    assert [k for k in declared] == ([k.name for k in LAYOUTS[layout]] or ["continuous", "discrete_0", "discrete_1"])
    cont, disc = game_actions(plugin_reads(output, declared), meta)
    want_cont, want_disc = deterministic(policy, obs)
    np.testing.assert_array_equal(disc, want_disc)
    np.testing.assert_allclose(cont, want_cont, atol=rounding(policy, obs))
    assert (np.abs(want_cont[:, 0]) == 2).any()  # some clipped at the bounds: read back exactly there


@pytest.mark.parametrize("algorithm", ["ppo", "sac"])
def test_continuous_actions_beyond_one_lose_nothing_to_the_plugins_clamp(tmp_path, algorithm):
    """Pendulum's torque is in [-2, 2]; the plugin clamps every continuous action to [-1, 1] (before: 21/64 rows
    differed). The export scales the Box onto [-1, 1] and names the mapping in its metadata."""
    spec = BehaviourSpec("Pendulum", spaces.Box(-8, 8, (3,), np.float32), spaces.Box(-2, 2, (1,), np.float32))
    if algorithm == "ppo":
        policy = trained_looking_policy(spec)
        with torch.no_grad():
            policy.actor_head.weight.mul_(100.0)
    else:
        torch.manual_seed(0)
        policy = SACActor(spec, [32, 32], "relu", normalize=False)
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(torch.randn_like(p))
    sess, meta = exported(policy, tmp_path / "g.onnx")
    obs = np.random.default_rng(2).uniform(-8, 8, (256, 3)).astype(np.float32)
    output, _ = sess.run(None, {"obs": obs, "state_ins": np.zeros(256, np.float32)})
    assert output.shape == (256, 1)  # means only: every key continuous
    cont, _ = game_actions(plugin_reads(output, json.loads(meta["godot_action_space"])), meta)
    want, _ = deterministic(policy, obs)
    assert (np.abs(want) > 1.05).mean() > 0.2  # many actions the clamp alone would have cut
    np.testing.assert_allclose(cont, want, atol=rounding(policy, obs))


def test_unbounded_continuous_actions_are_refused_for_the_plugin(tmp_path):
    spec = BehaviourSpec("Free", BOX, spaces.Box(-np.inf, np.inf, (2,), np.float32))
    with pytest.raises(ExportError, match=r"unbounded, and the Godot RL Agents plugin clamps every continuous"):
        export_policy(trained_looking_policy(spec), tmp_path / "g.onnx", "godot")
    assert not (tmp_path / "g.onnx").exists()


def test_a_run_exports_every_behaviour_the_plugin_can_run_and_names_the_masked_one(tmp_path, capsys):
    """CountingEnv's runner is masked (the game forbids one action each step), its watcher is not: export writes the
    watcher and says why not the runner (before: exit 2 and nothing written); the native format takes both."""
    model = PPO(CountingEnv(episode_length=4), seed=0, n_steps=16, n_epochs=1)
    model.learn(128)
    assert model.learners["runner"].masked and not model.learners["watcher"].masked
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "final.pt")
    assert main(["export", str(run), "--format", "godot"]) == 0
    out, err = capsys.readouterr()
    assert (run / "watcher.godot.onnx").exists() and not (run / "runner.godot.onnx").exists()
    assert "behaviour 'runner' not exported: it was trained with action masks" in err
    assert main(["export", str(run), "--format", "godot", "--behaviour", "runner"]) == 2
    assert "trained with action masks" in capsys.readouterr().err
    assert main(["export", str(run)]) == 0  # the native graph takes the mask
    assert (run / "runner.onnx").exists() and (run / "watcher.onnx").exists()


def test_masked_flag_survives_a_checkpoint(tmp_path):
    model = PPO(CountingEnv(episode_length=4), seed=0, n_steps=16, n_epochs=1)
    model.learn(64)
    model.save(tmp_path / "c.pt")
    assert PPO.load(tmp_path / "c.pt").learners["runner"].masked
    with pytest.raises(ExportError, match="trained with action masks"):
        export_policy(model.policies["runner"], tmp_path / "g.onnx", "godot", masked=True)
