"""MA-POCA: cooperative groups trained with a centralised critic and a counterfactual baseline per agent.

Cohen et al. 2021 ("On the Use and Misuse of Absorbing States in Multi-agent Reinforcement
Learning"), as ML-Agents trains ``trainer_type: poca``. Every agent acts from its own
observation with the behaviour's policy (the one exported), while one critic, reading the
whole group through attention over its *present* members, learns

- the group's value ``V(o_1..o_k)``: returns are λ-returns of individual plus group reward
  bootstrapped from it, so an agent that leaves the group mid-episode (it sacrificed itself)
  still bootstraps from what the group it left goes on to earn. Its own final state is not
  attended to: absent members are masked out rather than kept as padded "absorbing" states;
- each agent's baseline ``Q(o_i, {(o_j, a_j)}_{j != i})``: the return expected given what the
  others did, whatever agent ``i`` did; the agent's advantage is its return minus this
  baseline, its own share of the credit.

The loss is PPO's clipped surrogate on those advantages, the value and baseline regressions
(``vf_coef * (L_V + 0.5 L_baseline)``, ML-Agents' weights) and the entropy bonus, one
autograd graph. A group is the agents of one behaviour sharing a group id that decide in
the same step; agents without a group are groups of one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from pydantic import ConfigDict, model_validator
from torch import nn

from sparring.agents.networks import ACTIVATIONS, ObservationEncoder, ResidualSelfAttention, observation_layout, swish
from sparring.agents.policy import action_features
from sparring.agents.ppo import PPO, BehaviourLearner, PPOSettings
from sparring.agents.rollout import RolloutBuffer
from sparring.envs.base import BehaviourStep, DecisionSteps, TerminalSteps
from sparring.spec import Batch, BehaviourSpec, batch_take


class POCASettings(PPOSettings):
    """MA-POCA's hyperparameters: PPO's (ML-Agents' POCA takes the same ones)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _no_memory(self) -> POCASettings:
        if self.memory is not None:
            raise ValueError("memory: MA-POCA does not train recurrent policies yet; remove memory or use ppo")
        return self


def group_keys(group_ids: np.ndarray) -> np.ndarray:
    """Group ids with every agent outside a group (id 0) made a group of its own (a distinct negative key)."""
    return np.where(group_ids == 0, -1 - np.arange(len(group_ids)), group_ids)


def group_members(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped by key: ``(members, group, position)``.

    ``members`` is ``(groups, largest group)`` row indices, -1 after a group's last member;
    row ``i`` is ``members[group[i], position[i]]``.
    """
    unique, group, counts = np.unique(keys, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.empty(len(keys), np.int64)
    position[order] = np.arange(len(keys)) - np.repeat(starts, counts)
    members = np.full((len(unique), counts.max(initial=1)), -1, np.int64)
    members[group, position] = np.arange(len(keys))
    return members, group, position


def mates_of(members: np.ndarray, group: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Each row's group mates (itself left out): ``(rows, largest group - 1)``, -1 padded."""
    rows = members[group]
    keep = np.arange(members.shape[1]) != position[:, None]
    return rows[keep].reshape(len(group), members.shape[1] - 1)


class GroupCritic(nn.Module):
    """The centralised critic: the group's value and each member's counterfactual baseline.

    Members are embedded from their observation (``f``), or from observation and action (``g``)
    for the others in a baseline; one :class:`ResidualSelfAttention` pools the present ones and
    an MLP maps the pooled encoding to a value. Value and baseline share everything but the
    embeddings, as in ML-Agents.
    """

    def __init__(self, spec: BehaviourSpec, action_size: int, settings: PPOSettings) -> None:
        """One value (and baseline) head per reward signal of ``settings``."""
        super().__init__()
        width = settings.hidden_sizes[0]
        layout = observation_layout(spec.observation_components, settings.vis_encode_type)
        self.encoder = ObservationEncoder(layout, spec.observation_components, settings.vis_encode_type, width)
        self.observation_embed = nn.Linear(self.encoder.out_size, width)
        self.observation_action_embed = nn.Linear(self.encoder.out_size + action_size, width)
        self.attention = ResidualSelfAttention(width)
        sizes = settings.hidden_sizes
        self.trunk = nn.ModuleList(nn.Linear(fan_in, fan_out) for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))
        self._act = ACTIVATIONS[settings.activation]
        self.head = nn.Linear(settings.hidden_sizes[-1], len(settings.signal_names()))

    def _embed(self, x: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        """``(n, k, obs)`` members (with ``(n, k, action features)``) -> ``(n, k, width)``."""
        encoded = self.encoder(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:2], self.encoder.out_size)
        if actions is None:
            return swish(self.observation_embed(encoded))
        return swish(self.observation_action_embed(torch.cat([encoded, actions], -1)))

    def _pooled_value(self, members: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        h = self.attention(members, present)
        for layer in self.trunk:
            h = self._act(layer(h))
        return self.head(h)

    def value(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """``V`` of each group from its members' observations ``(groups, k, obs)``; ``present`` ``(groups, k)``."""
        return self._pooled_value(self._embed(x), present)

    def baseline(self, own: torch.Tensor, mates: torch.Tensor, mate_actions: torch.Tensor,
                 mates_present: torch.Tensor) -> torch.Tensor:
        """Each agent's baseline from its observation ``(n, obs)`` and its mates' observations and actions."""
        members = torch.cat([self._embed(own.unsqueeze(1)), self._embed(mates, mate_actions)], 1)
        present = torch.cat([torch.ones(len(own), 1), mates_present], 1)
        return self._pooled_value(members, present)


class GroupRolloutBuffer(RolloutBuffer):
    """The on-policy rollout with, per row, the baseline estimate and the rows of the group mates that decided
    in the same step (-1 padded; the width grows with the largest group seen)."""

    _COLUMNS = (*RolloutBuffer._COLUMNS, "baselines", "mates")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.baselines = np.zeros((len(self.obs), self.value_heads), np.float32)
        self.mates = np.full((len(self.obs), 0), -1, np.int64)

    def add_groups(self, start: int, baselines: np.ndarray, mates: np.ndarray) -> None:
        """The baselines and mates (rows of the same step, counted from ``start``) of the rows just added."""
        end = start + len(baselines)
        if mates.shape[1] > self.mates.shape[1]:
            wider = np.full((len(self.mates), mates.shape[1]), -1, np.int64)
            wider[:, : self.mates.shape[1]] = self.mates
            self.mates = wider
        self.baselines[start:end] = baselines
        self.mates[start:end] = -1
        self.mates[start:end, : mates.shape[1]] = np.where(mates >= 0, mates + start, -1)

    def _reserve(self, rows: int) -> None:
        super()._reserve(rows)
        self.mates[self.size :] = -1


class POCALearner(BehaviourLearner):
    """One behaviour's actor, group critic, optimiser and rollout (see the module docstring)."""

    policy_has_critic = False
    buffer_type = GroupRolloutBuffer
    ACTING = ("policy", "critic")
    DIAGNOSTICS = ("Losses/Policy Loss", "Losses/Value Loss", "Losses/Baseline Loss", "Policy/Entropy",
                   "Policy/Approx KL", "Policy/Clip Fraction")

    def __init__(self, spec: BehaviourSpec, settings: POCASettings) -> None:
        box = spec.continuous_space
        continuous_size = 0 if box is None else int(np.prod(box.shape))
        self.critic = GroupCritic(spec, continuous_size + sum(spec.action_branches), settings)
        super().__init__(spec, settings)
        self._playing = np.zeros(0, np.int64)  # agents in the middle of an episode: they have acted in it

    def _trained_parameters(self) -> list[nn.Parameter]:
        return [*self.policy.parameters(), *self.critic.parameters()]

    @torch.no_grad()
    def act(self, decisions: DecisionSteps, generator: torch.Generator) -> Batch:
        """Sample actions; record each row with its group's value, its baseline and its mates."""
        x = self.inputs(decisions.obs, update_stats=True)
        mask = None if decisions.action_mask is None else torch.from_numpy(decisions.action_mask)
        action, logp, _, _ = self.acting_policy.sample(x, mask, generator)
        members, group, position = group_members(group_keys(decisions.group_ids))
        values = self._group_values(x, members)[group]
        mates = mates_of(members, group, position)
        taken = torch.from_numpy(mates).clamp_min(0)  # padding reads row 0, masked out by the mates' presence
        mate_actions = action_features(action[taken], self.policy.continuous_size, self.policy.branches)
        baselines = self.acting_critic.baseline(x, x[taken], mate_actions, torch.from_numpy(mates >= 0).float())
        self._playing = np.union1d(self._playing, decisions.agent_ids)
        start = self.buffer.size
        self.buffer.add(self.buffer.slots_of(decisions.agent_ids), x.numpy(), action.numpy(), logp.numpy(),
                        values.numpy(), decisions.action_mask)
        self.buffer.add_groups(start, baselines.numpy(), mates)
        return self.policy.env_actions(action)

    def observe(self, step: BehaviourStep) -> None:
        super().observe(step)
        ended = np.concatenate([step.terminals.agent_ids, step.lost])
        if len(ended):
            self._playing = np.setdiff1d(self._playing, ended)

    def _group_values(self, x: torch.Tensor, members: np.ndarray) -> torch.Tensor:
        """``V`` of every group of ``members`` (rows of ``x``; a group with no member is worth 0)."""
        present = torch.from_numpy(members >= 0).float()
        values = self.acting_critic.value(x[torch.from_numpy(members).clamp_min(0)], present)
        return values * (present.sum(1, keepdim=True) > 0)

    def _values(self, x: torch.Tensor, agents: DecisionSteps | TerminalSteps) -> torch.Tensor:
        members, group, _ = group_members(group_keys(agents.group_ids))
        return self._group_values(x, members)[group]

    @torch.no_grad()
    def _terminal_values(self, step: BehaviourStep) -> np.ndarray:
        """What each ended episode bootstraps from: the value of the group it leaves behind.

        That group is the mates still playing (deciding now in an episode they acted in before, not ending
        now: a group's next episode, whose agents may come back under new ids, is not this one), joined by
        the agents whose episodes were truncated (their final observations), the agent itself included if
        it was. An agent that terminated while its group plays on (it gave itself up) is not part of it,
        and the group's future is its return; a group with nobody left is worth 0.
        """
        terminals, decisions = step.terminals, step.decisions
        own = group_keys(terminals.group_ids)
        playing = ((decisions.group_ids != 0) & np.isin(decisions.agent_ids, self._playing)
                   & ~np.isin(decisions.agent_ids, terminals.agent_ids))
        cut = terminals.truncated
        keys = np.concatenate([decisions.group_ids[playing], own[cut]])
        bootstrap = np.zeros((len(terminals), len(self.signals)), np.float32)
        if len(keys) == 0:
            return bootstrap
        x = torch.cat([self.inputs(batch_take(decisions.obs, playing), False),
                       self.inputs(batch_take(terminals.obs, cut), False)])
        members, _, _ = group_members(keys)
        values = self._group_values(x, members).numpy()
        unique = np.unique(keys)  # the groups of ``members``, in order
        where = np.searchsorted(unique, own).clip(max=len(unique) - 1)
        found = unique[where] == own
        bootstrap[found] = values[where[found]]
        return bootstrap

    def _training_columns(self, buf: GroupRolloutBuffer, rows: slice | np.ndarray, advantages: np.ndarray,
                          returns: np.ndarray) -> dict[str, torch.Tensor | None]:
        """PPO's columns, with advantages against each agent's baseline, and the mates each row's critic reads."""
        columns = super()._training_columns(buf, rows, returns - buf.baselines[: buf.size], returns)
        mates = torch.from_numpy(buf.mates[rows])
        taken = mates.clamp_min(0)
        columns["baselines"] = torch.from_numpy(buf.baselines[rows])
        columns["mates_obs"] = torch.from_numpy(buf.obs[: buf.size])[taken]
        actions = torch.from_numpy(buf.actions[: buf.size])[taken]
        columns["mates_actions"] = action_features(actions, self.policy.continuous_size, self.policy.branches)
        columns["mates_present"] = (mates >= 0).float()
        return columns

    def _critic_loss(self, batch: dict[str, torch.Tensor | None], values: torch.Tensor | None, mean: Callable
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The group value's and the baseline's regressions to the λ-returns, ``L_V + 0.5 L_baseline``."""
        x, mates, present = batch["obs"], batch["mates_obs"], batch["mates_present"]
        group = torch.cat([x.unsqueeze(1), mates], 1)
        values = self.critic.value(group, torch.cat([torch.ones(len(x), 1), present], 1))
        baselines = self.critic.baseline(x, mates, batch["mates_actions"], present)
        value_loss = self._regression_loss(values, batch["values"], batch["returns"], mean)
        baseline_loss = self._regression_loss(baselines, batch["baselines"], batch["returns"], mean)
        return value_loss + 0.5 * baseline_loss, [value_loss, baseline_loss]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "critic": self.critic.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.critic.load_state_dict(state["critic"])
        super().load_state_dict(state)


class POCA(PPO):
    """MA-POCA for every behaviour of a :class:`MultiAgentEnv` (arguments as PPO, settings :class:`POCASettings`)."""

    algorithm = "poca"
    settings_type = POCASettings
    learner_type = POCALearner
