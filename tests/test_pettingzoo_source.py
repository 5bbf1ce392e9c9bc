"""PettingZooEnv: AEC and Parallel PettingZoo envs as behaviour-grouped sparring envs."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces
import pettingzoo
from pettingzoo import ParallelEnv

from sparring.envs.base import check_env
from sparring.envs.pettingzoo import PettingZooEnv


class Skirmish(ParallelEnv):
    """Two scouts and a tank. Scouts decide every step, the tank every other step.

    Every step pays each live scout 1.0 and the tank 0.5. scout_0 is destroyed
    (terminated) after step 3; the rest are truncated after step 6. The tank's
    legal actions arrive in ``infos`` as a mask.
    """

    metadata = {"name": "skirmish_v0"}
    possible_agents = ["scout_0", "scout_1", "tank_0"]
    TANK_MASK = np.array([1, 1, 0, 0], np.int8)

    def __init__(self):
        self.seeds = []
        self.received = []  # the action dicts step was given
        self._spaces = {
            "scout": (spaces.Box(-10, 10, (3,), np.float32), spaces.Discrete(2)),
            "tank": (spaces.Box(-10, 10, (5,), np.float32), spaces.Discrete(4)),
        }

    def observation_space(self, agent):
        return self._spaces[agent[:-2]][0]

    def action_space(self, agent):
        return self._spaces[agent[:-2]][1]

    def reset(self, seed=None, options=None):
        self.seeds.append(seed)
        self.t = 0
        self.agents = list(self.possible_agents)
        return self._observe(self.agents), self._infos(self.agents)

    def step(self, actions):
        self.received.append(dict(actions))
        self.t += 1
        rewards = {a: 0.5 if a == "tank_0" else 1.0 for a in self.agents}
        terminations = {a: a == "scout_0" and self.t == 3 for a in self.agents}
        truncations = dict.fromkeys(self.agents, self.t == 6)
        ended = [a for a in self.agents if terminations[a] or truncations[a]]
        observed = list(ended)
        self.agents = [a for a in self.agents if a not in ended]
        observed += [a for a in self.agents if a != "tank_0" or self.t % 2 == 0]
        return self._observe(observed), rewards, terminations, truncations, self._infos(observed)

    def _observe(self, agents):
        return {a: np.full(self.observation_space(a).shape, self.t, np.float32) for a in agents}

    def _infos(self, agents):
        return {a: {"action_mask": self.TANK_MASK} if a == "tank_0" else {} for a in agents}


def tictactoe():
    return pettingzoo.make("aec", "classic/tictactoe-v3")


def legal_random_actions(result, rng):
    actions = {}
    for name, step in result.items():
        decisions = step.decisions
        if len(decisions):
            mask = decisions.action_mask
            if mask is None:
                mask = np.ones((len(decisions), 2), bool)
            actions[name] = np.array([rng.choice(np.flatnonzero(row)) for row in mask], np.int64)
    return actions


def delivered_rewards(env, result, totals):
    """Add every decision and terminal reward to ``totals[agent_name]``."""
    for step in result.values():
        for part in (step.decisions, step.terminals):
            for agent_id, reward in zip(part.agent_ids, part.rewards):
                name = env.agent_names[agent_id]
                totals[name] = totals.get(name, 0.0) + float(reward)


def play_tictactoe(env, moves):
    """Play the given squares in turn; return every result."""
    results = [env.reset(seed=0)]
    for square in moves:
        results.append(env.step({"player": np.array([square])}))
    return results


@pytest.mark.parametrize("make", [tictactoe, Skirmish], ids=["tictactoe-aec", "skirmish-parallel"])
def test_random_rollout_meets_the_env_contract(make):
    check_env(PettingZooEnv(make()), steps=200, seed=0)


def test_numbered_agents_share_a_behaviour_and_ids_are_seat_indices():
    env = PettingZooEnv(tictactoe())
    assert list(env.specs) == ["player"]
    assert env.agent_names == ("player_1", "player_2")
    assert env.behaviour_of == {"player_1": "player", "player_2": "player"}


def test_masked_dict_observation_becomes_box_plus_bool_mask():
    env = PettingZooEnv(tictactoe())
    spec = env.specs["player"]
    assert spec.observation_space == spaces.Box(0, 1, (3, 3, 2), np.int8)
    results = play_tictactoe(env, [4])
    decisions = results[-1]["player"].decisions
    assert decisions.action_mask.dtype == bool
    expected = np.ones(9, bool)
    expected[4] = False
    np.testing.assert_array_equal(decisions.action_mask[0], expected)


def test_tictactoe_asks_one_player_per_step_in_turn():
    env = PettingZooEnv(tictactoe())
    results = play_tictactoe(env, [0, 4, 8])
    assert [r["player"].decisions.agent_ids.tolist() for r in results] == [[0], [1], [0], [1]]


def test_won_game_pays_winner_plus_one_and_loser_minus_one_once():
    env = PettingZooEnv(tictactoe())
    # player_1 takes the top row (0, 1, 2) while player_2 plays 3 and 4.
    results = play_tictactoe(env, [0, 3, 1, 4, 2])
    for result in results[:-1]:
        assert result["player"].decisions.rewards.tolist() == [0.0]
        assert len(result["player"].terminals) == 0
    last = results[-1]["player"]
    outcome = dict(zip(last.terminals.agent_ids.tolist(), last.terminals.rewards.tolist()))
    assert outcome == {0: 1.0, 1: -1.0}
    assert not last.terminals.truncated.any()
    # The next game's first decision is in the same result, on an empty board, with nothing left to pay.
    assert last.decisions.agent_ids.tolist() == [0]
    assert last.decisions.rewards.tolist() == [0.0]
    assert not last.decisions.obs.any()


def test_agents_with_different_spaces_cannot_share_a_behaviour():
    with pytest.raises(ValueError, match=r"scout_0.*tank_0"):
        PettingZooEnv(Skirmish(), behaviours={"tank_0": "scout"})


def test_behaviours_mapping_overrides_the_name_grouping():
    env = PettingZooEnv(Skirmish(), behaviours={"scout_1": "sniper"})
    assert sorted(env.specs) == ["scout", "sniper", "tank"]
    assert env.behaviour_of["scout_0"] == "scout"


def test_declared_groups_reach_every_decision_and_terminal_of_their_agents():
    env = PettingZooEnv(Skirmish(), groups={"scout_0": "red", "scout_1": "red"})
    result = env.reset(seed=0)
    assert result["scout"].decisions.group_ids.tolist() == [1, 1]
    assert result["tank"].decisions.group_ids.tolist() == [0]
    rng = np.random.default_rng(0)
    for _ in range(6):
        result = env.step(legal_random_actions(result, rng))
        for step in result.values():
            for part in (step.decisions, step.terminals):
                assert part.group_ids.tolist() == [1 if agent < 2 else 0 for agent in part.agent_ids]
                assert not part.group_rewards.any()  # PettingZoo's rewards are the agents' own
    check_env(PettingZooEnv(Skirmish(), groups={"scout_0": "red", "scout_1": "red"}), steps=20)


def test_a_group_must_name_real_agents_of_one_behaviour():
    with pytest.raises(ValueError, match="not in possible_agents"):
        PettingZooEnv(Skirmish(), groups={"scout_7": "red"})
    with pytest.raises(ValueError, match="mixes behaviours"):
        PettingZooEnv(Skirmish(), groups={"scout_0": "red", "tank_0": "red"})


def test_parallel_agents_decide_at_their_own_rate_and_keep_their_rewards():
    env = PettingZooEnv(Skirmish())
    result = env.reset(seed=0)
    assert result["scout"].decisions.agent_ids.tolist() == [0, 1]
    assert result["tank"].decisions.agent_ids.tolist() == [2]
    assert result["scout"].decisions.obs.shape == (2, 3) and result["tank"].decisions.obs.shape == (1, 5)
    tank_rows = []
    for _ in range(6):
        result = env.step(legal_random_actions(result, np.random.default_rng(0)))
        tank = result["tank"]
        tank_rows.append((tank.decisions.rewards.tolist()[:1], tank.terminals.rewards.tolist()))
    # The tank waits on odd steps; its 0.5 per step arrives with its next decision, or its end.
    assert tank_rows[:5] == [([], []), ([1.0], []), ([], []), ([1.0], []), ([], [])]
    assert tank_rows[5] == ([0.0], [1.0])  # truncated at step 6, restarted in the same result
    # The env was only asked to act for agents that were asked to decide.
    assert [sorted(a) for a in env.env.received[:2]] == [["scout_0", "scout_1", "tank_0"], ["scout_0", "scout_1"]]


def test_parallel_episode_rewards_are_delivered_exactly_once():
    env = PettingZooEnv(Skirmish())
    totals = {}
    result = env.reset(seed=0)
    for _ in range(6):  # exactly one episode
        result = env.step(legal_random_actions(result, np.random.default_rng(0)))
        delivered_rewards(env, result, totals)
    assert totals == {"scout_0": 3.0, "scout_1": 6.0, "tank_0": 3.0}


def test_terminated_and_truncated_agents_are_told_apart():
    env = PettingZooEnv(Skirmish())
    result = env.reset(seed=0)
    ends = {}
    for _ in range(6):
        result = env.step(legal_random_actions(result, np.random.default_rng(0)))
        for step in result.values():
            ends.update(zip(step.terminals.agent_ids.tolist(), step.terminals.truncated.tolist()))
    assert ends == {0: False, 1: True, 2: True}


def test_action_mask_from_infos_is_used():
    env = PettingZooEnv(Skirmish())
    result = env.reset(seed=0)
    np.testing.assert_array_equal(result["tank"].decisions.action_mask, [[True, True, False, False]])
    assert result["scout"].decisions.action_mask is None


def test_episodes_reset_with_base_seed_plus_episode_count():
    inner = Skirmish()
    env = PettingZooEnv(inner)
    result = env.reset(seed=7)
    for _ in range(12):
        result = env.step(legal_random_actions(result, np.random.default_rng(0)))
    assert inner.seeds == [7, 8, 9]


def test_random_opponent_leaves_one_rotating_learner_seat():
    env = PettingZooEnv(tictactoe(), opponent="random")
    rng = np.random.default_rng(0)
    result = env.reset(seed=0)
    seats = [result["player"].decisions.agent_ids.tolist()]
    for _ in range(60):
        step = result["player"]
        assert len(step.decisions) == 1  # only the learner's seat ever decides
        result = env.step(legal_random_actions(result, rng))
        step = result["player"]
        if len(step.terminals):
            assert step.terminals.agent_ids.tolist() == seats[-1]
            seats.append(step.decisions.agent_ids.tolist())
        else:
            assert step.decisions.agent_ids.tolist() == seats[-1]
    assert len(seats) > 6
    assert seats == [[k % 2] for k in range(len(seats))]


def test_random_vs_random_learner_scores_near_zero_over_both_seats():
    env = PettingZooEnv(tictactoe(), opponent="random")
    rng = np.random.default_rng(1)
    result = env.reset(seed=1)
    outcomes = []
    while len(outcomes) < 1000:
        result = env.step(legal_random_actions(result, rng))
        outcomes += result["player"].terminals.rewards.tolist()
    assert set(outcomes) <= {-1.0, 0.0, 1.0}
    assert abs(np.mean(outcomes)) < 0.1


def test_callable_opponent_gets_obs_mask_and_agent_name():
    calls = []

    def first_legal(obs, mask, agent):
        calls.append((obs.shape, mask.dtype, agent))
        return int(np.flatnonzero(mask)[0])

    env = PettingZooEnv(tictactoe(), opponent=first_legal)
    env.reset(seed=0)
    env.step({"player": np.array([4])})
    assert calls == [((3, 3, 2), np.dtype(bool), "player_2")]


def test_same_seed_repeats_seats_and_opponent_moves():
    def run():
        env = PettingZooEnv(tictactoe(), opponent="random", learner_seat="random")
        rng = np.random.default_rng(0)
        result = env.reset(seed=3)
        trace = []
        for _ in range(40):
            result = env.step(legal_random_actions(result, rng))
            step = result["player"]
            trace.append(
                (step.decisions.agent_ids.tolist(), step.decisions.obs.tolist(), step.terminals.rewards.tolist())
            )
        return trace

    assert run() == run()


def test_a_wrapper_that_reshapes_rewards_is_honoured():
    """State is read past PettingZoo's forwarding wrappers only when none of them overrides it."""
    from pettingzoo.utils.wrappers import BaseWrapper

    class DoubleRewards(BaseWrapper):
        @property
        def rewards(self):
            return {agent: 2 * r for agent, r in self.env.rewards.items()}

    plain, doubled = PettingZooEnv(tictactoe()), PettingZooEnv(DoubleRewards(tictactoe()))
    for env in (plain, doubled):
        result = env.reset(seed=3)
        rng = np.random.default_rng(1)
        for _ in range(40):
            result = env.step(legal_random_actions(result, rng))
            if len(result["player"].terminals):
                break
        env.final = sorted(result["player"].terminals.rewards.tolist())
    assert plain.final == [-1.0, 1.0]  # a decisive game, so doubling shows
    assert doubled.final == [2 * r for r in plain.final]
