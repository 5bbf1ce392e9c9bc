"""The PPO update's hand-written gradients equal autograd's on the textbook loss, for every action kind."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from sparring.agents.ppo import BehaviourLearner, PPOSettings
from sparring.spec import BehaviourSpec, hybrid_space

OBS = spaces.Box(-1, 1, (6,), np.float32)
CASES = {
    "discrete": (spaces.Discrete(5), {}),
    "multidiscrete_masked_entropy": (spaces.MultiDiscrete([3, 4]), {"ent_coef": 0.05}),
    "continuous_entropy": (spaces.Box(-1, 1, (2,), np.float32), {"ent_coef": 0.01}),
    "clipped_value_relu": (spaces.Discrete(3), {"clip_range_vf": 0.05, "activation": "relu", "ent_coef": 0.02}),
    "three_layers_no_adv_norm": (spaces.Discrete(4), {"hidden_sizes": [16, 8, 8], "normalize_advantage": False}),
    "hybrid_masked_entropy": (hybrid_space(spaces.Box(-1, 1, (2,), np.float32), spaces.MultiDiscrete([3, 2])),
                              {"ent_coef": 0.02}),
    "hybrid_one_branch": (hybrid_space(spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(4)), {}),
}


def textbook_loss(learner, x, actions, mask, old_logp, adv, returns, old_values, clip):
    """The PPO loss as CleanRL/SB3 write it, differentiated by autograd."""
    s = learner.settings
    logp, entropy, values = learner.policy.evaluate(x, actions, mask)
    if s.normalize_advantage:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    ratio = (logp - old_logp).exp()
    policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
    if s.clip_range_vf is None:
        value_loss = (values - returns).square().mean()
    else:
        clipped = old_values + (values - old_values).clamp(-s.clip_range_vf, s.clip_range_vf)
        value_loss = torch.max((values - returns).square(), (clipped - returns).square()).mean()
    return policy_loss + s.vf_coef * value_loss - s.ent_coef * entropy.mean()


@pytest.mark.parametrize("case", sorted(CASES))
def test_closed_form_gradients_match_autograd(case):
    action_space, overrides = CASES[case]
    torch.manual_seed(0)
    spec = BehaviourSpec("b", OBS, action_space)
    learner = BehaviourLearner(spec, PPOSettings(**overrides))
    policy = learner.policy
    n, gen = 64, torch.Generator().manual_seed(1)
    x = torch.randn(n, 6)
    mask = None
    if spec.mask_size:
        mask = torch.rand(n, spec.mask_size, generator=gen) > 0.3
        firsts = np.cumsum([0, *spec.action_branches[:-1]])
        mask[:, firsts] = True  # a legal action in every branch
    with torch.no_grad():
        actions, old_logp, old_values = policy.sample(x, mask, gen)
        old_logp = old_logp + 0.3 * torch.randn(n, generator=gen)  # ratios both inside and outside the clip
        old_values = old_values + 0.1 * torch.randn(n, generator=gen)
    adv, returns = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
    args = (x, actions, mask, old_logp, adv, returns, old_values, 0.2)

    policy.zero_grad(set_to_none=True)
    textbook_loss(learner, *args).backward()
    expected = {name: p.grad.clone() for name, p in policy.named_parameters()}
    policy.zero_grad(set_to_none=True)
    stats = learner._gradient_step(*args, learner.settings.ent_coef)

    for name, p in policy.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-6, msg=f"{case}: {name}")
    with torch.no_grad():
        assert stats[0] + learner.settings.vf_coef * stats[1] - learner.settings.ent_coef * stats[2] == pytest.approx(
            textbook_loss(learner, *args).item(), rel=1e-5, abs=1e-6
        )


@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_gradient_clipping_matches_torch(max_norm):
    """Scaled down to max_norm when the global norm is larger, untouched when it is smaller."""
    from sparring.agents.ppo import clip_grad_norm

    generator = torch.Generator().manual_seed(0)
    shapes = [(2, 4, 64), (2, 1, 64), (3, 64), (3,)]
    ours = [torch.nn.Parameter(torch.zeros(shape)) for shape in shapes]
    theirs = [torch.nn.Parameter(torch.zeros(shape)) for shape in shapes]
    for a, b in zip(ours, theirs):
        a.grad = torch.randn(a.shape, generator=generator)
        b.grad = a.grad.clone()
    clip_grad_norm(ours, max_norm)
    torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=0)
