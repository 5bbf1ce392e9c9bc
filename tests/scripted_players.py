"""Scripted players the self-play tests put in the league (``self_play.opponents``, kind callable)."""

import numpy as np


def first_legal(obs: np.ndarray, action_mask: np.ndarray) -> np.ndarray:
    """Tic-tac-toe: the first free cell, row by row (easy to beat: it never blocks)."""
    return np.argmax(action_mask, axis=1)


def pick_zero(obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
    """Always action 0."""
    return np.zeros(len(obs), np.int64)
