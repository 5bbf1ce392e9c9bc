"""Reward signals and behavioural cloning for SAC (agents/sac.py): a Q head per signal with its own target, the
signals' update schedule, checkpoints, cloning a demonstration, and SAC with curiosity and RND end to end."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch
from gymnasium import spaces

from sparring.agents.replay import Batch
from sparring.agents.reward_signals import Transitions
from sparring.agents.sac import SAC, BehaviourSAC, SACSettings
from sparring.config import RunConfig
from sparring.envs.demonstrations import DemonstrationWriter
from sparring.envs.gymnasium import GymnasiumEnv
from sparring.spec import BehaviourSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OBS = spaces.Box(-1, 1, (4,), np.float32)
CURIOUS = {"extrinsic": {}, "curiosity": {"encoding_size": 16}, "rnd": {"encoding_size": 16}}
SMALL = dict(hidden_sizes=[16], batch_size=16, buffer_init_steps=20, learning_rate=1e-3)


# -- heads and targets -------------------------------------------------------------------------


def _set_heads(critic, per_head: list[float], actions: int) -> None:
    """Both nets of ``critic`` output ``per_head[k]`` for every action of head ``k``, whatever the input."""
    with torch.no_grad():
        for net in critic.nets:
            net[-1].weight.zero_()
            net[-1].bias.copy_(torch.tensor(per_head).repeat_interleave(actions))


@pytest.mark.parametrize("action_space", [spaces.Discrete(2), spaces.Box(-1, 1, (2,), np.float32)],
                         ids=["discrete", "continuous"])
def test_each_signal_has_a_q_head_learning_its_reward_plus_its_own_discounted_soft_value(action_space):
    """ML-Agents' backup per head: y_k = r_k + gamma_k * (1 - done * (not ignore_done_k)) * V'_k, the game's reward
    times its strength, RND's from its network; the critic loss averages the heads and the actor maximises their
    mean. A temperature near 0, so the soft value of the next state is the target head's."""
    continuous = isinstance(action_space, spaces.Box)
    spec = BehaviourSpec("b", OBS, action_space)
    settings = SACSettings(hidden_sizes=[8], init_entcoef=1e-9, learn_entcoef=False,
                           reward_signals={"extrinsic": {"strength": 2.0, "gamma": 0.9},
                                           "rnd": {"strength": 0.5, "gamma": 0.5}})
    torch.manual_seed(0)
    learner = BehaviourSAC(spec, settings)
    assert [s.key for s in learner.signals] == ["extrinsic", "rnd"]
    assert learner.gammas.tolist() == pytest.approx([0.9, 0.5])
    q, next_v = [1.0, 3.0], [10.0, 20.0]  # per head: the critics' Q of every action, the targets' of every action
    per_head = 1 if continuous else 2  # Q outputs per head: one, or one per action
    _set_heads(learner.critic, q, per_head)
    _set_heads(learner.target, next_v, per_head)
    gen = torch.Generator().manual_seed(0)
    obs, next_obs = torch.rand(2, 4, generator=gen), torch.rand(2, 4, generator=gen)
    # row 0 goes on, row 1 ends its episode (terminated); discrete: each took another action, so each has its own
    # gradient
    actions = torch.tensor([[0.5, -0.5], [0.1, 0.2]]) if continuous else torch.tensor([0, 1])
    batch = Batch(obs, actions, torch.tensor([1.0, -3.0]), next_obs, torch.tensor([1.0, 0.0]), None, None)
    rnd_reward = learner.signals[1].rewards(Transitions(obs, batch.actions, next_obs, torch.tensor([0.0, 1.0])))

    learner.update(batch, gen)

    expected = torch.stack([
        2.0 * batch.rewards + 0.9 * torch.tensor([1.0, 0.0]) * next_v[0],  # the game's reward stops at the end
        rnd_reward + 0.5 * torch.tensor([1.0, 1.0]) * next_v[1],  # RND looks past it (ignore_done)
    ], 1)
    # d/dQ of 0.5 * mean over (rows, heads) of (Q - y)^2 is (Q - y) / (rows * heads), summed into the bias of its
    # output: (head k, action a) for discrete actions, head k for continuous ones (every row's)
    grad = learner.critic.nets[0][-1].bias.grad
    if continuous:
        torch.testing.assert_close(torch.tensor(q) - 2 * grad, expected.mean(0), rtol=1e-5, atol=1e-5)
    else:
        targets = torch.tensor(q)[None] - 4 * grad.view(2, 2).T  # (row, head): row i took action i
        torch.testing.assert_close(targets, expected, rtol=1e-5, atol=1e-5)
    stats = learner.report().stats
    # the mean of the heads' Q, not the sum (continuous: of the critics after their step, which moved them by ~lr)
    assert stats["Losses/Policy Loss"] == pytest.approx(-np.mean(q), abs=2e-3 if continuous else 1e-5)
    assert stats["Policy/Extrinsic Value Estimate"] == pytest.approx(q[0])
    assert stats["Policy/Rnd Value Estimate"] == pytest.approx(q[1])
    assert stats["Policy/Rnd Reward"] == pytest.approx(rnd_reward.mean().item(), rel=1e-5)
    assert stats["Losses/Q1 Loss"] == pytest.approx(0.5 * ((torch.tensor(q) - expected) ** 2).mean().item(), rel=1e-4)


def test_a_behaviour_without_the_games_reward_has_only_its_signals_heads():
    spec = BehaviourSpec("b", OBS, spaces.Box(-1, 1, (2,), np.float32))
    learner = BehaviourSAC(spec, SACSettings(hidden_sizes=[8], reward_signals={"rnd": {}}))
    assert [s.key for s in learner.signals] == ["rnd"] and learner.critic.nets[0][-1].out_features == 1
    both = BehaviourSAC(BehaviourSpec("b", OBS, spaces.MultiDiscrete([3, 2])),
                        SACSettings(hidden_sizes=[8], reward_signals=CURIOUS))
    assert both.critic.nets[0][-1].out_features == 3 * (3 + 2)  # per signal, one Q per action of every branch


def test_reward_signal_settings_are_checked():
    with pytest.raises(pydantic.ValidationError, match="names no signal"):
        SACSettings(reward_signals={})
    with pytest.raises(pydantic.ValidationError, match="reward_signal_steps_per_update"):
        SACSettings(reward_signal_steps_per_update=0)
    config = {"env": {"source": "gymnasium", "id": "Pendulum-v1"},
              "trainer": {"algorithm": "sac", "max_steps": 10,
                          "hyperparameters": {"reward_signals": {"curiosity": {"strength": 0.1}},
                                              "reward_signal_steps_per_update": 2}}}
    RunConfig.model_validate(config)


# -- the signals' update schedule ---------------------------------------------------------------


@pytest.mark.parametrize("signal_steps", [None, 0.5, 2.0])
def test_each_learned_signal_steps_once_per_reward_signal_steps_per_update_agent_steps(signal_steps):
    """As ML-Agents' SAC trainer: agent steps per signal update (None: steps_per_update's), each signal on a
    minibatch of batch_size rows drawn from replay for it."""
    model = SAC(GymnasiumEnv("Pendulum-v1"), seed=0, reward_signals=CURIOUS,
                reward_signal_steps_per_update=signal_steps, **SMALL)
    learner = model.learners["Pendulum"]
    seen = {signal.key: [] for signal in learner.learned_signals}
    for signal in learner.learned_signals:
        def counted(rows, generator, signal=signal, original=signal.update):
            seen[signal.key].append(rows)
            return original(rows, generator)
        signal.update = counted
    model.learn(120)
    per_sac_update = 1.0 / (signal_steps or 1.0)  # steps_per_update is 1
    assert learner.num_updates == 120 - 20 - 1  # decisions past buffer_init_steps; the last one's step is owed
    expected = int(learner.num_updates * per_sac_update)
    assert learner.signal_updates == expected
    assert {key: len(calls) for key, calls in seen.items()} == {"curiosity": expected, "rnd": expected}
    first_curiosity, first_rnd = seen["curiosity"][0], seen["rnd"][0]
    assert len(first_curiosity.obs) == 16 and not torch.equal(first_curiosity.obs, first_rnd.obs)


# -- checkpoints --------------------------------------------------------------------------------


def _signal_tensors(model: SAC) -> list[torch.Tensor]:
    learner = model.learners["Pendulum"]
    return [t for signal in learner.learned_signals for t in signal.state_dict().values()]


def test_signals_are_saved_with_the_model_and_two_resumed_runs_continue_identically(tmp_path):
    model = SAC(GymnasiumEnv("Pendulum-v1", num_envs=2), seed=1, reward_signals=CURIOUS, save_replay_buffer=True,
                **SMALL)
    model.learn(100)
    model.save(tmp_path / "m.pt")
    first, second = (SAC.load(tmp_path / "m.pt", env=GymnasiumEnv("Pendulum-v1", num_envs=2)) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(_signal_tensors(model), _signal_tensors(first), strict=True))
    learner = first.learners["Pendulum"]
    assert learner.signal_updates == model.learners["Pendulum"].signal_updates > 0
    assert all(signal.optimizer.state_dict()["state"] for signal in learner.learned_signals)
    assert learner.learned_signals[0].updated  # curiosity pays from its first update on, after resuming too
    first.learn(160)
    second.learn(160)
    assert learner.signal_updates > model.learners["Pendulum"].signal_updates
    assert all(torch.equal(a, b) for a, b in zip(_signal_tensors(first), _signal_tensors(second), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(_signal_tensors(model), _signal_tensors(first)))


def test_a_checkpoint_from_before_reward_signals_still_loads(tmp_path):
    model = SAC(GymnasiumEnv("Pendulum-v1"), seed=0, **SMALL)
    model.learn(40)
    state = model.state_dict()
    for key in ("signals", "signal_credit", "signal_updates"):  # what older checkpoints lack
        del state["learners"]["Pendulum"][key]
    for key in ("reward_signals", "behavioral_cloning", "reward_signal_steps_per_update"):
        del state["settings"][key]
    torch.save(state, tmp_path / "old.pt")
    loaded = SAC.load(tmp_path / "old.pt", env=GymnasiumEnv("Pendulum-v1"))
    before, after = model.learners["Pendulum"], loaded.learners["Pendulum"]
    assert all(torch.equal(a, b) for a, b in zip(before.critic.parameters(), after.critic.parameters(), strict=True))
    assert after.signal_credit == 0.0
    loaded.learn(60)


# -- behavioural cloning -----------------------------------------------------------------------


def _expert(obs: np.ndarray, continuous: bool) -> np.ndarray:
    """What the demonstration shows: torques (2 * x0, -2 * x1) in a [-2, 2] Box, or action 2 where x0 > 0, else 0."""
    if continuous:
        return np.stack([2 * obs[:, 0], -2 * obs[:, 1]], 1).astype(np.float32)
    return np.where(obs[:, 0] > 0, 2, 0).astype(np.int64)


def _write_demo(path, spec: BehaviourSpec, obs: np.ndarray, actions: np.ndarray) -> None:
    n = len(obs)
    dones = np.arange(n) % 10 == 9
    with DemonstrationWriter(path, spec) as writer:
        writer.add(np.zeros(n, np.int64), obs, actions, dones.astype(np.float32), dones, np.zeros(n, bool))


@pytest.mark.parametrize("action_space", [spaces.Discrete(3), spaces.Box(-2, 2, (2,), np.float32)],
                         ids=["discrete", "continuous"])
def test_behavioural_cloning_moves_the_actor_towards_the_demonstrated_actions(tmp_path, action_space):
    continuous = isinstance(action_space, spaces.Box)
    spec = BehaviourSpec("walker", OBS, action_space)
    obs = np.random.default_rng(0).uniform(-1, 1, (400, 4)).astype(np.float32)
    _write_demo(tmp_path / "expert.demo", spec, obs, _expert(obs, continuous))
    torch.manual_seed(0)
    learner = BehaviourSAC(spec, SACSettings(hidden_sizes=[32, 32], batch_size=64, learning_rate=3e-3,
                                             behavioral_cloning={"demo_path": str(tmp_path / "expert.demo")}))
    learner.prepare()
    gen = torch.Generator().manual_seed(0)
    first = learner.cloning.update(0, gen)["Losses/Pretraining Loss"]  # 3 passes of 7 batches (ML-Agents' 3 epochs)
    for _ in range(10):
        last = learner.cloning.update(0, gen)["Losses/Pretraining Loss"]
    assert last < 0.3 * first
    test = np.random.default_rng(1).uniform(-1, 1, (200, 4)).astype(np.float32)
    with torch.no_grad():
        chosen, _ = learner.actor.act(torch.from_numpy(test), None, None)
    got = learner.actor.env_actions(chosen)
    if continuous:  # in the env's units: the actor's [-1, 1] scaled back to the Box
        assert np.abs(got - _expert(test, True)).mean() < 0.2
    else:
        assert (got == _expert(test, False)).mean() > 0.95


def test_cloning_steps_after_every_sac_update_and_reports_its_loss(tmp_path):
    spec = BehaviourSpec("walker", OBS, spaces.Discrete(3))
    obs = np.random.default_rng(0).uniform(-1, 1, (40, 4)).astype(np.float32)
    _write_demo(tmp_path / "expert.demo", spec, obs, _expert(obs, False))
    learner = BehaviourSAC(spec, SACSettings(hidden_sizes=[8], batch_size=16, buffer_init_steps=0,
                                             behavioral_cloning={"demo_path": str(tmp_path / "expert.demo")}))
    rng = np.random.default_rng(0)
    n = 32
    learner.replay.add(rng.uniform(-1, 1, (n, 4)).astype(np.float32), rng.integers(0, 3, n), np.zeros(n, np.float32),
                       rng.uniform(-1, 1, (n, 4)).astype(np.float32), np.ones(n, np.float32), None, None)
    steps = []
    original = learner.cloning.update
    learner.cloning.update = lambda agent_steps, generator: steps.append(agent_steps) or original(agent_steps, generator)
    learner.update_credit, learner.steps = 3.0, 500
    learner.train(0.0, torch.Generator().manual_seed(0), rng)
    assert learner.num_updates == 3 and steps == [500, 500, 500]  # decaying over the agent steps taken
    assert np.isfinite(learner.report().stats["Losses/Pretraining Loss"])


# -- end to end -------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_sac_with_curiosity_and_rnd_trains_and_reports_every_signal(env_id):
    """Continuous (policy-unit floats) and discrete (int indices) actions replayed into curiosity's models."""
    model = SAC(GymnasiumEnv(env_id, num_envs=2), seed=0, reward_signals={**CURIOUS, "rnd": {"learning_rate": 1e-3}},
                **SMALL)
    name = env_id.split("-")[0]
    reports = []
    model.learn(400, callback=lambda m, r: reports.append(r.behaviours[name].stats))
    last = reports[-1]
    for key in ("Losses/Q1 Loss", "Losses/Q2 Loss", "Losses/Policy Loss", "Policy/Extrinsic Value Estimate",
                "Policy/Curiosity Value Estimate", "Policy/Rnd Value Estimate", "Policy/Curiosity Reward",
                "Policy/Rnd Reward", "Losses/Curiosity Forward Loss", "Losses/Curiosity Inverse Loss",
                "Losses/RND Loss"):
        assert np.isfinite(last[key]), key
    assert last["Policy/Curiosity Reward"] > 0 and last["Policy/Rnd Reward"] > 0
    for loss in ("Losses/RND Loss", "Losses/Curiosity Forward Loss"):  # the predictors learn what they keep seeing
        values = [r[loss] for r in reports if loss in r]
        assert np.mean(values[-20:]) < 0.5 * np.mean(values[:20]), loss


def test_sac_imitates_with_gail_and_cloning_from_a_demonstration_of_its_env(tmp_path):
    env = GymnasiumEnv("CartPole-v1", num_envs=2)
    obs = np.random.default_rng(0).normal(0, 0.05, (200, 4)).astype(np.float32)
    _write_demo(tmp_path / "cartpole.demo", env.specs["CartPole"], obs, (obs[:, 2] > 0).astype(np.int64))
    demo = str(tmp_path / "cartpole.demo")
    model = SAC(env, seed=0, reward_signals={"extrinsic": {}, "gail": {"demo_path": demo, "use_actions": True}},
                behavioral_cloning={"demo_path": demo, "samples_per_update": 32}, **SMALL)
    reports = []
    model.learn(200, callback=lambda m, r: reports.append(r.behaviours["CartPole"].stats))
    for key in ("Policy/Gail Reward", "Policy/Gail Value Estimate", "Losses/GAIL Loss", "Policy/GAIL Expert Estimate",
                "Losses/Pretraining Loss"):
        assert np.isfinite(reports[-1][key]), key
