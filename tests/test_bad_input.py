"""Bad observations stop training with an error naming the behaviour; saved checkpoints survive."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from sparring.agents import PPO
from sparring.envs.base import BehaviourStep, DecisionSteps, MultiAgentEnv, TerminalSteps
from sparring.spec import BehaviourSpec


class NaNAfter(MultiAgentEnv):
    """Two agents; from step ``bad_step`` on, agent 1 observes NaN."""

    def __init__(self, bad_step: int) -> None:
        self.specs = {"scout": BehaviourSpec("scout", spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2))}
        self.bad_step, self.t = bad_step, 0

    def _result(self) -> dict:
        obs = np.zeros((2, 3), np.float32)
        if self.t >= self.bad_step:
            obs[1, 2] = np.nan
        decisions = DecisionSteps(np.array([0, 1], np.int64), obs, np.ones(2, np.float32))
        return {"scout": BehaviourStep(decisions, TerminalSteps.empty(self.specs["scout"]))}

    def reset(self, seed=None):
        self.t = 0
        return self._result()

    def step(self, actions):
        self.t += 1
        return self._result()


def test_nan_observation_names_behaviour_and_agent_row(tmp_path):
    model = PPO(NaNAfter(bad_step=40), seed=0, n_steps=16, batch_size=32, n_epochs=1)
    model.learn(32)
    model.save(tmp_path / "ok.pt")
    saved = (tmp_path / "ok.pt").read_bytes()
    with pytest.raises(ValueError, match=r"behaviour 'scout': non-finite observation .* agent rows \[1\]"):
        model.learn(10_000)
    assert (tmp_path / "ok.pt").read_bytes() == saved
    assert PPO.load(tmp_path / "ok.pt").num_steps == 32


def test_a_checkpoint_of_another_algorithm_is_refused_by_name(tmp_path):
    from sparring.agents import SAC

    SAC(None, specs=NaNAfter(bad_step=0).specs).save(tmp_path / "sac.pt")
    with pytest.raises(ValueError, match=r"not a sparring PPO checkpoint \(format 2, algorithm sac\)"):
        PPO.load(tmp_path / "sac.pt")
    assert isinstance(SAC.load(tmp_path / "sac.pt"), SAC)  # the file is untouched and still loads as what it is


def test_a_checkpoint_of_an_older_format_is_refused_naming_both_formats(tmp_path):
    model = PPO(None, specs=NaNAfter(bad_step=0).specs)
    state = model.state_dict()
    state["format"] = 1
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"PPO checkpoint of format 1; this version of sparring reads format 2"):
        PPO.load(tmp_path / "old.pt")
