"""Reward signals and behavioural cloning: learning where the game's own reward is sparse.

A designer's reward is often one number at the end ("find the key, open the door"). As in
ML-Agents, a behaviour can learn from several *reward signals* at once, each with its own
strength, its own discount and its own value estimate (a head of the critic):

- ``extrinsic``: the game's reward, times ``strength``;
- ``curiosity``: the intrinsic curiosity module (Pathak et al. 2017): an encoding of the
  observation is learned by an inverse model (which action led from ``s`` to ``s'``?) and a
  forward model predicts the next encoding from the current one and the action; the forward
  model's error is the reward, so transitions the agent cannot yet predict pay;
- ``rnd``: random network distillation (Burda et al. 2018): a network learns to copy a fixed,
  random one; its error is the reward, high on observations rarely seen;
- ``gail``: generative adversarial imitation (Ho & Ermon 2016): a discriminator tells the
  agent's observations (and, with ``use_actions``, actions) from a recorded demonstration's; the
  reward is ``-log(1 - D)``, high where the agent looks like the demonstrator. ``use_vail`` adds
  the variational bottleneck of Peng et al. 2018.

Behavioural cloning (``behavioral_cloning``) trains the policy towards a demonstration's actions
alongside RL, its learning rate ``strength * learning_rate`` decaying to nothing over ``steps``.

What follows ML-Agents (its reward providers, read for the facts): curiosity's and RND's value
heads bootstrap through an episode's end (``ignore_done``), GAIL's and the extrinsic one's do
not; curiosity's reward is clipped to ``1 / strength`` and is 0 before its first update; the
losses' weights (curiosity: ``10 * (0.2 forward + 0.8 inverse)``; GAIL: gradient penalty 10,
VAIL's information bound 0.5 and step 5e-4); the metric names. Where it differs:
``Policy/<Signal> Reward`` is the mean per decision of the rollout (ML-Agents sums it per
episode), and each network reads the policy's normalised inputs through an encoder of its own.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from sparring.agents.networks import ObservationEncoder, observation_layout
from sparring.agents.policy import DiagGaussian, Hybrid, action_features
from sparring.spec import BehaviourSpec

EPSILON = 1e-7


# -- settings ---------------------------------------------------------------------------


class _Signal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strength: float = Field(1.0, ge=0, description="Factor on the signal's reward.")
    gamma: float = Field(0.99, ge=0, le=1, description="The signal's own discount.")


class ExtrinsicSettings(_Signal):
    """The game's reward."""

    gamma: float | None = Field(  # type: ignore[assignment]
        None, ge=0, le=1, description="Discount of the game's reward; None: the trainer's gamma."
    )


class _LearnedSignal(_Signal):
    encoding_size: int = Field(128, ge=1, description="Width of the signal's networks (ML-Agents' hidden_units).")
    num_layers: int = Field(2, ge=1, description="Hidden layers of the signal's encoding network.")
    learning_rate: float = Field(3e-4, gt=0, description="Adam step size of the signal's networks.")


class CuriositySettings(_LearnedSignal):
    """Intrinsic curiosity (forward and inverse models on a learned encoding)."""


class RNDSettings(_LearnedSignal):
    """Random network distillation."""

    learning_rate: float = Field(1e-4, gt=0, description="Adam step size of the predictor.")


class GAILSettings(_LearnedSignal):
    """Adversarial imitation of a demonstration."""

    demo_path: Path = Field(description="A .demo file, or a folder of them, recorded for this behaviour.")
    use_actions: bool = Field(False, description="The discriminator sees actions (and episode ends) too.")
    use_vail: bool = Field(False, description="A variational information bottleneck in the discriminator.")


class RewardSignalSettings(BaseModel):
    """The signals a behaviour learns from. Only those named are used: naming ``gail`` alone learns without the
    game's reward, as in ML-Agents."""

    model_config = ConfigDict(extra="forbid")

    extrinsic: ExtrinsicSettings | None = None
    curiosity: CuriositySettings | None = None
    rnd: RNDSettings | None = None
    gail: GAILSettings | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> RewardSignalSettings:
        if not self.named():
            raise ValueError("reward_signals names no signal: keep at least one (extrinsic is the game's reward)")
        return self

    def named(self) -> list[tuple[str, _Signal]]:
        """``(key, settings)`` of every signal used, the extrinsic one first."""
        return [(key, getattr(self, key)) for key in ("extrinsic", "curiosity", "rnd", "gail")
                if getattr(self, key) is not None]


class BehavioralCloningSettings(BaseModel):
    """Behavioural cloning from a demonstration, alongside RL (ML-Agents' ``behavioral_cloning``)."""

    model_config = ConfigDict(extra="forbid")

    demo_path: Path = Field(description="A .demo file, or a folder of them, recorded for this behaviour.")
    strength: float = Field(1.0, ge=0, description="Cloning's learning rate as a multiple of the trainer's.")
    steps: int = Field(0, ge=0, description="Agent steps over which cloning's learning rate decays to 0; 0: never.")
    batch_size: int | None = Field(None, ge=1, description="Demonstration rows per batch; None: the trainer's.")
    num_epoch: int | None = Field(None, ge=1, description="Passes per update; None: the trainer's.")
    samples_per_update: int = Field(0, ge=0, description="Demonstration rows per pass; 0: all of them.")


class SignalSettings(BaseModel):
    """What PPO, MA-POCA and SAC settings share: the reward signals and behavioural cloning."""

    reward_signals: RewardSignalSettings = Field(
        default_factory=lambda: RewardSignalSettings(extrinsic=ExtrinsicSettings()),
        description="The rewards learned from, each with its own value estimate (default: the game's reward alone).",
    )
    behavioral_cloning: BehavioralCloningSettings | None = Field(
        None, description="Clone a demonstration's actions alongside RL."
    )

    def signal_names(self) -> tuple[str, ...]:
        """The signals' keys, in the order of the critic's value heads."""
        return tuple(key for key, _ in self.reward_signals.named())


# -- inputs -----------------------------------------------------------------------------


@dataclass
class Transitions:
    """Rows a signal is evaluated or trained on: normalised policy inputs, the actions taken, the inputs at the
    agent's next decision (or episode end), and whether the episode ended after the row (1.0) or not."""

    obs: torch.Tensor
    actions: torch.Tensor
    next_obs: torch.Tensor
    ends: torch.Tensor

    def take(self, idx: torch.Tensor | None) -> Transitions:
        if idx is None:
            return self
        return Transitions(self.obs[idx], self.actions[idx], self.next_obs[idx], self.ends[idx])


class _Body(nn.Module):
    """An encoder of the behaviour's observations (CNN per image, attention per entity list, as the policy's)
    and a swish MLP after it (``settings``' encoding_size wide, num_layers deep), with ``extra`` inputs joining
    before the MLP."""

    def __init__(self, spec: BehaviourSpec, vis_encode_type: str, settings: _LearnedSignal, extra: int = 0) -> None:
        super().__init__()
        layout = observation_layout(spec.observation_components, vis_encode_type)
        width = settings.encoding_size
        self.encoder = ObservationEncoder(layout, spec.observation_components, vis_encode_type, width)
        sizes = [self.encoder.out_size + extra] + [width] * settings.num_layers
        self.mlp = nn.Sequential(*(layer for fan_in, fan_out in zip(sizes[:-1], sizes[1:])
                                   for layer in (nn.Linear(fan_in, fan_out), nn.SiLU())))

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encoder(x)
        return self.mlp(h if extra is None else torch.cat([h, extra], 1))


# -- signals ----------------------------------------------------------------------------


class RewardSignal(nn.Module):
    """One reward signal: its reward for rows of experience, and (for learned ones) an update of its networks.

    ``ignore_done``: its value head bootstraps through an episode's end (an intrinsic reward is about the
    agent's knowledge, which does not end with the episode).
    """

    key = ""
    ignore_done = False

    def __init__(self, settings: _Signal, gamma: float) -> None:
        super().__init__()
        self.strength = settings.strength
        self.gamma = gamma

    @property
    def name(self) -> str:
        """How metrics name it (ML-Agents': ``Policy/Curiosity Reward``, ``Policy/Gail Value Estimate``)."""
        return self.key.capitalize()

    def rewards(self, rows: Transitions) -> torch.Tensor:
        """The signal's reward (strength applied) for each row; learned signals override."""
        raise NotImplementedError

    def update(self, rows: Transitions, generator: torch.Generator) -> dict[str, float]:
        """One gradient step on a minibatch of the agent's experience; returns the signal's metrics."""
        return {}


class Extrinsic(RewardSignal):
    """The game's reward (computed by the learner from what the env reported, not from rows)."""

    key = "extrinsic"


class Curiosity(RewardSignal):
    """ICM: reward = 0.5 * |forward(phi(s), a) - phi(s')|^2, phi trained by the inverse and forward losses."""

    key = "curiosity"
    ignore_done = True
    FORWARD_WEIGHT = 0.2
    LOSS_SCALE = 10.0

    def __init__(self, spec: BehaviourSpec, settings: CuriositySettings, vis_encode_type: str,
                 continuous_size: int, branches: Sequence[int]) -> None:
        super().__init__(settings, settings.gamma)
        width = settings.encoding_size
        self.continuous_size, self.branches = continuous_size, tuple(branches)
        action_size = continuous_size + sum(branches)
        self.phi = _Body(spec, vis_encode_type, settings)
        self.inverse = nn.Sequential(nn.Linear(2 * width, 256), nn.SiLU(), nn.Linear(256, action_size))
        self.forward_model = nn.Sequential(nn.Linear(width + action_size, 256), nn.SiLU(), nn.Linear(256, width))
        self.optimizer = torch.optim.Adam(self.parameters(), lr=settings.learning_rate)
        self.register_buffer("updated", torch.zeros((), dtype=torch.bool))  # no reward before the first update

    def _forward_error(self, rows: Transitions, phi: torch.Tensor, phi_next: torch.Tensor) -> torch.Tensor:
        a = action_features(rows.actions, self.continuous_size, self.branches)
        predicted = self.forward_model(torch.cat([phi, a], 1))
        return 0.5 * (predicted - phi_next).square().sum(1)

    @torch.no_grad()
    def rewards(self, rows: Transitions) -> torch.Tensor:
        if not self.updated:
            return torch.zeros(len(rows.obs))
        error = self._forward_error(rows, self.phi(rows.obs), self.phi(rows.next_obs))
        return error.clamp(max=1.0 / max(self.strength, EPSILON)) * self.strength

    def update(self, rows: Transitions, generator: torch.Generator) -> dict[str, float]:
        phi, phi_next = self.phi(rows.obs), self.phi(rows.next_obs)
        forward_loss = self._forward_error(rows, phi, phi_next).mean()
        predicted = self.inverse(torch.cat([phi, phi_next], 1))
        inverse_loss = torch.zeros(())
        c = self.continuous_size
        if c:
            inverse_loss = inverse_loss + (predicted[:, :c] - rows.actions.reshape(len(phi), -1)[:, :c]).square().sum(1).mean()
        if self.branches:
            indices = rows.actions.reshape(len(phi), -1)[:, c:].long()
            logits = torch.split(predicted[:, c:], self.branches, 1)
            inverse_loss = inverse_loss + sum(nn.functional.cross_entropy(part, indices[:, i])
                                              for i, part in enumerate(logits))
        loss = self.LOSS_SCALE * (self.FORWARD_WEIGHT * forward_loss + (1 - self.FORWARD_WEIGHT) * inverse_loss)
        _step(self.optimizer, loss)
        self.updated.fill_(True)
        return {"Losses/Curiosity Forward Loss": forward_loss.item(), "Losses/Curiosity Inverse Loss": inverse_loss.item()}


class RND(RewardSignal):
    """Random network distillation: reward = |predictor(s) - target(s)|^2, the target fixed at its random start."""

    key = "rnd"
    ignore_done = True

    def __init__(self, spec: BehaviourSpec, settings: RNDSettings, vis_encode_type: str) -> None:
        super().__init__(settings, settings.gamma)
        self.target = _Body(spec, vis_encode_type, settings).requires_grad_(False)
        self.predictor = _Body(spec, vis_encode_type, settings)
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=settings.learning_rate)

    def _error(self, obs: torch.Tensor) -> torch.Tensor:
        return (self.predictor(obs) - self.target(obs)).square().sum(1)

    @torch.no_grad()
    def rewards(self, rows: Transitions) -> torch.Tensor:
        return self._error(rows.obs) * self.strength

    def update(self, rows: Transitions, generator: torch.Generator) -> dict[str, float]:
        loss = self._error(rows.obs).mean()
        _step(self.optimizer, loss)
        return {"Losses/RND Loss": loss.item()}


class Demonstrations:
    """A demonstration as rows the networks read: raw flat observations and policy action rows of its decisions.

    A record that ends an episode holds the final observation, where nobody decided (ML-Agents' recorder
    and ``sparring record`` both write one): it is not a decision, and marks the record before it as the
    last of its episode.
    """

    def __init__(self, path: Path, policy, spec: BehaviourSpec) -> None:
        from sparring.envs.demonstrations import load_demonstrations

        demo = load_demonstrations(path, spec)
        dones, ids = np.asarray(demo.dones, bool), np.asarray(demo.agent_ids)
        decided = ~dones
        if not decided.any():
            raise ValueError(f"the demonstration {path} holds no decisions")
        last = np.zeros(len(dones), bool)
        last[:-1] = dones[1:] & (ids[1:] == ids[:-1])
        keep = torch.from_numpy(decided)
        self.policy = policy
        self.raw_obs = policy.flatten_obs(demo.obs)[keep]
        self.actions = torch.from_numpy(policy.policy_actions(demo.actions))[keep]
        self.ends = torch.from_numpy(last[decided].astype(np.float32))

    def __len__(self) -> int:
        return len(self.actions)

    def rows(self, idx: torch.Tensor | None = None) -> Transitions:
        """Demonstration rows (all, or ``idx``), normalised as the policy normalises now."""
        obs = self.raw_obs if idx is None else self.raw_obs[idx]
        x = self.policy.normalize(obs)
        actions = self.actions if idx is None else self.actions[idx]
        ends = self.ends if idx is None else self.ends[idx]
        return Transitions(x, actions, x, ends)

    def sample(self, n: int, generator: torch.Generator) -> Transitions:
        return self.rows(torch.randint(len(self), (n,), generator=generator))


class LazyDemonstrations:
    """A demonstration read when first needed: a checkpoint loaded to predict or export needs no demo file."""

    def __init__(self, path: Path, policy, spec: BehaviourSpec, user: str) -> None:
        self.path, self.policy, self.spec, self.user = path, policy, spec, user
        self._loaded: Demonstrations | None = None

    def get(self) -> Demonstrations:
        if self._loaded is None:
            try:
                self._loaded = Demonstrations(self.path, self.policy, self.spec)
            except ValueError as exc:
                raise ValueError(f"behaviour {self.spec.name!r}: {self.user}: {exc}") from None
        return self._loaded

    def reread(self) -> None:
        """Read the file or folder again when next needed: a folder that has gained demonstrations during training
        (a teacher labelling the positions the policy now reaches) is learned from whole."""
        self._loaded = None


class GAIL(RewardSignal):
    """A discriminator D between the agent's rows and a demonstration's; reward = -log(1 - D)."""

    key = "gail"
    GRADIENT_PENALTY = 10.0
    Z_SIZE = 128
    VAIL_STEP = 5e-4
    INFORMATION_BOUND = 0.5

    def __init__(self, spec: BehaviourSpec, settings: GAILSettings, vis_encode_type: str, policy,
                 continuous_size: int, branches: Sequence[int]) -> None:
        super().__init__(settings, settings.gamma)
        self.use_actions, self.use_vail = settings.use_actions, settings.use_vail
        self.continuous_size, self.branches = continuous_size, tuple(branches)
        extra = continuous_size + sum(branches) + 1 if settings.use_actions else 0
        self.body = _Body(spec, vis_encode_type, settings, extra)
        width = settings.encoding_size
        if self.use_vail:
            self.z_mu = nn.Linear(width, self.Z_SIZE)
            nn.init.kaiming_normal_(self.z_mu.weight)
            self.z_mu.weight.data *= 0.1
            self.z_sigma = nn.Parameter(torch.ones(self.Z_SIZE))
            self.register_buffer("beta", torch.zeros(()))
            width = self.Z_SIZE
        self.estimator = nn.Linear(width, 1)
        self.estimator.weight.data *= 0.2
        self.optimizer = torch.optim.Adam(self.parameters(), lr=settings.learning_rate)
        self.demonstrations = LazyDemonstrations(settings.demo_path, policy, spec, "reward signal 'gail'")

    def _extra(self, rows: Transitions) -> torch.Tensor | None:
        if not self.use_actions:
            return None
        return torch.cat([action_features(rows.actions, self.continuous_size, self.branches), rows.ends[:, None]], 1)

    def _estimate(self, obs: torch.Tensor, extra: torch.Tensor | None, noise: bool,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(D, the VAIL code's mean or None) for inputs; with ``noise``, VAIL samples its code."""
        h = self.body(obs, extra)
        mu = None
        if self.use_vail:
            mu = self.z_mu(h)
            h = mu + torch.randn(mu.shape, generator=generator) * self.z_sigma if noise else mu
        return torch.sigmoid(self.estimator(h)).squeeze(1), mu

    @torch.no_grad()
    def rewards(self, rows: Transitions) -> torch.Tensor:
        d, _ = self._estimate(rows.obs, self._extra(rows), noise=False)
        return -torch.log(1.0 - d * (1.0 - EPSILON)) * self.strength

    def update(self, rows: Transitions, generator: torch.Generator) -> dict[str, float]:
        expert = self.demonstrations.get().sample(len(rows.obs), generator)
        policy_extra, expert_extra = self._extra(rows), self._extra(expert)
        d_policy, mu_policy = self._estimate(rows.obs, policy_extra, True, generator)
        d_expert, mu_expert = self._estimate(expert.obs, expert_extra, True, generator)
        gail_loss = -(torch.log(d_expert + EPSILON) + torch.log(1.0 - d_policy + EPSILON)).mean()
        stats = {"Policy/GAIL Policy Estimate": d_policy.mean().item(),
                 "Policy/GAIL Expert Estimate": d_expert.mean().item(), "Losses/GAIL Loss": gail_loss.item()}
        loss = gail_loss
        if self.use_vail:
            log_var = (self.z_sigma ** 2).log()
            kl = (-(1 + log_var - 0.5 * mu_expert ** 2 - 0.5 * mu_policy ** 2 - self.z_sigma ** 2).sum(1)).mean()
            loss = loss + self.beta.item() * (kl - self.INFORMATION_BOUND)
        penalty = self.GRADIENT_PENALTY * self._gradient_magnitude(rows, expert, policy_extra, expert_extra, generator)
        stats["Policy/GAIL Grad Mag Loss"] = penalty.item()
        _step(self.optimizer, loss + penalty)
        if self.use_vail:  # dual ascent on beta keeps the code's information near the bound
            self.beta.copy_((self.beta + self.VAIL_STEP * (kl.detach() - self.INFORMATION_BOUND)).clamp_min(0.0))
            stats |= {"Policy/GAIL Beta": self.beta.item(), "Losses/GAIL KL Loss": kl.item()}
        return stats

    def _gradient_magnitude(self, rows: Transitions, expert: Transitions, policy_extra: torch.Tensor | None,
                            expert_extra: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        """WGAN-GP's penalty (Gulrajani et al. 2017) on inputs mixed between the agent's and the expert's:
        ``mean((|grad D| - 1)^2)``, which keeps the discriminator from saturating."""
        mix = torch.rand(rows.obs.shape, generator=generator)
        obs = (mix * rows.obs + (1 - mix) * expert.obs).requires_grad_(True)
        inputs = [obs]
        extra = None
        if policy_extra is not None:
            mix = torch.rand(policy_extra.shape, generator=generator)
            extra = (mix * policy_extra + (1 - mix) * expert_extra).requires_grad_(True)
            inputs.append(extra)
        d, _ = self._estimate(obs, extra, True, generator)
        gradient = torch.autograd.grad(d.sum(), inputs, create_graph=True)
        norm = (sum(g.square().sum(1) for g in gradient) + EPSILON).sqrt()
        return (norm - 1).square().mean()


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def build_signals(spec: BehaviourSpec, settings, policy, gamma: float) -> list[RewardSignal]:
    """The reward signals ``settings.reward_signals`` names, in value-head order; ``gamma`` is the extrinsic
    signal's discount where it names none. A signal whose networks cannot read the behaviour's observations
    (or whose demonstration does not match the behaviour) is a ``ValueError`` naming both."""
    continuous, branches = policy.continuous_size, policy.branches
    signals: list[RewardSignal] = []
    for key, signal in settings.reward_signals.named():
        try:
            if key == "extrinsic":
                signals.append(Extrinsic(signal, gamma if signal.gamma is None else signal.gamma))
            elif key == "curiosity":
                signals.append(Curiosity(spec, signal, settings.vis_encode_type, continuous, branches))
            elif key == "rnd":
                signals.append(RND(spec, signal, settings.vis_encode_type))
            else:
                signals.append(GAIL(spec, signal, settings.vis_encode_type, policy, continuous, branches))
        except ValueError as exc:
            raise ValueError(f"behaviour {spec.name!r}: reward signal {key!r}: {exc}") from None
    return signals


class BehaviouralCloning:
    """Trains the policy's actor towards a demonstration's actions, alongside RL (ML-Agents' BC module).

    Its own Adam on the policy's parameters (the critic receives no gradient from it) runs at
    ``strength * learning_rate``, decaying linearly to 1e-10 over ``steps`` agent steps when ``steps`` is
    set. Loss: squared error of a reparameterised sample against the demonstrated continuous actions,
    cross-entropy against the demonstrated discrete ones.
    """

    def __init__(self, spec: BehaviourSpec, settings: BehavioralCloningSettings, policy, learning_rate: float,
                 batch_size: int, num_epoch: int) -> None:
        self.settings = settings
        self.policy = policy
        self.demonstrations = LazyDemonstrations(settings.demo_path, policy, spec, "behavioral_cloning")
        self.learning_rate = learning_rate * settings.strength
        self.batch_size = settings.batch_size or batch_size
        self.num_epoch = settings.num_epoch or num_epoch
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=self.learning_rate)

    def current_learning_rate(self, steps: int) -> float:
        if not self.settings.steps:
            return self.learning_rate
        return 1e-10 + (self.learning_rate - 1e-10) * max(0.0, 1.0 - steps / self.settings.steps)

    def loss(self, rows: Transitions, generator: torch.Generator) -> torch.Tensor:
        # A recurrent policy reads each demonstrated decision from a fresh memory: demonstrations are not cut into
        # sequences here.
        policy = self.policy
        dist = policy.distribution(policy.features(rows.obs, policy.initial_state(len(rows.obs)))[0], None)
        gaussian = dist.gaussian if isinstance(dist, Hybrid) else dist if isinstance(dist, DiagGaussian) else None
        categorical = dist.categorical if isinstance(dist, Hybrid) else None if gaussian is not None else dist
        if isinstance(dist, Hybrid):
            continuous, discrete = dist.split(rows.actions)
        else:
            continuous = discrete = rows.actions
        loss = torch.zeros(())
        if gaussian is not None:
            sample = gaussian.mean + gaussian.log_std.exp() * torch.randn(gaussian.mean.shape, generator=generator)
            loss = loss + (sample - continuous).square().mean()
        if categorical is not None:  # cross-entropy per branch, averaged over branches
            loss = loss - categorical.log_prob(discrete).mean() / len(categorical.branches)
        return loss

    def update(self, steps: int, generator: torch.Generator) -> dict[str, float]:
        """``num_epoch`` passes over ``samples_per_update`` demonstration rows (all by default)."""
        lr = self.current_learning_rate(steps)
        if lr <= 1e-10:
            return {"Losses/Pretraining Loss": 0.0}
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        demonstrations = self.demonstrations.get()
        n = len(demonstrations)
        per_pass = min(n, self.settings.samples_per_update or n)
        losses = []
        for _ in range(self.num_epoch):
            order = torch.randperm(n, generator=generator)[:per_pass]
            for start in range(0, per_pass, self.batch_size):
                rows = demonstrations.rows(order[start : start + self.batch_size])
                loss = self.loss(rows, generator)
                _step(self.optimizer, loss)
                losses.append(loss.item())
        return {"Losses/Pretraining Loss": float(np.mean(losses)), "Policy/Pretraining Learning Rate": lr}



def signals_state(signals: Sequence[RewardSignal], cloning: BehaviouralCloning | None) -> dict:
    """The learned signals' networks and optimisers, and cloning's optimiser: what resuming them needs."""
    state = {signal.key: {"module": signal.state_dict(), "optimizer": signal.optimizer.state_dict()}
             for signal in signals}
    if cloning is not None:
        state["behavioral_cloning"] = {"optimizer": cloning.optimizer.state_dict()}
    return state


def load_signals_state(signals: Sequence[RewardSignal], cloning: BehaviouralCloning | None, state: dict) -> None:
    """Resume what :func:`signals_state` saved (a signal the checkpoint lacks starts afresh)."""
    for signal in signals:
        if signal.key in state:
            signal.load_state_dict(state[signal.key]["module"])
            signal.optimizer.load_state_dict(copy.deepcopy(state[signal.key]["optimizer"]))
    if cloning is not None and "behavioral_cloning" in state:
        cloning.optimizer.load_state_dict(copy.deepcopy(state["behavioral_cloning"]["optimizer"]))


def prepare_demonstrations(signals: Sequence[RewardSignal], cloning: BehaviouralCloning | None) -> None:
    """Read every demonstration the signals and cloning learn from, so a bad file fails before training starts."""
    for signal in signals:
        if isinstance(signal, GAIL):
            signal.demonstrations.get()
    if cloning is not None:
        cloning.demonstrations.get()
