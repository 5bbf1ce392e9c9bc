"""The rollout buffer links each agent's own trajectory and computes GAE as CleanRL does."""

import numpy as np
import pytest

from sparring.agents.rollout import AgentSlots, RolloutBuffer


def reference_gae(rewards, values, dones, last_value, gamma, lam):
    """CleanRL's recursion for one agent: dones[t] means the episode ended after step t."""
    adv = np.zeros(len(rewards))
    last = 0.0
    for t in reversed(range(len(rewards))):
        next_value = last_value if t == len(rewards) - 1 else values[t + 1]
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * nonterminal - values[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv


def make_buffer():
    return RolloutBuffer(obs_size=1, action_shape=(), action_dtype=np.int64, mask_size=0)


def test_agent_slots_are_stable_and_dense():
    slots = AgentSlots()
    first = slots.lookup(np.array([40, 7, 2**33], np.int64))
    again = slots.lookup(np.array([2**33, 40, 99, 7], np.int64))
    assert sorted(first.tolist()) == [0, 1, 2]
    assert again.tolist() == [first[2], first[0], 3, first[1]]


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (0.5, 0.0)])
def test_gae_matches_reference_for_interleaved_agents(gamma, lam):
    rng = np.random.default_rng(0)
    steps, ids = 12, np.array([3, 11], np.int64)
    rewards = rng.normal(size=(steps, 2)).astype(np.float32)
    values = rng.normal(size=(steps, 2)).astype(np.float32)
    dones = np.zeros((steps, 2))
    dones[4, 0] = dones[9, 1] = 1  # agent 3 ends after step 4, agent 11 after step 9
    last_values = rng.normal(size=2).astype(np.float32)

    buf = make_buffer()
    for t in range(steps):
        slots = buf.slots_of(ids)
        buf.add(slots, np.zeros((2, 1)), np.zeros(2, np.int64), np.zeros(2), values[t], None)
        # the env answers: rewards for the step, and terminals where episodes ended
        buf.credit(slots, rewards[t])
        ended = dones[t] == 1
        if ended.any():
            buf.end_episodes(slots[ended], np.zeros(ended.sum(), np.float32))
    advantages, returns = (column[:, 0] for column in buf.finish(buf.slots_of(ids), last_values, gamma, lam))

    for k in range(2):
        expected = reference_gae(rewards[:, k], values[:, k], dones[:, k], last_values[k], gamma, lam)
        np.testing.assert_allclose(advantages[k::2], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(returns, advantages + values.reshape(-1), rtol=1e-6)


def test_time_horizon_cuts_each_trajectory_and_bootstraps_from_the_value_at_the_cut():
    """ML-Agents' time_horizon 3 on one agent's 8 decisions (its episode ending after the 7th, the 8th
    starting the next): GAE within pieces of at most 3 decisions per episode, each piece's last decision
    bootstrapped from the value estimated at the decision after it, the episode's end from 0."""
    gamma, lam, horizon = 0.9, 0.8, 3
    rng = np.random.default_rng(1)
    rewards, values = rng.normal(size=(2, 8)).astype(np.float32)
    last_value = np.float32(0.7)
    buf = RolloutBuffer(obs_size=1, action_shape=(), action_dtype=np.int64, mask_size=0, time_horizon=horizon)
    slots = buf.slots_of(np.array([5], np.int64))
    for t in range(8):
        buf.add(slots, np.zeros((1, 1)), np.zeros(1, np.int64), np.zeros(1), values[t : t + 1], None)
        buf.credit(slots, rewards[t : t + 1])
        if t == 6:
            buf.end_episodes(slots, np.zeros(1, np.float32))
    advantages, _ = (column[:, 0] for column in buf.finish(slots, np.array([last_value]), gamma, lam))
    expected = np.concatenate([
        reference_gae(rewards[a:b], values[a:b], [0.0] * (b - a - 1) + [done], after, gamma, lam)
        for a, b, done, after in [(0, 3, 0.0, values[3]), (3, 6, 0.0, values[6]), (6, 7, 1.0, 0.0),
                                  (7, 8, 0.0, last_value)]
    ])
    np.testing.assert_allclose(advantages, expected, rtol=1e-5, atol=1e-6)


def test_agents_deciding_at_different_rates_keep_their_own_trajectories():
    buf = make_buffer()
    gamma, lam = 0.9, 0.8
    fast, slow = np.array([1], np.int64), np.array([2], np.int64)
    # fast decides every step; slow decides on steps 0 and 2 only; each earns 1 per env step
    for t in range(4):
        ids = np.array([1, 2], np.int64) if t % 2 == 0 else fast
        slots = buf.slots_of(ids)
        if t > 0:
            buf.credit(slots, np.full(len(ids), 1.0 if t % 2 else 2.0, np.float32))  # slow collects 2 steps' worth
        buf.add(slots, np.zeros((len(ids), 1)), np.zeros(len(ids), np.int64), np.zeros(len(ids)),
                np.zeros(len(ids), np.float32), None)
    adv, _ = (column[:, 0] for column in buf.finish(buf.slots_of(fast), np.zeros(1, np.float32), gamma, lam))
    rows_fast, rows_slow = [0, 2, 3, 5], [1, 4]
    assert buf.rewards[rows_slow[0]] == pytest.approx(2.0)  # credited at its next decision, not the fast agent's
    assert buf.next_row[rows_fast[:-1]].tolist() == rows_fast[1:]
    assert buf.next_row[rows_slow[0]] == rows_slow[1]
    assert np.all(adv[rows_fast[:-1]] > 0)


def test_truncated_episode_bootstraps_from_final_value():
    buf = make_buffer()
    slots = buf.slots_of(np.array([0], np.int64))
    buf.add(slots, np.zeros((1, 1)), np.zeros(1, np.int64), np.zeros(1), np.array([1.0], np.float32), None)
    buf.credit(slots, np.array([0.5], np.float32))
    buf.end_episodes(slots, np.array([10.0], np.float32))  # truncated: V(final obs) = 10
    adv, ret = (column[:, 0] for column in buf.finish(np.zeros(0, np.int64), np.zeros(0, np.float32), gamma=0.9, gae_lambda=0.95))
    assert ret[0] == pytest.approx(0.5 + 0.9 * 10.0)


def test_episode_returns_are_reported_per_agent():
    buf = make_buffer()
    slots = buf.slots_of(np.array([5, 6], np.int64))
    for _ in range(3):
        buf.add(slots, np.zeros((2, 1)), np.zeros(2, np.int64), np.zeros(2), np.zeros(2, np.float32), None)
        buf.credit(slots, np.array([1.0, -2.0], np.float32))
    returns, lengths = buf.end_episodes(slots, np.zeros(2, np.float32))
    assert returns.tolist() == [3.0, -6.0] and lengths.tolist() == [3, 3]


def test_lost_agent_drops_its_unfinished_transition_and_episode():
    buf = make_buffer()
    gamma, lam = 0.9, 0.95
    slots = buf.slots_of(np.array([7], np.int64))
    values = [1.0, 2.0, 3.0]
    for t in range(3):
        if t:
            buf.credit(slots, np.array([1.0], np.float32))
        buf.add(slots, np.zeros((1, 1)), np.zeros(1, np.int64), np.zeros(1), np.array([values[t]], np.float32), None)
    buf.credit(slots, np.array([5.0], np.float32))  # partial reward of the step the engine never finished
    buf.drop(slots)
    adv, _ = (column[:, 0] for column in buf.finish(np.zeros(0, np.int64), np.zeros(0, np.float32), gamma, lam))
    assert buf.valid[:3].tolist() == [True, True, False]
    assert adv[2] == 0.0
    # the row before the lost one bootstraps from the lost row's value, like a truncation
    assert adv[1] == pytest.approx(1.0 + gamma * 3.0 - 2.0)
    assert buf.episode_return[slots[0]] == 0.0  # the partial episode is not reported


def test_agent_memory_grows_keeps_each_agent_s_state_and_forgets_on_request():
    from sparring.agents.rollout import AgentMemory

    memory = AgentMemory(2)
    np.testing.assert_array_equal(memory.get(np.array([7, 2**40])), np.zeros((2, 2)))  # never seen: zeros
    memory.set(np.array([7, 2**40]), np.array([[1, 2], [3, 4]], np.float32))
    for agent in range(100, 140):  # many newcomers: the table grows
        memory.set(np.array([agent]), np.full((1, 2), agent, np.float32))
    np.testing.assert_array_equal(memory.get(np.array([2**40, 7, 139])), [[3, 4], [1, 2], [139, 139]])
    memory.forget(np.array([7]))
    np.testing.assert_array_equal(memory.get(np.array([7, 2**40])), [[0, 0], [3, 4]])


def test_sequences_cut_each_agent_s_episodes_in_order_and_pad_their_ends():
    """Agents 1 and 3 decide every step, agent 2's episode ends after step 1 and another starts at step 3."""
    buffer = RolloutBuffer(1, (), np.int64, 0, memory_size=2)
    for t in range(5):
        ids = np.array([1, 2, 3]) if t != 2 else np.array([1, 3])
        slots = buffer.slots_of(ids)
        n = len(ids)
        buffer.add(slots, np.full((n, 1), t, np.float32), np.zeros(n, np.int64), np.zeros(n), np.zeros(n), None,
                   np.full((n, 2), t, np.float32))
        if t == 1:
            buffer.end_episodes(buffer.slots_of(np.array([2])), np.zeros(1, np.float32))
    sequences = buffer.sequences(2)
    steps = np.where(sequences >= 0, buffer.obs[sequences, 0], -1)  # the env step of each row
    agent_1_and_3 = [(0, 1), (2, 3), (4, -1)]  # the last piece padded
    agent_2 = [(0, 1), (3, 4)]  # never across its episode's end
    assert sorted(map(tuple, steps.astype(int).tolist())) == sorted(2 * agent_1_and_3 + agent_2)
    # each sequence starts from the memory stored with its first row
    np.testing.assert_array_equal(buffer.memories[sequences[:, 0], 0], steps[:, 0])
