"""SAC (agents/sac.py): its losses' gradients against Stable-Baselines3's formulation, transitions, config, resume,
learning."""

from __future__ import annotations

import copy
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from gymnasium import spaces
from pydantic import ValidationError

from sparring.agents import load
from sparring.agents.evaluation import evaluate
from sparring.agents.replay import ReplayBuffer
from sparring.agents.sac import SAC, BehaviourSAC, SACSettings
from sparring.cli import main
from sparring.config import RunConfig
from sparring.envs.base import BehaviourStep, DecisionSteps, TerminalSteps
from sparring.envs.bridge.env import MultiEngineEnv
from sparring.envs.gymnasium import GymnasiumEnv
from sparring.export.exporter import ExportError, export_policy, file_stem
from sparring.export.policy import OnnxPolicy
from sparring.spec import BehaviourSpec, hybrid_space
from toy_envs import CountingEnv, step_reward
from unity_harness import DISTUTILS_WARNING, MOVER, SEEKER, build_player, free_ports

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENGINES = Path(__file__).resolve().parents[1] / "engines" / "python"
ARENA = ENGINES / "examples" / "arena.py"


# -- gradients ----------------------------------------------------------------------------


def _learner(action_space: spaces.Space, seed: int = 0, **settings) -> BehaviourSAC:
    torch.manual_seed(seed)
    spec = BehaviourSpec("b", spaces.Box(-np.inf, np.inf, (5,), np.float32), action_space)
    return BehaviourSAC(spec, SACSettings(hidden_sizes=[32, 24], batch_size=64, **settings))


def _fill(learner: BehaviourSAC, n: int = 200, seed: int = 0, masks: bool = False) -> None:
    rng = np.random.default_rng(seed)
    actor = learner.actor
    if actor.continuous:
        actions = rng.uniform(-1, 1, (n, actor.action_size)).astype(np.float32)
    else:
        actions = np.stack([rng.integers(0, b, n) for b in actor.branches], 1)
        actions = actions[:, 0] if len(actor.branches) == 1 else actions
    mask = next_mask = None
    if masks:
        mask = rng.random((n, learner.spec.mask_size)) > 0.3
        next_mask = rng.random((n, learner.spec.mask_size)) > 0.3
        firsts = np.cumsum((0, *actor.branches[:-1]))
        picked = actions.reshape(n, -1) + firsts
        mask[np.arange(n)[:, None], picked] = True  # the action taken was allowed
        next_mask[:, firsts] = True
    learner.replay.add(rng.normal(size=(n, 5)).astype(np.float32), actions, rng.normal(size=n).astype(np.float32),
                       rng.normal(size=(n, 5)).astype(np.float32), (rng.random(n) > 0.2).astype(np.float32),
                       mask, next_mask)


def _capture(learner: BehaviourSAC) -> dict:
    """Wraps the optimisers' step to record the gradients the update hands them, and the critic it steps to."""
    seen = {}
    for name in ("critic", "actor", "alpha"):
        opt = getattr(learner, f"{name}_optimizer")

        def step(opt=opt, name=name, original=opt.step):
            seen[name] = [p.grad.clone() for group in opt.param_groups for p in group["params"]]
            original()
            if name == "critic":
                seen["stepped critic"] = copy.deepcopy(learner.critic.state_dict())

        opt.step = step
    return seen


def _mlp(layers, x, activation):
    act = torch.relu if activation == "relu" else torch.tanh
    for layer in layers[:-1]:
        x = act(F.linear(x, layer.weight, layer.bias))
    return F.linear(x, layers[-1].weight, layers[-1].bias)


def _autograd_losses(ref: BehaviourSAC, batch, noise, stepped_critic) -> dict:
    """SAC's three gradients by autograd, written the way Stable-Baselines3 writes the losses."""
    actor, act = ref.actor, ref.settings.activation
    layers = [*actor.layers, actor.head]
    x, x_next = actor.normalize(batch.obs), actor.normalize(batch.next_obs)
    n, s = len(x), ref.settings
    alpha = ref.log_alpha.detach().exp()
    out = _mlp(layers, torch.cat([x, x_next]), act)
    grads = {}
    if actor.continuous:
        d = actor.action_size
        mean, log_std = out[:, :d], out[:, d:].clamp(-20, 2)
        u = mean + log_std.exp() * noise
        a = torch.tanh(u)
        log_prob = torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(1) - torch.log1p(-a.square()).sum(1)
        with torch.no_grad():
            q_next = torch.min(*(_mlp(net, torch.cat([x_next, a[n:]], 1), act) for net in ref.target.nets)).squeeze(1)
            y = batch.rewards + s.gamma * batch.continues * (q_next - alpha * log_prob[n:])
        critic_in = torch.cat([x, batch.actions], 1)
        loss = 0.5 * sum(F.mse_loss(_mlp(net, critic_in, act).squeeze(1), y) for net in ref.critic.nets)
        grads["critic"] = torch.autograd.grad(loss, list(ref.critic.parameters()))
        ref.critic.load_state_dict(stepped_critic)
        q_pi = torch.min(*(_mlp(net, torch.cat([x, a[:n]], 1), act) for net in ref.critic.nets)).squeeze(1)
        actor_loss = (alpha * log_prob[:n] - q_pi).mean()
        grads["alpha"] = [-(log_prob[:n] + ref.target_entropy).mean().detach().reshape(1)]
    else:
        branches = actor.branches
        logits = out if batch.masks is None else out.masked_fill(~torch.cat([batch.masks, batch.next_masks]), -1e8)
        log_p = torch.cat([torch.log_softmax(part, -1) for part in torch.split(logits, branches, -1)], -1)
        p = log_p.exp()
        q1, q2 = (_mlp(net, x, act) for net in ref.critic.nets)
        with torch.no_grad():
            q_next = torch.min(*(_mlp(net, x_next, act) for net in ref.target.nets))
            soft_value = (p[n:] * (q_next / len(branches) - alpha * log_p[n:])).sum(1)
            y = batch.rewards + s.gamma * batch.continues * soft_value
        offsets = torch.tensor(np.cumsum((0, *branches[:-1])))
        columns = batch.actions.reshape(n, len(branches)) + offsets
        loss = 0.5 * sum(F.mse_loss(q.gather(1, columns).mean(1), y) for q in (q1, q2))
        grads["critic"] = torch.autograd.grad(loss, list(ref.critic.parameters()))
        q_min = torch.min(q1, q2).detach()
        actor_loss = (p[:n] * (alpha * log_p[:n] - q_min / len(branches))).sum(1).mean()
        entropy = -(p[:n] * log_p[:n]).sum(1)
        grads["alpha"] = [(entropy.mean() - ref.target_entropy).detach().reshape(1)]
    grads["actor"] = torch.autograd.grad(actor_loss, list(actor.parameters()))
    return grads


@pytest.mark.parametrize(
    "action_space, masks",
    [
        (spaces.Box(-2.0, 2.0, (2,), np.float32), False),
        (spaces.Box(-np.inf, np.inf, (1,), np.float32), False),
        (spaces.Discrete(4), False),
        (spaces.Discrete(4), True),
        (spaces.MultiDiscrete([3, 2]), True),
    ],
    ids=["box", "unbounded-box", "discrete", "discrete-masked", "multidiscrete-masked"],
)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_the_update_takes_the_gradients_of_the_losses_as_sb3_writes_them(action_space, masks, activation):
    """Each optimiser is handed the gradient of its loss as SB3 writes it (torch.distributions' Normal, log1p for
    the squash, F.mse_loss), not only of the update's own stable formulation, and nothing else."""
    learner = _learner(action_space, activation=activation, normalize_obs=True)
    _fill(learner, masks=masks)
    learner.actor.normalizer.update(torch.randn(50, 5) * 3 + 1)
    rng, generator = np.random.default_rng(1), torch.Generator().manual_seed(1)
    for _ in range(3):  # a few steps in: Adam moments, targets and temperature have moved
        learner.update(learner.replay.sample(64, rng), generator)
    batch = learner.replay.sample(64, rng)
    ref = copy.deepcopy(learner)
    noise = torch.randn(128, learner.actor.action_size, generator=torch.Generator().set_state(generator.get_state())) if learner.actor.continuous else None
    seen = _capture(learner)
    learner.update(batch, generator)
    expected = _autograd_losses(ref, batch, noise, seen["stepped critic"])
    for part in ("critic", "actor", "alpha"):
        for got, want in zip(seen[part], expected[part], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=lambda m: f"{part}: {m}")


def test_gradient_check_covers_the_squash_correction():
    """The check above fails when the tanh correction's gradient is off (it is not vacuous)."""
    learner = _learner(spaces.Box(-1.0, 1.0, (2,), np.float32))
    _fill(learner)
    rng, generator = np.random.default_rng(1), torch.Generator().manual_seed(1)
    batch = learner.replay.sample(64, rng)
    ref = copy.deepcopy(learner)
    noise = torch.randn(128, 2, generator=torch.Generator().set_state(generator.get_state()))
    seen = _capture(learner)
    learner.update(batch, generator)
    ref.log_alpha.data += 0.1  # a different temperature: the entropy terms of the actor gradient change
    expected = _autograd_losses(ref, batch, noise, seen["stepped critic"])
    assert not all(torch.allclose(g, w, rtol=1e-4, atol=1e-6) for g, w in zip(seen["actor"], expected["actor"]))


# -- transitions --------------------------------------------------------------------------

NPC = BehaviourSpec("npc", spaces.Box(-10, 10, (2,), np.float32), spaces.Discrete(3))


def _decisions(ids, t, rewards=0.0, mask=None) -> DecisionSteps:
    ids = np.array(ids, np.int64)
    obs = np.stack([ids.astype(np.float32), np.full(len(ids), t, np.float32)], 1)
    return DecisionSteps(ids, obs, np.full(len(ids), rewards, np.float32), mask)


def _terminals(ids, t, rewards, truncated) -> TerminalSteps:
    ids = np.array(ids, np.int64)
    obs = np.stack([ids.astype(np.float32), np.full(len(ids), t, np.float32)], 1)
    return TerminalSteps(ids, obs, np.full(len(ids), rewards, np.float32), np.array(truncated, bool))


def _act(learner, decisions):
    return learner.act(decisions, torch.Generator().manual_seed(0), np.random.default_rng(0))


def test_each_agent_decision_is_paired_with_its_own_next_state():
    """Agents join (9), end episodes (7 terminated, 8 truncated) and leave mid-episode (5, lost)."""
    learner = BehaviourSAC(NPC, SACSettings(hidden_sizes=[8]))
    empty = TerminalSteps.empty(NPC)
    step0 = BehaviourStep(_decisions([5, 7, 8], t=0), empty)
    learner.observe(step0)
    _act(learner, step0.decisions)
    assert learner.replay.size == 0
    step1 = BehaviourStep(_decisions([9, 8], t=1), _terminals([7, 8], t=1, rewards=2.0, truncated=[False, True]),
                          lost=np.array([5], np.int64))
    learner.observe(step1)
    _act(learner, step1.decisions)
    replay = learner.replay
    assert replay.size == 2  # 7 and 8 closed by their terminals; 5 lost (dropped); 9 and 8's next episode new
    np.testing.assert_array_equal(replay.obs[:2], [[7, 0], [8, 0]])
    np.testing.assert_array_equal(replay.next_obs[:2], [[7, 1], [8, 1]])
    np.testing.assert_array_equal(replay.rewards[:2], [2.0, 2.0])
    np.testing.assert_array_equal(replay.continues[:2], [0.0, 1.0])  # only a truncated episode bootstraps
    step2 = BehaviourStep(_decisions([5, 8, 9], t=2, rewards=1.0), empty)
    learner.observe(step2)
    assert replay.size == 4  # 8 and 9 continue; 5 came back starting a new episode: nothing to close
    np.testing.assert_array_equal(replay.obs[2:4], [[8, 1], [9, 1]])
    np.testing.assert_array_equal(replay.next_obs[2:4], [[8, 2], [9, 2]])
    np.testing.assert_array_equal(replay.continues[2:4], [1.0, 1.0])
    report = learner.report()
    assert sorted(report.episode_lengths.tolist()) == [1, 1] and report.episode_returns.tolist() == [2.0, 2.0]


def test_masks_travel_with_their_transitions():
    learner = BehaviourSAC(NPC, SACSettings(hidden_sizes=[8], buffer_init_steps=100))
    first = np.array([[True, False, True], [False, True, True]])
    second = np.array([[True, True, False], [True, False, True]])
    step0 = BehaviourStep(_decisions([1, 2], t=0, mask=first), TerminalSteps.empty(NPC))
    learner.observe(step0)
    actions = _act(learner, step0.decisions)
    assert first[np.arange(2), actions].all()  # random exploration keeps to the allowed actions
    learner.observe(BehaviourStep(_decisions([1, 2], t=1, mask=second), TerminalSteps.empty(NPC)))
    batch = learner.replay
    assert batch.has_masks
    np.testing.assert_array_equal(batch.masks[:2], first)
    np.testing.assert_array_equal(batch.next_masks[:2], second)


def test_a_nan_observation_is_refused_naming_the_behaviour():
    learner = BehaviourSAC(NPC, SACSettings(hidden_sizes=[8]))
    decisions = _decisions([1, 2], t=0)
    decisions.obs[1, 0] = np.nan
    with pytest.raises(ValueError, match="behaviour 'npc': non-finite observation .* agent rows \\[1\\]"):
        learner.observe(BehaviourStep(decisions, TerminalSteps.empty(NPC)))


def test_replay_ring_overwrites_the_oldest_and_saves_in_place():
    replay = ReplayBuffer(5, 1, (), np.int64, 0)
    for start in (0, 3, 6):
        rows = np.arange(start, start + 3)
        replay.add(rows[:, None].astype(np.float32), rows, rows.astype(np.float32), rows[:, None] + 0.5,
                   np.ones(3, np.float32), None, None)
    assert replay.size == 5 and replay.pos == 4
    np.testing.assert_array_equal(np.sort(replay.actions), [4, 5, 6, 7, 8])  # 0-3 overwritten
    np.testing.assert_array_equal(replay.latest_obs(3)[:, 0], [6, 7, 8])
    copy_ = ReplayBuffer(5, 1, (), np.int64, 0)
    copy_.load_state_dict(replay.state_dict())
    np.testing.assert_array_equal(copy_.next_obs, replay.next_obs)
    assert (copy_.size, copy_.pos) == (5, 4)
    batch = copy_.sample(64, np.random.default_rng(0))
    np.testing.assert_array_equal(batch.next_obs[:, 0].numpy(), batch.actions.numpy() + 0.5)  # rows stay whole


def test_counting_env_transitions_pair_every_agent_with_its_own_next_observation():
    """Two behaviours, agents joining and leaving between episodes, one deciding every other step."""
    env = CountingEnv(episode_length=4)
    model = SAC(env, seed=1, hidden_sizes=[16], batch_size=16, buffer_init_steps=60,
                behaviour_settings={"watcher": {"buffer_init_steps": 4}})  # watchers decide far less often
    model.learn(160)
    runner, watcher = model.learners["runner"].replay, model.learners["watcher"].replay
    n = runner.size
    assert n > 60 and runner.has_masks
    # runner obs: [seed, t, last action]; the next observation shows the action this agent took
    np.testing.assert_array_equal(runner.next_obs[:n, 2], runner.actions[:n])
    np.testing.assert_array_equal(runner.next_obs[:n, 1], runner.obs[:n, 1] + 1)
    assert not runner.masks[np.arange(n), runner.obs[:n, 1].astype(int) % 5].any()  # t % 5 was masked at t
    assert (runner.continues[:n] == 1).all()  # runners are truncated: every transition bootstraps
    m = watcher.size
    assert m > 0
    # watcher obs, keys sorted: clock [seed, t], last [2 actions]; it decides on even t, so t advances by 2
    np.testing.assert_array_equal(watcher.next_obs[:m, 2:], watcher.actions[:m])
    np.testing.assert_array_equal(watcher.next_obs[:m, 1], watcher.obs[:m, 1] + 2)
    ends = watcher.next_obs[:m, 1] == 4
    np.testing.assert_array_equal(watcher.continues[:m], np.where(ends, 0.0, 1.0))  # watchers terminate
    seed, t = watcher.obs[:m, 0], watcher.obs[:m, 1]
    slot = 0  # at most one watcher per episode
    np.testing.assert_array_equal(watcher.rewards[:m], step_reward(seed, t + 1, slot) + step_reward(seed, t + 2, slot))
    assert model.learners["runner"].num_updates > 0 and model.learners["watcher"].num_updates > 0


def test_steps_per_update_sets_the_update_to_data_ratio_after_learning_starts():
    env = GymnasiumEnv("Pendulum-v1", num_envs=4)
    model = SAC(env, seed=0, hidden_sizes=[8], batch_size=8, buffer_init_steps=40, steps_per_update=2)
    model.learn(200)
    learner = model.learners["Pendulum"]
    assert learner.steps == 200
    # decisions past the first 40 earn an update per 2; the last step's are owed (trained before the next act)
    assert learner.num_updates == (200 - 4 - 40) // 2


# -- config -------------------------------------------------------------------------------

TINY_SAC = {
    "env": {"source": "gymnasium", "id": "Pendulum-v1", "num_envs": 2},
    "trainer": {
        "algorithm": "sac",
        "max_steps": 600,
        "summary_freq": 200,
        "checkpoint_interval": 300,
        "keep_checkpoints": 2,
        "hyperparameters": {"hidden_sizes": [16, 16], "batch_size": 32, "buffer_init_steps": 100,
                            "save_replay_buffer": True},
    },
    "seed": 3,
}


def _config(tmp_path, data, name="sac.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("hyperparameters", "message"), [
    ({"n_epochs": 3}, "trainer.hyperparameters.n_epochs: unknown key under algorithm sac (a PPO setting)"),
    ({"tua": 0.01}, "trainer.hyperparameters.tua: unknown key"),
    ({"tau": 2.0}, "trainer.hyperparameters.tau: Input should be less than or equal to 1"),
    ({"steps_per_update": 0}, "trainer.hyperparameters.steps_per_update: Input should be greater than 0"),
])
def test_bad_sac_settings_are_one_line_errors_naming_the_key(tmp_path, capsys, hyperparameters, message):
    data = copy.deepcopy(TINY_SAC)
    data["trainer"]["hyperparameters"] = hyperparameters
    assert main(["train", str(_config(tmp_path, data)), "--results-dir", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "results").exists()


def test_sac_keys_under_ppo_and_sac_self_play_are_refused():
    ppo_with_tau = {"env": TINY_SAC["env"], "trainer": {"max_steps": 10, "hyperparameters": {"tau": 0.01}}}
    with pytest.raises(ValidationError, match="tau.*unknown key under algorithm ppo .a SAC setting"):
        RunConfig.model_validate(ppo_with_tau)
    self_play = copy.deepcopy(TINY_SAC)
    self_play["trainer"]["self_play"] = {}
    with pytest.raises(ValidationError, match="self_play: self-play trains with algorithm ppo"):
        RunConfig.model_validate(self_play)
    overrides = copy.deepcopy(TINY_SAC)
    overrides["trainer"]["behaviours"] = {"Pendulum": {"clip_range": 0.1}}
    with pytest.raises(ValidationError, match="behaviours.Pendulum.clip_range: unknown key under algorithm sac"):
        RunConfig.model_validate(overrides)


def test_hybrid_actions_are_refused_naming_the_behaviour():
    spec = BehaviourSpec("Parker", spaces.Box(-1, 1, (3,), np.float32),
                         hybrid_space(spaces.Box(-1, 1, (2,), np.float32), spaces.Discrete(2)))
    with pytest.raises(ValueError, match="'Parker': SAC does not train hybrid"):
        SAC(None, specs={"Parker": spec})


def test_behaviour_overrides_apply_to_their_behaviour_only():
    model = SAC(CountingEnv(), seed=0, hidden_sizes=[8], behaviour_settings={"watcher": {"tau": 0.5, "batch_size": 4}})
    assert model.learners["watcher"].settings.tau == 0.5 and model.learners["runner"].settings.tau == 0.005


# -- persistence --------------------------------------------------------------------------

SMALL = dict(hidden_sizes=[16, 16], batch_size=32, buffer_init_steps=100, learning_rate=1e-3)


def _parameters(model: SAC) -> list[torch.Tensor]:
    learner = model.learners["Pendulum"]
    return [*learner.actor.parameters(), *learner.critic.parameters(), *learner.target.parameters(), learner.log_alpha]


@pytest.mark.parametrize("save_replay_buffer", [True, False])
def test_two_runs_resumed_from_one_checkpoint_continue_identically(tmp_path, save_replay_buffer):
    model = SAC(GymnasiumEnv("Pendulum-v1", num_envs=2), seed=1, save_replay_buffer=save_replay_buffer, **SMALL)
    model.learn(400)
    model.save(tmp_path / "a.pt")
    saved = model.learners["Pendulum"]
    first = SAC.load(tmp_path / "a.pt", env=GymnasiumEnv("Pendulum-v1", num_envs=2))
    second = SAC.load(tmp_path / "a.pt", env=GymnasiumEnv("Pendulum-v1", num_envs=2))
    learner = first.learners["Pendulum"]
    assert (first.num_steps, learner.num_updates, learner.steps) == (400, saved.num_updates, 400)
    assert all(torch.equal(a, b) for a, b in zip(_parameters(model), _parameters(first)))
    if save_replay_buffer:
        assert learner.replay.size == saved.replay.size
        np.testing.assert_array_equal(learner.replay.obs[: saved.replay.size], saved.replay.obs[: saved.replay.size])
    else:
        assert learner.replay.size == 0
    first.learn(800)
    second.learn(800)
    assert learner.num_updates > saved.num_updates
    assert all(torch.equal(a, b) for a, b in zip(_parameters(first), _parameters(second)))
    opt_a, opt_b = (m.learners["Pendulum"].critic_optimizer.state_dict()["state"] for m in (first, second))
    assert all(torch.equal(opt_a[k]["exp_avg"], opt_b[k]["exp_avg"]) for k in opt_a)


def test_cli_trains_resumes_and_exports_sac(tmp_path, capsys):
    config = _config(tmp_path, TINY_SAC)
    results = tmp_path / "results"
    assert main(["train", str(config), "--results-dir", str(results), "--run-id", "r"]) == 0
    run = results / "r"
    first = torch.load(run / "final.pt", weights_only=False)
    assert first["algorithm"] == "sac" and first["learners"]["Pendulum"]["replay"]["size"] > 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"Losses/Q1 Loss", "Losses/Policy Loss", "Policy/Continuous Entropy Coeff"} <= set(rows[-1])
    assert "exported" in capsys.readouterr().out and (run / "Pendulum.onnx").exists()

    longer = copy.deepcopy(TINY_SAC)
    longer["trainer"]["max_steps"] = 1000
    for ckpt in (run / "checkpoints").glob("*.pt"):
        if torch.load(ckpt, weights_only=False)["num_steps"] != first["num_steps"]:
            ckpt.unlink()
    assert main(["train", str(_config(tmp_path, longer)), "--results-dir", str(results), "--run-id", "r",
                 "--resume"]) == 0
    second = torch.load(run / "final.pt", weights_only=False)
    assert second["num_steps"] >= 1000
    before, after = first["learners"]["Pendulum"], second["learners"]["Pendulum"]
    # the buffer came back with the checkpoint, and every decision since has its outcome stored
    assert after["replay"]["size"] == before["replay"]["size"] + second["num_steps"] - first["num_steps"]
    assert after["num_updates"] > before["num_updates"]


# -- export -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sac_runs(tmp_path_factory):
    """Short SAC runs through `sparring train`, one per action kind, each exported at the end of training."""
    root = tmp_path_factory.mktemp("sac_export")
    runs = {}
    threads = torch.get_num_threads()  # module-scoped: set up before the one_torch_thread fixture applies
    torch.set_num_threads(1)
    for kind, env in [("continuous", {"source": "gymnasium", "id": "Pendulum-v1", "num_envs": 2}),
                      ("discrete", {"source": "gymnasium", "id": "CartPole-v1", "num_envs": 2}),
                      ("masked", {"source": "pettingzoo", "id": "pettingzoo.classic.tictactoe_v3",
                                  "opponent": "random"})]:
        data = copy.deepcopy(TINY_SAC)
        data["env"] = env
        data["trainer"]["max_steps"] = 300
        data["trainer"]["hyperparameters"]["normalize_obs"] = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # pettingzoo.classic's old import path
            assert main(["train", str(_config(root, data, f"{kind}.yaml")), "--results-dir", str(root),
                         "--run-id", kind]) == 0
        runs[kind] = root / kind
    torch.set_num_threads(threads)
    return runs


@pytest.mark.parametrize("kind", ["continuous", "discrete", "masked"])
def test_exported_sac_policy_acts_like_the_trained_one(sac_runs, kind):
    run = sac_runs[kind]
    model = load(run / "final.pt")
    (name, actor), = model.policies.items()
    onnx_file = run / f"{file_stem(name)}.onnx"
    policy = OnnxPolicy(onnx_file)
    rng = np.random.default_rng(0)
    obs = model.learners[name].recorded_obs.numpy()
    obs = obs.reshape(len(obs), *actor.spec.observation_space.shape)  # as the env gives them (tic-tac-toe: 3x3x2)
    mask = None
    if actor.branches:
        mask = rng.random((len(obs), actor.spec.mask_size)) > 0.4
        mask[:, 0] = True
    want = model.predict(obs, name, mask)
    got = policy.predict(obs, name, mask)
    if actor.continuous:
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert np.all(np.abs(got) <= 2.0)  # Pendulum's torque Box: the squash keeps actions inside
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fmt", ["mlagents", "godot"])
@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_sparring_export_writes_every_format_for_sac(sac_runs, capsys, kind, fmt):
    run = sac_runs[kind]
    assert main(["export", str(run), "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "deterministic actions identical" in out and "max abs difference" in out
    assert list(run.glob(f"*.{fmt}.onnx"))


def test_exporting_sac_with_values_is_refused(sac_runs, tmp_path):
    model = load(sac_runs["continuous"] / "final.pt")
    with pytest.raises(ExportError, match="SAC policy has no state value"):
        export_policy(model.policies["Pendulum"], tmp_path / "v.onnx", with_value=True)


# -- learning (fixed seeds, thresholds on the trained policy's own deterministic play) ---------------------


def greedy_returns(model: SAC, env_id: str, episodes: int, seed: int) -> np.ndarray:
    return evaluate(model, GymnasiumEnv(env_id, num_envs=episodes), episodes, seed=seed)[env_id.split("-")[0]]


@pytest.mark.slow
def test_sac_learns_pendulum(learning_seed, measured):
    """Random play scores about -1200; swinging up and balancing scores above -250.

    Seeds 0-9: -143 to -198 per episode, median -169.
    """
    model = SAC(GymnasiumEnv("Pendulum-v1"), seed=learning_seed, learning_rate=1e-3)
    model.learn(8_000)
    returns = greedy_returns(model, "Pendulum-v1", episodes=10, seed=1000 + learning_seed)
    measured(mean_return=float(returns.mean()))
    assert returns.mean() >= -250, returns


@pytest.mark.slow
def test_discrete_sac_learns_cartpole(learning_seed, measured):
    """The discrete variant: random play lasts about 22 steps; the threshold is 450 of the 500 possible.

    Seeds 0-9 at 40k steps: all 500. (At 30k, with the hand-written update, one seed in ten scored 373.)
    """
    model = SAC(GymnasiumEnv("CartPole-v1"), seed=learning_seed, learning_rate=1e-3, hidden_sizes=[64, 64], batch_size=128,
                buffer_init_steps=1000)
    model.learn(40_000)
    returns = greedy_returns(model, "CartPole-v1", episodes=20, seed=1000 + learning_seed)
    measured(mean_return=float(returns.mean()))
    assert returns.mean() >= 450, returns


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.filterwarnings(DISTUTILS_WARNING)
def test_an_ml_agents_sac_config_trains_both_behaviours_of_two_unity_builds_through_the_cli(
        tmp_path, capsys, learning_seed, measured):
    """examples/mlagents/standin_sac.yaml on the stand-in game: Seekers (discrete, masked) score about +0.18 at
    random and +0.98 at best; Movers (continuous) about -1.36 and -0.14. Mean training returns of the last summary.

    Seeds 0-9: Seekers 0.957 to 0.965, Movers -0.15 to -0.21.
    """
    player = build_player(tmp_path / "build")
    config = Path(__file__).resolve().parents[1] / "examples" / "mlagents" / "standin_sac.yaml"
    results = tmp_path / "results"
    assert main(["train", str(config), "--run-id", "sac", "--results-dir", str(results), "--env", player,
                 "--num-envs", "2", "--base-port", str(free_ports(2)), "--no-graphics",
                 "--seed", str(learning_seed)]) == 0
    assert "ignoring ML-Agents settings" not in capsys.readouterr().err  # time_horizon: nothing to cut in SAC
    run = results / "sac"
    assert {p.name for p in run.glob("*.onnx")} == {"Seeker_team_0.onnx", "Mover_team_1.onnx"}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = {row["behaviour"]: row["Environment/Cumulative Reward"] for row in rows
            if "Environment/Cumulative Reward" in row}
    measured(seeker=last[SEEKER], mover=last[MOVER])
    assert last[SEEKER] >= 0.9 and last[MOVER] >= -0.5, last


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sac_learns_the_arena_through_two_bridge_engine_processes(tmp_path, learning_seed, measured):
    """PPO's thresholds (tests/test_bridge_learning.py): Runners >= 3.0 (random play about -0.04), Turrets >= 8.0
    (random play about 0.4), per episode of the trained policy's deterministic play.

    Seeds 0-9: Runners 6.5 to 7.9, Turrets 11.6 to 12.3.
    """
    with MultiEngineEnv.launch(sys.executable, 2, [str(ARENA)], transport="tcp",
                               log_dir=tmp_path, step_timeout=30) as env:
        model = SAC(env, seed=learning_seed, hidden_sizes=[64, 64], learning_rate=1e-3, steps_per_update=4,
                    buffer_init_steps=1000, gamma=0.95, init_entcoef=0.05)
        model.learn(40_000)
        returns = {name: float(r.mean()) for name, r in evaluate(model, env, 1000, seed=1000 + learning_seed).items()}
        assert env.restarts == 0
    measured(**returns)
    assert returns["Runner"] >= 3.0 and returns["Turret"] >= 8.0, returns
