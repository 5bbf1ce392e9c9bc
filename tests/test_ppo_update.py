"""The PPO update: the gradients it takes are those of the loss as Stable-Baselines3 writes it (with
torch.distributions, independent of sparring's own distributions), for every action kind; its gradient clipping
(a few foreach calls in place of torch's, which spends more time grouping tensors than computing) scales exactly
as ``torch.nn.utils.clip_grad_norm_``."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch.distributions import Categorical, Normal

from sparring.agents.policy import MASKED_LOGIT
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
}


def sb3_loss(learner, x, actions, mask, old_logp, adv, returns, old_values, clip, outputs=None):
    """PPO's loss as SB3's ``PPO.train`` writes it, with torch.distributions for log-probabilities and entropy
    (the clipped value loss as CleanRL writes it). ``outputs``: the policy's (actor output, values), if not of ``x``."""
    s, policy = learner.settings, learner.policy
    out, values = policy.features(x) if outputs is None else outputs
    values = values[:, 0]  # the one value head: the game's reward
    c, logp, entropy = policy.continuous_size, 0.0, 0.0
    if c:
        gaussian = Normal(out[:, :c], policy.log_std.exp())
        logp, entropy = gaussian.log_prob(actions[:, :c]).sum(1), gaussian.entropy().sum(1)
    if policy.branches:
        logits = out[:, c:] if mask is None else out[:, c:].masked_fill(~mask, MASKED_LOGIT)
        chosen = actions[:, c:].long().reshape(len(x), -1) if c else actions.reshape(len(x), -1)
        for b, part in enumerate(torch.split(logits, policy.branches, 1)):
            branch = Categorical(logits=part)
            logp, entropy = logp + branch.log_prob(chosen[:, b]), entropy + branch.entropy()
    if s.normalize_advantage:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    ratio = (logp - old_logp).exp()
    policy_loss = -torch.min(adv * ratio, adv * ratio.clamp(1 - clip, 1 + clip)).mean()
    value_loss = torch.nn.functional.mse_loss(returns, values, reduction="none")
    if s.clip_range_vf is not None:  # CleanRL's and ML-Agents' form: the larger of the two (SB3 keeps the clipped one)
        clipped = old_values + (values - old_values).clamp(-s.clip_range_vf, s.clip_range_vf)
        value_loss = torch.max(value_loss, torch.nn.functional.mse_loss(returns, clipped, reduction="none"))
    value_loss = value_loss.mean()
    return policy_loss + s.vf_coef * value_loss - s.ent_coef * entropy.mean()


def as_batch(x, actions, mask, old_logp, adv, returns, old_values) -> dict:
    """A minibatch as the learner's update cuts it from the rollout."""
    return {"obs": x, "actions": actions, "masks": mask, "log_probs": old_logp, "advantages": adv,
            "returns": returns[:, None], "values": old_values[:, None]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_update_takes_the_gradients_of_the_loss_as_sb3_writes_it(case):
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
        actions, old_logp, old_values, _ = policy.sample(x, mask, gen)
        old_logp = old_logp + 0.3 * torch.randn(n, generator=gen)  # ratios both inside and outside the clip
        old_values = old_values[:, 0] + 0.1 * torch.randn(n, generator=gen)
    adv, returns = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
    args = (x, actions, mask, old_logp, adv, returns, old_values, 0.2)

    params = list(policy.parameters())
    expected = torch.autograd.grad(sb3_loss(learner, *args), params)
    stats = learner._gradient_step(as_batch(*args[:-1]), 0.2, learner.settings.ent_coef)
    for name, p, want in zip([name for name, _ in policy.named_parameters()], params, expected):
        torch.testing.assert_close(p.grad, want, rtol=1e-4, atol=1e-6, msg=lambda m: f"{case}: {name}: {m}")
    s = learner.settings
    with torch.no_grad():
        assert (stats[0] + s.vf_coef * stats[1] - s.ent_coef * stats[2]).item() == pytest.approx(
            sb3_loss(learner, *args).item(), rel=1e-5, abs=1e-6)


def test_a_recurrent_update_is_the_loss_of_each_sequence_run_on_its_own_with_padding_left_out():
    """Sequences of 5, 2 and 4 decisions padded to 5 and evaluated as one batch from their stored memories:
    the gradients are those of SB3's loss over the 11 real decisions, each sequence run alone from its memory."""
    torch.manual_seed(0)
    spec = BehaviourSpec("b", OBS, spaces.MultiDiscrete([3, 4]))
    learner = BehaviourLearner(spec, PPOSettings(ent_coef=0.02, clip_range_vf=0.1,
                                                 memory={"memory_size": 8, "sequence_length": 5}))
    policy, gen = learner.policy, torch.Generator().manual_seed(1)
    lengths, length = [5, 2, 4], 5
    x = torch.randn(len(lengths) * length, 6)
    state = torch.randn(len(lengths), 8, generator=gen)
    weight = torch.tensor([float(t < n) for n in lengths for t in range(length)])
    with torch.no_grad():
        out, old_values = policy.features(x, state)
        old_values = old_values[:, 0]
        actions, old_logp = policy.distribution(out, None).sample(gen)  # padding rows get actions too
        old_logp = old_logp + 0.3 * torch.randn(len(x), generator=gen)
    adv, returns = torch.randn(len(x), generator=gen), torch.randn(len(x), generator=gen)

    real = weight > 0
    pieces = [policy.features(x[i * length : i * length + n], state[i : i + 1]) for i, n in enumerate(lengths)]
    outputs = tuple(torch.cat(part) for part in zip(*pieces))
    args = [column[real] for column in (x, actions, old_logp, adv, returns, old_values)]
    expected = sb3_loss(learner, args[0], args[1], None, *args[2:], 0.2, outputs=outputs)
    params = list(policy.parameters())
    want = torch.autograd.grad(expected, params)
    learner._gradient_step(as_batch(x, actions, None, old_logp, adv, returns, old_values), 0.2,
                           learner.settings.ent_coef, state, weight)
    for (name, p), w in zip(policy.named_parameters(), want):
        torch.testing.assert_close(p.grad, w, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")


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
