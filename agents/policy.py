"""The actor-critic network one behaviour is trained with, and later exported.

Actor and critic are separate MLPs of the same shape (as in Stable-Baselines3
and CleanRL), but their hidden layers are stored stacked and evaluated as one
batched matmul per layer: the same arithmetic as two networks in half the
operator calls, which is what a small CPU update is bound by.

Observation normalisation lives inside the module, so the exported graph
carries it and the game never has to know the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from sparring.spec import BehaviourSpec, Obs

MASKED_LOGIT = -1e8  # finite, so entropy's p * log p stays 0 (not NaN) on masked actions


class RunningNorm(nn.Module):
    """Running mean/variance of the observation vector (Chan's parallel update).

    Statistics accumulate in float64; the float32 ``offset``/``scale`` used in the
    forward pass are refreshed after each update so inference does no casting.
    """

    def __init__(self, size: int, clip: float = 10.0) -> None:
        super().__init__()
        self.clip = clip
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("var", torch.ones(size, dtype=torch.float64))
        self.register_buffer("offset", torch.zeros(size))
        self.register_buffer("scale", torch.ones(size))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        batch = x.double()
        n = batch.shape[0]
        if n == 0:
            return
        b_mean = batch.mean(0)
        b_var = batch.var(0, unbiased=False)
        total = self.count + n
        delta = b_mean - self.mean
        self.mean += delta * (n / total)
        self.var.copy_((self.var * self.count + b_var * n + delta.square() * self.count * n / total) / total)
        self.count.copy_(total)
        self.offset.copy_(self.mean.float())
        self.scale.copy_(torch.rsqrt(self.var + 1e-8).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.offset) * self.scale).clamp(-self.clip, self.clip)


class TwinMLP(nn.Module):
    """Two equally shaped MLPs (actor trunk, critic trunk) evaluated together.

    ``forward(x)`` returns ``(2, batch, hidden[-1])``: index 0 is the actor's
    features, index 1 the critic's.
    """

    def __init__(self, in_size: int, hidden: Sequence[int], activation: str) -> None:
        super().__init__()
        sizes = [in_size, *hidden]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            # Orthogonal init with gain sqrt(2), per network, as SB3 and CleanRL do.
            w = torch.stack([nn.init.orthogonal_(torch.empty(fan_out, fan_in), math.sqrt(2)).T for _ in range(2)])
            self.weights.append(nn.Parameter(w.contiguous()))
            self.biases.append(nn.Parameter(torch.zeros(2, 1, fan_out)))
        self.activation = {"tanh": torch.tanh, "relu": torch.relu}[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0).expand(2, *x.shape)
        for w, b in zip(self.weights, self.biases):
            h = self.activation(torch.baddbmm(b, h, w))
        return h


def _linear_head(in_size: int, out_size: int, gain: float) -> nn.Linear:
    layer = nn.Linear(in_size, out_size)
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


class BehaviourPolicy(nn.Module):
    """Actor-critic for one behaviour: discrete (multi-branch, masked) or Gaussian actions.

    Args:
        spec: the behaviour this policy acts for.
        hidden_sizes: hidden layer widths, shared by actor and critic shapes.
        activation: ``"tanh"`` or ``"relu"``.
        normalize: keep running observation statistics and normalise inputs.
    """

    def __init__(
        self,
        spec: BehaviourSpec,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.obs_keys = sorted(spec.observation_components)
        self.obs_size = int(sum(np.prod(spec.observation_components[k].shape) for k in self.obs_keys))
        self.branches = spec.action_branches
        self.continuous = spec.is_continuous
        self.normalizer = RunningNorm(self.obs_size) if normalize else None
        self.trunk = TwinMLP(self.obs_size, hidden_sizes, activation)
        width = hidden_sizes[-1]
        if self.continuous:
            act_size = int(np.prod(spec.action_space.shape))
            self.actor_head = _linear_head(width, act_size, 0.01)
            self.log_std = nn.Parameter(torch.zeros(act_size))
        else:
            self.actor_head = _linear_head(width, sum(self.branches), 0.01)
        self.critic_head = _linear_head(width, 1, 1.0)

    # -- inputs ---------------------------------------------------------------

    def flatten_obs(self, obs: Obs) -> torch.Tensor:
        """Batched numpy observation -> float32 ``(n, obs_size)`` tensor (no normalisation)."""
        if isinstance(obs, dict):
            parts = [np.asarray(obs[k]).reshape(len(obs[k]), -1) for k in self.obs_keys]
            flat = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        else:
            flat = np.asarray(obs).reshape(len(obs), -1)
        return torch.from_numpy(np.ascontiguousarray(flat, dtype=np.float32))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.normalizer is None else self.normalizer(x)

    # -- heads ----------------------------------------------------------------

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(actor output, value) for normalised inputs ``x``."""
        h = self.trunk(x)
        return self.actor_head(h[0]), self.critic_head(h[1]).squeeze(-1)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        return self.critic_head(h[1]).squeeze(-1)

    def branch_log_probs(self, logits: torch.Tensor, mask: torch.Tensor | None) -> list[torch.Tensor]:
        """Per-branch log-softmax, with disallowed actions pushed to ~zero probability."""
        if mask is not None:
            logits = logits.masked_fill(~mask, MASKED_LOGIT)
        if len(self.branches) == 1:
            return [torch.log_softmax(logits, -1)]
        return [torch.log_softmax(part, -1) for part in torch.split(logits, self.branches, -1)]

    def sample(
        self, x: torch.Tensor, mask: torch.Tensor | None, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample actions for normalised inputs: ``(actions, log_probs, values)``."""
        out, value = self.features(x)
        if self.continuous:
            std = self.log_std.exp()
            noise = torch.randn(out.shape, generator=generator)
            action = out + std * noise
            logp = (-0.5 * noise.square() - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
            return action, logp, value
        actions, logp = [], 0.0
        for lp in self.branch_log_probs(out, mask):
            gumbel = -torch.log(-torch.log(torch.rand(lp.shape, generator=generator).clamp_min(1e-20)))
            a = torch.argmax(lp + gumbel, -1)
            actions.append(a)
            logp = logp + lp.gather(-1, a.unsqueeze(-1)).squeeze(-1)
        action = actions[0] if len(actions) == 1 else torch.stack(actions, -1)
        return action, logp, value

    def evaluate(
        self, x: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_probs, entropy, values)`` of given actions, for the PPO loss."""
        out, value = self.features(x)
        if self.continuous:
            z = (actions - out) * torch.exp(-self.log_std)
            logp = (-0.5 * z.square() - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
            entropy = (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum().expand(len(x))
            return logp, entropy, value
        log_probs = self.branch_log_probs(out, mask)
        if len(log_probs) == 1:
            lp = log_probs[0]
            logp = lp.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
            entropy = -(lp.exp() * lp).sum(-1)
            return logp, entropy, value
        logp = sum(lp.gather(-1, actions[:, i : i + 1]).squeeze(-1) for i, lp in enumerate(log_probs))
        entropy = sum(-(lp.exp() * lp).sum(-1) for lp in log_probs)
        return logp, entropy, value

    def deterministic(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The mode of the action distribution (argmax per branch / Gaussian mean)."""
        out = self.actor_head(self.trunk(x)[0])
        if self.continuous:
            return out
        if mask is not None:
            out = out.masked_fill(~mask, MASKED_LOGIT)
        if len(self.branches) == 1:
            return out.argmax(-1)
        return torch.stack([part.argmax(-1) for part in torch.split(out, self.branches, -1)], -1)

    def env_actions(self, action: torch.Tensor) -> np.ndarray:
        """Policy actions -> what the env accepts (continuous actions clipped to the Box)."""
        if not self.continuous:
            return action.numpy()
        box = self.spec.action_space
        flat = action.numpy().reshape(len(action), *box.shape)
        return np.clip(flat, box.low, box.high).astype(np.float32, copy=False)
