"""Reference board-game opponents (benchmarks/board_opponents.py): strength, exactness, a reproducible harness."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # pettingzoo.classic's old import path
    from pettingzoo.classic import connect_four_v3, tictactoe_v3

_spec = importlib.util.spec_from_file_location(
    "board_opponents", Path(__file__).resolve().parents[1] / "benchmarks" / "board_opponents.py"
)
bo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bo)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def position(env_fn, actions: list[int]) -> tuple[dict, str]:
    """The observation and name of the agent to move after playing ``actions`` from the start."""
    env = env_fn()
    env.reset()
    for action in actions:
        env.step(action)
    obs, _, terminated, _, _ = env.last()
    assert not terminated, f"{actions} ends the game"
    return obs, env.agent_selection


def moves_chosen(player, obs: dict, agent: str, seeds: int = 20) -> set[int]:
    """Every move the player picks here across ``seeds`` random tie-breaks."""
    chosen = set()
    for seed in range(seeds):
        player.reseed(seed)
        chosen.add(player(obs, agent))
    return chosen


class Recorded:
    """Wraps a player to log (agent, action, stones on the board) for every move it makes."""

    def __init__(self, player) -> None:
        self.player, self.log = player, []

    def reseed(self, seed: int) -> None:
        self.player.reseed(seed)

    def __call__(self, obs: dict, agent: str) -> int:
        action = self.player(obs, agent)
        self.log.append((agent, action, int(obs["observation"].sum())))
        return action


# --- tic-tac-toe ----------------------------------------------------------------------------------


def test_perfect_tictactoe_never_loses_to_random_and_wins_most():
    result = bo.play_match(tictactoe_v3.env, bo.TicTacToePerfect(rng(0)), bo.RandomPlayer(rng(1)), games=200, seed=0)
    assert result["losses"] == 0
    assert result["wins"] >= 150, result


def test_perfect_tictactoe_against_itself_always_draws():
    result = bo.play_match(tictactoe_v3.env, bo.TicTacToePerfect(rng(0)), bo.TicTacToePerfect(rng(1)), games=50, seed=0)
    assert result == {"wins": 0, "draws": 50, "losses": 0}


def test_perfect_tictactoe_varies_its_opening_because_every_first_move_draws():
    player = bo.TicTacToePerfect(rng(0))
    obs, agent = position(tictactoe_v3.env, [])
    assert len(moves_chosen(player, obs, agent, seeds=100)) >= 6


def test_perfect_tictactoe_takes_an_immediate_win_over_a_slower_forced_win():
    # X on squares 0 and 4, O on 1 and 2 (actions index squares as PettingZoo draws them:
    # 0 3 6 / 1 4 7 / 2 5 8). X wins at once on 8; 3 would also win, a move later, by a fork.
    obs, agent = position(tictactoe_v3.env, [0, 1, 4, 2])
    assert moves_chosen(bo.TicTacToePerfect(rng(0)), obs, agent) == {8}


def test_perfect_tictactoe_blocks_an_immediate_loss():
    obs, agent = position(tictactoe_v3.env, [0, 4, 1])  # X threatens 0-1-2
    assert agent == "player_2"
    assert moves_chosen(bo.TicTacToePerfect(rng(0)), obs, agent) == {2}


def test_perfect_tictactoe_still_blocks_in_a_lost_position():
    # X on 0 and 3 threatens 0-3-6 and wins whatever O does; blocking on 6 at least lasts longest.
    obs, agent = position(tictactoe_v3.env, [0, 1, 3])
    assert moves_chosen(bo.TicTacToePerfect(rng(0)), obs, agent) == {6}


# --- connect four ---------------------------------------------------------------------------------


def test_alphabeta_depth4_beats_random_at_least_95_percent():
    result = bo.play_match(connect_four_v3.env, bo.ConnectFourAlphaBeta(4, rng(0)), bo.RandomPlayer(rng(1)), games=50, seed=0)
    assert result["wins"] >= 48, result


def test_alphabeta_depth4_beats_depth2_more_often_than_it_loses():
    deep, shallow = bo.ConnectFourAlphaBeta(4, rng(0)), bo.ConnectFourAlphaBeta(2, rng(1))
    result = bo.play_match(connect_four_v3.env, deep, shallow, games=40, seed=0)
    assert result["wins"] > result["losses"], result


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_alphabeta_takes_an_immediate_win(depth):
    obs, agent = position(connect_four_v3.env, [0, 6, 1, 6, 2, 5])  # player_0 holds columns 0-2 of the bottom row
    assert moves_chosen(bo.ConnectFourAlphaBeta(depth, rng(0)), obs, agent) == {3}


@pytest.mark.parametrize("depth", [2, 4])
@pytest.mark.parametrize(
    "actions, block",
    [([0, 6, 1, 6, 2], 3), ([0, 1, 0, 1, 0], 0)],  # a horizontal threat, a vertical one
    ids=["horizontal", "vertical"],
)
def test_alphabeta_blocks_an_immediate_threat(depth, actions, block):
    obs, agent = position(connect_four_v3.env, actions)
    assert agent == "player_1"
    assert moves_chosen(bo.ConnectFourAlphaBeta(depth, rng(0)), obs, agent) == {block}


@pytest.mark.parametrize("depth", [0, (), (2, 0)])
def test_alphabeta_rejects_a_depth_below_one(depth):
    with pytest.raises(ValueError, match="depth"):
        bo.ConnectFourAlphaBeta(depth, rng(0))


# A plain minimax written straight from the observation, to show the bitboards, the heuristic and
# the pruning change nothing: same best-move set, ties included.

def _windows():
    for r in range(6):
        for c in range(7):
            for dr, dc in ((0, 1), (1, 0), (1, 1), (-1, 1)):
                cells = [(r + k * dr, c + k * dc) for k in range(4)]
                if all(0 <= rr < 6 and 0 <= cc < 7 for rr, cc in cells):
                    yield tuple(zip(*cells))


WINDOWS = list(_windows())


def naive_evaluate(own: np.ndarray, opp: np.ndarray) -> int:
    if (own + opp).all():
        return 0
    score = 3 * int(own[:, 3].sum())
    for rows, cols in WINDOWS:
        mine, theirs = int(own[rows, cols].sum()), int(opp[rows, cols].sum())
        if theirs == 0:
            score += {3: 5, 2: 2}.get(mine, 0)
        elif mine == 0 and theirs == 3:
            score -= 4
    return score


def naive_values(own: np.ndarray, opp: np.ndarray, depth: int) -> dict[int, int]:
    """Minimax value of each legal column for the player to move (``own``); row 0 is the top."""
    values = {}
    for col in range(7):
        empty = np.flatnonzero((own[:, col] + opp[:, col]) == 0)
        if not len(empty):
            continue
        after = own.copy()
        after[empty[-1], col] = 1
        if any(after[rows, cols].all() for rows, cols in WINDOWS):
            values[col] = bo.WIN + depth - 1
        elif depth == 1 or (after + opp).all():
            values[col] = -naive_evaluate(opp, after)
        else:
            values[col] = -max(naive_values(opp, after, depth - 1).values())
    return values


def random_positions(count: int, seed: int) -> list[tuple[dict, str]]:
    """Unfinished connect-four positions reached by random play of varied length."""
    generator, positions = rng(seed), []
    while len(positions) < count:
        env = connect_four_v3.env()
        env.reset()
        for _ in range(generator.integers(2, 30)):
            obs, _, terminated, _, _ = env.last()
            if terminated:
                break
            env.step(int(generator.choice(np.flatnonzero(obs["action_mask"]))))
        obs, _, terminated, _, _ = env.last()
        if not terminated:
            positions.append((obs, env.agent_selection))
    return positions


def stones(planes: np.ndarray) -> tuple[int, int]:
    """A (6, 7, 2) board as bitboards: the stones of the player to move, and the other's."""
    own, opp = (bo._C4_WEIGHTS @ np.asarray(planes).reshape(42, 2).astype(np.int64)).tolist()
    return own, opp


def best_of(values: dict[int, int]) -> list[int]:
    """The columns with the highest value, sorted."""
    best = max(values.values())
    return sorted(c for c, v in values.items() if v == best)


@pytest.mark.parametrize("depth, count", [(1, 20), (2, 20), (3, 12), (4, 3)])
def test_alphabeta_best_moves_match_plain_minimax(depth, count):
    player = bo.ConnectFourAlphaBeta(depth, rng(0))
    for obs, agent in random_positions(count, seed=depth):
        planes = obs["observation"]
        best = best_of(naive_values(planes[:, :, 0], planes[:, :, 1], depth))
        assert moves_chosen(player, obs, agent, seeds=30) <= set(best)
        own, opp = stones(planes)
        assert sorted(bo.best_columns(own, own | opp, depth)) == best


def plain_bitboard_values(cur: int, mask: int, depth: int) -> dict[int, int]:
    """``naive_values`` on bitboards with the module's own heuristic (checked against the naive one above): fast
    enough to reach the depths where transpositions and cut-offs interleave, with neither pruning nor a table."""
    values = {}
    for col in range(7):
        if mask & bo._C4_TOP[col]:
            continue
        move = (mask + bo._C4_BOTTOM[col]) & bo._C4_COLUMN[col]
        if bo._c4_won(cur | move):
            values[col] = bo.WIN + depth - 1
        elif depth == 1 or mask | move == bo._C4_BOARD:
            values[col] = -bo._c4_evaluate(cur ^ mask, mask | move)
        else:
            values[col] = -max(plain_bitboard_values(cur ^ mask, mask | move, depth - 1).values())
    return values


@pytest.mark.parametrize("depth, count", [(5, 6), (6, 2)])
def test_alphabeta_matches_plain_minimax_deeper(depth, count):
    for obs, _ in random_positions(count, seed=depth):
        own, opp = stones(obs["observation"])
        assert sorted(bo.best_columns.__wrapped__(own, own | opp, depth)) == best_of(
            plain_bitboard_values(own, own | opp, depth))


@pytest.mark.parametrize("depths", [(1, 2), (2, 3), (3, 4)])
def test_summed_depths_pick_the_columns_whose_plain_minimax_scores_sum_highest(depths):
    for obs, _ in random_positions(4, seed=sum(depths)):
        own, opp = stones(obs["observation"])
        summed = {}
        for depth in depths:
            for col, value in plain_bitboard_values(own, own | opp, depth).items():
                summed[col] = summed.get(col, 0) + value
        assert sorted(bo.best_summed_columns.__wrapped__(own, own | opp, depths)) == best_of(summed)
        assert moves_chosen(bo.ConnectFourAlphaBeta(depths, rng(0)), obs, None, seeds=20) <= set(best_of(summed))


class Forgetful(dict):
    """A transposition table that remembers nothing: the search without one."""

    def __setitem__(self, key, value) -> None:
        pass


def test_the_transposition_table_changes_no_value_of_a_deep_search():
    """Depth 7 from many positions, since a mishandled bound shows in only some searches (each way of mishandling
    one that was tried changed 10 or more of these values, and the best columns of at most 7 of 300 positions at
    depth 5)."""
    searched = 0
    for obs, _ in random_positions(50, seed=7):
        own, opp = stones(obs["observation"])
        mask = own | opp
        for col in range(7):
            move = (mask + bo._C4_BOTTOM[col]) & bo._C4_COLUMN[col]
            if mask & bo._C4_TOP[col] or bo._c4_won(own | move):
                continue
            window = (-2 * bo.WIN, 2 * bo.WIN)
            with_table = bo._c4_negamax(opp, mask | move, 6, *window, {})
            assert with_table == bo._c4_negamax(opp, mask | move, 6, *window, Forgetful()), (own, mask, col)
            searched += 1
    assert searched > 200


# --- random player and the match harness ----------------------------------------------------------


def test_random_player_plays_only_legal_moves():
    obs, agent = position(connect_four_v3.env, [0, 0, 0, 0, 0, 0])  # column 0 full
    assert moves_chosen(bo.RandomPlayer(rng(0)), obs, agent, seeds=50) == {1, 2, 3, 4, 5, 6}


@pytest.mark.parametrize("env_fn", [tictactoe_v3.env, connect_four_v3.env])
def test_play_match_counts_add_up_and_the_policy_alternates_seats(env_fn):
    policy = Recorded(bo.RandomPlayer(rng(0)))
    result = bo.play_match(env_fn, policy, bo.RandomPlayer(rng(1)), games=9, seed=0)
    assert sum(result.values()) == 9
    seats = [agent for agent, _, stones in policy.log if stones <= 1]  # the policy's first move of each game
    first, second = env_fn().possible_agents
    assert seats == [first, second] * 4 + [first]


def test_play_match_by_seat_counts_each_seat_the_policy_took():
    """A policy perfect in the first seat and random in the second, against perfect play: it draws every game of
    the first seat and loses some of the second; the two seats add up to play_match's totals."""
    first, second = tictactoe_v3.env().possible_agents

    def match(count):
        perfect, careless = bo.TicTacToePerfect(rng(0)), bo.RandomPlayer(rng(1))

        def policy(obs: dict, agent: str) -> int:
            return (perfect if agent == first else careless)(obs, agent)

        return count(tictactoe_v3.env, policy, bo.TicTacToePerfect(rng(2)), games=40, seed=0)

    by_seat, totals = match(bo.play_match_by_seat), match(bo.play_match)
    assert list(by_seat) == [first, second]
    assert by_seat[first] == {"wins": 0, "draws": 20, "losses": 0}
    assert sum(by_seat[second].values()) == 20 and by_seat[second]["losses"] > 0 and by_seat[second]["wins"] == 0
    assert totals == {outcome: by_seat[first][outcome] + by_seat[second][outcome] for outcome in bo.OUTCOMES}


def test_play_match_scores_from_the_policys_side():
    result = bo.play_match(tictactoe_v3.env, bo.RandomPlayer(rng(0)), bo.TicTacToePerfect(rng(1)), games=20, seed=0)
    assert result["wins"] == 0 and result["losses"] > 0


def test_play_match_with_the_same_seed_replays_the_same_games():
    def run(seed: int):
        policy = Recorded(bo.ConnectFourAlphaBeta(2, rng(0)))
        opponent = Recorded(bo.ConnectFourAlphaBeta(2, rng(1)))
        result = bo.play_match(connect_four_v3.env, policy, opponent, games=10, seed=seed)
        return result, policy.log, opponent.log

    assert run(7) == run(7)
    assert run(7)[1:] != run(8)[1:]


def test_play_match_reseeds_reused_players():
    policy, opponent = bo.TicTacToePerfect(rng(0)), bo.RandomPlayer(rng(1))
    first = bo.play_match(tictactoe_v3.env, policy, opponent, games=30, seed=5)
    assert bo.play_match(tictactoe_v3.env, policy, opponent, games=30, seed=5) == first


def test_the_alpha_beta_league_members_play_a_batch_as_the_player_plays_each_board():
    """benchmarks/selfplay.py's scripted members: a batch of boards, flat or (6, 7, 2), each answered with one of the
    columns the depth-d player finds best there (a win taken, a loss blocked)."""
    lines = [[3, 3, 2, 2], [0, 6, 0, 6, 0], [3, 4, 3, 4, 2, 5], []]
    boards = [position(connect_four_v3.env, line)[0]["observation"] for line in lines]
    for member, depth in ((bo.alpha_beta_depth1, 1), (bo.alpha_beta_depth2, 2), (bo.alpha_beta_depth4, 4)):
        for batch in (np.stack(boards), np.stack(boards).reshape(len(boards), -1)):
            moves = member(batch, None)
            assert moves.dtype == np.int64 and moves.shape == (len(lines),)
            for move, board in zip(moves.tolist(), boards):
                assert move in moves_chosen(bo.ConnectFourAlphaBeta(depth, rng(0)), {"observation": board,
                                            "action_mask": np.ones(7, np.int8)}, "x")
    assert bo.alpha_beta_depth2(np.stack(boards[1:2]), None)[0] == 0  # the other has three in column 0: blocked


def test_alpha_beta_demonstrations_hold_the_teachers_moves_and_their_mirror_images(tmp_path):
    """benchmarks/selfplay.py clones these: every recorded move is one the teacher finds best on its board, and
    every second row is the row before reflected left to right (connect four is symmetric)."""
    from sparring.envs.demonstrations import load_demonstrations
    from sparring.envs.pettingzoo import PettingZooEnv

    spec = PettingZooEnv(connect_four_v3.env()).specs["player"]
    path = tmp_path / "teacher.demo"
    rows = bo.record_alpha_beta(connect_four_v3.env, path, spec, teacher=bo.ConnectFourAlphaBeta(3, rng(0)),
                                opponents=[1, 2], games=6, explore=0.1, seed=0)
    demo = load_demonstrations(path, spec)
    assert len(demo.actions) == rows and rows % 2 == 0 and rows > 6 * 4
    boards, actions = demo.obs.reshape(rows, 6, 7, 2), demo.actions.reshape(rows)
    np.testing.assert_array_equal(boards[1::2], boards[0::2, :, ::-1])
    np.testing.assert_array_equal(actions[1::2], 6 - actions[0::2])
    np.testing.assert_array_equal(demo.action_masks[1::2], demo.action_masks[0::2, ::-1])
    for board, action in zip(boards, actions.tolist()):
        cur, them = stones(board)
        assert action in bo.best_columns(cur, cur | them, 3)
    seats = {int(board.sum()) % 2 for board in boards}
    assert seats == {0, 1}  # the teacher played first (an even count of stones to move on) and second


def test_a_teacher_by_seat_labels_each_seats_positions_with_its_own_search(tmp_path):
    """benchmarks/selfplay.py's teacher: one search for the first seat and another (depths summed) for the second;
    each recorded position is labelled by the search of the seat to move there (told by the count of stones)."""
    from sparring.envs.demonstrations import load_demonstrations
    from sparring.envs.pettingzoo import PettingZooEnv

    spec = PettingZooEnv(connect_four_v3.env()).specs["player"]
    first, second = connect_four_v3.env().possible_agents
    teacher = bo.BySeat({first: bo.ConnectFourAlphaBeta(3, rng(0)),
                         second: bo.ConnectFourAlphaBeta((1, 2), rng(1))})
    path = tmp_path / "by_seat.demo"
    rows = bo.record_alpha_beta(connect_four_v3.env, path, spec, teacher, opponents=[1, 2], games=8, explore=0.1,
                                seed=0)
    demo = load_demonstrations(path, spec)
    boards, actions = demo.obs.reshape(rows, 6, 7, 2), demo.actions.reshape(rows).tolist()
    labelled_by = {0: 0, 1: 0}
    for board, action in zip(boards, actions):
        cur, them = stones(board)
        seat = int(board.sum()) % 2
        best = bo.best_columns(cur, cur | them, 3) if seat == 0 else bo.best_summed_columns(cur, cur | them, (1, 2))
        assert action in best
        labelled_by[seat] += 1
    assert min(labelled_by.values()) > 0


def test_a_policys_decisions_are_recorded_with_the_teachers_moves_in_their_place(tmp_path):
    """DAgger (benchmarks/selfplay.py's ``--c4-dagger-games``): the policy plays, and every position it decided in
    is written once with the teacher's best move (and once mirrored), whatever the policy played there."""
    from sparring.envs.demonstrations import load_demonstrations
    from sparring.envs.pettingzoo import PettingZooEnv

    spec = PettingZooEnv(connect_four_v3.env()).specs["player"]
    decided = []

    def leftmost(obs, agent):  # a poor player: the first legal column, always
        decided.append(obs["observation"].copy())
        return int(np.flatnonzero(obs["action_mask"])[0])

    path = tmp_path / "labelled.demo"
    rows = bo.record_alpha_beta(connect_four_v3.env, path, spec, teacher=bo.ConnectFourAlphaBeta(3, rng(0)),
                                opponents=[2], games=6, explore=0.1, seed=0, player=leftmost)
    demo = load_demonstrations(path, spec)
    boards, actions = demo.obs.reshape(rows, 6, 7, 2), demo.actions.reshape(rows)
    assert rows == 2 * len(decided)
    np.testing.assert_array_equal(boards[0::2], np.stack(decided))
    np.testing.assert_array_equal(actions[1::2], 6 - actions[0::2])
    leftmost_moves = [int(np.flatnonzero(board.sum(2)[0] == 0)[0]) for board in boards[0::2]]
    assert sum(a != m for a, m in zip(actions[0::2].tolist(), leftmost_moves)) > len(decided) / 2
    for board, action in zip(boards, actions.tolist()):
        cur, them = stones(board)
        assert action in bo.best_columns(cur, cur | them, 3)
