"""The actor-critic network one behaviour is trained with, and later exported.

Observations pass through an :class:`~sparring.agents.networks.ObservationEncoder`
(a CNN per image, attention per entity list; vectors as they are), shared by actor
and critic as in Stable-Baselines3's on-policy policies. Actor and critic then have
separate MLPs of the same shape (as in Stable-Baselines3 and CleanRL), their hidden
layers stored stacked and evaluated as one batched matmul per layer: the same
arithmetic as two networks in half the operator calls, which is what a small CPU
update is bound by.

Observation normalisation lives inside the module, so the exported graph
carries it and the game never has to know the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from sparring.agents.networks import (
    ACTIVATIONS,
    MemorySettings,
    ObservationEncoder,
    ObservationReader,
    VisEncodeType,
    observation_layout,
)
from sparring.spec import Batch, BehaviourSpec, Obs

MASKED_LOGIT = -1e8  # finite, so entropy's p * log p stays 0 (not NaN) on masked actions


def flat_obs(obs: Obs, keys: Sequence[str]) -> np.ndarray:
    """Batched observation -> float32 ``(n, obs_size)``, a dict's components in ``keys`` order.

    The result is always writeable: torch may not wrap a read-only array (a game's frame, a shared constant).
    """
    if isinstance(obs, dict):
        parts = [_rows(obs[k]) for k in keys]
        flat = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    else:
        flat = _rows(obs)
    return np.require(flat, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])


def _rows(part: np.ndarray) -> np.ndarray:
    """One component as ``(n, features)``, zero agents included."""
    part = np.asarray(part)
    return part.reshape(len(part), int(np.prod(part.shape[1:])))


def check_finite(flat: np.ndarray, behaviour: str) -> None:
    """Refuse a NaN or infinite observation, naming the behaviour and the agent rows: one would poison training."""
    if not np.isfinite(flat).all():
        bad = np.flatnonzero(~np.isfinite(flat).all(1)).tolist()
        raise ValueError(f"behaviour {behaviour!r}: non-finite observation (NaN or Inf) for agent rows {bad}")


class RunningNorm(nn.Module):
    """Running mean/variance of the first ``size`` columns of observation rows of ``row_size`` (Chan's parallel update).

    Those are the vector columns (see :func:`~sparring.agents.networks.observation_layout`); the
    columns after them (images, entity lists) pass unchanged, as ML-Agents normalises vectors only.
    Statistics accumulate in float64; the float32 ``offset``/``scale`` used in the
    forward pass are refreshed after each update so inference does no casting.
    """

    def __init__(self, size: int, clip: float = 10.0, row_size: int | None = None) -> None:
        super().__init__()
        self.clip = clip
        self.size = size
        self.whole_row = row_size in (None, size)
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("var", torch.ones(size, dtype=torch.float64))
        self.register_buffer("offset", torch.zeros(size))
        self.register_buffer("scale", torch.ones(size))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        batch = x[:, : len(self.mean)].double()
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
        if self.whole_row:
            return ((x - self.offset) * self.scale).clamp(-self.clip, self.clip)
        size = self.size
        return torch.cat([((x[:, :size] - self.offset) * self.scale).clamp(-self.clip, self.clip), x[:, size:]], 1)


class TwinMLP(nn.Module):
    """Two equally shaped MLPs (actor trunk, critic trunk) evaluated together, or the actor's alone (``copies=1``).

    Activations are ``(copies, batch, width)``: index 0 is the actor's, index 1 the critic's.
    """

    def __init__(self, in_size: int, hidden: Sequence[int], activation: str, copies: int = 2) -> None:
        super().__init__()
        sizes = [in_size, *hidden]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            # Orthogonal init with gain sqrt(2), per network, as SB3 and CleanRL do.
            w = torch.stack([nn.init.orthogonal_(torch.empty(fan_out, fan_in), math.sqrt(2)).T for _ in range(copies)])
            self.weights.append(nn.Parameter(w.contiguous()))
            self.biases.append(nn.Parameter(torch.zeros(copies, 1, fan_out)))
        self.activation = activation
        self._act = ACTIVATIONS[activation]
        # The same Parameter objects as plain tuples: indexing a ParameterList costs more than the matmul it feeds
        # at these sizes. load_state_dict and .to() update parameters in place, so the tuples stay current.
        self._layers = tuple(zip(self.weights, self.biases))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0).expand(len(self.biases[0]), *x.shape)
        for w, b in self._layers:
            h = self._act(torch.baddbmm(b, h, w))
        return h


class Categorical:
    """Independent categorical branches over masked logits (Discrete / MultiDiscrete actions).

    Masked actions get a finite, very negative logit: their probability is
    exactly 0 in float32, so they contribute neither entropy nor gradient.
    """

    def __init__(self, logits: torch.Tensor, branches: tuple[int, ...], mask: torch.Tensor | None) -> None:
        if mask is not None:
            logits = logits.masked_fill(~mask, MASKED_LOGIT)
        self.branches = branches
        parts = [logits] if len(branches) == 1 else torch.split(logits, branches, -1)
        self.log_p = [torch.log_softmax(part, -1) for part in parts]
        self.p = [lp.exp() for lp in self.log_p]

    def _per_branch(self, actions: torch.Tensor) -> list[torch.Tensor]:
        return [actions] if len(self.branches) == 1 else list(actions.unbind(-1))

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        picked = [lp.gather(-1, a.unsqueeze(-1)).squeeze(-1) for lp, a in zip(self.log_p, self._per_branch(actions))]
        return picked[0] if len(picked) == 1 else torch.stack(picked).sum(0)

    def entropy(self) -> torch.Tensor:
        entropies = [-(p * lp).sum(-1) for p, lp in zip(self.p, self.log_p)]
        return entropies[0] if len(entropies) == 1 else torch.stack(entropies).sum(0)

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions and their log-probabilities, by Gumbel-max: one uniform draw per logit from ``generator``."""
        picks = []
        for lp in self.log_p:
            gumbel = -torch.log(-torch.log(torch.rand(lp.shape, generator=generator).clamp_min(1e-20)))
            picks.append(torch.argmax(lp + gumbel, -1))
        action = picks[0] if len(picks) == 1 else torch.stack(picks, -1)
        return action, self.log_prob(action)

    def mode(self) -> torch.Tensor:
        picks = [lp.argmax(-1) for lp in self.log_p]
        return picks[0] if len(picks) == 1 else torch.stack(picks, -1)


class DiagGaussian:
    """Gaussian actions with a state-independent log standard deviation (Box actions)."""

    _LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor) -> None:
        self.mean, self.log_std = mean, log_std

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        z = (actions - self.mean) * torch.exp(-self.log_std)
        return (-0.5 * z.square() - self.log_std - self._LOG_SQRT_2PI).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (0.5 + self._LOG_SQRT_2PI + self.log_std).sum().expand(len(self.mean))

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions and their log-probabilities."""
        noise = torch.randn(self.mean.shape, generator=generator)
        logp = (-0.5 * noise.square() - self.log_std - self._LOG_SQRT_2PI).sum(-1)
        return self.mean + self.log_std.exp() * noise, logp


class Hybrid:
    """Continuous and discrete actions in one decision: a Gaussian and independent categoricals.

    The two parts are independent, so log-probabilities and entropies add. An
    action row is ``float32 (continuous values..., discrete indices...)``; the
    indices are small integers, exact in float32, which lets the rollout keep
    one action array per behaviour.
    """

    def __init__(self, gaussian: DiagGaussian, categorical: Categorical) -> None:
        self.gaussian, self.categorical = gaussian, categorical
        self.size = gaussian.mean.shape[-1]

    def split(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """An action row -> (continuous values, discrete indices in the Categorical's shape)."""
        discrete = actions[:, self.size :].long()
        return actions[:, : self.size], discrete.squeeze(-1) if len(self.categorical.branches) == 1 else discrete

    def join(self, continuous: torch.Tensor, discrete: torch.Tensor) -> torch.Tensor:
        return torch.cat([continuous, discrete.reshape(len(continuous), -1).float()], -1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        continuous, discrete = self.split(actions)
        return self.gaussian.log_prob(continuous) + self.categorical.log_prob(discrete)

    def entropy(self) -> torch.Tensor:
        return self.gaussian.entropy() + self.categorical.entropy()

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        continuous, logp_c = self.gaussian.sample(generator)
        discrete, logp_d = self.categorical.sample(generator)
        return self.join(continuous, discrete), logp_c + logp_d

    def mode(self) -> torch.Tensor:
        return self.join(self.gaussian.mode(), self.categorical.mode())


def action_features(actions: torch.Tensor, continuous_size: int, branches: Sequence[int]) -> torch.Tensor:
    """Policy action rows ``(..., *action shape)`` -> ``(..., continuous_size + sum(branches))`` floats: continuous
    parts as they are, every discrete branch one-hot, the way critics and reward signals read what an agent did."""
    row = continuous_size + len(branches) if continuous_size else len(branches)
    lead = actions.shape[: actions.dim() - (0 if row == 1 and not continuous_size else 1)]
    flat = actions.reshape(-1, row)
    parts = [flat[:, :continuous_size].float()] if continuous_size else []
    for i, n in enumerate(branches):
        parts.append(nn.functional.one_hot(flat[:, continuous_size + i].long(), n).float())
    return torch.cat(parts, -1).reshape(*lead, continuous_size + sum(branches))


def _linear_head(in_size: int, out_size: int, gain: float) -> nn.Linear:
    layer = nn.Linear(in_size, out_size)
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


class ObservingPolicy(ObservationReader):
    """A policy's reading of its behaviour's observations: the flat row's layout (see
    :func:`~sparring.agents.networks.observation_layout`), the running statistics that normalise its vector
    columns, and the encoder (and memory) after them. PPO's actor-critic and SAC's actor are such policies.

    Args:
        spec: the behaviour this policy acts for.
        encoding_size: the width of each image's and entity list's encoding.
        normalize: keep running statistics of the vector observations and normalise them.
        vis_encode_type: the CNN for images.
        memory: an LSTM after the encoder.
    """

    def __init__(self, spec: BehaviourSpec, encoding_size: int, normalize: bool, vis_encode_type: VisEncodeType,
                 memory: MemorySettings | None) -> None:
        layout = observation_layout(spec.observation_components, vis_encode_type)
        super().__init__(ObservationEncoder(layout, spec.observation_components, vis_encode_type, encoding_size), memory)
        self.spec = spec
        self.layout = layout
        self.obs_keys = [c.key for c in self.layout]
        self.obs_size = self.layout[-1].stop
        vector_size = self.encoder.vector_size
        self.normalizer = RunningNorm(vector_size, row_size=self.obs_size) if normalize and vector_size else None

    def flatten_obs(self, obs: Obs) -> torch.Tensor:
        """Batched numpy observation -> float32 ``(n, obs_size)`` tensor (no normalisation)."""
        return torch.from_numpy(flat_obs(obs, self.obs_keys))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.normalizer is None else self.normalizer(x)


class BehaviourPolicy(ObservingPolicy):
    """Actor-critic for one behaviour: discrete (multi-branch, masked), Gaussian, or hybrid actions.

    The actor head's output is the Gaussian means (if the behaviour has continuous
    actions) followed by the logits of every discrete branch (if it has discrete ones).

    Args:
        spec: the behaviour this policy acts for.
        hidden_sizes: hidden layer widths, shared by actor and critic shapes; the first is also
            the width of each image's and entity list's encoding.
        activation: ``"tanh"``, ``"relu"`` or ``"swish"``.
        normalize: keep running statistics of the vector observations and normalise them.
        vis_encode_type: the CNN for images (see :func:`~sparring.agents.networks.observation_layout`).
        memory: an LSTM between encoder and trunk, shared by actor and critic.
        critic: False for an actor alone, whose learner values states elsewhere (MA-POCA's group critic):
            ``value`` is then unavailable and ``sample``/``evaluate`` return ``None`` values.
        value_heads: the reward signals the critic values, one head each (see
            :mod:`~sparring.agents.reward_signals`); values are ``(n, len(value_heads))``.

    With memory, every method takes the agents' recurrent ``state`` (``(n, memory_size)``, zeros at
    an episode's start) and those that act return the state after the step. ``evaluate`` also takes
    sequences: ``x`` holds ``len(state)`` sequences of equal length, one after another.
    """

    def __init__(
        self,
        spec: BehaviourSpec,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        normalize: bool = False,
        vis_encode_type: VisEncodeType = "auto",
        memory: MemorySettings | None = None,
        critic: bool = True,
        value_heads: Sequence[str] = ("extrinsic",),
    ) -> None:
        super().__init__(spec, hidden_sizes[0], normalize, vis_encode_type, memory)
        self.branches = spec.action_branches
        box = spec.continuous_space
        self.continuous_size = 0 if box is None else int(np.prod(box.shape))
        self.trunk = TwinMLP(self.features_size, hidden_sizes, activation, copies=2 if critic else 1)
        width = hidden_sizes[-1]
        self.actor_head = _linear_head(width, self.continuous_size + sum(self.branches), 0.01)
        if self.continuous_size:
            self.log_std = nn.Parameter(torch.zeros(self.continuous_size))
        self.value_heads = tuple(value_heads)
        self.critic_head = _linear_head(width, len(self.value_heads), 1.0) if critic else None

    @property
    def action_shape(self) -> tuple[int, ...]:
        """One action row as :meth:`sample` returns it (``()`` for one discrete branch)."""
        if self.continuous_size:
            return (self.continuous_size + len(self.branches),)
        return () if len(self.branches) == 1 else (len(self.branches),)

    # -- heads ----------------------------------------------------------------

    def features(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(actor output, value) for normalised inputs ``x``; with memory, ``x`` holds ``len(state)`` sequences of
        equal length one after another, each run from its row of ``state``."""
        if self.memory is None:
            return self._heads(self.trunk(self.core(x)[0]))
        h = self.core_sequences(x.reshape(len(state), -1, x.shape[-1]), state)
        return self._heads(self.trunk(h.reshape(len(x), -1)))

    def _heads(self, top: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(actor output, value) from the trunk's stacked last activations (one addmm each, no Module call)."""
        out = torch.addmm(self.actor_head.bias, top[0], self.actor_head.weight.T)
        if self.critic_head is None:
            return out, None
        return out, torch.addmm(self.critic_head.bias, top[1], self.critic_head.weight.T)

    def value(self, x: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """State values ``(n, heads)``, one decision per row (from ``state`` with memory)."""
        return self.critic_head(self.trunk(self.core(x, state)[0])[1])

    def distribution(self, out: torch.Tensor, mask: torch.Tensor | None) -> Categorical | DiagGaussian | Hybrid:
        """The action distribution given the actor head's output."""
        c = self.continuous_size
        if not self.branches:
            return DiagGaussian(out, self.log_std)
        if not c:
            return Categorical(out, self.branches, mask)
        return Hybrid(DiagGaussian(out[:, :c], self.log_std), Categorical(out[:, c:], self.branches, mask))

    def sample(
        self, x: torch.Tensor, mask: torch.Tensor | None, generator: torch.Generator, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Sample actions for normalised inputs: ``(actions, log_probs, values, next state)``."""
        h, state = self.core(x, state)
        out, value = self._heads(self.trunk(h))
        action, logp = self.distribution(out, mask).sample(generator)
        return action, logp, value, state

    def evaluate(
        self, x: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_probs, entropy, values)`` of given actions, for the loss autograd differentiates."""
        out, value = self.features(x, state)
        dist = self.distribution(out, mask)
        return dist.log_prob(actions), dist.entropy(), value

    def deterministic(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The mode of the action distribution (argmax per branch / Gaussian mean), and the next state."""
        h, state = self.core(x, state)
        return self.distribution(self.actor_head(self.trunk(h)[0]), mask).mode(), state

    def policy_actions(self, env_actions: Batch) -> np.ndarray:
        """Actions as an env takes them (a demonstration's) -> policy action rows (the inverse of :meth:`env_actions`
        inside the Box)."""
        if not self.continuous_size:
            return np.asarray(env_actions, np.int64)
        parts = env_actions if self.branches else {"continuous": env_actions}
        continuous = np.asarray(parts["continuous"], np.float32)
        rows = [continuous.reshape(len(continuous), -1)]
        if self.branches:
            rows.append(np.asarray(parts["discrete"]).reshape(len(continuous), -1).astype(np.float32))
        return np.concatenate(rows, 1) if len(rows) > 1 else rows[0]

    def env_actions(self, action: torch.Tensor) -> Batch:
        """Policy actions -> what the env accepts (continuous actions clipped to the Box)."""
        if not self.continuous_size:
            return action.numpy()
        box = self.spec.continuous_space
        flat = action.numpy()
        continuous = flat[:, : self.continuous_size].reshape(len(flat), *box.shape)
        continuous = np.clip(continuous, box.low, box.high).astype(np.float32, copy=False)
        if not self.branches:
            return continuous
        discrete = flat[:, self.continuous_size :].astype(np.int64)
        return {"continuous": continuous, "discrete": discrete[:, 0] if len(self.branches) == 1 else discrete}
