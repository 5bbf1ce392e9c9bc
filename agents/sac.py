"""Soft Actor-Critic over the batched multi-agent env API, one policy per behaviour.

Continuous actions use a tanh-squashed Gaussian; discrete (and multi-branch
discrete) actions use the discrete variant (Christodoulou, 2019), where the
soft value and the policy loss are expectations over the action distribution
instead of samples. Both have twin Q critics with Polyak-averaged targets and a
temperature tuned towards a target entropy. The learning math is in
:meth:`BehaviourSAC.update`.

Each loss is written as the paper writes it and differentiated by autograd; the
actor's loss back-propagates through the critics into the action only (the critics'
own weight gradients are not computed for it).

With ``memory``, actor and critics each have an LSTM; every decision stores both states
it was taken from, and an update replays sequences of up to ``sequence_length``
consecutive decisions of one agent's episode, each from the states stored with its
first decision (as R2D2 and ML-Agents' SAC), the losses over every step of them.

Reward signals (``reward_signals``, see :mod:`~sparring.agents.reward_signals`) as ML-Agents' SAC has them:
both critics have one Q output per signal j, each learning its own soft target
``r_j + gamma_j * (1 - done * (not ignore_done_j)) * (min_i Q'_ij(s', a') - alpha * log pi(a'|s'))``, the critic
loss is the mean over the heads, and the actor maximises the mean of the heads' Q. A signal's reward is
computed when its transitions are sampled (strength applied; a learned signal's by its network as it is then),
and the learned signals take their own gradient steps, one minibatch from the replay buffer each, every
``reward_signal_steps_per_update`` agent steps. Behavioural cloning (``behavioral_cloning``) steps the actor
towards a demonstration after every SAC update.

Usage::

    from sparring.agents import SAC
    from sparring.envs.gymnasium import GymnasiumEnv

    model = SAC(GymnasiumEnv("Pendulum-v1"), seed=0, learning_rate=1e-3)
    model.learn(20_000)
    model.save("pendulum.pt")
    actions = SAC.load("pendulum.pt").predict(obs)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Literal

import numpy as np
import torch
from pydantic import ConfigDict, Field
from torch import nn
from torch.nn import functional as F

from sparring.agents.checkpoint import Checkpointed
from sparring.agents.episodes import BehaviourReport, EpisodeLog, UpdateReport
from sparring.agents.networks import ACTIVATIONS, MemorySettings, NetworkSettings, ObservationEncoder, ObservationReader
from sparring.agents.policy import MASKED_LOGIT, ObservingPolicy, check_finite, flat_obs
from sparring.agents.replay import Batch, OpenTransitions, ReplayBuffer
from sparring.agents.rollout import AgentMemory
from sparring.agents.reward_scaling import RewardScaler
from sparring.agents.reward_signals import (
    BehaviouralCloning,
    SignalSettings,
    Transitions,
    build_signals,
    load_signals_state,
    prepare_demonstrations,
    signals_state,
)
from sparring.envs.base import BehaviourStep, DecisionSteps, random_actions
from sparring.spec import BehaviourSpec, Obs

RECORDED_OBS = 256  # raw observations saved with checkpoints for export verification
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # as Stable-Baselines3 and ML-Agents
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_LOG_2 = math.log(2.0)


class SACSettings(NetworkSettings, SignalSettings):
    """SAC hyperparameters; names follow ML-Agents' SAC section where the meaning matches."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(3e-4, gt=0, description="Adam step size of actor, critics and temperature.")
    lr_schedule: Literal["constant", "linear"] = Field(
        "constant", description="'linear' decays the learning rate to 0 at total_steps (ML-Agents' learning_rate_schedule)."
    )
    buffer_size: int = Field(1_000_000, ge=1, description="Transitions the replay buffer holds per behaviour.")
    batch_size: int = Field(256, ge=1, description="Transitions per gradient step.")
    buffer_init_steps: int = Field(
        100, ge=0, description="Agent steps taken with uniformly random actions, and collected, before the first update."
    )
    steps_per_update: float = Field(
        1.0, gt=0, description="Agent steps per gradient step (the inverse of the update-to-data ratio)."
    )
    reward_signal_steps_per_update: float | None = Field(
        None, gt=0,
        description="Agent steps per gradient step of each learned reward signal (curiosity, RND, GAIL); None: "
                    "steps_per_update.",
    )
    tau: float = Field(0.005, gt=0, le=1, description="Polyak step of the target critics towards the critics.")
    gamma: float = Field(0.99, ge=0, le=1, description="Discount per decision (of the game's reward; see reward_signals).")
    init_entcoef: float = Field(1.0, gt=0, description="Initial entropy coefficient (temperature alpha).")
    learn_entcoef: bool = Field(True, description="Tune the temperature towards target_entropy; False keeps init_entcoef.")
    target_entropy: float | None = Field(
        None,
        description=(
            "Entropy the temperature steers towards. None: -(action dimensions) for continuous actions; "
            "0.6 * sum(log branch size) for discrete ones."
        ),
    )
    save_replay_buffer: bool = Field(False, description="Keep the replay buffer in checkpoints, so --resume continues with it.")
    normalize_obs: bool = Field(False, description="Running mean/std observation normalisation (exported too).")
    normalize_reward: bool = Field(
        False,
        description=(
            "Divide sampled rewards by the running std of the discounted return, clipped to +-10 (Stable-Baselines3's "
            "VecNormalize norm_reward); the statistics are saved with checkpoints."
        ),
    )
    hidden_sizes: list[int] = Field(
        [256, 256], min_length=1,
        description="Hidden layer widths of actor and critics; the first is also each image's and entity list's encoding width.",
    )
    activation: Literal["relu", "tanh", "swish"] = "relu"


DISCRETE_TARGET_ENTROPY_SCALE = 0.6
"""Default discrete target entropy as a fraction of the uniform policy's; see ``SACSettings.target_entropy``."""


def override_settings(base: SACSettings, overrides: Mapping[str, object]) -> SACSettings:
    """``base`` updated by one behaviour's ``overrides`` (pydantic's ValidationError for a bad key or value)."""
    return SACSettings(**{**base.model_dump(), **overrides})


# -- networks -------------------------------------------------------------------


class SACActor(ObservingPolicy):
    """The policy of one behaviour: an MLP to a squashed Gaussian (Box) or masked categorical branches.

    :meth:`forward` is the deterministic policy a game runs: ``tanh(mean)`` scaled
    to the action Box, or the logits; the exporter builds its graphs from
    :meth:`export_heads` and :meth:`squash` (plain ``nn.Linear`` layers, exported as
    Gemm operators). Training differentiates :meth:`heads` over :meth:`core`'s features.

    Args:
        spec: the behaviour this policy acts for.
        hidden_sizes: hidden layer widths; the first is also each image's and entity list's encoding width.
        activation: ``"relu"``, ``"tanh"`` or ``"swish"``.
        normalize: keep running statistics of the vector observations and normalise them.
        vis_encode_type: the CNN for images (see :func:`~sparring.agents.networks.observation_layout`).
        memory: an LSTM between the encoder and the MLP; then every method that reads observations takes the
            agents' recurrent ``state`` too (see BehaviourPolicy).
    """

    def __init__(self, spec: BehaviourSpec, hidden_sizes: list[int], activation: str, normalize: bool,
                 vis_encode_type: str = "auto", memory: MemorySettings | None = None) -> None:
        if spec.is_hybrid:
            raise ValueError(f"behaviour {spec.name!r}: SAC does not train hybrid (continuous + discrete) actions yet; "
                             "use algorithm ppo")
        super().__init__(spec, hidden_sizes[0], normalize, vis_encode_type, memory)
        self.continuous = spec.is_continuous
        self.branches = spec.action_branches
        self.activation = activation
        self._act = ACTIVATIONS[activation]
        sizes = [self.features_size, *hidden_sizes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        if self.continuous:
            box = spec.action_space
            self.action_size = int(np.prod(box.shape))
            low, high = (np.asarray(v, np.float64).reshape(-1) for v in (box.low, box.high))
            bounded = np.isfinite(low) & np.isfinite(high)  # an unbounded dimension acts in [-1, 1]
            low, high = np.where(bounded, low, -1.0), np.where(bounded, high, 1.0)
            self.register_buffer("action_scale", torch.tensor((high - low) / 2, dtype=torch.float32))
            self.register_buffer("action_offset", torch.tensor((high + low) / 2, dtype=torch.float32))
            self.head = nn.Linear(sizes[-1], 2 * self.action_size)  # mean, log std
        else:
            self.action_size = len(self.branches)
            self.head = nn.Linear(sizes[-1], sum(self.branches))
        self.continuous_size = self.action_size if self.continuous else 0  # as BehaviourPolicy, for the exporter

    def heads(self, h: torch.Tensor) -> torch.Tensor:
        """The head's raw output from the MLP's input ``h``: means then unclamped log-stds, or the logits."""
        for layer in self.layers:
            h = self._act(F.linear(h, layer.weight, layer.bias))
        return F.linear(h, self.head.weight, self.head.bias)

    def export_heads(self, h: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """``(mean, log_std, logits)`` from the MLP's input ``h`` (:meth:`core`'s output): the Gaussian before
        the squash, or the logits (None: absent)."""
        out = self.heads(h)
        if not self.continuous:
            return None, None, out
        return out[:, : self.action_size], out[:, self.action_size :].clamp(LOG_STD_MIN, LOG_STD_MAX), None

    def squash(self, u: torch.Tensor) -> torch.Tensor:
        """A Gaussian sample (or mean) -> the action in the env's units: ``tanh`` scaled to the Box."""
        return torch.tanh(u) * self.action_scale + self.action_offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic action in the env's units (Box), or the logits (discrete), for normalised ``x``."""
        mean, _, logits = self.export_heads(self.core(x)[0])
        return logits if mean is None else self.squash(mean)

    def log_probs(self, logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Per-branch log-probabilities over masked logits, branches concatenated like the logits."""
        if mask is not None:
            logits = logits.masked_fill(~mask, MASKED_LOGIT)
        if len(self.branches) == 1:
            return torch.log_softmax(logits, -1)
        return torch.cat([torch.log_softmax(part, -1) for part in torch.split(logits, self.branches, -1)], -1)

    @torch.no_grad()
    def act(self, x: torch.Tensor, mask: torch.Tensor | None, generator: torch.Generator | None,
            state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Actions in the policy's own units (squashed to [-1, 1], or indices), sampled unless ``generator`` is
        None, and the memory's next state."""
        h, state = self.core(x, state)
        return self._choose(self.heads(h), mask, generator), state

    def _choose(self, out: torch.Tensor, mask: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
        if self.continuous:
            mean = out[:, : self.action_size]
            if generator is None:
                return torch.tanh(mean)
            log_std = out[:, self.action_size :].clamp(LOG_STD_MIN, LOG_STD_MAX)
            noise = torch.randn(mean.shape, generator=generator)
            return torch.tanh(torch.addcmul(mean, log_std.exp(), noise))
        log_p = self.log_probs(out, mask)
        picks = []
        for part in torch.split(log_p, self.branches, -1) if len(self.branches) > 1 else (log_p,):
            if generator is None:
                picks.append(part.argmax(-1))
            else:  # Gumbel-max: one uniform draw per logit from the seeded generator
                gumbel = -torch.log(-torch.log(torch.rand(part.shape, generator=generator).clamp_min(1e-20)))
                picks.append(torch.argmax(part + gumbel, -1))
        return picks[0] if len(picks) == 1 else torch.stack(picks, -1)

    def env_actions(self, action: torch.Tensor | np.ndarray) -> np.ndarray:
        """Policy-unit actions -> what the env accepts."""
        action = torch.as_tensor(action)
        if not self.continuous:
            return action.numpy()
        scaled = (action * self.action_scale + self.action_offset).numpy()
        box = self.spec.action_space
        return np.clip(scaled.reshape(len(action), *box.shape), box.low, box.high).astype(np.float32, copy=False)

    def policy_actions(self, env_actions: np.ndarray) -> np.ndarray:
        """Env actions -> policy units (the inverse of :meth:`env_actions` inside the Box)."""
        if not self.continuous:
            return env_actions
        flat = env_actions.reshape(len(env_actions), -1)
        return ((flat - self.action_offset.numpy()) / self.action_scale.numpy()).astype(np.float32)


class TwinCritic(ObservationReader):
    """Two Q networks of the same shape over one observation encoder (and memory); ``forward(x, actions)`` gives
    ``(q1, q2)``.

    The encoder is the critics' own (as Stable-Baselines3's off-policy critics): the actor's
    loss does not move it. So is their memory, when the actor has one: a Q value depends on what
    was seen before as much as the policy does. Each net has one output per reward signal (its heads); for
    discrete actions, per signal one value per action, branches concatenated, and ``actions`` is None.
    Initialised as ``nn.Linear`` (as Stable-Baselines3's critics).
    """

    def __init__(self, encoder: ObservationEncoder, action_size: int, out_size: int, hidden_sizes: list[int],
                 activation: str, memory: MemorySettings | None = None) -> None:
        super().__init__(encoder, memory)
        sizes = [self.features_size + action_size, *hidden_sizes, out_size]
        self.nets = nn.ModuleList(
            nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])) for _ in range(2)
        )
        self._act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor, actions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q(self.core(x)[0], actions)

    def q(self, features: torch.Tensor, actions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q1, q2)`` from observation features (:meth:`core`'s) and, for continuous actions, the actions."""
        inp = features if actions is None else torch.cat([features, actions], 1)
        values = []
        for net in self.nets:
            x = inp
            for layer in net[:-1]:
                x = self._act(F.linear(x, layer.weight, layer.bias))
            values.append(F.linear(x, net[-1].weight, net[-1].bias))
        return values[0], values[1]


# -- one behaviour ------------------------------------------------------------------


class _Observed:
    """How one update reads its rows' states and next states: through each network's encoder, or, with memory,
    through each network's memory along the rows' sequences, from the states stored with their first steps.

    The critics are read again after their own step (the actor's loss is against the updated critics), so
    features are computed when asked for, per network.
    """

    def __init__(self, actor: SACActor, batch: Batch) -> None:
        self.sequences = batch.sequences
        if self.sequences is None:
            self.x, self.x_next = actor.normalize(batch.obs), actor.normalize(batch.next_obs)
        else:
            obs = self.sequences.obs
            self.x_sequences = actor.normalize(obs.reshape(-1, obs.shape[-1])).reshape(obs.shape)
        self._actor = actor

    def actor(self, after: bool = False) -> torch.Tensor:
        """The actor's features of each row's state (``after``: of the state that followed it)."""
        return self._read(self._actor, after, None if self.sequences is None else self.sequences.actor_memory)

    def critic(self, critic: TwinCritic, after: bool = False) -> torch.Tensor:
        """The critics' (or their targets') features of each row's state, or of the state that followed it."""
        return self._read(critic, after, None if self.sequences is None else self.sequences.critic_memory)

    def _read(self, net: SACActor | TwinCritic, after: bool, state: torch.Tensor | None) -> torch.Tensor:
        if self.sequences is None:
            return net.core(self.x_next if after else self.x)[0]
        out = net.core_sequences(self.x_sequences, state)  # (sequences, length + 1, features)
        return (out[:, 1:] if after else out[:, :-1])[self.sequences.valid]


class SACCloning(BehaviouralCloning):
    """Behavioural cloning of SAC's actor: ML-Agents' BC loss on the squashed Gaussian or the categorical branches.

    Continuous: squared error of a reparameterised squashed sample ``tanh(mean + std * noise)`` against the
    demonstrated action in the actor's units ([-1, 1], :meth:`SACActor.policy_actions`), as ML-Agents compares
    the policy's sampled (squashed) actions. Discrete: cross-entropy of each branch against the demonstrated
    index, averaged over branches. A recurrent actor reads each demonstrated decision from a fresh memory.
    Everything else (demonstrations, learning rate and its decay, passes and batches) is
    :class:`~sparring.agents.reward_signals.BehaviouralCloning`'s.
    """

    NUM_EPOCH = 3
    """Passes over the demonstration per update where ``behavioral_cloning.num_epoch`` is unset (ML-Agents'
    ``default_num_epoch``, for every trainer)."""

    def loss(self, rows: Transitions, generator: torch.Generator) -> torch.Tensor:
        actor: SACActor = self.policy
        out = actor.heads(actor.core(rows.obs)[0])
        n = len(out)
        if actor.continuous:
            mean, log_std = out[:, : actor.action_size], out[:, actor.action_size :].clamp(LOG_STD_MIN, LOG_STD_MAX)
            sample = torch.tanh(mean + log_std.exp() * torch.randn(mean.shape, generator=generator))
            return (sample - rows.actions.reshape(n, -1)).square().mean()
        log_p = actor.log_probs(out, None)
        offsets = torch.tensor(np.cumsum((0, *actor.branches[:-1])))
        return -log_p.gather(1, rows.actions.reshape(n, -1).long() + offsets).mean()


class BehaviourSAC:
    """Actor, twin critics and their targets, temperature, replay buffer and open transitions of one behaviour."""

    def __init__(self, spec: BehaviourSpec, settings: SACSettings) -> None:
        self.spec = spec
        self.settings = settings
        s = settings
        self.actor = SACActor(spec, s.hidden_sizes, s.activation, s.normalize_obs, s.vis_encode_type, s.memory)
        actor = self.actor
        critic_encoder = ObservationEncoder(actor.layout, spec.observation_components, s.vis_encode_type,
                                            s.hidden_sizes[0])
        heads = len(s.signal_names())  # one Q output per reward signal, in the order build_signals gives them
        critic_out = heads * (1 if actor.continuous else sum(actor.branches))
        self.critic = TwinCritic(critic_encoder, actor.action_size if actor.continuous else 0, critic_out,
                                 s.hidden_sizes, s.activation, s.memory)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        # The signals' networks are drawn after the policy's, which are drawn as without signals.
        self.signals = build_signals(spec, s, actor, s.gamma)
        self.learned_signals = [signal for signal in self.signals if signal.key != "extrinsic"]
        self.gammas = torch.tensor([signal.gamma for signal in self.signals], dtype=torch.float32)
        self.ignore_done = torch.tensor([signal.ignore_done for signal in self.signals])
        self.cloning = None if s.behavioral_cloning is None else SACCloning(
            spec, s.behavioral_cloning, actor, s.learning_rate, s.batch_size, SACCloning.NUM_EPOCH)
        self.log_alpha = nn.Parameter(torch.full((1,), math.log(s.init_entcoef)))
        if s.target_entropy is not None:
            self.target_entropy = s.target_entropy
        elif actor.continuous:
            self.target_entropy = -float(actor.action_size)
        else:
            self.target_entropy = DISCRETE_TARGET_ENTROPY_SCALE * float(sum(math.log(n) for n in actor.branches))
        self.actor_optimizer = torch.optim.Adam(actor.parameters(), lr=s.learning_rate, fused=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=s.learning_rate, fused=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=s.learning_rate, fused=True)
        self._actor_params = list(actor.parameters())
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.target.parameters())
        if actor.continuous:
            action_shape, action_dtype = (actor.action_size,), np.float32
        else:
            action_shape, action_dtype = (() if len(actor.branches) == 1 else (len(actor.branches),)), np.int64
        memory = actor.memory_size
        self.replay = ReplayBuffer(s.buffer_size, actor.obs_size, action_shape, action_dtype, spec.mask_size, memory)
        self.transitions = OpenTransitions(actor.obs_size, action_shape, action_dtype, spec.mask_size, memory)
        # each agent's states between decisions: the actor's, and the critics' (stored to start replayed sequences)
        self.memories = (AgentMemory(memory), AgentMemory(memory)) if memory else None
        self.steps = 0  # decisions taken
        self.masked = False  # whether the game ever forbade an action: an export for an engine without masks is refused
        self.num_updates = 0
        self.update_credit = 0.0  # gradient steps owed (steps_per_update)
        self.signal_steps_per_update = s.reward_signal_steps_per_update or s.steps_per_update
        self.signal_credit = 0.0  # gradient steps owed to each learned reward signal
        self.signal_updates = 0
        self._signal_stats: dict[str, float] = {}  # the last signal and cloning updates' metrics, for report()
        self.episodes = EpisodeLog()
        self.reward_scaler = RewardScaler(s.gamma) if s.normalize_reward else None
        self._decision_obs = np.zeros((0, actor.obs_size), np.float32)
        self._last: tuple[torch.Tensor, ...] | None = None  # the last update's loss terms, for report()

    # -- acting -----------------------------------------------------------------

    def observe(self, step: BehaviourStep) -> None:
        """Close transitions with what followed them: terminals, lost agents, and agents deciding again."""
        terminals, open_ = step.terminals, self.transitions
        if len(terminals):
            slots = open_.slots_of(terminals.agent_ids)
            final = self._flat(terminals.obs)
            # A terminated episode has no future value; a truncated one bootstraps from its final observation.
            open_.close(slots, terminals.total_rewards, final, terminals.truncated.astype(np.float32), None, self.replay)
            self.episodes.add(open_.end_episodes(slots), terminals.truncated)
            self._forget(terminals.agent_ids)
        if len(step.lost):
            open_.drop(open_.slots_of(step.lost))
            self._forget(step.lost)
        decisions = step.decisions
        if len(decisions):
            self._decision_obs = self._flat(decisions.obs)
            open_.close(open_.slots_of(decisions.agent_ids), decisions.total_rewards, self._decision_obs,
                        np.ones(len(decisions), np.float32), decisions.action_mask, self.replay)
        if self.reward_scaler is not None:
            self.reward_scaler.observe_step(step, open_.slots_of)

    def _forget(self, agent_ids: np.ndarray) -> None:
        if self.memories is not None:
            for memory in self.memories:
                memory.forget(agent_ids)

    def _flat(self, obs: Obs) -> np.ndarray:
        """Flat float32 observations; a NaN or infinite one is refused (it would poison replay)."""
        flat = flat_obs(obs, self.actor.obs_keys)
        check_finite(flat, self.spec.name)
        return flat

    @torch.no_grad()
    def act(self, decisions: DecisionSteps, generator: torch.Generator, rng: np.random.Generator) -> np.ndarray:
        """Actions for the agents just observed deciding (random during ``buffer_init_steps``); opens their transitions."""
        raw, n = self._decision_obs, len(decisions)
        self.masked = self.masked or (decisions.action_mask is not None and not decisions.action_mask.all())
        x = torch.from_numpy(raw)
        if self.actor.normalizer is not None:
            self.actor.normalizer.update(x)
        s = self.settings
        ids, x = decisions.agent_ids, self.actor.normalize(x)
        states = None if self.memories is None else tuple(torch.from_numpy(m.get(ids)) for m in self.memories)
        if self.steps < s.buffer_init_steps:
            env_actions = random_actions(self.spec, n, decisions.action_mask, rng)
            actions = self.actor.policy_actions(env_actions)
            actor_state = None if states is None else self.actor.core(x, states[0])[1]
        else:
            mask = None if decisions.action_mask is None else torch.from_numpy(decisions.action_mask)
            actions, actor_state = self.actor.act(x, mask, generator, None if states is None else states[0])
            actions = actions.numpy()
            env_actions = self.actor.env_actions(actions)
        memories = None
        if states is not None:  # both memories step through every decision, random ones included
            _, critic_state = self.critic.core(x, states[1])
            memories = (states[0].numpy(), states[1].numpy())
            self.memories[0].set(ids, actor_state.numpy())
            self.memories[1].set(ids, critic_state.numpy())
        self.transitions.start(self.transitions.slots_of(ids), raw, actions, decisions.action_mask, memories)
        learning = max(0, self.steps + n - max(self.steps, s.buffer_init_steps))
        self.update_credit += learning / s.steps_per_update
        if self.learned_signals:
            self.signal_credit += learning / self.signal_steps_per_update
        self.steps += n
        return env_actions

    # -- learning ---------------------------------------------------------------

    def train(self, progress: float, generator: torch.Generator, rng: np.random.Generator) -> None:
        """Take the gradient steps owed, once the buffer holds enough to learn from: SAC's (each followed by
        behavioural cloning's), then the learned reward signals', each on a minibatch of its own, as ML-Agents'
        SAC trainer orders them."""
        s = self.settings
        if self.update_credit < 1 and self.signal_credit < 1:
            return
        if self.replay.size < max(1, min(s.batch_size, s.buffer_init_steps)):
            # (after resuming without the buffer) wait for data, owe nothing meanwhile
            self.update_credit = self.signal_credit = 0.0
            return
        if s.lr_schedule == "linear":
            lr = s.learning_rate * max(0.0, 1.0 - progress)
            for opt in (self.actor_optimizer, self.critic_optimizer, self.alpha_optimizer):
                for group in opt.param_groups:
                    group["lr"] = lr
        while self.update_credit >= 1:
            batch = self._sample(rng)
            if self.reward_scaler is not None:  # replay keeps raw rewards; they are scaled as they are used
                batch.rewards = torch.from_numpy(self.reward_scaler(batch.rewards.numpy()))
            self.update(batch, generator)
            if self.cloning is not None:
                self._signal_stats |= self.cloning.update(self.steps, generator)
            self.update_credit -= 1
        while self.signal_credit >= 1:
            for signal in self.learned_signals:
                self._signal_stats |= signal.update(self._transitions(self._sample(rng)), generator)
            self.signal_updates += 1
            self.signal_credit -= 1

    def _sample(self, rng: np.random.Generator) -> Batch:
        """A minibatch from replay: ``batch_size`` transitions, or with memory about as many decisions in
        sequences that end at uniformly drawn transitions."""
        s = self.settings
        if s.memory is None:
            return self.replay.sample(s.batch_size, rng)
        length = s.memory.sequence_length
        return self.replay.sample_sequences(max(1, s.batch_size // length), length, rng)

    def _transitions(self, batch: Batch) -> Transitions:
        """Sampled rows as reward signals read them: normalised as the actor normalises now, and ended where the
        episode terminated (ML-Agents' SAC replay clears ``done`` where an episode was cut by its step limit)."""
        actor = self.actor
        return Transitions(actor.normalize(batch.obs), batch.actions, actor.normalize(batch.next_obs),
                           1.0 - batch.continues)

    def _signal_rewards(self, batch: Batch) -> torch.Tensor:
        """Each signal's reward for the batch's rows, ``(rows, signals)``, strength applied: the game's (scaled)
        reward, and the learned signals' from their networks as they are now."""
        rows = self._transitions(batch) if self.learned_signals else None
        return torch.stack([batch.rewards * signal.strength if signal.key == "extrinsic" else signal.rewards(rows)
                            for signal in self.signals], 1)

    def update(self, batch: Batch, generator: torch.Generator) -> None:
        """One gradient step of critics, actor and temperature, then the targets' Polyak step.

        Each reward signal j has a head in both critics (i = 1, 2) and its own soft target
        y_j = r_j + gamma_j * c_j * (min_i Q'_ij(s', a') - alpha * log pi(a'|s')), where c_j is 0 after a
        terminated episode unless signal j ignores episode ends (curiosity, RND). Critic loss
        0.5 * sum_i mean_j mean((Q_ij(s, a) - y_j)^2), the heads averaged as ML-Agents does; then the
        actor loss mean(alpha * log pi(a~|s) - mean_j min_i Q_ij(s, a~)); then the temperature loss
        -log alpha * mean(log pi + target entropy). alpha is the temperature before its own
        step throughout, as in Stable-Baselines3.
        """
        observed = _Observed(self.actor, batch)
        alpha = self.log_alpha.detach().exp()
        rewards = self._signal_rewards(batch)  # (rows, signals)
        continues = torch.where(self.ignore_done, 1.0, batch.continues[:, None])
        if self.actor.continuous:
            self._update_continuous(batch, observed, alpha, rewards, continues, generator)
        else:
            self._update_discrete(batch, observed, alpha, rewards, continues)
        with torch.no_grad():
            torch._foreach_lerp_(self._target_params, self._critic_params, self.settings.tau)
        self.num_updates += 1

    def _squashed_sample(self, h: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The reparameterised tanh-squashed Gaussian action u = mean + std * noise, a = tanh(u), for each row of
        the actor's features ``h``, and its log-probability log pi(a) = log N(u) - sum log(1 - tanh(u)^2), the
        last term written 2 (log 2 - u - softplus(-2u)) for stability."""
        out = self.actor.heads(h)
        dims = self.actor.action_size
        mean, log_std = out[:, :dims], out[:, dims:].clamp(LOG_STD_MIN, LOG_STD_MAX)
        u = mean + log_std.exp() * noise
        log_prob = (-0.5 * noise.square() - log_std - _LOG_SQRT_2PI - 2 * (_LOG_2 - u - F.softplus(-2 * u))).sum(1)
        return torch.tanh(u), log_prob

    def _step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list[torch.Tensor]) -> None:
        """Minimise ``loss`` over ``params`` only: gradients flow through other modules without accumulating there."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=params)
        optimizer.step()

    def _update_continuous(
        self, batch: Batch, observed: _Observed, alpha: torch.Tensor, rewards: torch.Tensor, continues: torch.Tensor,
        generator: torch.Generator,
    ) -> None:
        s, n = self.settings, len(batch.rewards)
        noise = torch.randn((2 * n, self.actor.action_size), generator=generator)  # rows: the actor's, the target's
        with torch.no_grad():  # Q values are (rows, signals)
            a_next, log_prob_next = self._squashed_sample(observed.actor(after=True), noise[n:])
            q1_next, q2_next = self.target.q(observed.critic(self.target, after=True), a_next)
            soft_value = torch.min(q1_next, q2_next) - alpha * log_prob_next[:, None]
            target = rewards + self.gammas * continues * soft_value
        q1, q2 = self.critic.q(observed.critic(self.critic), batch.actions)
        err1, err2 = q1 - target, q2 - target
        self._step(self.critic_optimizer, 0.5 * (err1.square().mean() + err2.square().mean()), self._critic_params)

        a, log_prob = self._squashed_sample(observed.actor(), noise[:n])  # against the updated critics
        q_pi = torch.min(*self.critic.q(observed.critic(self.critic), a)).mean(1)
        policy_loss = alpha * log_prob - q_pi
        self._step(self.actor_optimizer, policy_loss.mean(), self._actor_params)

        log_prob = log_prob.detach()
        if s.learn_entcoef:
            self._step(self.alpha_optimizer, -(self.log_alpha * (log_prob.mean() + self.target_entropy)).sum(),
                       [self.log_alpha])
        self._last = (err1.detach(), err2.detach(), policy_loss.detach(), -log_prob, alpha,
                      torch.min(q1, q2).detach(), rewards)

    def _update_discrete(self, batch: Batch, observed: _Observed, alpha: torch.Tensor, rewards: torch.Tensor,
                         continues: torch.Tensor) -> None:
        s, actor = self.settings, self.actor
        n, n_branches, heads = len(batch.rewards), len(actor.branches), len(self.signals)
        # Expectations over actions replace samples. With several branches the policy factorises and
        # Q(s, a) = mean over branches of Q_b(s, a_b) (as ML-Agents), so E_pi[Q] is the branch mean of E_pi_b[Q_b].
        # Q values are (rows, signals, actions of every branch).
        with torch.no_grad():
            log_p_next = actor.log_probs(actor.heads(observed.actor(after=True)), batch.next_masks)[:, None]
            q1_next, q2_next = (q.view(n, heads, -1) for q in self.target.q(observed.critic(self.target, after=True)))
            soft_value = (log_p_next.exp() * (torch.min(q1_next, q2_next) / n_branches - alpha * log_p_next)).sum(2)
            target = rewards + self.gammas * continues * soft_value
        q1, q2 = (q.view(n, heads, -1) for q in self.critic.q(observed.critic(self.critic)))
        offsets = torch.tensor(np.cumsum((0, *actor.branches[:-1])))
        columns = (batch.actions.reshape(n, n_branches) + offsets)[:, None].expand(n, heads, n_branches)
        err1 = q1.gather(2, columns).mean(2) - target
        err2 = q2.gather(2, columns).mean(2) - target
        q_min = torch.min(q1, q2).detach()  # this update's critic pass, before the critics' step
        self._step(self.critic_optimizer, 0.5 * (err1.square().mean() + err2.square().mean()), self._critic_params)

        log_p = actor.log_probs(actor.heads(observed.actor()), batch.masks)
        p = log_p.exp()
        policy_loss = (p * (alpha * log_p - q_min.mean(1) / n_branches)).sum(1)
        self._step(self.actor_optimizer, policy_loss.mean(), self._actor_params)

        entropy = -(p * log_p).sum(1).detach()
        if s.learn_entcoef:
            self._step(self.alpha_optimizer, (self.log_alpha * (entropy.mean() - self.target_entropy)).sum(),
                       [self.log_alpha])
        self._last = (err1.detach(), err2.detach(), policy_loss.detach(), entropy, alpha,
                      (p.detach()[:, None] * q_min).sum(2) / n_branches, rewards)

    # -- reporting and persistence ------------------------------------------------------

    def report(self) -> BehaviourReport:
        """Episodes finished since the last report, the last update's losses, and per reward signal its value
        estimate and (a learned one's) reward on that update's minibatch (strength applied) and last losses."""
        report = self.episodes.pop()
        if self._last is not None:
            err1, err2, policy_loss, entropy, alpha, values, rewards = self._last
            q1_loss, q2_loss, policy, ent, coef, *estimates = torch.cat([torch.stack([
                0.5 * err1.square().mean(), 0.5 * err2.square().mean(), policy_loss.mean(), entropy.mean(),
                alpha.squeeze()]), values.mean(0), rewards.mean(0)]).tolist()
            kind = "Continuous" if self.actor.continuous else "Discrete"
            report.stats = {
                "Losses/Policy Loss": policy,
                "Losses/Q1 Loss": q1_loss,
                "Losses/Q2 Loss": q2_loss,
                "Policy/Entropy": ent,
                f"Policy/{kind} Entropy Coeff": coef,
                "Policy/Learning Rate": self.critic_optimizer.param_groups[0]["lr"],
            }
            heads = len(self.signals)
            for signal, value, reward in zip(self.signals, estimates[:heads], estimates[heads:]):
                report.stats[f"Policy/{signal.name} Value Estimate"] = value
                if signal.key != "extrinsic":
                    report.stats[f"Policy/{signal.name} Reward"] = reward
            if self.reward_scaler is not None:
                report.stats["Policy/Reward Scale"] = self.reward_scaler.scale
            self._last = None
        report.stats |= self._signal_stats
        self._signal_stats = {}
        return report

    @property
    def recorded_obs(self) -> torch.Tensor:
        """Real raw observations (the newest in the replay buffer), to verify exports against."""
        return torch.from_numpy(self.replay.latest_obs(RECORDED_OBS).copy())

    def state_dict(self, with_replay: bool) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target": self.target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "optimizers": [opt.state_dict() for opt in (self.actor_optimizer, self.critic_optimizer, self.alpha_optimizer)],
            "steps": self.steps,
            "num_updates": self.num_updates,
            "update_credit": self.update_credit,
            "signal_credit": self.signal_credit,
            "signal_updates": self.signal_updates,
            "recorded_obs": self.recorded_obs,
            "masked": self.masked,
            "replay": self.replay.state_dict() if with_replay else None,
            "reward_scaler": None if self.reward_scaler is None else self.reward_scaler.state_dict(),
            "signals": signals_state(self.learned_signals, self.cloning),
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target.load_state_dict(state["target"])
        self.log_alpha.data.copy_(state["log_alpha"])
        for opt, saved in zip((self.actor_optimizer, self.critic_optimizer, self.alpha_optimizer), state["optimizers"]):
            opt.load_state_dict(copy.deepcopy(saved))  # torch's optimizer would otherwise share tensors with ``state``
        self.steps, self.num_updates, self.update_credit = state["steps"], state["num_updates"], state["update_credit"]
        self.masked = state.get("masked", False)  # checkpoints from before it was kept: not known to be masked
        if state["replay"] is not None:
            self.replay.load_state_dict(state["replay"])
        if self.reward_scaler is not None and state["reward_scaler"] is not None:
            self.reward_scaler.load_state_dict(state["reward_scaler"])
        # checkpoints from before reward signals have none of these
        self.signal_credit, self.signal_updates = state.get("signal_credit", 0.0), state.get("signal_updates", 0)
        load_signals_state(self.learned_signals, self.cloning, state.get("signals", {}))

    def prepare(self) -> None:
        """Before training: read the demonstrations GAIL and behavioural cloning learn from (a file that does not
        match the behaviour is an error now, not after the buffer fills). A model only loaded to predict or export
        never reads them."""
        prepare_demonstrations(self.learned_signals, self.cloning)


# -- the trainer ---------------------------------------------------------------------


class SAC(Checkpointed):
    """Soft Actor-Critic for every behaviour of a :class:`MultiAgentEnv`, one policy per behaviour;
    arguments as :class:`Checkpointed`, settings :class:`SACSettings`."""

    algorithm = "sac"
    settings_type = SACSettings
    override_settings = staticmethod(override_settings)
    learner_type = BehaviourSAC

    @cached_property
    def rng(self) -> np.random.Generator:
        """Draws replay batches and warm-up actions; seeded like the torch generator."""
        return np.random.default_rng(self.seed)

    @property
    def policies(self) -> dict[str, SACActor]:
        return {name: learner.actor for name, learner in self.learners.items()}

    @property
    def num_updates(self) -> int:
        """Gradient steps taken, over all behaviours."""
        return sum(learner.num_updates for learner in self.learners.values())

    def learn(self, total_steps: int, callback: Callable[[SAC, UpdateReport], None] | None = None) -> SAC:
        """Train until ``total_steps`` agent decisions have been taken (counting any resumed ones).

        ``callback`` is called after every env step, with the episodes that ended in it.
        """
        env = self._env_to_learn_in()
        self.total_steps = total_steps
        learners = self.learners.items()
        for learner in self.learners.values():
            learner.prepare()
        if self._current is None:
            # A resumed run restarts its episodes from a seed derived from its position, so it stays reproducible.
            self._current = env.reset(seed=self.seed + self.num_steps)
            self._observe(self._current)
        while self.num_steps < total_steps:
            progress = self.num_steps / total_steps
            actions = {}
            for name, learner in learners:
                learner.train(progress, self.generator, self.rng)
                decisions = self._current[name].decisions
                if len(decisions):
                    actions[name] = learner.act(decisions, self.generator, self.rng)
                    self.num_steps += len(decisions)
            self._current = env.step(actions)
            self._observe(self._current)
            if callback is not None:
                callback(self, UpdateReport(self.num_steps, {name: learner.report() for name, learner in learners}))
        return self

    @torch.no_grad()
    def predict(
        self, obs: Obs, behaviour: str | None = None, action_mask: np.ndarray | None = None, deterministic: bool = True,
        agent_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """Batched actions for ``obs`` in the env's action format (``behaviour`` may be omitted if there is one).

        A recurrent policy needs ``agent_ids``: each agent's memory carries over to its next call until
        :meth:`reset_memory` forgets it.
        """
        name = self._behaviour(behaviour)
        actor = self.learners[name].actor
        x = actor.normalize(actor.flatten_obs(obs))
        mask = None if action_mask is None else torch.from_numpy(np.asarray(action_mask, bool))
        state = self._recalled(name, actor.memory_size, agent_ids)
        actions, state = actor.act(x, mask, None if deterministic else self.generator, state)
        self._remember(name, agent_ids, state)
        return actor.env_actions(actions)

    # -- persistence ----------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue this run (with the replay buffers where ``save_replay_buffer``)."""
        return {
            **super().state_dict(),
            "rng": self.rng.bit_generator.state,
            "learners": {name: l.state_dict(l.settings.save_replay_buffer) for name, l in self.learners.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for name, learner in self.learners.items():
            learner.load_state_dict(state["learners"][name])
        self.rng.bit_generator.state = state["rng"]
