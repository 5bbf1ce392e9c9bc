"""The players self-play puts in the seats its learners do not hold: anything that acts on a DecisionSteps batch.

An :class:`Opponent` acts for a batch of one behaviour's deciding agents and is told when their episodes end.
Snapshots of the learner (:class:`PolicyOpponent`) are the league's opponents. A scripted player, an exported
ONNX policy (``OnnxPolicy``) or :class:`~sparring.agents.evaluation.RandomPolicy` fits the same seat through
:class:`PredictorOpponent`, which asks its :class:`~sparring.agents.evaluation.Predictor` ``predict`` for the batch
(with ``agent_ids``) and its ``reset_memory`` in ``forget``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from sparring.agents.evaluation import Predictor
from sparring.agents.policy import BehaviourPolicy
from sparring.agents.rollout import AgentMemory
from sparring.envs.base import DecisionSteps
from sparring.spec import Batch


class Opponent(Protocol):
    """Plays some agents of one behaviour, never trained on."""

    def act(self, decisions: DecisionSteps, generator: torch.Generator) -> Batch:
        """One action per deciding agent, in the env's action format."""
        ...

    def forget(self, agent_ids: np.ndarray) -> None:
        """The episodes of ``agent_ids`` ended (or their game was lost): what the opponent remembers of them goes."""
        ...


class PolicyOpponent:
    """A policy that samples its moves: a league snapshot, or the learner itself as it is now.

    A recurrent policy remembers each agent's state between its decisions, forgotten as its episode ends.
    ``exploration``: the share of moves replaced by the action space's uninformed draw (uniform over the allowed
    discrete actions), so the learner meets positions the policy's own play never reaches.
    """

    def __init__(self, policy: BehaviourPolicy, exploration: float = 0.0) -> None:
        self.policy = policy
        self.exploration = exploration
        self.memory = None if policy.memory is None else AgentMemory(policy.memory_size)

    @torch.no_grad()
    def act(self, decisions: DecisionSteps, generator: torch.Generator) -> Batch:
        policy = self.policy
        x = policy.normalize(policy.flatten_obs(decisions.obs))
        mask = None if decisions.action_mask is None else torch.from_numpy(decisions.action_mask)
        state = None if self.memory is None else torch.from_numpy(self.memory.get(decisions.agent_ids))
        action, _, _, next_state = policy.sample(x, mask, generator, state)
        if self.memory is not None:
            self.memory.set(decisions.agent_ids, next_state.numpy())
        if self.exploration:
            explore = torch.rand(len(action), generator=generator) < self.exploration
            if explore.any():
                uninformed = policy.distribution(torch.zeros(len(action), policy.actor_head.out_features), mask)
                action[explore] = uninformed.sample(generator)[0][explore]
        return policy.env_actions(action)

    def forget(self, agent_ids: np.ndarray) -> None:
        if self.memory is not None:
            self.memory.forget(agent_ids)


class PredictorOpponent:
    """Anything with a Predictor's ``predict`` (a scripted function, an exported ONNX policy, random play), asked
    as ``behaviour`` (the name it knows the seat's behaviour by: its policy group)."""

    def __init__(self, predictor: Predictor, behaviour: str) -> None:
        self.predictor = predictor
        self.behaviour = behaviour

    def act(self, decisions: DecisionSteps, generator: torch.Generator) -> Batch:
        return self.predictor.predict(decisions.obs, self.behaviour, decisions.action_mask,
                                      agent_ids=decisions.agent_ids)

    def forget(self, agent_ids: np.ndarray) -> None:
        reset = getattr(self.predictor, "reset_memory", None)
        if reset is not None:
            reset(self.behaviour, agent_ids)
