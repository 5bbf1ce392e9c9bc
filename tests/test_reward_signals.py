"""Reward signals and behavioural cloning: each signal's value head and discount, the rewards the learned ones
pay (curiosity, RND, GAIL), their updates, and cloning a demonstration, as ML-Agents defines them."""

import numpy as np
import pydantic
import pytest
import torch
from gymnasium import spaces

from sparring.agents.ppo import PPO, BehaviourLearner, PPOSettings
from sparring.agents.reward_signals import Transitions
from sparring.agents.rollout import RolloutBuffer
from sparring.envs.base import BehaviourStep, DecisionSteps, TerminalSteps
from sparring.envs.demonstrations import DemonstrationWriter
from sparring.export.exporter import ExportError, build_graph
from sparring.spec import BehaviourSpec
from tests.test_rollout import reference_gae

OBS = spaces.Box(-1, 1, (4,), np.float32)
SPEC = BehaviourSpec("walker", OBS, spaces.Discrete(3))
CURIOUS = {"extrinsic": {"strength": 2.0}, "curiosity": {"strength": 0.1, "gamma": 0.9}, "rnd": {"gamma": 0.5}}


def test_each_signal_has_a_value_head_and_gae_runs_per_head_with_its_own_discount():
    rng = np.random.default_rng(0)
    steps, gammas, lam = 9, np.array([0.99, 0.9, 0.5], np.float32), 0.95
    buf = RolloutBuffer(1, (), np.int64, 0, value_heads=3)
    slots = buf.slots_of(np.array([4], np.int64))
    values = rng.normal(size=(steps, 3)).astype(np.float32)
    rewards = rng.normal(size=(steps, 3)).astype(np.float32)
    for t in range(steps):
        buf.add(slots, np.zeros((1, 1)), np.zeros(1, np.int64), np.zeros(1), values[t : t + 1], None)
    last = rng.normal(size=(1, 3)).astype(np.float32)
    advantages, returns = buf.finish(slots, last, gammas, lam, rewards)
    for head in range(3):
        expected = reference_gae(rewards[:, head], values[:, head], np.zeros(steps), last[0, head], gammas[head], lam)
        np.testing.assert_allclose(advantages[:, head], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(returns, advantages + values, rtol=1e-6)


def test_the_learner_builds_heads_in_signal_order_and_curiosity_and_rnd_look_past_the_end_of_an_episode():
    torch.manual_seed(0)
    learner = BehaviourLearner(SPEC, PPOSettings(reward_signals=CURIOUS))
    assert learner.policy.value_heads == ("extrinsic", "curiosity", "rnd")
    assert learner.gammas.tolist() == pytest.approx([0.99, 0.9, 0.5])  # extrinsic: the trainer's gamma
    obs = np.full((2, 4), 0.3, np.float32)
    learner.act(DecisionSteps(np.array([1, 2]), obs, np.zeros(2, np.float32)), torch.Generator().manual_seed(0))
    final = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]], np.float32)
    ended = TerminalSteps(np.array([1, 2]), final, np.ones(2, np.float32), np.array([False, True]))
    with torch.no_grad():  # as observe runs it
        bootstrap = learner._terminal_values(BehaviourStep(DecisionSteps.empty(SPEC), ended))
        v = learner.policy.value(torch.from_numpy(final)).numpy()
    # terminated: the game's reward ends (0), the intrinsic ones go on; truncated: every head bootstraps
    np.testing.assert_allclose(bootstrap, [[0.0, v[0, 1], v[0, 2]], v[1]], rtol=1e-5)


def test_a_behaviour_without_the_games_reward_exports_no_value_and_one_with_it_exports_the_extrinsic_head():
    spec = BehaviourSpec("walker", OBS, spaces.Box(-1, 1, (2,), np.float32))
    learner = BehaviourLearner(spec, PPOSettings(reward_signals={"rnd": {}}))
    with pytest.raises(ExportError, match="without the game's reward"):
        build_graph(learner.policy, "native", with_value=True)
    policy = BehaviourLearner(spec, PPOSettings(reward_signals=CURIOUS)).policy
    graph = build_graph(policy, "native", with_value=True)
    x = torch.randn(5, 4)
    with torch.no_grad():
        exported = graph(x)[graph.output_names().index("value")]
        np.testing.assert_allclose(exported.numpy(), policy.value(x)[:, 0].numpy(), rtol=1e-6)


def test_reward_signal_settings_are_checked():
    with pytest.raises(pydantic.ValidationError, match="names no signal"):
        PPOSettings(reward_signals={})
    with pytest.raises(pydantic.ValidationError, match="encodng_size"):
        PPOSettings(reward_signals={"curiosity": {"encodng_size": 8}})
    with pytest.raises(pydantic.ValidationError, match="demo_path"):
        PPOSettings(reward_signals={"gail": {}})


def rows(n, seed=0, shift=0.0):
    gen = torch.Generator().manual_seed(seed)
    obs = torch.rand(n, 4, generator=gen) * 0.5 + shift
    actions = torch.randint(3, (n,), generator=gen)
    next_obs = obs + 0.1 * (actions[:, None].float() - 1)  # the action moves the agent: predictable
    return Transitions(obs, actions, next_obs, torch.zeros(n))


def test_curiosity_pays_nothing_before_its_first_update_then_less_where_it_has_learned_to_predict():
    torch.manual_seed(0)
    learner = BehaviourLearner(SPEC, PPOSettings(reward_signals={"extrinsic": {}, "curiosity": {"strength": 0.5}}))
    curiosity = learner.learned_signals[0]
    seen = rows(256)
    assert curiosity.rewards(seen).abs().max() == 0.0
    gen = torch.Generator().manual_seed(1)
    losses = [curiosity.update(seen, gen) for _ in range(300)]
    assert losses[-1]["Losses/Curiosity Forward Loss"] < 0.2 * losses[0]["Losses/Curiosity Forward Loss"]
    assert losses[-1]["Losses/Curiosity Inverse Loss"] < 0.5 * losses[0]["Losses/Curiosity Inverse Loss"]
    familiar, novel = curiosity.rewards(seen).mean(), curiosity.rewards(rows(256, seed=2, shift=3.0)).mean()
    assert novel > 5 * familiar
    assert curiosity.rewards(rows(256, seed=2, shift=30.0)).max() <= 1.0  # clipped to 1 / strength, times strength


def test_rnd_pays_more_for_observations_it_has_not_seen():
    torch.manual_seed(0)
    learner = BehaviourLearner(SPEC, PPOSettings(reward_signals={"rnd": {"learning_rate": 1e-3}}))
    rnd = learner.learned_signals[0]
    seen, gen = rows(256), torch.Generator().manual_seed(1)
    before = rnd.rewards(seen).mean()
    for _ in range(300):
        stats = rnd.update(seen, gen)
    assert stats["Losses/RND Loss"] < 0.2 * before
    assert rnd.rewards(rows(256, seed=2, shift=2.0)).mean() > 5 * rnd.rewards(seen).mean()


def write_demo(path, spec, obs, actions, episode_length=10):
    n = len(obs)
    dones = (np.arange(n) % episode_length) == episode_length - 1
    with DemonstrationWriter(path, spec) as writer:
        writer.add(np.zeros(n, np.int64), obs, actions, dones.astype(np.float32), dones, np.zeros(n, bool))


def expert(obs: np.ndarray) -> np.ndarray:
    """Action 2 where the first feature is positive, else 0: what the demonstrations show."""
    return np.where(obs[:, 0] > 0, 2, 0).astype(np.int64)


@pytest.fixture
def demo(tmp_path):
    obs = np.random.default_rng(0).uniform(-1, 1, (400, 4)).astype(np.float32)
    path = tmp_path / "expert.demo"
    write_demo(path, SPEC, obs, expert(obs))
    return path


@pytest.mark.parametrize("use_actions,use_vail", [(False, False), (True, False), (False, True)])
def test_gail_rewards_rows_that_look_like_the_demonstration(demo, use_actions, use_vail):
    torch.manual_seed(0)
    gail_settings = {"demo_path": str(demo), "use_actions": use_actions, "use_vail": use_vail, "learning_rate": 3e-3}
    learner = BehaviourLearner(SPEC, PPOSettings(reward_signals={"gail": gail_settings}))
    learner.prepare()
    gail = learner.learned_signals[0]
    gen = torch.Generator().manual_seed(1)
    # the agent acts unlike the expert: uniform actions on observations from a shifted region
    obs = torch.rand(256, 4, generator=gen) * 2 - 1
    obs[:, 1] += 1.0 if not use_actions else 0.0
    agent = Transitions(obs, torch.from_numpy(2 - expert(obs.numpy())), obs, torch.zeros(256))
    for _ in range(250):
        stats = gail.update(agent, gen)
    assert stats["Policy/GAIL Expert Estimate"] > stats["Policy/GAIL Policy Estimate"]
    expert_rows = gail.demonstrations.get().rows()  # rewards use VAIL's mean code, no noise
    assert gail.rewards(expert_rows).mean() > gail.rewards(agent).mean() + 0.1
    if use_vail:
        assert "Policy/GAIL Beta" in stats and "Losses/GAIL KL Loss" in stats


def test_a_demonstration_of_another_behaviour_is_a_clear_error_before_training(tmp_path):
    other = BehaviourSpec("walker", spaces.Box(-1, 1, (6,), np.float32), spaces.Discrete(3))
    path = tmp_path / "other.demo"
    write_demo(path, other, np.zeros((10, 6), np.float32), np.zeros(10, np.int64))
    learner = BehaviourLearner(SPEC, PPOSettings(reward_signals={"gail": {"demo_path": str(path)}}))
    with pytest.raises(ValueError, match=r"behaviour 'walker': reward signal 'gail': .*other\.demo"):
        learner.prepare()
    learner = BehaviourLearner(SPEC, PPOSettings(behavioral_cloning={"demo_path": str(tmp_path / "missing.demo")}))
    with pytest.raises(ValueError, match=r"behaviour 'walker': behavioral_cloning: .*missing\.demo"):
        learner.prepare()


@pytest.mark.parametrize("action_space", [spaces.Discrete(3), spaces.Box(-1, 1, (2,), np.float32)])
def test_behavioural_cloning_learns_the_demonstrated_actions(tmp_path, action_space):
    spec = BehaviourSpec("walker", OBS, action_space)
    obs = np.random.default_rng(0).uniform(-1, 1, (400, 4)).astype(np.float32)
    continuous = isinstance(action_space, spaces.Box)
    actions = np.stack([obs[:, 0], -obs[:, 1]], 1).clip(-1, 1) if continuous else expert(obs)
    write_demo(tmp_path / "expert.demo", spec, obs, actions)
    torch.manual_seed(0)
    settings = PPOSettings(learning_rate=3e-3, behavioral_cloning={"demo_path": str(tmp_path / "expert.demo")})
    learner = BehaviourLearner(spec, settings)
    gen = torch.Generator().manual_seed(0)
    first = learner.cloning.update(0, gen)["Losses/Pretraining Loss"]
    for _ in range(15):
        last = learner.cloning.update(0, gen)["Losses/Pretraining Loss"]
    assert last < 0.3 * first
    test = np.random.default_rng(1).uniform(-1, 1, (200, 4)).astype(np.float32)
    with torch.no_grad():
        chosen, _ = learner.policy.deterministic(torch.from_numpy(test))
    if continuous:
        assert np.abs(chosen.numpy() - np.stack([test[:, 0], -test[:, 1]], 1)).mean() < 0.15
    else:
        assert (chosen.numpy() == expert(test)).mean() > 0.95


def test_cloning_reads_a_folder_that_gained_demonstrations_once_told_to_reread(tmp_path):
    """A teacher may label the policy's positions during training (benchmarks/selfplay.py's DAgger rounds): the
    folder's new file is learned from after ``reread``, not before (a demonstration is read once, not per update)."""
    obs = np.random.default_rng(0).uniform(-1, 1, (60, 4)).astype(np.float32)
    write_demo(tmp_path / "a.demo", SPEC, obs[:40], expert(obs[:40]))
    cloning = BehaviourLearner(SPEC, PPOSettings(behavioral_cloning={"demo_path": str(tmp_path)})).cloning
    assert len(cloning.demonstrations.get()) == 36  # 4 episodes of 10 records, each ending in a non-decision
    write_demo(tmp_path / "b.demo", SPEC, obs[40:], 2 - expert(obs[40:]))
    assert len(cloning.demonstrations.get()) == 36
    cloning.demonstrations.reread()
    both = cloning.demonstrations.get()
    assert len(both) == 54
    np.testing.assert_array_equal(both.actions[36:].numpy(), 2 - expert(obs[40:])[np.arange(20) % 10 != 9])


def test_cloning_decays_over_its_steps_and_stops():
    settings = PPOSettings(learning_rate=1e-3, behavioral_cloning={"demo_path": "x.demo", "strength": 0.5,
                                                                   "steps": 1000})
    cloning = BehaviourLearner(SPEC, settings).cloning
    assert cloning.current_learning_rate(0) == pytest.approx(5e-4)
    assert cloning.current_learning_rate(500) == pytest.approx(2.5e-4, rel=1e-6)
    assert cloning.current_learning_rate(2000) == pytest.approx(1e-10)
    assert cloning.update(2000, torch.Generator()) == {"Losses/Pretraining Loss": 0.0}  # never reads the file


def test_signals_and_cloning_are_saved_with_the_model_and_resume(tmp_path, demo):
    from sparring.envs.gymnasium import GymnasiumEnv

    signals = {"extrinsic": {}, "curiosity": {}, "rnd": {}}
    model = PPO(GymnasiumEnv("CartPole-v1", num_envs=2), seed=0, n_steps=16, batch_size=32, n_epochs=1,
                reward_signals=signals)
    reports = []
    model.learn(64, callback=lambda m, r: reports.append(r.behaviours["CartPole"].stats))
    for name in ("Policy/Curiosity Reward", "Policy/Rnd Reward", "Policy/Curiosity Value Estimate",
                 "Policy/Rnd Value Estimate", "Policy/Extrinsic Value Estimate", "Losses/Curiosity Forward Loss",
                 "Losses/Curiosity Inverse Loss", "Losses/RND Loss"):
        assert np.isfinite(reports[-1][name]), name
    model.save(tmp_path / "m.pt")
    loaded = PPO.load(tmp_path / "m.pt", env=GymnasiumEnv("CartPole-v1", num_envs=2))
    for before, after in zip(model.learners["CartPole"].learned_signals, loaded.learners["CartPole"].learned_signals):
        for (name, a), b in zip(before.state_dict().items(), after.state_dict().values()):
            torch.testing.assert_close(a, b, msg=name)
        assert after.optimizer.state_dict()["state"], "the signal's optimiser resumes too"


def test_ma_poca_values_each_signal_with_its_group_critic():
    from toy_envs import DUNGEON_SETTINGS, Dungeon

    from sparring.agents import POCA

    signals = {"extrinsic": {}, "curiosity": {"strength": 0.02}, "rnd": {}}
    reports = []
    model = POCA(Dungeon(areas=4), seed=0, **{**DUNGEON_SETTINGS, "reward_signals": signals})
    model.learn(1500, callback=lambda m, r: reports.append(next(iter(r.behaviours.values())).stats))
    learner = next(iter(model.learners.values()))
    assert learner.critic.head.out_features == 3 and learner.buffer.baselines.shape[1] == 3
    for name in ("Policy/Curiosity Reward", "Policy/Rnd Value Estimate", "Losses/Baseline Loss", "Losses/RND Loss"):
        assert np.isfinite(reports[-1][name]), name
