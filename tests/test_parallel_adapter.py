"""to_parallel_env: any sparring env handed to other libraries as a PettingZoo ParallelEnv."""

from __future__ import annotations

import warnings

import numpy as np
import pettingzoo
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv

from sparring.envs.gymnasium import GymnasiumEnv
from sparring.envs.parallel import to_parallel_env
from sparring.envs.pettingzoo import PettingZooEnv

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # pettingzoo.test imports its envs the deprecated way
    from pettingzoo.test import parallel_api_test


class Relay(ParallelEnv):
    """A runner that acts every step and a coach, with other spaces, that acts every third; 8 steps long."""

    metadata = {"name": "relay_v0"}
    possible_agents = ["runner_0", "coach_0"]
    _spaces = {
        "runner_0": (spaces.Box(-1, 1, (2,), np.float32), spaces.Discrete(3)),
        "coach_0": (spaces.Box(-1, 1, (4,), np.float32), spaces.Box(-1, 1, (1,), np.float32)),
    }

    def observation_space(self, agent):
        return self._spaces[agent][0]

    def action_space(self, agent):
        return self._spaces[agent][1]

    def reset(self, seed=None, options=None):
        self.t = 0
        self.agents = list(self.possible_agents)
        self._deciding = set(self.agents)
        return self._observe(self.agents), {a: {} for a in self.agents}

    def step(self, actions):
        assert set(actions) == self._deciding, f"acted for {set(actions)}, asked {self._deciding}"
        self.t += 1
        rewards = dict.fromkeys(self.agents, 1.0)
        done = self.t >= 8
        terminations = dict.fromkeys(self.agents, done)
        truncations = dict.fromkeys(self.agents, False)
        observed = list(self.agents) if done else [a for a in self.agents if a == "runner_0" or self.t % 3 == 0]
        self.agents = [] if done else self.agents
        self._deciding = set(observed)
        return self._observe(observed), rewards, terminations, truncations, {a: {} for a in observed}

    def _observe(self, agents):
        return {a: np.full(self.observation_space(a).shape, self.t / 10, np.float32) for a in agents}


def tictactoe():
    return PettingZooEnv(pettingzoo.make("aec", "classic/tictactoe-v3"))


def count_resets(env):
    """Record the seed of every reset of the wrapped sparring env."""
    seeds = []
    reset = env.reset

    def counted(seed=None):
        seeds.append(seed)
        return reset(seed)

    env.reset = counted
    return seeds


@pytest.mark.parametrize(
    "make",
    [
        lambda: GymnasiumEnv("CartPole-v1", num_envs=2),
        lambda: GymnasiumEnv("Pendulum-v1", num_envs=2, env_kwargs={"max_episode_steps": 30}),
        tictactoe,
        lambda: PettingZooEnv(Relay()),
    ],
    ids=["cartpole", "pendulum", "tictactoe-aec", "relay-parallel"],
)
def test_passes_pettingzoo_parallel_api_test(make):
    parallel_api_test(to_parallel_env(make()), num_cycles=1000)


def test_agents_are_named_behaviour_underscore_id_with_spec_spaces():
    inner = GymnasiumEnv("CartPole-v1", num_envs=2)
    env = to_parallel_env(inner)
    obs, infos = env.reset(seed=0)
    assert env.possible_agents == env.agents == ["CartPole_0", "CartPole_1"]
    assert env.observation_space("CartPole_1") is inner.specs["CartPole"].observation_space
    assert env.action_space("CartPole_1") is inner.specs["CartPole"].action_space
    assert obs["CartPole_1"].shape == (4,) and infos == {"CartPole_0": {}, "CartPole_1": {}}


def test_action_mask_goes_into_infos_as_int8():
    env = to_parallel_env(tictactoe())
    _, infos = env.reset(seed=0)
    mask = infos["player_0"]["action_mask"]
    assert mask.dtype == np.int8
    assert mask.tolist() == [1] * 9


def test_turn_based_agents_stay_listed_while_waiting_and_their_actions_are_ignored():
    env = to_parallel_env(tictactoe())
    first, _ = env.reset(seed=0)
    obs, rewards, terminations, _, infos = env.step({"player_0": 4})
    assert env.agents == ["player_0", "player_1"]
    assert "player_1" in env.possible_agents
    assert infos["player_0"]["waiting"] and not infos["player_0"]["action_mask"].any()
    assert infos["player_1"]["action_mask"][4] == 0
    np.testing.assert_array_equal(obs["player_0"], first["player_0"])  # its latest observation
    assert rewards == {"player_0": 0.0, "player_1": 0.0} and not any(terminations.values())
    # player_0's (illegal) action is ignored: it is player_1's turn.
    obs, *_ = env.step({"player_0": 4, "player_1": 0})
    assert obs["player_0"][..., 0].sum() == 1 and obs["player_0"][..., 1].sum() == 1


def test_won_game_ends_every_agent_and_next_reset_reuses_the_first_decision():
    inner = tictactoe()
    env = to_parallel_env(inner)
    env.reset(seed=0)
    seeds = count_resets(inner)
    for square in [0, 3, 1, 4]:
        env.step({agent: square for agent in env.agents})
    obs, rewards, terminations, truncations, _ = env.step({agent: 2 for agent in env.agents})
    assert rewards == {"player_0": 1.0, "player_1": -1.0}
    assert terminations == {"player_0": True, "player_1": True}
    assert not any(truncations.values())
    assert env.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})
    obs, _ = env.reset()
    assert env.agents == ["player_0"] and not obs["player_0"].any()
    assert seeds == []  # the wrapped env had already started the next game


def test_reset_with_a_seed_resets_the_wrapped_env_reproducibly():
    inner = GymnasiumEnv("CartPole-v1", num_envs=1)
    env = to_parallel_env(inner)
    seeds = count_resets(inner)
    first, _ = env.reset(seed=4)
    again, _ = env.reset(seed=4)
    assert seeds == [4, 4]
    np.testing.assert_array_equal(first["CartPole_0"], again["CartPole_0"])


def test_early_finisher_leaves_the_episode_and_idled_copies_force_a_fresh_reset():
    inner = GymnasiumEnv("CartPole-v1", num_envs=2)
    env = to_parallel_env(inner)
    env.reset(seed=0)
    seeds = count_resets(inner)
    returns = {"CartPole_0": 0.0, "CartPole_1": 0.0}
    finished = []
    # Copy 0 always pushes left and falls fast; copy 1 balances a little longer.
    steps = 0
    while env.agents:
        steps += 1
        actions = {"CartPole_0": 0, "CartPole_1": steps % 2}
        _, rewards, terminations, truncations, _ = env.step({a: actions[a] for a in env.agents})
        for agent, reward in rewards.items():
            assert agent not in finished, f"{agent} reported after its episode ended"
            returns[agent] += reward
        finished += [a for a in terminations if terminations[a] or truncations[a]]
    assert finished == ["CartPole_0", "CartPole_1"]
    assert returns["CartPole_0"] < returns["CartPole_1"] == steps
    env.reset()
    assert seeds == [None]  # copy 0 had been idled mid-episode, so its state is not a fresh start
