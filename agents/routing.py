"""Who acts for which rows of the env's decisions while an on-policy trainer collects its rollout.

PPO's rollout loop asks a :class:`Routing`, per behaviour batch, which rows its learner acts for (and learns
from) and who acts for the others: an opponent in self-play (a frozen snapshot, a scripted player, an
exported policy), a learner of another role (an exploiter). The routing is told of every step's results and
of every update, so it can rotate seats, keep opponents' memories, take snapshots and swap opponents between
rollouts. PPO's default, :class:`LearnersActForAll`, gives every row of behaviour ``b`` to learner ``b``.

A learner plays one behaviour's rows at a time: where several behaviours share a learner (the teams of one
self-play group), the routing gives it rows of only one of them at once (agent ids are unique only within a
behaviour, and the learner keeps its trajectories by agent id).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from sparring.envs.base import BehaviourStep, DecisionSteps
from sparring.spec import Batch


class Routing(Protocol):
    """How a trainer shares the env's decisions between its learners and other players.

    Per step, for each behaviour with deciding agents, the trainer calls :meth:`learner_rows` (the rows its learner
    :meth:`learner_of` acts for, counted as the trainer's steps), lets the learner act for them, then
    :meth:`act` for the remaining rows; after the env steps, :meth:`observe` for each behaviour's results; after each
    update, :meth:`after_update`.
    """

    def learner_of(self, behaviour: str) -> str:
        """The trainer's learner (a key of its ``learners``) that acts for ``behaviour``'s learner rows."""
        ...

    def learner_rows(self, behaviour: str, agent_ids: np.ndarray) -> np.ndarray:
        """Per agent of ``behaviour`` deciding now, whether the learner acts for it (bool). Asking again before the
        next :meth:`observe` gives the same answer: the trainer also asks to bootstrap the rollout's end."""
        ...

    def act(self, behaviour: str, decisions: DecisionSteps) -> Batch:
        """Actions for ``decisions``, the rows of ``behaviour`` the learner does not act for, in their order."""
        ...

    def observe(self, behaviour: str, step: BehaviourStep) -> BehaviourStep | None:
        """Told of one step's results for ``behaviour``; returns the part of them the learner learns from (its
        agents' decisions, terminals and lost agents), or ``None`` for none."""
        ...

    def after_update(self) -> None:
        """Told that the trainer's learners have just been updated on their rollout."""
        ...


class LearnersActForAll:
    """PPO's routing: learner ``b`` acts for every agent of behaviour ``b``; nobody else plays."""

    def learner_of(self, behaviour: str) -> str:
        return behaviour

    def learner_rows(self, behaviour: str, agent_ids: np.ndarray) -> np.ndarray:
        return np.ones(len(agent_ids), bool)

    def act(self, behaviour: str, decisions: DecisionSteps) -> Batch:
        raise AssertionError(f"behaviour {behaviour!r}: every row is the learner's; nobody else acts")

    def observe(self, behaviour: str, step: BehaviourStep) -> BehaviourStep:
        return step

    def after_update(self) -> None:
        pass
