"""Agents that share rewards: ML-Agents' ``SimpleMultiAgentGroup``, for a whole batch of one behaviour's agents.

A game keeps one :class:`AgentGroups` per behaviour whose agents play in groups (teammates,
a squad) and names it in its ``groups`` attribute, ``{"Runner": AgentGroups()}``; :func:`run`
then fills every step's ``group_ids`` and ``group_rewards`` from it. What a group earns is
reported to each member once, in the member's next decision or terminal row, as its own
rewards are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Union

import numpy as np

from sparring.protos.wire import MAX_AGENT_ID
from sparring_engine.types import BehaviourStep

Ids = Union[int, Sequence[int], np.ndarray]
"""One id, or several."""


class AgentGroups:
    """The groups one behaviour's agents play in, and what each group earned that its members were not yet told.

    Every method takes one id or an array of them (broadcast against each other)::

        groups.register_agent(agent_ids, group_ids)         # RegisterAgent: agents join groups (ids 1 to 2**32 - 1)
        groups.add_group_reward(group_ids, rewards)         # AddGroupReward: every member of each group earns it
        ids, truncated = groups.end_group_episode(group_ids)          # EndGroupEpisode
        ids, truncated = groups.group_episode_interrupted(group_ids)  # GroupEpisodeInterrupted (truncated)
        groups.unregister_agent(agent_ids)                  # UnregisterAgent: they leave

    The game reports episode ends itself (it alone has the final observations): the two ``end`` calls
    give the members whose episodes end now, and whether they were cut short, for the step's
    ``TerminalSteps``; the members stay registered for the group's next episode. An agent that leaves
    (usually as its own episode ends while the others play on) is reported once more with the group it
    left and what the group earned while it was a member, then in no group; later group rewards pass it by.
    """

    def __init__(self) -> None:
        # One row per agent that is a member, or left and has not been reported since, sorted by agent id.
        self._agents = np.zeros(0, np.int64)
        self._groups = np.zeros(0, np.int64)
        self._earned = np.zeros(0, np.float64)  # group rewards since the agent's last report
        self._member = np.zeros(0, bool)

    def register_agent(self, agent_ids: Ids, group_ids: Ids) -> None:
        """Agents join groups (moving from the group they were in, keeping what they earned there)."""
        agent_ids, group_ids = (a.ravel() for a in np.broadcast_arrays(np.asarray(agent_ids, np.int64),
                                                                      np.asarray(group_ids, np.int64)))
        if len(group_ids) and (group_ids.min() < 1 or group_ids.max() > MAX_AGENT_ID):
            raise ValueError(f"group ids lie in [1, {MAX_AGENT_ID}] (0 is no group), "
                             f"got {group_ids.min()}..{group_ids.max()}")
        if len(np.unique(agent_ids)) != len(agent_ids):
            raise ValueError(f"agents registered twice in one call: {agent_ids.tolist()}")
        rows, found = self._locate(agent_ids)
        self._groups[rows[found]] = group_ids[found]
        self._member[rows[found]] = True
        new = ~found
        if new.any():
            agents = np.concatenate([self._agents, agent_ids[new]])
            order = np.argsort(agents, kind="stable")
            self._agents = agents[order]
            self._groups = np.concatenate([self._groups, group_ids[new]])[order]
            self._earned = np.concatenate([self._earned, np.zeros(new.sum())])[order]
            self._member = np.concatenate([self._member, np.ones(new.sum(), bool)])[order]

    def unregister_agent(self, agent_ids: Ids) -> None:
        """Agents leave their groups (see the class docstring); agents in no group are passed over."""
        rows, found = self._locate(np.asarray(agent_ids, np.int64).ravel())
        self._member[rows[found]] = False

    def add_group_reward(self, group_ids: Ids, rewards: float | np.ndarray) -> None:
        """Each group (a group named several times earns the sum) rewards every one of its current members."""
        group_ids, rewards = (a.ravel() for a in np.broadcast_arrays(np.asarray(group_ids, np.int64),
                                                                    np.asarray(rewards, np.float64)))
        if not len(group_ids) or not len(self._agents):
            return
        groups, which = np.unique(group_ids, return_inverse=True)
        totals = np.bincount(which, weights=rewards)
        at = np.minimum(np.searchsorted(groups, self._groups), len(groups) - 1)
        earning = self._member & (groups[at] == self._groups)
        self._earned[earning] += totals[at[earning]]

    def members(self, group_ids: Ids) -> np.ndarray:
        """The agent ids (sorted) of the current members of these groups."""
        return self._agents[self._member & np.isin(self._groups, np.asarray(group_ids, np.int64))]

    def end_group_episode(self, group_ids: Ids) -> tuple[np.ndarray, np.ndarray]:
        """``(agent ids, truncated)`` of the members, whose episodes end now in a terminal state: report them as
        terminals in this step's result."""
        ids = self.members(group_ids)
        return ids, np.zeros(len(ids), bool)

    def group_episode_interrupted(self, group_ids: Ids) -> tuple[np.ndarray, np.ndarray]:
        """``(agent ids, truncated)`` of the members, whose episodes were cut short (a time limit): report them as
        truncated terminals in this step's result."""
        ids = self.members(group_ids)
        return ids, np.ones(len(ids), bool)

    def label(self, step: BehaviourStep) -> BehaviourStep:
        """``step`` with each row's group and group reward filled in (terminal rows first: an agent in both
        reports what it earned in its ending episode there, and starts the next with nothing)."""
        terminals = dataclasses.replace(step.terminals, **self._report(step.terminals.agent_ids))
        decisions = dataclasses.replace(step.decisions, **self._report(step.decisions.agent_ids))
        return dataclasses.replace(step, decisions=decisions, terminals=terminals)

    def discard_rewards(self) -> None:
        """Forget what groups earned that no member reported, as a Reset forgets the episodes it cuts off
        (:func:`run` calls it before each Reset); agents that left are no longer reported."""
        self._earned[:] = 0.0
        self._keep(self._member)

    def _report(self, agent_ids: np.ndarray) -> dict[str, np.ndarray]:
        """The ``group_ids`` and ``group_rewards`` of rows for ``agent_ids``; what they report is then forgotten,
        and so are the agents that had left."""
        agent_ids = np.asarray(agent_ids, np.int64)
        rows, found = self._locate(agent_ids)
        rows = rows[found]
        group_ids = np.zeros(len(agent_ids), np.int64)
        group_ids[found] = self._groups[rows]
        group_rewards = np.zeros(len(agent_ids), np.float32)
        group_rewards[found] = self._earned[rows]
        self._earned[rows] = 0.0
        if not self._member[rows].all():
            keep = np.ones(len(self._agents), bool)
            keep[rows[~self._member[rows]]] = False
            self._keep(keep)
        return {"group_ids": group_ids, "group_rewards": group_rewards}

    def _locate(self, agent_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(row, found)`` of each agent id in the table (``row`` is meaningless where not ``found``)."""
        rows = np.minimum(np.searchsorted(self._agents, agent_ids), max(len(self._agents) - 1, 0))
        found = self._agents[rows] == agent_ids if len(self._agents) else np.zeros(len(agent_ids), bool)
        return rows, found

    def _keep(self, rows: np.ndarray) -> None:
        self._agents, self._groups = self._agents[rows], self._groups[rows]
        self._earned, self._member = self._earned[rows], self._member[rows]
