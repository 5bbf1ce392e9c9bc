"""Proximal Policy Optimization over the batched multi-agent env API, one policy per behaviour.

The learning math lives in :meth:`BehaviourLearner.update` (clipped surrogate,
optionally clipped value loss, entropy bonus, one gradient clip) and
:meth:`RolloutBuffer.finish` (GAE), with the diagnostics that tell whether
learning is healthy: approximate KL, clip fraction, explained variance.

With ``memory`` (an LSTM policy), each agent's rows are cut into sequences of
``sequence_length`` decisions within its episodes (:meth:`RolloutBuffer.sequences`),
each run from the state stored with its first decision, as ML-Agents does; minibatches
are whole sequences, and padding is weighted out of every mean.

With ``learn(..., overlap=True)``, acting goes on while an update runs: each learner's rollout is closed
(:meth:`BehaviourLearner.end_rollout`) and trained on in a thread (:meth:`BehaviourLearner.train`) while
copies of its networks collect the next one, one update behind; :meth:`BehaviourLearner.publish` hands them
the trained weights between rollouts.

Usage::

    from sparring.agents import PPO
    from sparring.envs.gymnasium import GymnasiumEnv

    model = PPO(GymnasiumEnv("CartPole-v1", num_envs=8), seed=0, n_steps=32)
    model.learn(100_000)
    model.save("cartpole.pt")
    actions = PPO.load("cartpole.pt").predict(obs)
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import ConfigDict, Field

from sparring.agents.checkpoint import Checkpointed
from sparring.agents.episodes import BehaviourReport, EpisodeLog, UpdateReport
from sparring.agents.networks import NetworkSettings
from sparring.agents.policy import BehaviourPolicy, check_finite
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
from sparring.agents.rollout import AgentMemory, RolloutBuffer
from sparring.agents.routing import LearnersActForAll, Routing
from sparring.envs.base import BehaviourStep, DecisionSteps, StepResult, TerminalSteps
from sparring.spec import Batch, BehaviourSpec, Obs, batch_put, batch_take, empty_actions

RECORDED_OBS = 256  # raw observations kept per behaviour, saved with checkpoints for export verification


class PPOSettings(NetworkSettings, SignalSettings):
    """PPO hyperparameters; the YAML ``hyperparameters:`` section is validated against this."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(3e-4, gt=0, description="Adam step size at the start of training.")
    lr_schedule: Literal["linear", "constant"] = Field(
        "linear", description="'linear' decays the learning rate to learning_rate_end at total_steps."
    )
    learning_rate_end: float = Field(0.0, ge=0, description="Where a linear learning rate ends (ML-Agents: 1e-10).")
    n_steps: int = Field(128, ge=1, description="Env steps per rollout (each step holds every deciding agent).")
    buffer_size: int | None = Field(
        None, ge=1,
        description=(
            "Agent decisions per behaviour per rollout (ML-Agents' buffer_size). When set, n_steps is derived at the "
            "first reset as ceil(buffer_size / agents deciding then), the largest over behaviours."
        ),
    )
    batch_size: int = Field(256, ge=1, description="Rows (agent decisions) per minibatch.")
    n_epochs: int = Field(10, ge=1, description="Passes over each rollout.")
    gamma: float = Field(0.99, ge=0, le=1, description="Discount per decision (of the game's reward; see reward_signals).")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE bias/variance trade-off.")
    time_horizon: int | None = Field(
        None, ge=1,
        description=(
            "Decisions of an agent's episode after which its trajectory is cut: returns beyond the cut are "
            "bootstrapped from the value estimate there (ML-Agents' time_horizon). None: follow every agent to "
            "the end of its episode or of the rollout."
        ),
    )
    clip_range: float = Field(0.2, gt=0, description="PPO ratio clip (epsilon).")
    clip_schedule: Literal["linear", "constant"] = Field(
        "constant", description="'linear' decays clip_range to clip_range_end at total_steps."
    )
    clip_range_end: float = Field(0.0, ge=0, description="Where a linear clip range ends (ML-Agents: 0.1).")
    clip_range_vf: float | None = Field(
        None, gt=0, description="Clip the value update around the rollout's values; None: unclipped."
    )
    ent_coef: float = Field(0.0, ge=0, description="Entropy bonus weight (ML-Agents' beta).")
    ent_schedule: Literal["linear", "constant"] = Field(
        "constant", description="'linear' decays ent_coef to ent_coef_end at total_steps (ML-Agents' beta_schedule)."
    )
    ent_coef_end: float = Field(0.0, ge=0, description="Where a linear entropy weight ends (ML-Agents: 1e-5).")
    vf_coef: float = Field(0.5, ge=0, description="Value loss weight.")
    max_grad_norm: float = Field(0.5, gt=0, description="Global gradient norm clip.")
    normalize_advantage: bool = Field(True, description="Standardise advantages per minibatch.")
    normalize_obs: bool = Field(False, description="Running mean/std observation normalisation (exported too).")
    normalize_reward: bool = Field(
        False,
        description=(
            "Divide rewards by the running std of the discounted return, clipped to +-10 (Stable-Baselines3's "
            "VecNormalize norm_reward); the statistics are saved with checkpoints."
        ),
    )
    hidden_sizes: list[int] = Field(
        [64, 64], min_length=1,
        description="Hidden layer widths of actor and critic; the first is also each image's and entity list's encoding width.",
    )
    activation: Literal["tanh", "relu", "swish"] = "tanh"


def adam(params, settings: PPOSettings) -> torch.optim.Adam:
    """The optimiser of an on-policy learner's parameters."""
    return torch.optim.Adam(params, lr=settings.learning_rate, eps=1e-5, fused=True)


def _schedule(start: float, kind: str, progress: float, end: float) -> float:
    """``start``, or with ``kind`` linear, on the line from ``start`` to ``end`` at ``progress`` (ML-Agents'
    ``polynomial_decay`` with power 1)."""
    return end + (start - end) * max(0.0, 1.0 - progress) if kind == "linear" else start


@dataclass
class Rollout:
    """A closed rollout, ready to learn from: its rows, the episodes that ended in it, and where training
    stood when it closed."""

    rows: RolloutBuffer
    report: BehaviourReport
    progress: float  # fraction of training done (the schedules' position)
    steps: int  # agent decisions the learner had taken (behavioural cloning decays over them)
    version: int  # updates the policy that acted had had


class BehaviourLearner:
    """Policy, optimiser and rollout storage of one behaviour.

    Acting (:meth:`act`, :meth:`observe`, :meth:`end_rollout`) reads the ``acting_*`` networks, learning
    (:meth:`train`) the originals. They are the same objects unless acting overlaps learning
    (:meth:`act_from_copies`), when acting goes on with copies one update behind.
    """

    policy_has_critic = True  # False where the learner values states with a critic of its own (MA-POCA)
    buffer_type = RolloutBuffer
    ACTING = ("policy",)
    """The networks acting reads (the policy, and what values the states it sees), copied to overlap learning."""

    def __init__(self, spec: BehaviourSpec, settings: PPOSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.policy = BehaviourPolicy(spec, settings.hidden_sizes, settings.activation, settings.normalize_obs,
                                      settings.vis_encode_type, settings.memory, critic=self.policy_has_critic,
                                      value_heads=settings.signal_names())
        self.signals = build_signals(spec, settings, self.policy, settings.gamma)
        self.learned_signals = [signal for signal in self.signals if signal.key != "extrinsic"]
        self.gammas = np.array([signal.gamma for signal in self.signals], np.float32)
        self.ignore_done = np.array([signal.ignore_done for signal in self.signals])
        self.cloning = None if settings.behavioral_cloning is None else BehaviouralCloning(
            spec, settings.behavioral_cloning, self.policy, settings.learning_rate, settings.batch_size, settings.n_epochs)
        self.optimizer = adam(self._trained_parameters(), settings)
        action_dtype = np.float32 if self.policy.continuous_size else np.int64
        self.buffer = self.buffer_type(self.policy.obs_size, self.policy.action_shape, action_dtype, spec.mask_size,
                                       self.policy.memory_size, settings.time_horizon, len(self.signals),
                                       keep_next_obs=bool(self.learned_signals))
        self.steps = 0  # agent decisions this learner has taken (behavioural cloning decays over them)
        self.updates = 0  # updates trained
        self.acting_version = 0  # updates the acting networks have had (publish runs between rollouts, never in one)
        for name in self.ACTING:
            setattr(self, f"acting_{name}", getattr(self, name))
        self.memory = None if settings.memory is None else AgentMemory(self.policy.memory_size)
        self.episodes = EpisodeLog()
        self.recorded_obs = torch.zeros(0, self.policy.obs_size)
        self.masked = False  # whether the game ever forbade an action: an export for an engine without masks is refused
        self.reward_scaler = RewardScaler(settings.gamma) if settings.normalize_reward else None

    def _trained_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.policy.parameters())

    def act_from_copies(self) -> None:
        """Act with copies of the :attr:`ACTING` networks, so that :meth:`train` may change the originals
        meanwhile; :meth:`publish` brings the copies up to date after each update."""
        for name in self.ACTING:
            setattr(self, f"acting_{name}", copy.deepcopy(getattr(self, name)))

    def publish(self) -> None:
        """After an update: the acting networks take the trained weights, and the trained policy the observation
        statistics gathered while it trained (acting keeps them; exports and checkpoints read the policy)."""
        self.acting_version = self.updates
        if self.acting_policy is self.policy:
            return
        if self.policy.normalizer is not None:
            self.policy.normalizer.load_state_dict(self.acting_policy.normalizer.state_dict())
        for name in self.ACTING:
            getattr(self, f"acting_{name}").load_state_dict(getattr(self, name).state_dict())

    def inputs(self, obs: Obs, update_stats: bool) -> torch.Tensor:
        """Normalised policy inputs; a NaN or infinite observation is refused, naming the behaviour."""
        return self._normalized(self.acting_policy.flatten_obs(obs), update_stats)

    def _normalized(self, x: torch.Tensor, update_stats: bool) -> torch.Tensor:
        check_finite(x.numpy(), self.spec.name)
        if update_stats and self.acting_policy.normalizer is not None:
            self.acting_policy.normalizer.update(x)
        return self.acting_policy.normalize(x)

    @torch.no_grad()
    def act(self, decisions: DecisionSteps, generator: torch.Generator) -> Batch:
        """Sample actions for the deciding agents and record them as rollout rows."""
        x = self.inputs(decisions.obs, update_stats=True)
        mask = None if decisions.action_mask is None else torch.from_numpy(decisions.action_mask)
        state = self._memory_of(decisions.agent_ids)
        action, logp, value, next_state = self.acting_policy.sample(x, mask, generator, state)
        slots = self.buffer.slots_of(decisions.agent_ids)
        self.buffer.add(slots, x.numpy(), action.numpy(), logp.numpy(), value.numpy(), decisions.action_mask,
                        None if state is None else state.numpy())
        self.steps += len(decisions)
        if self.memory is not None:
            self.memory.set(decisions.agent_ids, next_state.numpy())
        return self.policy.env_actions(action)

    def _memory_of(self, agent_ids: np.ndarray) -> torch.Tensor | None:
        """The recurrent state the agents decide from (None for a memoryless policy)."""
        return None if self.memory is None else torch.from_numpy(self.memory.get(agent_ids))

    @torch.no_grad()
    def observe(self, step: BehaviourStep) -> None:
        """Credit rewards and close finished episodes (terminals before the next episode's first decision)."""
        terminals = step.terminals
        if len(terminals):
            slots = self.buffer.slots_of(terminals.agent_ids)
            self.buffer.credit(slots, terminals.total_rewards)
            bootstrap = self._terminal_values(step)
            final = self.inputs(terminals.obs, False).numpy() if self.learned_signals else None
            self.episodes.add(self.buffer.end_episodes(slots, bootstrap, final), terminals.truncated)
            if self.memory is not None:
                self.memory.forget(terminals.agent_ids)
        if len(step.lost):
            self.buffer.drop(self.buffer.slots_of(step.lost))
            if self.memory is not None:
                self.memory.forget(step.lost)
        decisions = step.decisions
        if len(decisions):
            self.buffer.credit(self.buffer.slots_of(decisions.agent_ids), decisions.total_rewards)
        if self.reward_scaler is not None:
            self.reward_scaler.observe_step(step, self.buffer.slots_of)

    def _terminal_values(self, step: BehaviourStep) -> np.ndarray:
        """What each ended episode's last decision bootstraps from, per value head: V(final obs) where it was
        truncated, or for a signal that looks past episode ends (curiosity, RND); else 0."""
        terminals = step.terminals
        bootstrap = np.zeros((len(terminals), len(self.signals)), np.float32)
        needed = terminals.truncated | self.ignore_done.any()
        if needed.any():
            x = self.inputs(batch_take(terminals.obs, needed), False)
            bootstrap[needed] = self._values(x, terminals.take(needed)).numpy()
            bootstrap[~terminals.truncated] *= self.ignore_done
        return bootstrap

    def _values(self, x: torch.Tensor, agents: DecisionSteps | TerminalSteps) -> torch.Tensor:
        """State values ``(n, heads)`` of ``agents`` at their normalised observations ``x``."""
        return self.acting_policy.value(x, self._memory_of(agents.agent_ids))

    def update(self, decisions: DecisionSteps, progress: float, generator: torch.Generator) -> BehaviourReport:
        """End the rollout where ``decisions`` stand, learn from it and act with what was learned (:meth:`end_rollout`,
        :meth:`train`, :meth:`publish`)."""
        report = self.train(self.end_rollout(decisions, progress), generator)
        self.publish()
        return report

    @torch.no_grad()
    def end_rollout(self, decisions: DecisionSteps, progress: float) -> Rollout:
        """Bootstrap the open trajectories from the agents deciding now and take the rollout's rows, leaving the
        buffer to collect the next one: the part of an update that acting must wait for."""
        slots = self.buffer.slots_of(decisions.agent_ids)
        bootstrap, now = np.zeros((0, len(self.signals)), np.float32), None
        if len(decisions):
            raw = self.acting_policy.flatten_obs(decisions.obs)
            # Real observations to verify exports against, taken once per rollout (off the hot path).
            self.recorded_obs = torch.cat([self.recorded_obs, raw])[-RECORDED_OBS:]
            now = self._normalized(raw, False)
            bootstrap = self._values(now, decisions).numpy()
        buf = self.buffer
        self.masked = self.masked or (buf.has_masks and not buf.masks[: buf.size].all())
        if self.reward_scaler is not None:  # the whole rollout at one scale: today's statistics
            self.buffer.rewards[: self.buffer.size] = self.reward_scaler(self.buffer.rewards[: self.buffer.size])
        self.buffer.close(slots, bootstrap, None if now is None else now.numpy())
        return Rollout(self.buffer.detach(), self.episodes.pop(), progress, self.steps, self.acting_version)

    def train(self, rollout: Rollout, generator: torch.Generator) -> BehaviourReport:
        """GAE over the rollout, then ``n_epochs`` of minibatch PPO steps.

        The ratio is taken against the log-probabilities stored with each row, those of the policy that acted,
        which is an update behind the one trained when acting overlaps learning (reported as ``Policy/Lag``).
        """
        s = self.settings
        buf, report = rollout.rows, rollout.report
        rewards = self._signal_rewards(buf)
        advantages, returns = buf.advantages(self.gammas, s.gae_lambda, rewards)
        valid = buf.valid[: buf.size]
        rows = slice(0, buf.size) if valid.all() else np.flatnonzero(valid)
        lag = self.updates - rollout.version
        self.updates += 1
        if not valid.any():
            return report
        # A memoryless policy learns from the valid rows; a recurrent one from sequences of every row, each
        # started from the memory stored with its first row, padding and rows of lost agents weighted 0.
        recurrent = self.policy.memory is not None
        kept = slice(0, buf.size) if recurrent else rows
        columns = self._training_columns(buf, kept, advantages, returns)
        experience = self._transitions(buf, kept) if self.learned_signals else None
        if recurrent:
            sequences = torch.from_numpy(buf.sequences(s.memory.sequence_length))
            memories, weights = torch.from_numpy(buf.memories[: buf.size]), torch.from_numpy(valid.astype(np.float32))
            units, per_batch = len(sequences), max(1, s.batch_size // s.memory.sequence_length)
        else:
            units, per_batch = len(columns["obs"]), s.batch_size
        lr = _schedule(s.learning_rate, s.lr_schedule, rollout.progress, s.learning_rate_end)
        clip = _schedule(s.clip_range, s.clip_schedule, rollout.progress, s.clip_range_end)
        ent_coef = _schedule(s.ent_coef, s.ent_schedule, rollout.progress, s.ent_coef_end)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        diagnostics, signal_stats = [], {}
        for epoch in range(s.n_epochs):
            last_epoch = epoch == s.n_epochs - 1  # diagnostics cost time; the final epoch's are reported
            for idx in _minibatches(units, per_batch, generator):
                state = weight = None
                if recurrent:
                    chosen = sequences if idx is None else sequences[idx]
                    flat = chosen.reshape(-1)
                    idx, state = flat.clamp_min(0), memories[chosen[:, 0]]
                    weight = weights[idx] * (flat >= 0)
                batch = columns if idx is None else {k: None if c is None else c[idx] for k, c in columns.items()}
                stats = self._gradient_step(batch, clip, ent_coef, state, weight, diagnose=last_epoch)
                clip_grad_norm(params, s.max_grad_norm)
                self.optimizer.step()
                if stats is not None:
                    diagnostics.append(stats)
                for signal in self.learned_signals:  # on the same minibatches, as ML-Agents updates them
                    for name, value in signal.update(experience.take(idx), generator).items():
                        signal_stats.setdefault(name, []).append(value)
        means = torch.stack(diagnostics).mean(0).tolist()
        returns, values = returns[rows].sum(1), buf.values[rows].sum(1)  # the whole reward the policy learns from
        var_ret = float(np.var(returns))
        explained = float("nan") if var_ret == 0 else 1.0 - float(np.var(returns - values)) / var_ret
        report.stats = {
            **dict(zip(self.DIAGNOSTICS, means)),
            "Policy/Explained Variance": explained,
            "Policy/Learning Rate": lr,
            "Policy/Epsilon": clip,
            "Policy/Beta": ent_coef,
            "Policy/Lag": float(lag),
            **{name: float(np.mean(values)) for name, values in signal_stats.items()},
        }
        for head, signal in enumerate(self.signals):
            report.stats[f"Policy/{signal.name} Value Estimate"] = float(buf.values[rows, head].mean())
            if signal.key != "extrinsic":
                report.stats[f"Policy/{signal.name} Reward"] = float(rewards[rows, head].mean())
        if self.cloning is not None:
            report.stats |= self.cloning.update(rollout.steps, generator)
        if self.reward_scaler is not None:
            report.stats["Policy/Reward Scale"] = self.reward_scaler.scale
        return report

    def _training_columns(self, buf: RolloutBuffer, rows: slice | np.ndarray, advantages: np.ndarray,
                          returns: np.ndarray) -> dict[str, torch.Tensor | None]:
        """The rollout ``buf``'s ``rows`` as the tensors minibatches are cut from."""
        columns = {"obs": buf.obs, "actions": buf.actions, "masks": buf.masks if buf.has_masks else None,
                   "log_probs": buf.log_probs, "advantages": advantages.sum(1), "returns": returns, "values": buf.values}
        return {k: None if c is None else torch.from_numpy(c[rows]) for k, c in columns.items()}

    def _signal_rewards(self, buf: RolloutBuffer) -> np.ndarray:
        """Each signal's reward for every row of the rollout ``buf``, ``(rows, signals)``: the game's (scaled)
        times the extrinsic strength, the learned signals' from their networks as they are before this update."""
        n = buf.size
        experience = self._transitions(buf, slice(0, n)) if self.learned_signals else None
        columns = [buf.rewards[:n] * signal.strength if signal.key == "extrinsic"
                   else signal.rewards(experience).numpy() for signal in self.signals]
        return np.stack(columns, 1).astype(np.float32, copy=False)

    def _transitions(self, buf: RolloutBuffer, rows: slice | np.ndarray) -> Transitions:
        """The rollout ``buf``'s ``rows`` as reward signals read them."""
        return Transitions(torch.from_numpy(buf.obs[rows]), torch.from_numpy(buf.actions[rows]),
                           torch.from_numpy(buf.next_obs[rows]), torch.from_numpy(buf.ends[rows].astype(np.float32)))

    DIAGNOSTICS = ("Losses/Policy Loss", "Losses/Value Loss", "Policy/Entropy", "Policy/Approx KL",
                   "Policy/Clip Fraction")
    """What :meth:`_gradient_step` reports with ``diagnose``, in order."""

    def _gradient_step(
        self,
        batch: dict[str, torch.Tensor | None],
        clip: float,
        ent_coef: float,
        state: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
        diagnose: bool = True,
    ) -> torch.Tensor | None:
        """Set the gradients of one minibatch's PPO loss (Schulman et al. 2017, eq. 9, as SB3 and CleanRL
        write it): ``L = L_clip + vf_coef * L_VF - ent_coef * H``, differentiated by autograd.

        A recurrent policy's minibatch is ``len(state)`` sequences one after another, and every mean is
        over the rows of ``weight`` 1 (the rest is padding, or rows of agents lost mid-transition).
        With ``diagnose``, returns the :attr:`DIAGNOSTICS`.
        """
        s = self.settings

        def mean(v: torch.Tensor) -> torch.Tensor:
            return v.mean() if weight is None else (v * weight).sum() / weight.sum().clamp_min(1)

        logp, entropy, values = self.policy.evaluate(batch["obs"], batch["actions"], batch["masks"], state)
        critic_loss, critic_stats = self._critic_loss(batch, values, mean)
        adv = batch["advantages"]
        counted = adv if weight is None else adv[weight > 0]
        if s.normalize_advantage and len(counted) > 1:
            adv = (adv - counted.mean()) / (counted.std() + 1e-8)
        log_ratio = logp - batch["log_probs"]
        ratio = log_ratio.exp()
        policy_loss = mean(torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)))
        loss = policy_loss + s.vf_coef * critic_loss - ent_coef * mean(entropy)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if not diagnose:
            return None
        with torch.no_grad():
            approx_kl = mean((ratio - 1) - log_ratio)
            clip_fraction = mean(((ratio - 1).abs() > clip).float())
            return torch.stack([policy_loss, *critic_stats, mean(entropy), approx_kl, clip_fraction])

    def _critic_loss(self, batch: dict[str, torch.Tensor | None], values: torch.Tensor, mean: Callable
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The critic's loss for the policy's ``values`` of the minibatch, and its diagnostics (the value loss)."""
        value_loss = self._regression_loss(values, batch["values"], batch["returns"], mean)
        return value_loss, [value_loss]

    def _regression_loss(self, estimates: torch.Tensor, old: torch.Tensor, targets: torch.Tensor, mean: Callable
                         ) -> torch.Tensor:
        """Squared error of ``estimates`` against ``targets`` ``(rows, heads)``, averaged over the heads as ML-Agents
        does; with ``clip_range_vf``, the larger of it and the error of the estimates clipped to within
        ``clip_range_vf`` of the rollout's (CleanRL, ML-Agents)."""
        if self.settings.clip_range_vf is None:
            return mean((estimates - targets).square().mean(-1))
        clipped = old + (estimates - old).clamp(-self.settings.clip_range_vf, self.settings.clip_range_vf)
        return mean(torch.max((estimates - targets).square(), (clipped - targets).square()).mean(-1))

    def state_dict(self) -> dict:
        """Weights, optimiser, recorded observations and reward statistics: what resuming this learner needs."""
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "recorded_obs": self.recorded_obs,
            "masked": self.masked,
            "reward_scaler": None if self.reward_scaler is None else self.reward_scaler.state_dict(),
            "signals": signals_state(self.learned_signals, self.cloning),
        }

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        # a copy: torch's optimizer would otherwise share its moment tensors with ``state``
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.recorded_obs = state["recorded_obs"]
        self.masked = state.get("masked", False)  # checkpoints from before it was kept: not known to be masked
        if self.reward_scaler is not None and state["reward_scaler"] is not None:
            self.reward_scaler.load_state_dict(state["reward_scaler"])
        load_signals_state(self.learned_signals, self.cloning, state.get("signals", {}))

    def prepare(self) -> None:
        """Before training: read the demonstrations GAIL and behavioural cloning learn from (a file that does not
        match the behaviour is an error now, not after the first rollout). A model only loaded to predict or
        export never reads them."""
        prepare_demonstrations(self.learned_signals, self.cloning)


@torch.no_grad()
def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> None:
    """Scale the gradients down so their global norm is at most ``max_norm``, as torch's ``clip_grad_norm_``.

    The same arithmetic in four foreach calls: torch's version spends more time grouping tensors by
    device and dtype than computing, and it runs after every minibatch.
    """
    grads = [p.grad for p in params]
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, (max_norm / (total + 1e-6)).clamp_(max=1.0))


def _minibatches(n: int, batch_size: int, generator: torch.Generator):
    """Shuffled index batches; ``None`` (use every row as is) when one batch holds the whole rollout."""
    if batch_size >= n:
        yield None
        return
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _add_timing(reports: dict[str, BehaviourReport], timing: dict[str, tuple[float, float]], wall: float) -> None:
    """Where an update's wall time went, in every behaviour's report: collecting, training, both at once
    (acting overlapped with learning), and the fraction of it the learner spent idle."""
    (collect_start, collect_end), (train_start, train_end) = timing["collect"], timing["train"]
    both = max(0.0, min(collect_end, train_end) - max(collect_start, train_start))
    figures = {
        "Performance/Collect Seconds": collect_end - collect_start,
        "Performance/Update Seconds": train_end - train_start,
        "Performance/Overlap Seconds": both,
        "Performance/Learner Idle Fraction": max(0.0, 1.0 - (train_end - train_start) / max(wall, 1e-9)),
    }
    for report in reports.values():
        report.stats.update(figures)


ROLLOUT_SETTINGS = ("n_steps", "buffer_size")
"""Settings of the shared rollout, which every behaviour collects together: not overridable per behaviour."""


def override_settings(base: PPOSettings, overrides: Mapping[str, object]) -> PPOSettings:
    """``base`` updated by one behaviour's ``overrides`` (pydantic's ValidationError for a bad key or value).

    Raises ``ValueError`` for a rollout setting: every behaviour collects the same rollout.
    """
    shared = sorted(set(overrides) & set(ROLLOUT_SETTINGS))
    if shared:
        raise ValueError(f"{', '.join(shared)} can only be set for the whole trainer (every behaviour shares the rollout)")
    return type(base)(**{**base.model_dump(), **overrides})


class PPO(Checkpointed):
    """PPO for every behaviour of a :class:`MultiAgentEnv`; arguments as :class:`Checkpointed`, settings
    :class:`PPOSettings`.

    :attr:`routing` (a :class:`~sparring.agents.routing.Routing`) decides which rows of the env's decisions the
    learners act for and who acts for the rest; by default every row of behaviour ``b`` is learner ``b``'s. Self-play
    sets its own (:class:`~sparring.agents.selfplay.trainer.SelfPlay`).
    """

    algorithm = "ppo"
    settings_type = PPOSettings
    override_settings = staticmethod(override_settings)
    learner_type = BehaviourLearner
    num_updates = 0  # until the first update (or a checkpoint) sets the model's own count
    _rollout_steps: int | None = None  # env steps per rollout, fixed at the first reset

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Minibatch order of updates that run while acting goes on (acting keeps ``generator``).
        self.train_generator = torch.Generator().manual_seed(self.seed + 1)
        self.routing: Routing = LearnersActForAll()

    @property
    def policies(self) -> dict[str, BehaviourPolicy]:
        return {name: learner.policy for name, learner in self.learners.items()}

    def learn(self, total_steps: int, callback: Callable[[PPO, UpdateReport], None] | None = None,
              overlap: bool = False) -> PPO:
        """Train until ``total_steps`` agent decisions have been taken (counting any resumed ones).

        With ``overlap``, the next rollout is collected while the learners train on the last one, so a slow game
        does not wait for an update that takes no longer than its rollout: copies of the networks act, one update
        behind those trained (never more; the next update waits for the rollout), and each update's ratio is taken
        against the policy that acted. The callback runs with nothing in flight; the rollout collected while the
        last update ran is in its step."""
        env = self._env_to_learn_in()
        self.total_steps = total_steps
        if self._current is None:
            # A resumed run restarts its episodes from a seed derived from its position, so it stays reproducible.
            self._current = env.reset(seed=self.seed + self.num_updates)
        if self._rollout_steps is None:
            self._rollout_steps = self._derive_rollout_steps()
        for learner in self.learners.values():
            learner.prepare()
            if overlap:
                learner.act_from_copies()
        rollouts = None  # closed and waiting to be learned from
        with ThreadPoolExecutor(1, thread_name_prefix="sparring-update") if overlap else nullcontext() as background:
            while rollouts is not None or self.num_steps < total_steps:
                started = time.perf_counter()
                if rollouts is None:
                    self._collect_rollout()
                    rollouts = self._end_rollouts(total_steps)
                if background is None:
                    reports, timing = self._train(rollouts, self.generator)
                    timing["collect"] = (started, timing["train"][0])
                    rollouts = None
                else:
                    training = background.submit(self._train, rollouts, self.train_generator)
                    rollouts, collect_start = None, time.perf_counter()
                    collect_end = collect_start
                    try:
                        if self.num_steps < total_steps:
                            self._collect_rollout()
                            rollouts = self._end_rollouts(total_steps)  # bootstrapped by the policy that acted
                            collect_end = time.perf_counter()
                    finally:
                        reports, timing = training.result()  # an error in either is raised once both have stopped
                    timing["collect"] = (collect_start, collect_end)
                for learner in self.learners.values():
                    learner.publish()
                _add_timing(reports, timing, time.perf_counter() - started)
                self.num_updates += 1
                self.routing.after_update()
                if callback is not None:
                    callback(self, UpdateReport(self.num_steps, reports))
        return self

    def _end_rollouts(self, total_steps: int) -> dict[str, Rollout]:
        return {name: learner.end_rollout(self._learner_decisions(name), self.num_steps / total_steps)
                for name, learner in self.learners.items()}

    def _train(self, rollouts: dict[str, Rollout], generator: torch.Generator
               ) -> tuple[dict[str, BehaviourReport], dict[str, tuple[float, float]]]:
        """Every learner's update on its rollout, and when it ran."""
        start = time.perf_counter()
        reports = {name: self.learners[name].train(rollout, generator) for name, rollout in rollouts.items()}
        return reports, {"train": (start, time.perf_counter())}

    def _learner_decisions(self, name: str,
                           rows_of: Callable[[str, np.ndarray], np.ndarray] | None = None) -> DecisionSteps:
        """The decisions learner ``name`` takes now: the rollout bootstraps from them (its rows of the one behaviour
        it plays now, see :mod:`sparring.agents.routing`). ``rows_of(behaviour, agent_ids)`` picks a learner's rows
        where the routing's :meth:`~sparring.agents.routing.Routing.learner_rows` does not (self-play's exploiters)."""
        rows_of = rows_of or self.routing.learner_rows
        taken = []
        for behaviour, part in self._current.items():
            if self.routing.learner_of(behaviour) == name:
                rows = rows_of(behaviour, part.decisions.agent_ids)
                taken.append(part.decisions if rows.all() else part.decisions.take(rows))
        return next((decisions for decisions in taken if len(decisions)), taken[0])

    def _derive_rollout_steps(self) -> int:
        """``n_steps``, or from ``buffer_size`` and the agents deciding at the first reset (see PPOSettings)."""
        if self.settings.buffer_size is None:
            return self.settings.n_steps
        deciding = [len(self._learner_decisions(name)) for name in self.learners]
        return max(-(-self.settings.buffer_size // n) for n in deciding if n) if any(deciding) else self.settings.n_steps

    def _collect_rollout(self) -> None:
        for _ in range(self._rollout_steps):
            actions = {}
            for name, part in self._current.items():
                if len(part.decisions):
                    actions[name] = self._act(name, part.decisions)
            self._current = self.env.step(actions)
            self._observe(self._current)

    def _act(self, behaviour: str, decisions: DecisionSteps) -> Batch:
        """Actions for ``behaviour``'s deciding agents: the learner's rows from the learner (counted as steps), the
        others from :attr:`routing`."""
        mine = self.routing.learner_rows(behaviour, decisions.agent_ids)
        learner = self.learners[self.routing.learner_of(behaviour)]
        self.num_steps += int(mine.sum())
        if mine.all():
            return learner.act(decisions, self.generator)
        out = empty_actions(self.env.specs[behaviour], len(decisions))
        if mine.any():
            batch_put(out, mine, learner.act(decisions.take(mine), self.generator))
        batch_put(out, ~mine, self.routing.act(behaviour, decisions.take(~mine)))
        return out

    def _observe(self, result: StepResult) -> None:
        """Hand each learner its part of ``result``, as :attr:`routing` says."""
        for name, part in result.items():
            mine = self.routing.observe(name, part)
            if mine is not None:
                self.learners[self.routing.learner_of(name)].observe(mine)

    @torch.no_grad()
    def predict(
        self, obs: Obs, behaviour: str | None = None, action_mask: np.ndarray | None = None, deterministic: bool = True,
        agent_ids: np.ndarray | None = None,
    ) -> Batch:
        """Batched actions for ``obs`` in the env's action format (``behaviour`` may be omitted if there is one).

        A recurrent policy needs ``agent_ids``: each agent's memory carries over to its next call until
        :meth:`reset_memory` forgets it.
        """
        name = self._behaviour(behaviour)
        policy = self.learners[name].policy
        x = self.learners[name].inputs(obs, update_stats=False)
        mask = None if action_mask is None else torch.from_numpy(np.asarray(action_mask, bool))
        state = self._recalled(name, policy.memory_size, agent_ids)
        if deterministic:
            action, state = policy.deterministic(x, mask, state)
        else:
            action, _, _, state = policy.sample(x, mask, self.generator, state)
        self._remember(name, agent_ids, state)
        return policy.env_actions(action)

    # -- persistence ----------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue this run exactly where it stopped."""
        return {
            **super().state_dict(),
            "num_updates": self.num_updates,
            "train_generator": self.train_generator.get_state(),
            "learners": {name: learner.state_dict() for name, learner in self.learners.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for name, learner in self.learners.items():
            learner.load_state_dict(state["learners"][name])
        self.num_updates = state["num_updates"]
        if "train_generator" in state:  # checkpoints from before acting could overlap learning have none
            self.train_generator.set_state(state["train_generator"])
