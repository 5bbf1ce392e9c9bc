"""Off-policy storage: a preallocated ring of transitions, and each agent's transition still waiting for its next state.

A transition is one agent's decision (observation, action) paired with what
followed it: the rewards until that agent's next decision or terminal step, and
the observation there. Agents decide at their own pace and come and go, so
:class:`OpenTransitions` keeps each agent's latest decision in a dense slot and
closes whole batches of them with numpy indexing, never a Python loop over agents.
Observations are stored raw (flattened, not normalised): a sampled batch is
normalised with the statistics of the moment it is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sparring.agents.rollout import AgentSlots


@dataclass
class Batch:
    """Sampled transitions as tensors sharing memory with freshly gathered numpy rows."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    continues: torch.Tensor  # 1.0 where the next state's value counts (not terminated), else 0.0
    masks: torch.Tensor | None  # allowed actions at obs / next_obs; None when the source never gave masks
    next_masks: torch.Tensor | None
    sequences: Sequences | None = None  # a recurrent policy's: where each row's history is


@dataclass
class Sequences:
    """The histories a recurrent policy's rows are read in: ``len(valid)`` sequences of consecutive decisions of
    one agent in one episode, valid steps first. The batch's rows are the valid steps, sequence by sequence."""

    obs: torch.Tensor  # (sequences, length + 1, obs_size): each sequence's observations, then the next after its last
    valid: torch.Tensor  # (sequences, length) bool
    actor_memory: torch.Tensor  # (sequences, memory_size): the actor's state before each sequence's first decision
    critic_memory: torch.Tensor  # the critics' state there


class ReplayBuffer:
    """A ring of ``capacity`` transitions in preallocated numpy columns.

    ``np.zeros`` reserves the memory without touching it, so a large capacity
    costs only what is filled.
    """

    _COLUMNS = ("obs", "actions", "rewards", "next_obs", "continues", "masks", "next_masks", "actor_memory",
                "critic_memory", "prev", "stamp", "prev_stamp")

    def __init__(
        self, capacity: int, obs_size: int, action_shape: tuple[int, ...], action_dtype: type, mask_size: int,
        memory_size: int = 0,
    ) -> None:
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_size), np.float32)
        self.actions = np.zeros((capacity, *action_shape), action_dtype)
        self.rewards = np.zeros(capacity, np.float32)
        self.next_obs = np.zeros((capacity, obs_size), np.float32)
        self.continues = np.zeros(capacity, np.float32)
        self.masks = np.zeros((capacity, mask_size), bool)
        self.next_masks = np.zeros((capacity, mask_size), bool)
        # A recurrent policy's: its states before each decision, and each row's link to the same agent's
        # previous transition in the episode. A link holds while that row still has the stamp (a running
        # count of rows written) it had when linked: the ring may have overwritten it since.
        self.actor_memory = np.zeros((capacity, memory_size), np.float32)
        self.critic_memory = np.zeros((capacity, memory_size), np.float32)
        self.prev = np.full(capacity if memory_size else 0, -1, np.int64)
        self.stamp = np.zeros(capacity if memory_size else 0, np.int64)
        self.prev_stamp = np.zeros(capacity if memory_size else 0, np.int64)
        self.written = 0
        self.has_masks = False
        self.size = 0
        self.pos = 0  # the next row written

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        continues: np.ndarray,
        masks: np.ndarray | None,
        next_masks: np.ndarray | None,
        memories: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Append a batch of transitions, overwriting the oldest once full (``None`` masks: all allowed).

        ``memories``: a recurrent policy's (actor states, critic states, previous rows, their stamps), the
        previous row -1 at an episode's first decision. Returns the ``(rows, stamps)`` written, an array of 2 rows
        (-1 for transitions that did not fit).
        """
        n = given = len(obs)
        if n > self.capacity:
            keep = slice(n - self.capacity, n)
            obs, actions, rewards, next_obs, continues = obs[keep], actions[keep], rewards[keep], next_obs[keep], continues[keep]
            masks = None if masks is None else masks[keep]
            next_masks = None if next_masks is None else next_masks[keep]
            memories = None if memories is None else tuple(m[keep] for m in memories)
            n = self.capacity
        end = self.pos + n
        rows = slice(self.pos, end) if end <= self.capacity else np.arange(self.pos, end) % self.capacity
        stamps = np.arange(self.written, self.written + n)
        if memories is not None:
            self.actor_memory[rows], self.critic_memory[rows], self.prev[rows], self.prev_stamp[rows] = memories
            self.stamp[rows] = stamps
        self.obs[rows] = obs
        self.actions[rows] = actions
        self.rewards[rows] = rewards
        self.next_obs[rows] = next_obs
        self.continues[rows] = continues
        if self.masks.shape[1]:
            self.masks[rows] = True if masks is None else masks
            self.next_masks[rows] = True if next_masks is None else next_masks
            self.has_masks |= masks is not None or next_masks is not None
        self.pos = end % self.capacity
        self.size = min(self.size + n, self.capacity)
        self.written += n
        written = np.full((2, given), -1, np.int64)  # a transition that did not fit links to nothing
        written[:, given - n :] = np.arange(end - n, end) % self.capacity, stamps
        return written

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        """``n`` transitions drawn uniformly with replacement (one fancy index per column)."""
        idx = rng.integers(0, self.size, n)
        masks = (torch.from_numpy(self.masks[idx]), torch.from_numpy(self.next_masks[idx])) if self.has_masks else (None, None)
        return Batch(
            torch.from_numpy(self.obs[idx]),
            torch.from_numpy(self.actions[idx]),
            torch.from_numpy(self.rewards[idx]),
            torch.from_numpy(self.next_obs[idx]),
            torch.from_numpy(self.continues[idx]),
            *masks,
        )

    def sample_sequences(self, n: int, length: int, rng: np.random.Generator) -> Batch:
        """``n`` transitions drawn uniformly, each with up to ``length - 1`` decisions of its agent's episode
        before it: a recurrent policy reads each from the state stored with the first of them (as R2D2 and
        ML-Agents' SAC replay sequences). The batch's rows are every valid step of every sequence."""
        ends = rng.integers(0, self.size, n)
        idx = np.full((n, length), -1, np.int64)
        idx[:, -1] = current = ends
        for k in range(length - 2, -1, -1):  # walk back along each agent's links while they hold
            back = np.where(current >= 0, self.prev[np.maximum(current, 0)], -1)
            holds = (back >= 0) & (self.stamp[np.maximum(back, 0)] == self.prev_stamp[np.maximum(current, 0)])
            current = np.where(holds, back, -1)
            idx[:, k] = current
        idx = np.take_along_axis(idx, np.argsort(idx < 0, axis=1, kind="stable"), 1)  # valid steps first
        valid = idx >= 0
        rows = idx[valid]  # row-major: sequence by sequence, in time order
        count = valid.sum(1)
        seq_obs = np.zeros((n, length + 1, self.obs.shape[1]), np.float32)
        seq_obs[:, :length][valid] = self.obs[rows]
        seq_obs[np.arange(n), count] = self.next_obs[idx[np.arange(n), count - 1]]
        masks = (torch.from_numpy(self.masks[rows]), torch.from_numpy(self.next_masks[rows])) if self.has_masks else (None, None)
        return Batch(
            torch.from_numpy(self.obs[rows]), torch.from_numpy(self.actions[rows]), torch.from_numpy(self.rewards[rows]),
            torch.from_numpy(self.next_obs[rows]), torch.from_numpy(self.continues[rows]), *masks,
            Sequences(torch.from_numpy(seq_obs), torch.from_numpy(valid),
                      torch.from_numpy(self.actor_memory[idx[:, 0]]), torch.from_numpy(self.critic_memory[idx[:, 0]])),
        )

    def latest_obs(self, n: int) -> np.ndarray:
        """The ``n`` most recently stored observations, oldest first."""
        n = min(n, self.size)
        return self.obs[(np.arange(self.pos - n, self.pos)) % self.capacity]

    def state_dict(self) -> dict:
        """The filled rows (a full ring keeps its write position)."""
        return {"size": self.size, "pos": self.pos, "has_masks": self.has_masks, "written": self.written,
                **{name: getattr(self, name)[: self.size].copy() for name in self._COLUMNS}}

    def load_state_dict(self, state: dict) -> None:
        size = state["size"]
        if size > self.capacity:
            raise ValueError(f"saved replay buffer holds {size} transitions, more than buffer_size {self.capacity}")
        for name in self._COLUMNS:
            if name in state:  # checkpoints from before recurrent SAC lack the memory columns
                getattr(self, name)[:size] = state[name]
        self.size, self.pos, self.has_masks = size, state["pos"] % self.capacity, state["has_masks"]
        self.written = state.get("written", size)


class OpenTransitions:
    """Per agent, the latest decision whose outcome is not known yet, plus the running episode.

    Args:
        obs_size, action_shape, action_dtype, mask_size, memory_size: as :class:`ReplayBuffer`.
    """

    _PER_SLOT = ("obs", "actions", "masks", "has_mask", "open", "episode_return", "episode_length", "actor_memory",
                 "critic_memory", "last_row", "last_stamp")

    def __init__(self, obs_size: int, action_shape: tuple[int, ...], action_dtype: type, mask_size: int,
                 memory_size: int = 0) -> None:
        self._slots = AgentSlots()
        self.memory_size = memory_size
        self.actor_memory = np.zeros((0, memory_size), np.float32)
        self.critic_memory = np.zeros((0, memory_size), np.float32)
        self.last_row = np.zeros(0, np.int64)  # the replay row of the agent's previous transition this episode, -1: none
        self.last_stamp = np.zeros(0, np.int64)
        self.obs = np.zeros((0, obs_size), np.float32)
        self.actions = np.zeros((0, *action_shape), action_dtype)
        self.masks = np.zeros((0, mask_size), bool)
        self.has_mask = np.zeros(0, bool)
        self.open = np.zeros(0, bool)
        self.episode_return = np.zeros(0, np.float64)
        self.episode_length = np.zeros(0, np.int64)

    def slots_of(self, agent_ids: np.ndarray) -> np.ndarray:
        """Dense slots for agent ids; per-slot columns grow (doubling) to cover new agents."""
        slots = self._slots.lookup(agent_ids)
        if self._slots.size > len(self.open):
            size = max(self._slots.size, 2 * len(self.open))
            for name in self._PER_SLOT:
                old = getattr(self, name)
                grown = np.full((size, *old.shape[1:]), -1 if name == "last_row" else 0, old.dtype)
                grown[: len(old)] = old
                setattr(self, name, grown)
        return slots

    def start(self, slots: np.ndarray, obs: np.ndarray, actions: np.ndarray, masks: np.ndarray | None,
              memories: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Record the decisions just taken (with a recurrent policy, the actor's and critics' states they were
        taken from); each waits for its agent's next state."""
        if memories is not None:
            self.actor_memory[slots], self.critic_memory[slots] = memories
        self.obs[slots] = obs
        self.actions[slots] = actions
        self.masks[slots] = True if masks is None else masks
        self.has_mask[slots] = masks is not None
        self.open[slots] = True
        self.episode_length[slots] += 1

    def close(
        self,
        slots: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        continues: np.ndarray,
        next_masks: np.ndarray | None,
        replay: ReplayBuffer,
    ) -> None:
        """Credit ``rewards`` and move the open transitions of ``slots`` into ``replay``."""
        self.episode_return[slots] += rewards
        is_open = self.open[slots]
        if not is_open.all():
            if not is_open.any():
                return
            slots, rewards, next_obs, continues = slots[is_open], rewards[is_open], next_obs[is_open], continues[is_open]
            next_masks = None if next_masks is None else next_masks[is_open]
        masks = self.masks[slots] if self.has_mask[slots].any() else None
        memories = None
        if self.memory_size:
            memories = (self.actor_memory[slots], self.critic_memory[slots], self.last_row[slots], self.last_stamp[slots])
        self.last_row[slots], self.last_stamp[slots] = replay.add(
            self.obs[slots], self.actions[slots], rewards, next_obs, continues, masks, next_masks, memories)
        self.open[slots] = False

    def end_episodes(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Finished ``(returns, lengths)`` of ``slots``; their next decision starts a new episode."""
        finished = self.episode_return[slots].copy(), self.episode_length[slots].copy()
        self.episode_return[slots] = 0.0
        self.episode_length[slots] = 0
        self.open[slots] = False
        self.last_row[slots] = -1
        return finished

    def drop(self, slots: np.ndarray) -> None:
        """Forget lost agents' open transitions and partial episodes: nothing is known of what followed."""
        self.end_episodes(slots)
