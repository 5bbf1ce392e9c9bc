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


class ReplayBuffer:
    """A ring of ``capacity`` transitions in preallocated numpy columns.

    ``np.zeros`` reserves the memory without touching it, so a large capacity
    costs only what is filled.
    """

    _COLUMNS = ("obs", "actions", "rewards", "next_obs", "continues", "masks", "next_masks")

    def __init__(
        self, capacity: int, obs_size: int, action_shape: tuple[int, ...], action_dtype: type, mask_size: int
    ) -> None:
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_size), np.float32)
        self.actions = np.zeros((capacity, *action_shape), action_dtype)
        self.rewards = np.zeros(capacity, np.float32)
        self.next_obs = np.zeros((capacity, obs_size), np.float32)
        self.continues = np.zeros(capacity, np.float32)
        self.masks = np.zeros((capacity, mask_size), bool)
        self.next_masks = np.zeros((capacity, mask_size), bool)
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
    ) -> None:
        """Append a batch of transitions, overwriting the oldest once full (``None`` masks: all allowed)."""
        n = len(obs)
        if n > self.capacity:
            keep = slice(n - self.capacity, n)
            obs, actions, rewards, next_obs, continues = obs[keep], actions[keep], rewards[keep], next_obs[keep], continues[keep]
            masks = None if masks is None else masks[keep]
            next_masks = None if next_masks is None else next_masks[keep]
            n = self.capacity
        end = self.pos + n
        rows = slice(self.pos, end) if end <= self.capacity else np.arange(self.pos, end) % self.capacity
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

    def latest_obs(self, n: int) -> np.ndarray:
        """The ``n`` most recently stored observations, oldest first."""
        n = min(n, self.size)
        return self.obs[(np.arange(self.pos - n, self.pos)) % self.capacity]

    def state_dict(self) -> dict:
        """The filled rows (a full ring keeps its write position)."""
        return {"size": self.size, "pos": self.pos, "has_masks": self.has_masks,
                **{name: getattr(self, name)[: self.size].copy() for name in self._COLUMNS}}

    def load_state_dict(self, state: dict) -> None:
        size = state["size"]
        if size > self.capacity:
            raise ValueError(f"saved replay buffer holds {size} transitions, more than buffer_size {self.capacity}")
        for name in self._COLUMNS:
            getattr(self, name)[:size] = state[name]
        self.size, self.pos, self.has_masks = size, state["pos"] % self.capacity, state["has_masks"]


class OpenTransitions:
    """Per agent, the latest decision whose outcome is not known yet, plus the running episode.

    Args:
        obs_size, action_shape, action_dtype, mask_size: as :class:`ReplayBuffer`.
    """

    def __init__(self, obs_size: int, action_shape: tuple[int, ...], action_dtype: type, mask_size: int) -> None:
        self._slots = AgentSlots()
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
            for name in ("obs", "actions", "masks", "has_mask", "open", "episode_return", "episode_length"):
                old = getattr(self, name)
                grown = np.zeros((size, *old.shape[1:]), old.dtype)
                grown[: len(old)] = old
                setattr(self, name, grown)
        return slots

    def start(self, slots: np.ndarray, obs: np.ndarray, actions: np.ndarray, masks: np.ndarray | None) -> None:
        """Record the decisions just taken; each waits for its agent's next state."""
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
        replay.add(self.obs[slots], self.actions[slots], rewards, next_obs, continues, masks, next_masks)
        self.open[slots] = False

    def end_episodes(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Finished ``(returns, lengths)`` of ``slots``; their next decision starts a new episode."""
        finished = self.episode_return[slots].copy(), self.episode_length[slots].copy()
        self.episode_return[slots] = 0.0
        self.episode_length[slots] = 0
        self.open[slots] = False
        return finished

    def drop(self, slots: np.ndarray) -> None:
        """Forget lost agents' open transitions and partial episodes: nothing is known of what followed."""
        self.end_episodes(slots)
