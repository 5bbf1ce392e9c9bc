"""What a learner reports after an update: the episodes its agents finished, and its loss diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class BehaviourReport:
    """One behaviour's finished episodes (return, length, whether cut short by a time limit) and loss diagnostics."""

    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    episode_truncated: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class UpdateReport:
    """Handed to the ``learn`` callback after every update."""

    step: int
    behaviours: dict[str, BehaviourReport]


class EpisodeLog:
    """The episodes a learner's agents finished since its last report."""

    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, finished: tuple[np.ndarray, np.ndarray], truncated: np.ndarray) -> None:
        """``finished``: ``(returns, lengths)`` of the episodes that ended; ``truncated``: which were cut short."""
        self._parts.append((*finished, truncated))

    def pop(self) -> BehaviourReport:
        """A report of the episodes logged since the last ``pop`` (no stats yet)."""
        if not self._parts:
            return BehaviourReport(np.zeros(0), np.zeros(0, np.int64), np.zeros(0, bool))
        returns, lengths, truncated = (np.concatenate(column) for column in zip(*self._parts))
        self._parts.clear()
        return BehaviourReport(returns, lengths, truncated)
