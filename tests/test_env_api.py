"""The env contract's own tools: random valid actions and the conformance check."""

import numpy as np
import pytest
from gymnasium import spaces

from sparring.envs.base import (
    BehaviourStep,
    DecisionSteps,
    MultiAgentEnv,
    TerminalSteps,
    check_env,
    random_actions,
)
from sparring.spec import BehaviourSpec

SPEC = BehaviourSpec("b", spaces.Box(0, 1, (2,), np.float32), spaces.MultiDiscrete([3, 2]))


def test_random_actions_respect_masks_in_every_branch():
    rng = np.random.default_rng(0)
    mask = np.array([[False, True, False, True, False], [True, False, True, False, True]] * 50)
    actions = random_actions(SPEC, 100, mask, rng)
    assert actions.shape == (100, 2)
    assert mask[np.arange(100), actions[:, 0]].all() and mask[np.arange(100), 3 + actions[:, 1]].all()


class Faulty(MultiAgentEnv):
    """Well-behaved until step 3, then breaks the contract in the way it is told to."""

    def __init__(self, fault: str) -> None:
        self.specs = {"b": SPEC}
        self.fault, self.t = fault, 0

    def _result(self):
        ids = np.array([0, 1], np.int64)
        obs = np.zeros((2, 2), np.float32)
        rewards = np.zeros(2, np.float32)
        if self.t >= 3:
            if self.fault == "duplicate ids":
                ids = np.array([1, 1], np.int64)
            elif self.fault == "obs shape":
                obs = np.zeros((2, 3), np.float32)
            elif self.fault == "reward dtype":
                rewards = np.zeros(2, np.float64)
        return {"b": BehaviourStep(DecisionSteps(ids, obs, rewards), TerminalSteps.empty(SPEC))}

    def reset(self, seed=None):
        self.t = 0
        return self._result()

    def step(self, actions):
        self.t += 1
        return self._result()


def test_check_env_accepts_a_conforming_env():
    check_env(Faulty("none"), steps=10)


@pytest.mark.parametrize(
    "fault,message",
    [("duplicate ids", r"'b' decisions.agent_ids: duplicate"), ("obs shape", r"'b' decisions.obs\['obs'\]"),
     ("reward dtype", r"'b' decisions.rewards: expected float32")],
)
def test_check_env_names_the_behaviour_and_field_that_break_the_contract(fault, message):
    with pytest.raises(ValueError, match=message):
        check_env(Faulty(fault), steps=10)
