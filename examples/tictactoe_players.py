"""Hand-written tic-tac-toe players for examples/tictactoe_scripted.yaml (self_play.opponents, kind callable).

A scripted player takes a batch of observations and action masks (one row per deciding agent) and returns one
action per row; here a move is a cell 0-8, allowed where the mask is true.
"""

import numpy as np

LINES = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 3, 6], [1, 4, 7], [2, 5, 8], [0, 4, 8], [2, 4, 6]])


def first_free_cell(obs: np.ndarray, action_mask: np.ndarray) -> np.ndarray:
    """The first free cell, row by row: a beginner's AI that never blocks."""
    return np.argmax(action_mask, axis=1)


def win_or_block(obs: np.ndarray, action_mask: np.ndarray) -> np.ndarray:
    """Completes its own line if it can, else blocks the opponent's, else takes the centre or the first free cell.

    PettingZoo's tic-tac-toe observation is (3, 3, 2): plane 0 the mover's marks, plane 1 the opponent's.
    """
    mine, theirs = (obs[..., k].reshape(len(obs), 9) for k in (0, 1))
    moves = np.where(action_mask[:, 4], 4, np.argmax(action_mask, axis=1))
    for marks in (theirs, mine):  # mine last, so a winning move overrides a block
        for line in LINES:
            two = marks[:, line].sum(1) == 2
            free = action_mask[:, line]
            hit = two & free.any(1)
            moves[hit] = line[np.argmax(free[hit], axis=1)]
    return moves
