"""On-policy rollout storage for one behaviour whose agents come, go and decide at their own pace.

Each decision becomes a row. Rows of the same agent are linked (``next_row``)
so GAE can follow every agent's own trajectory while the work stays batched:
the backward recursion runs once per env step over all rows added in that
step, never once per agent. Agent ids map to dense slots with a sorted-array
lookup, so no Python dict is touched per agent either.
"""

from __future__ import annotations

import copy

import numpy as np


class AgentSlots:
    """Dense, stable slot numbers for int64 agent ids (vectorised lookup)."""

    def __init__(self) -> None:
        self._keys = np.zeros(0, np.int64)  # sorted agent ids
        self._slots = np.zeros(0, np.int64)  # slot of each key
        self._last_ids = np.zeros(0, np.int64)  # most envs ask about the same agents step after step
        self._last_slots = np.zeros(0, np.int64)
        self.size = 0

    def lookup(self, agent_ids: np.ndarray) -> np.ndarray:
        """Slots of ``agent_ids``, assigning new slots to ids never seen before."""
        if np.array_equal(agent_ids, self._last_ids):
            return self._last_slots
        self._last_ids, self._last_slots = agent_ids.copy(), self._find(agent_ids)
        return self._last_slots

    def _find(self, agent_ids: np.ndarray) -> np.ndarray:
        if len(agent_ids) == 0:
            return np.zeros(0, np.int64)
        pos = np.searchsorted(self._keys, agent_ids)
        found = pos < len(self._keys)
        found[found] = self._keys[pos[found]] == agent_ids[found]
        if not found.all():
            new = np.unique(agent_ids[~found])
            keys = np.concatenate([self._keys, new])
            slots = np.concatenate([self._slots, np.arange(self.size, self.size + len(new))])
            order = np.argsort(keys, kind="stable")
            self._keys, self._slots = keys[order], slots[order]
            self.size += len(new)
            pos = np.searchsorted(self._keys, agent_ids)
        return self._slots[pos]


class AgentMemory:
    """Each agent's recurrent state between its decisions: zeros for an agent not seen since it was forgotten."""

    def __init__(self, size: int) -> None:
        self._slots = AgentSlots()
        self.state = np.zeros((0, size), np.float32)

    def _rows(self, agent_ids: np.ndarray) -> np.ndarray:
        slots = self._slots.lookup(agent_ids)
        if self._slots.size > len(self.state):
            self.state = _grow(self.state, max(self._slots.size, 2 * len(self.state)))
        return slots

    def get(self, agent_ids: np.ndarray) -> np.ndarray:
        rows = self._rows(agent_ids)  # first: it may grow self.state
        return self.state[rows]

    def set(self, agent_ids: np.ndarray, state: np.ndarray) -> None:
        rows = self._rows(agent_ids)
        self.state[rows] = state

    def forget(self, agent_ids: np.ndarray) -> None:
        """The episodes of ``agent_ids`` ended: their next decision starts from zeros."""
        rows = self._rows(agent_ids)
        self.state[rows] = 0.0


def _grow(arr: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, *arr.shape[1:]), arr.dtype)
    out[: len(arr)] = arr
    return out


class RolloutBuffer:
    """Preallocated rows of (obs, action, log-prob, values, reward, link) for PPO.

    Args:
        obs_size: width of the (flattened, normalised) policy input.
        action_shape: shape of one action row (``()`` for Discrete).
        action_dtype: ``int64`` or ``float32``.
        mask_size: width of the action mask, 0 if the behaviour has none.
        memory_size: width of a recurrent policy's state, kept for each row as it was before the decision.
        time_horizon: cut each agent's trajectory after this many decisions of an episode (ML-Agents'
            ``time_horizon``): the cut's last row bootstraps from the value estimated at the next decision
            instead of following the agent on, and a recurrent policy's sequences end there. None: no cuts.
        value_heads: value estimates per row, one per reward signal (see :mod:`~sparring.agents.reward_signals`);
            values, bootstraps, advantages and returns are ``(rows, value_heads)``.
        keep_next_obs: also keep, per row, the observation at the agent's next decision or episode end (what
            a curiosity signal learns from); a row whose next observation never came keeps its own.
    """

    _COLUMNS = ("obs", "actions", "log_probs", "values", "rewards", "next_row", "next_value", "masks", "valid",
                "memories", "ends", "next_obs")

    def __init__(self, obs_size: int, action_shape: tuple[int, ...], action_dtype: type, mask_size: int,
                 memory_size: int = 0, time_horizon: int | None = None, value_heads: int = 1,
                 keep_next_obs: bool = False) -> None:
        self.time_horizon = time_horizon
        self.value_heads = value_heads
        capacity = 256
        self.obs = np.zeros((capacity, obs_size), np.float32)
        self.next_obs = np.zeros((capacity, obs_size if keep_next_obs else 0), np.float32)
        self.memories = np.zeros((capacity, memory_size), np.float32)
        self.actions = np.zeros((capacity, *action_shape), action_dtype)
        self.log_probs = np.zeros(capacity, np.float32)
        self.values = np.zeros((capacity, value_heads), np.float32)
        self.rewards = np.zeros(capacity, np.float32)  # the game's reward; other signals' are computed at the end
        self.next_row = np.full(capacity, -1, np.int64)  # the same agent's next row, -1: none in this rollout
        self.next_value = np.zeros((capacity, value_heads), np.float32)  # bootstrap values when next_row == -1
        self.ends = np.zeros(capacity, bool)  # the agent's episode ended after this row
        self.masks = np.ones((capacity, mask_size), bool)
        self.valid = np.ones(capacity, bool)  # False: the agent was lost before this transition ended
        self.has_masks = False
        self.size = 0
        self._step_starts: list[int] = []
        self._slots = AgentSlots()
        self.pending = np.zeros(0, np.int64)  # per slot: row awaiting its reward, -1: none
        self.episode_return = np.zeros(0, np.float64)  # per slot, episode so far
        self.episode_length = np.zeros(0, np.int64)

    # -- per env step -----------------------------------------------------------

    def slots_of(self, agent_ids: np.ndarray) -> np.ndarray:
        """Dense slots for agent ids; per-slot state grows to cover new agents."""
        slots = self._slots.lookup(agent_ids)
        if self._slots.size > len(self.pending):
            size = max(self._slots.size, 2 * len(self.pending))
            self.pending = np.concatenate([self.pending, np.full(size - len(self.pending), -1, np.int64)])
            self.episode_return = _grow(self.episode_return, size)
            self.episode_length = _grow(self.episode_length, size)
        return slots

    def credit(self, slots: np.ndarray, rewards: np.ndarray) -> None:
        """Add rewards to each slot's pending row (the action that earned them)."""
        rows = self.pending[slots]
        has = rows >= 0
        self.rewards[rows[has]] += rewards[has]
        self.episode_return[slots] += rewards

    def end_episodes(self, slots: np.ndarray, bootstrap: np.ndarray, final_obs: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Close each slot's trajectory and return the finished ``(episode returns, lengths)``.

        ``bootstrap`` (per value head) is 0 where the episode terminated and V(final obs) where it
        was truncated (or for a head that looks past episode ends). Rewards of the final step must be
        credited first. ``final_obs``: the episodes' last observations, kept with ``keep_next_obs``.
        """
        rows = self.pending[slots]
        has = rows >= 0
        self.next_value[rows[has]] = self._per_head(bootstrap)[has]
        self.ends[rows[has]] = True
        if final_obs is not None and self.next_obs.shape[1]:
            self.next_obs[rows[has]] = final_obs[has]
        self.pending[slots] = -1
        finished = self.episode_return[slots].copy(), self.episode_length[slots].copy()
        self.episode_return[slots] = 0.0
        self.episode_length[slots] = 0
        return finished

    def drop(self, slots: np.ndarray) -> None:
        """Forget the unfinished transitions and episodes of agents lost mid-episode.

        Their last row is not trained on (nothing is known of what followed it),
        and rows before it bootstrap from its value estimate, as at a truncation.
        """
        rows = self.pending[slots]
        self.valid[rows[rows >= 0]] = False
        self.pending[slots] = -1
        self.episode_return[slots] = 0.0
        self.episode_length[slots] = 0

    def add(
        self,
        slots: np.ndarray,
        obs: np.ndarray,
        actions: np.ndarray,
        log_probs: np.ndarray,
        values: np.ndarray,
        masks: np.ndarray | None,
        memories: np.ndarray | None = None,
    ) -> None:
        """Append one row per deciding agent and link it after that agent's previous row."""
        n = len(slots)
        start, end = self.size, self.size + n
        if end > len(self.obs):
            self._reserve(max(end, 2 * len(self.obs)))
        rows = np.arange(start, end)
        values = self._per_head(values)
        prev = self.pending[slots]
        has = prev >= 0
        if self.next_obs.shape[1]:
            self.next_obs[prev[has]] = obs[has]
            self.next_obs[start:end] = obs  # until the next one comes
        if self.time_horizon is not None:  # a trajectory of time_horizon decisions ends at prev
            cut = has & (self.episode_length[slots] % self.time_horizon == 0)
            self.next_value[prev[cut]] = values[cut]
            has &= ~cut
        self.next_row[prev[has]] = rows[has]
        self.obs[start:end] = obs
        self.actions[start:end] = actions
        self.log_probs[start:end] = log_probs
        self.values[start:end] = values
        self.rewards[start:end] = 0.0
        self.next_row[start:end] = -1
        self.next_value[start:end] = 0.0
        self.ends[start:end] = False
        self.valid[start:end] = True
        if masks is not None:
            self.masks[start:end] = masks
            self.has_masks = True
        else:
            self.masks[start:end] = True
        if memories is not None:
            self.memories[start:end] = memories
        self.pending[slots] = rows
        self.episode_length[slots] += 1
        self._step_starts.append(start)
        self.size = end

    # -- end of rollout ---------------------------------------------------------

    def _per_head(self, values: np.ndarray) -> np.ndarray:
        """Values as ``(rows, value_heads)`` (one head's may come as ``(rows,)``)."""
        return values.reshape(len(values), self.value_heads)

    def finish(
        self, slots: np.ndarray, bootstrap: np.ndarray, gamma: float | np.ndarray, gae_lambda: float,
        rewards: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`close` then :meth:`advantages`: ``(advantages, returns)``, ``(rows, value_heads)`` each."""
        self.close(slots, bootstrap)
        return self.advantages(gamma, gae_lambda, rewards)

    def close(self, slots: np.ndarray, bootstrap: np.ndarray, obs: np.ndarray | None = None) -> None:
        """Bootstrap the open trajectories at the end of the rollout.

        ``slots``/``bootstrap``: the agents deciding right now and V(their obs) (``obs``: those observations,
        kept as their open rows' next ones with ``keep_next_obs``). An agent still waiting to decide (a
        slower decision rate) bootstraps from its own last value estimate: its reward so far is kept, the
        rest of that step's reward is credited to no row.
        """
        rows = self.pending[slots]
        has = rows >= 0
        self.next_value[rows[has]] = self._per_head(bootstrap)[has]
        if obs is not None and self.next_obs.shape[1]:
            self.next_obs[rows[has]] = obs[has]
        waiting = self.pending[self.pending >= 0]
        waiting = waiting[np.isin(waiting, rows[has], invert=True)]
        self.next_value[waiting] = self.values[waiting]
        self.pending[:] = -1

    def advantages(self, gamma: float | np.ndarray, gae_lambda: float, rewards: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """``(advantages, returns)`` by GAE, per value head with that head's ``gamma`` (a scalar: every head's).

        ``rewards``: ``(rows, value_heads)``, each signal's reward per row; by default the game's, for one head.
        """
        n = self.size
        rewards = self.rewards[:n, None] if rewards is None else rewards
        gamma = np.broadcast_to(np.asarray(gamma, np.float32), (self.value_heads,))
        values, next_row = self.values[:n], self.next_row[:n]
        cont = (next_row >= 0)[:, None]
        next_values = np.where(cont, self.values[next_row], self.next_value[:n])
        deltas = np.where(self.valid[:n, None], rewards + gamma * next_values - values, 0.0)
        discount = (gamma * gae_lambda) * cont
        advantages = np.zeros((n + 1, self.value_heads), np.float32)  # advantages[-1] == 0: the end-of-trajectory sentinel
        bounds = [*self._step_starts, n]
        for start, end in zip(reversed(bounds[:-1]), reversed(bounds[1:])):
            advantages[start:end] = deltas[start:end] + discount[start:end] * advantages[next_row[start:end]]
        advantages = advantages[:n]
        return advantages, advantages + values

    def sequences(self, length: int) -> np.ndarray:
        """The rows cut into sequences for a recurrent policy: ``(sequences, length)`` row indices, -1 after the end.

        Each agent's rows in this rollout, episode by episode, are cut into consecutive pieces of
        ``length`` decisions (the last piece of an episode padded), as ML-Agents cuts trajectories; a
        sequence starts from the memory stored with its first row. Like GAE, the work is one batched
        step per env step.
        """
        n = self.size
        next_row = self.next_row[:n]
        linked = np.flatnonzero(next_row >= 0)
        prev = np.full(n, -1, np.int64)
        prev[next_row[linked]] = linked
        position = np.zeros(n, np.int64)  # decisions before this one in its chain of linked rows
        chain = np.arange(n)  # the chain's first row
        bounds = [*self._step_starts, n]
        for start, end in zip(bounds[:-1], bounds[1:]):
            before = prev[start:end]
            has = before >= 0
            position[start:end][has] = position[before[has]] + 1
            chain[start:end][has] = chain[before[has]]
        keys, sequence = np.unique(np.stack([chain, position // length], 1), axis=0, return_inverse=True)
        out = np.full((len(keys), length), -1, np.int64)
        out[sequence.reshape(-1), position % length] = np.arange(n)
        return out

    def detach(self) -> RolloutBuffer:
        """The closed rollout's rows as a buffer of their own, and this one cleared to collect the next.

        What an update reads (rows, links, step boundaries) is copied; what continues across rollouts (the
        agents' slots and running episodes) stays here, so acting can go on while another thread learns from
        the copy. The copy is for reading rows only: it collects nothing.
        """
        rows = copy.copy(self)
        for name in self._COLUMNS:
            setattr(rows, name, getattr(self, name)[: self.size].copy())
        rows._step_starts = list(self._step_starts)
        self.clear()
        return rows

    def clear(self) -> None:
        self.size = 0
        self.has_masks = False
        self._step_starts.clear()

    # -- storage ---------------------------------------------------------------

    def _reserve(self, rows: int) -> None:
        for name in self._COLUMNS:
            setattr(self, name, _grow(getattr(self, name), rows))
        self.next_row[self.size :] = -1
