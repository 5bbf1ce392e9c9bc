"""Fixed reference opponents for PettingZoo's classic board games, a harness that scores a policy against them,
and recordings of the connect-four player for a policy to clone.

Self-play agents only ever meet themselves, so their ratings drift with no anchor; these opponents
never change, which makes "wins against depth-4 alpha-beta" comparable across runs and checkpoints.

Every player is a callable ``(obs, agent) -> action`` taking PettingZoo's observation dict
``{"observation", "action_mask"}``; the policy under test has the same signature. Facts the
players rely on, from PettingZoo's source (pettingzoo/classic):

- tictactoe_v3: agents ``player_1``, ``player_2``. Action ``i`` marks ``Board.squares[i]`` and the
  observation is ``squares.reshape(3, 3)``, so action ``i`` is ``observation[i // 3, i % 3]``
  (the docs draw the board column-major; the array is the transpose of that drawing).
- connect_four_v3: agents ``player_0``, ``player_1``. ``observation[r, c]`` with row 0 at the
  top; pieces fall to the highest free row index. Action = column.
- Both: plane 0 holds the marks of the agent observing (the one to move), plane 1 the other's.

    import sys; sys.path.insert(0, "benchmarks")
    from board_opponents import ConnectFourAlphaBeta, play_match
    play_match(connect_four_v3.env, policy, ConnectFourAlphaBeta(4, np.random.default_rng(0)), games=200, seed=0)
    # {'wins': ..., 'draws': ..., 'losses': ...}
"""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from sparring.envs.demonstrations import DemonstrationWriter
from sparring.spec import BehaviourSpec

Player = Callable[[dict, str], int]


class _Seeded:
    """Random tie-breaking shared by the opponents: reproducible given the generator."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def reseed(self, seed: int) -> None:
        """Restart the random stream, so the same seed replays the same moves."""
        self.rng = np.random.default_rng(seed)

    def pick(self, moves: Sequence[int]) -> int:
        """One of ``moves``, uniformly; a lone move needs no draw from the generator (and costs none)."""
        return moves[0] if len(moves) == 1 else moves[int(self.rng.integers(len(moves)))]


class RandomPlayer(_Seeded):
    """Uniform over legal moves: the floor every learner should clear."""

    def __call__(self, obs: dict, agent: str) -> int:
        return self.pick(np.flatnonzero(obs["action_mask"]).tolist())


# --- tic-tac-toe --------------------------------------------------------------------------------
# Bit i of a board mask is square i, i.e. action i (see the module docstring).

_TTT_FULL = 0x1FF
_TTT_LINES = tuple(
    sum(1 << i for i in line)
    for line in ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
)
_TTT_WEIGHTS = 1 << np.arange(9, dtype=np.int64)  # observation.reshape(9, 2) row i is square i


@cache
def _ttt_solve(me: int, them: int) -> tuple[int, tuple[int, ...]]:
    """(value, optimal moves) for the player to move, whose marks are ``me``.

    Values are exact: positive wins, negative losses, 0 draws. Their size counts the empty
    squares left when the game ends, so among winning moves the fastest is optimal and among
    losing moves the slowest; without that a won player may dawdle past an immediate win and
    a lost one stops blocking. All drawing moves stay optimal in a drawn position.
    """
    empty = _TTT_FULL & ~(me | them)
    if any(them & line == line for line in _TTT_LINES):
        return -(empty.bit_count() + 1), ()
    if not empty:
        return 0, ()
    best, moves = -100, []
    for square in range(9):
        bit = 1 << square
        if empty & bit:
            value = -_ttt_solve(them, me | bit)[0]
            if value > best:
                best, moves = value, [square]
            elif value == best:
                moves.append(square)
    return best, tuple(moves)


class TicTacToePerfect(_Seeded):
    """Perfect tic-tac-toe, uniformly random among optimal moves: it never loses, and varies its games."""

    def __call__(self, obs: dict, agent: str) -> int:
        me, them = (_TTT_WEIGHTS @ obs["observation"].reshape(9, 2)).tolist()
        return self.pick(_ttt_solve(me, them)[1])


# --- connect four -------------------------------------------------------------------------------
# Bitboard: column c, row r counted from the bottom, is bit 7 * c + r. Bit 7 * c + 6 is an always-empty
# sentinel, so shifted lines never wrap from one column into the next. A position is (cur, mask):
# the stones of the player to move and all stones.

_C4_COLS, _C4_ROWS = 7, 6
_C4_BOTTOM = tuple(1 << (7 * c) for c in range(_C4_COLS))
_C4_COLUMN = tuple(0x3F << (7 * c) for c in range(_C4_COLS))
_C4_TOP = tuple(1 << (7 * c + 5) for c in range(_C4_COLS))
_C4_BOARD = sum(_C4_COLUMN)
_C4_CENTRE = _C4_COLUMN[3]
_C4_ORDER = (3, 2, 4, 1, 5, 0, 6)  # centre first: central moves are usually best, so cut-offs come early
_C4_DIRECTIONS = (1, 7, 6, 8)  # vertical, horizontal, and the two diagonals
# observation.reshape(42, 2) row 7 * r + c (r from the top) -> bit 7 * c + (5 - r)
_C4_WEIGHTS = np.array(
    [1 << (7 * c + 5 - r) for r in range(_C4_ROWS) for c in range(_C4_COLS)], dtype=np.int64
)

WIN = 1_000_000  # beats any heuristic score; a win found with d plies of search left scores WIN + d
THREE, TWO, THEIR_THREE, CENTRE = 5, 2, -4, 3  # window and centre-column weights of the heuristic


def _c4_won(stones: int) -> bool:
    """Four in a row anywhere in ``stones``."""
    for shift in _C4_DIRECTIONS:
        pairs = stones & (stones >> shift)
        if pairs & (pairs >> 2 * shift):
            return True
    return False


def _c4_evaluate(cur: int, mask: int) -> int:
    """Heuristic value for the player to move: their open threes and twos, the other's open threes, centre stones.

    Counts every 4-cell window at once per direction with bit-parallel adders: bit b of
    ``three`` is set when the window starting at b holds exactly 3 of the mover's stones and
    none of the other's (so its 4th cell is empty). A full board is a draw, worth 0.
    """
    if mask == _C4_BOARD:
        return 0
    them = cur ^ mask
    free_of_them = _C4_BOARD & ~them
    free_of_me = _C4_BOARD & ~cur
    score = CENTRE * (cur & _C4_CENTRE).bit_count()
    for s in _C4_DIRECTIONS:
        windows = free_of_them & (free_of_them >> s) & (free_of_them >> 2 * s) & (free_of_them >> 3 * s)
        a, b, c, d = cur, cur >> s, cur >> 2 * s, cur >> 3 * s
        ab, ab1, cd, cd1 = a & b, a ^ b, c & d, c ^ d  # both of a pair, exactly one of it
        three = ((ab & cd1) | (cd & ab1)) & windows
        two = ((ab & ~(c | d)) | (cd & ~(a | b)) | (ab1 & cd1)) & windows
        score += THREE * three.bit_count() + TWO * two.bit_count()

        windows = free_of_me & (free_of_me >> s) & (free_of_me >> 2 * s) & (free_of_me >> 3 * s)
        a, b, c, d = them, them >> s, them >> 2 * s, them >> 3 * s
        three = (((a & b) & (c ^ d)) | ((c & d) & (a ^ b))) & windows
        score += THEIR_THREE * three.bit_count()
    return score


EXACT, LOWER, UPPER = 0, 1, 2  # a remembered search value: exact, or the bound a cut-off search left


def _c4_negamax(cur: int, mask: int, depth: int, alpha: int, beta: int, table: dict) -> int:
    """Alpha-beta value of a position the previous mover did not win, for the player to move.

    An immediate win is taken before searching (it scores WIN + depth - 1, what searching it
    would give, and nothing scores higher), which prunes most of the tree near decided games.

    ``table`` is one root search's transposition table: connect four reaches a position by many move orders, and
    each is searched once. It holds each position's value at each depth left as the search found it (exact, or a
    bound where the window cut it short) and the heuristic of each leaf (depth 0); a remembered bound is used only
    where it decides the window, so the search returns what it would without the table (it more than halves the
    depth-8 teacher's time).
    """
    if mask == _C4_BOARD:
        return 0
    key = (cur, mask, depth)
    remembered = table.get(key)
    if remembered is not None:
        value, kind = remembered
        if kind == EXACT or (kind == LOWER and value >= beta) or (kind == UPPER and value <= alpha):
            return value
    moves = []
    for col in _C4_ORDER:
        if not mask & _C4_TOP[col]:
            move = (mask + _C4_BOTTOM[col]) & _C4_COLUMN[col]
            if _c4_won(cur | move):
                return WIN + depth - 1
            moves.append(move)
    window_low, them = alpha, cur ^ mask
    if depth == 1:
        value = -WIN * 2
        for move in moves:
            leaf = (them, mask | move, 0)
            heuristic = table.get(leaf)
            if heuristic is None:
                heuristic = table[leaf] = _c4_evaluate(them, mask | move)
            value = max(value, -heuristic)
            if value >= beta:
                break
    else:
        for move in moves:
            alpha = max(alpha, -_c4_negamax(them, mask | move, depth - 1, -beta, -alpha, table))
            if alpha >= beta:
                break
        value = alpha
    table[key] = (value, UPPER if value <= window_low else LOWER if value >= beta else EXACT)
    return value


@lru_cache(maxsize=1 << 18)
def best_columns(cur: int, mask: int, depth: int) -> tuple[int, ...]:
    """All columns with the best ``depth``-ply score for the player to move (``cur``'s stones; ``mask`` all).

    Remembered per position, since a league member meets the same openings game after game. Each move is
    searched with alpha one below the best so far: a move that ties the best then gets its exact score rather
    than a bound, which is what random tie-breaking needs.
    """
    best, columns, table = -WIN * 2, [], {}
    for col, move in _c4_moves(mask):
        value = _c4_move_value(cur, mask, move, depth, best - 1, table)
        if value > best:
            best, columns = value, [col]
        elif value == best:
            columns.append(col)
    return tuple(columns)


@lru_cache(maxsize=1 << 16)
def best_summed_columns(cur: int, mask: int, depths: tuple[int, ...]) -> tuple[int, ...]:
    """All columns with the best sum of their scores searched to each of ``depths``.

    The heuristic weighs the windows of the side to move at a leaf above the other's, and which side that is turns
    with the depth's parity, so odd and even depths lean opposite ways: two neighbouring depths summed even that out
    (the parity swings the search's strength, see benchmarks/selfplay.py). A forced result found at any depth
    outweighs every heuristic score.
    """
    moves = _c4_moves(mask)
    totals = dict.fromkeys((col for col, _ in moves), 0)
    for depth in depths:
        table = {}
        for col, move in moves:
            totals[col] += _c4_move_value(cur, mask, move, depth, -WIN * 2, table)  # exact: a sum needs no bounds
    best = max(totals.values())
    return tuple(col for col, value in totals.items() if value == best)


def _c4_moves(mask: int) -> list[tuple[int, int]]:
    """(column, the bit of the stone it drops) for each legal move, centre first."""
    return [(col, (mask + _C4_BOTTOM[col]) & _C4_COLUMN[col]) for col in _C4_ORDER if not mask & _C4_TOP[col]]


def _c4_move_value(cur: int, mask: int, move: int, depth: int, floor: int, table: dict) -> int:
    """The ``depth``-ply score of playing ``move`` for the player to move: exact when above ``floor``, else a bound
    at most ``floor``."""
    if _c4_won(cur | move):
        return WIN + depth - 1
    if depth == 1:
        return -_c4_evaluate(cur ^ mask, mask | move)
    return -_c4_negamax(cur ^ mask, mask | move, depth - 1, -WIN * 2, -floor, table)


class ConnectFourAlphaBeta(_Seeded):
    """Depth-limited alpha-beta on the classic four-in-a-row window heuristic, random among equal best moves.

    Depth 2 is a weak-but-sane sparring partner; depth 4 punishes most blunders. Wins are
    detected exactly at every node, so it always takes a win in one and blocks a loss in one.
    Several depths (a tuple) score each column by the sum of its scores at each (:func:`best_summed_columns`).
    """

    def __init__(self, depth: int | tuple[int, ...], rng: np.random.Generator) -> None:
        depths = (depth,) if isinstance(depth, int) else tuple(depth)
        if not depths or min(depths) < 1:
            raise ValueError(f"ConnectFourAlphaBeta depth must be >= 1 (plies searched), got {depth}")
        super().__init__(rng)
        self.depths = depths

    def __call__(self, obs: dict, agent: str) -> int:
        cur, them = (_C4_WEIGHTS @ obs["observation"].reshape(42, 2)).tolist()
        return self.pick(self.columns(cur, cur | them))

    def columns(self, cur: int, mask: int) -> tuple[int, ...]:
        """The columns this player finds best for the player to move (``cur``'s stones; ``mask`` all)."""
        if len(self.depths) == 1:
            return best_columns(cur, mask, self.depths[0])
        return best_summed_columns(cur, mask, self.depths)


class BySeat:
    """One player for each seat (keyed by the seat's agent): a teacher can search to the depth that plays each seat
    best."""

    def __init__(self, players: dict[str, Player]) -> None:
        self.players = players

    def __call__(self, obs: dict, agent: str) -> int:
        return self.players[agent](obs, agent)


def _alpha_beta_member(depth: int) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    """:class:`ConnectFourAlphaBeta` as a scripted league member: a batch of observations (``(n, 6, 7, 2)`` or flat
    rows) -> one column each (the action masks are implied by the boards)."""
    player = ConnectFourAlphaBeta(depth, np.random.default_rng(depth))

    def play(obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        boards = np.asarray(obs).reshape(-1, 42, 2).astype(np.int64)
        stones = np.einsum("k,nkc->nc", _C4_WEIGHTS, boards).tolist()
        return np.array([player.pick(player.columns(cur, cur | them)) for cur, them in stones], np.int64)

    return play


alpha_beta_depth1 = _alpha_beta_member(1)
alpha_beta_depth2 = _alpha_beta_member(2)
alpha_beta_depth4 = _alpha_beta_member(4)
"""Scripted league members (``self_play.opponents``, kind callable: ``benchmarks/board_opponents.py:alpha_beta_depth2``)."""


def record_alpha_beta(env_fn: Callable[[], object], path: Path, spec: BehaviourSpec, teacher: Player,
                      opponents: Sequence[int], games: int, explore: float, seed: int,
                      player: Player | None = None) -> int:
    """Demonstrations of ``teacher`` (an alpha-beta player) playing alpha-beta at each depth of ``opponents`` in
    turn, from both seats, as a ``.demo`` of behaviour ``spec`` (``connect_four_v3``'s ``player``) for sparring's
    ``behavioral_cloning``; returns the rows written.

    A deep search is what a game can afford once, offline; a policy cloned from it plays in one forward pass.
    Each teacher decision is written with its mirror image (board reflected left to right, column ``c`` ->
    ``6 - c``): the heuristic, the move order and the exact scoring of tied moves are all symmetric, so the
    mirrored move is one the teacher finds best in the mirrored position, and the data doubles at no search
    cost. With probability ``explore`` either side plays a random legal move instead (not recorded): the teacher
    then shows how to go on from positions its own games never reach.

    With ``player`` (a policy in training), the player makes the moves and the teacher only answers: each of the
    player's decisions is written with the teacher's move in its place (DAgger, Ross et al. 2011), so the
    demonstration covers the positions the player's own mistakes lead to.
    """
    rng = np.random.default_rng(seed)
    others = [ConnectFourAlphaBeta(d, rng) for d in opponents]

    def exploring(moving: Player, writer: DemonstrationWriter | None = None) -> Player:
        def play(obs: dict, agent: str) -> int:
            if rng.random() < explore:
                return int(rng.choice(np.flatnonzero(obs["action_mask"])))
            action = moving(obs, agent)
            if writer is not None:
                best = action if moving is teacher else teacher(obs, agent)
                boards = np.stack([obs["observation"], obs["observation"][:, ::-1]])
                masks = np.stack([obs["action_mask"], obs["action_mask"][::-1]]).astype(bool)
                writer.add([0, 0], boards, np.array([best, _C4_COLS - 1 - best]), [0.0, 0.0], [False, False],
                           [False, False], masks)
            return action
        return play

    env = env_fn()
    try:
        with DemonstrationWriter(path, spec) as writer:
            recorded = exploring(player or teacher, writer)
            for game in range(games):
                other = exploring(others[game // 2 % len(others)])
                seats = (recorded, other) if game % 2 == 0 else (other, recorded)  # the recorded side plays both seats
                env.reset(seed=seed + game)
                _play_game(env, dict(zip(env.possible_agents, seats)))
            return len(writer)
    finally:
        env.close()


# --- evaluation harness -------------------------------------------------------------------------

OUTCOMES = ("wins", "draws", "losses")  # of a match, from the policy's side


def play_match(env_fn: Callable[[], object], policy: Player, opponent: Player, games: int, seed: int) -> dict[str, int]:
    """Play ``games`` games of ``policy`` against ``opponent`` and count the policy's wins, draws and losses.

    The policy takes the first seat (``env.possible_agents[0]``) in even-numbered games and the
    second in odd ones, so first-move advantage cancels out. The outcome is the sign of the
    policy's final reward. For reproducibility game g resets the env with ``seed + g``, and any
    player with a ``reseed`` method is reseeded from ``seed`` first, so the same seed replays
    the same match even with reused player objects.
    """
    return totals(play_match_by_seat(env_fn, policy, opponent, games, seed))


def play_match_by_seat(env_fn: Callable[[], object], policy: Player, opponent: Player, games: int,
                       seed: int) -> dict[str, dict[str, int]]:
    """:func:`play_match`'s games, counted for each seat the policy took (keyed by the seat's agent, first seat
    first): a total can hide a seat the policy loses every game from, as against a near-deterministic opponent
    one move decides a seat's games."""
    policy_seed, opponent_seed = np.random.SeedSequence(seed).generate_state(2).tolist()
    for player, player_seed in ((policy, policy_seed), (opponent, opponent_seed)):
        if hasattr(player, "reseed"):
            player.reseed(player_seed)
    env = env_fn()
    by_seat = {agent: dict.fromkeys(OUTCOMES, 0) for agent in env.possible_agents}
    try:
        for game in range(games):
            me = env.possible_agents[game % 2]
            seats = (policy, opponent) if game % 2 == 0 else (opponent, policy)
            players = dict(zip(env.possible_agents, seats))
            env.reset(seed=seed + game)
            reward = _play_game(env, players)[me]
            by_seat[me]["wins" if reward > 0 else "losses" if reward < 0 else "draws"] += 1
    finally:
        env.close()
    return by_seat


def totals(by_seat: dict[str, dict[str, int]]) -> dict[str, int]:
    """:func:`play_match_by_seat`'s counts summed over the seats."""
    return {outcome: sum(counts[outcome] for counts in by_seat.values()) for outcome in OUTCOMES}


def _play_game(env, players: dict[str, Player]) -> dict[str, float]:
    """Run one game of an AEC env to the end; return each agent's final (cumulative) reward."""
    final = {}
    for agent in env.agent_iter():
        obs, reward, terminated, truncated, _ = env.last()
        if terminated or truncated:
            final[agent] = reward
            action = None
        else:
            action = players[agent](obs, agent)
        env.step(action)
    return final
