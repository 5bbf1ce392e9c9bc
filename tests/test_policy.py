"""The behaviour policy's distributions agree with torch.distributions and respect action masks."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from sparring.agents.policy import BehaviourPolicy
from sparring.spec import BehaviourSpec, hybrid_space

BOX_OBS = spaces.Box(-1, 1, (5,), np.float32)


def policy_for(action_space, obs_space=BOX_OBS, **kwargs):
    torch.manual_seed(0)
    return BehaviourPolicy(BehaviourSpec("b", obs_space, action_space), **kwargs)


def test_discrete_log_probs_and_entropy_match_categorical():
    policy = policy_for(spaces.Discrete(4))
    x = torch.randn(32, 5)
    actions = torch.randint(0, 4, (32,))
    logp, entropy, _ = policy.evaluate(x, actions, None)
    logits, _ = policy.features(x)
    dist = torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(logp, dist.log_prob(actions))
    torch.testing.assert_close(entropy, dist.entropy())


def test_multidiscrete_log_prob_is_sum_over_branches():
    policy = policy_for(spaces.MultiDiscrete([3, 2, 4]))
    x = torch.randn(16, 5)
    actions = torch.stack([torch.randint(0, n, (16,)) for n in (3, 2, 4)], -1)
    logp, entropy, _ = policy.evaluate(x, actions, None)
    logits, _ = policy.features(x)
    dists = [torch.distributions.Categorical(logits=part) for part in torch.split(logits, [3, 2, 4], -1)]
    torch.testing.assert_close(logp, sum(d.log_prob(actions[:, i]) for i, d in enumerate(dists)))
    torch.testing.assert_close(entropy, sum(d.entropy() for d in dists))


def test_gaussian_log_prob_matches_normal():
    policy = policy_for(spaces.Box(-2, 2, (3,), np.float32))
    with torch.no_grad():
        policy.log_std.fill_(-0.3)
    x = torch.randn(8, 5)
    gen = torch.Generator().manual_seed(1)
    actions, sampled_logp, _, _ = policy.sample(x, None, gen)
    logp, entropy, _ = policy.evaluate(x, actions, None)
    mean, _ = policy.features(x)
    dist = torch.distributions.Normal(mean, policy.log_std.exp())
    torch.testing.assert_close(logp, dist.log_prob(actions).sum(-1))
    torch.testing.assert_close(sampled_logp, logp)
    torch.testing.assert_close(entropy, dist.entropy().sum(-1))


def test_sampled_and_deterministic_actions_never_take_masked_actions():
    policy = policy_for(spaces.MultiDiscrete([4, 3]))
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(512, 7, generator=gen) > 0.5
    mask[:, 0] = True  # at least one allowed action per branch
    mask[:, 4] = True
    x = torch.randn(512, 5)
    sampled, _, _, _ = policy.sample(x, mask, gen)
    greedy, _ = policy.deterministic(x, mask)
    for actions in (sampled, greedy):
        assert mask[torch.arange(512), actions[:, 0]].all()
        assert mask[torch.arange(512), 4 + actions[:, 1]].all()


def test_masked_entropy_is_finite_and_counts_only_allowed_actions():
    policy = policy_for(spaces.Discrete(5))
    x = torch.randn(4, 5)
    mask = torch.tensor([[True, True, False, False, False]] * 4)
    logp, entropy, _ = policy.evaluate(x, torch.zeros(4, dtype=torch.long), mask)
    assert torch.isfinite(entropy).all() and (entropy <= np.log(2) + 1e-6).all()


def test_sampling_follows_the_distribution():
    policy = policy_for(spaces.Discrete(3))
    with torch.no_grad():
        policy.actor_head.bias.copy_(torch.tensor([1.5, 0.0, -1.0]))  # far from uniform
        x = torch.zeros(20000, 5)
        actions, _, _, _ = policy.sample(x, None, torch.Generator().manual_seed(0))
        logits, _ = policy.features(x[:1])
    expected = torch.softmax(logits, -1)[0].numpy()
    observed = np.bincount(actions.numpy(), minlength=3) / len(actions)
    np.testing.assert_allclose(observed, expected, atol=0.02)


def test_running_normalisation_matches_numpy_statistics():
    policy = policy_for(spaces.Discrete(2), normalize=True)
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 5)).astype(np.float32) for n in (7, 100, 33)]
    for b in batches:
        policy.normalizer.update(torch.from_numpy(b))
    allx = np.concatenate(batches)
    np.testing.assert_allclose(policy.normalizer.mean.numpy(), allx.mean(0), rtol=1e-6)
    np.testing.assert_allclose(policy.normalizer.var.numpy(), allx.var(0), rtol=1e-5)
    z = policy.normalize(torch.from_numpy(allx)).numpy()
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)


def test_dict_observations_are_flattened_in_key_order():
    obs_space = spaces.Dict({"b": spaces.Box(0, 1, (2, 2), np.float32), "a": spaces.Box(0, 1, (3,), np.float32)})
    policy = policy_for(spaces.Discrete(2), obs_space=obs_space)
    obs = {"a": np.ones((2, 3), np.float32), "b": np.zeros((2, 2, 2), np.float32)}
    x = policy.flatten_obs(obs)
    assert x.shape == (2, 7)
    assert x[0].tolist() == [1, 1, 1, 0, 0, 0, 0]


@pytest.mark.parametrize("low,high", [(-1.0, 1.0), (0.0, 5.0)])
def test_continuous_env_actions_are_clipped_to_the_box(low, high):
    policy = policy_for(spaces.Box(low, high, (2,), np.float32))
    out = policy.env_actions(torch.tensor([[-100.0, 100.0]]))
    assert out.dtype == np.float32 and out.tolist() == [[low, high]]


HYBRID = hybrid_space(spaces.Box(-1, 1, (2,), np.float32), spaces.MultiDiscrete([3, 2]))


def test_hybrid_log_prob_and_entropy_add_the_gaussian_and_the_categoricals():
    policy = policy_for(HYBRID)
    x = torch.randn(16, 5)
    gen = torch.Generator().manual_seed(2)
    actions, sampled_logp, _, _ = policy.sample(x, None, gen)
    assert actions.shape == (16, 4) and actions.dtype == torch.float32
    logp, entropy, _ = policy.evaluate(x, actions, None)
    out, _ = policy.features(x)
    normal = torch.distributions.Normal(out[:, :2], policy.log_std.exp())
    cats = [torch.distributions.Categorical(logits=part) for part in torch.split(out[:, 2:], [3, 2], -1)]
    discrete = actions[:, 2:].long()
    want = normal.log_prob(actions[:, :2]).sum(-1) + sum(c.log_prob(discrete[:, i]) for i, c in enumerate(cats))
    torch.testing.assert_close(logp, want)
    torch.testing.assert_close(sampled_logp, want)
    torch.testing.assert_close(entropy, normal.entropy().sum(-1) + sum(c.entropy() for c in cats))


def test_hybrid_actions_respect_masks_and_reach_the_env_as_two_parts():
    policy = policy_for(hybrid_space(spaces.Box(0, 0.5, (2,), np.float32), spaces.Discrete(3)))
    gen = torch.Generator().manual_seed(0)
    mask = torch.tensor([[False, True, False]]).expand(256, 3)
    x = torch.randn(256, 5)
    with torch.no_grad():
        sampled, _, _, _ = policy.sample(x, mask, gen)
        greedy, _ = policy.deterministic(x, mask)
    for actions in (sampled, greedy):
        env = policy.env_actions(actions)
        assert set(env) == {"continuous", "discrete"}
        assert env["discrete"].dtype == np.int64 and env["discrete"].shape == (256,) and (env["discrete"] == 1).all()
        assert env["continuous"].shape == (256, 2) and env["continuous"].min() >= 0 and env["continuous"].max() <= 0.5
