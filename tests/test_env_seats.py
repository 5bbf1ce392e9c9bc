"""The env API's ``seats``: which game each agent plays in and its seat there, for self-play without team ids."""

import numpy as np
import pytest
from pettingzoo.classic import tictactoe_v3

from sparring.envs.gymnasium import GymnasiumEnv
from sparring.envs.pettingzoo import PettingZooEnv
from sparring.envs.vector import ID_STRIDE, SerialVectorEnv, SubprocVectorEnv


def tictactoe() -> PettingZooEnv:
    return PettingZooEnv(tictactoe_v3.env())


def test_a_pettingzoo_game_seats_each_agent_at_its_index_among_the_possible_agents():
    env = tictactoe()
    games, seats = env.seats("player", np.array([1, 0], np.int64))
    assert games.tolist() == [0, 0] and seats.tolist() == [1, 0]
    assert [env.agent_names[s] for s in seats] == ["player_2", "player_1"]


@pytest.mark.parametrize("vector", [SerialVectorEnv, SubprocVectorEnv])
def test_copies_forward_seats_with_one_game_per_copy(vector):
    with vector([tictactoe] * 3) as env:
        env.reset(seed=0)
        ids = np.array([2 * ID_STRIDE + 1, 0, ID_STRIDE, 1, ID_STRIDE + 1], np.int64)
        for _ in range(2):  # the second answer comes from what the copies said the first time
            games, seats = env.seats("player", ids)
            assert games.tolist() == [2, 0, 1, 0, 1] and seats.tolist() == [1, 0, 0, 1, 1]
            assert games.dtype == seats.dtype == np.int64


def cartpole() -> GymnasiumEnv:
    return GymnasiumEnv("CartPole-v1")


def test_sources_that_do_not_seat_agents_say_none():
    assert cartpole().seats("CartPole", np.zeros(1, np.int64)) is None
    with SerialVectorEnv([cartpole] * 2) as copies:
        copies.reset(seed=0)
        assert copies.seats("CartPole", np.array([0, ID_STRIDE], np.int64)) is None


def test_copies_say_whether_they_seat_agents_before_any_agent_is_known():
    with SerialVectorEnv([tictactoe] * 2) as seated, SerialVectorEnv([cartpole] * 2) as unseated:
        assert seated.seats("player", np.zeros(0, np.int64)) is not None
        assert unseated.seats("CartPole", np.zeros(0, np.int64)) is None
