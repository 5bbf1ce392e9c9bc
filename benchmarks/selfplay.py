"""Self-play, then fixed opponents: tic-tac-toe and connect four (PettingZoo classic).

Tic-tac-toe sees no minimax and no scripted player: the learner plays only itself and its league snapshots
(uniform over a window). Connect four reads the board with a CNN (ML-Agents' ``match3`` encoder, made for boards)
and learns from the game's AI as well as against it. Against: its league adds two scripted members, alpha-beta at
depths 1 and 2 (``board_opponents.alpha_beta_depth1/2``), drawn with the snapshots by prioritized fictitious
self-play ("hard": those it still loses to, most); ``--c4-members 1 2 4`` adds depth 4, and the last line says so
(``c4_depth4_in_league=1``). From: the same alpha-beta as the teacher, searched to depth 8 in the first seat
(``--c4-teacher``) and to depths 6 and 7 with their scores summed in the second (``--c4-teacher-second``), is
recorded playing depths 1-4 (``board_opponents.record_alpha_beta``: 8000 games from both seats, one move in ten at
random, every teacher decision with its mirror image) and the learner clones those decisions alongside RL
(``behavioral_cloning``, 4096 rows a pass, its learning rate decaying to 0 over the run as the trainer's does).
``--c4-dagger-games N`` adds DAgger: ``--c4-dagger-rounds`` times, evenly spaced over the run, the policy plays N
games against the teacher's opponents and the teacher labels each of its decisions, into the folder cloning reads.
Recording and labelling count in connect four's CPU minutes. A search per seat because deeper is not simply
stronger with this heuristic, and which depth plays best depends on the seat. Against depth 4, 100 games a seat
(won as the first player / as the second): depth 5 26/73, 6 36/72, 7 35/44, 8 98/77 (100/85 in another 200; 9:
40/53 of 60); depths summed, 6+7 74/97, 7+8 71/96, 8+9 88/97 (at three times depth 8's search). The heuristic weighs
the windows of the side to move at a leaf above the other's, so odd and even depths lean opposite ways and their sum
evens that out; a symmetric heuristic (the mover's windows less the other's, alike) did not help (depths 5-9:
54-81 first, 54-100 second). The teacher by seat won 0.970 and 0.975 of 200 games against depth 4. Its searches
were chosen by their scores against depth 4, the opponent the target names; against depths 3 and 5, which no
choice looked at, the same searches in their seats won 196 and 162 of 200 games and lost one in all (depth 5: the
rest drawn).
Evaluation plays the trained policy (deterministic, action masks applied) from both seats: tic-tac-toe against a
perfect minimax player (1000 games, random tie-breaking among optimal moves); connect four against a uniformly
random player and alpha-beta players at depths 2, 3 and 4 (four-in-a-row window heuristic, random tie-breaking),
200 games each. The opponents are in board_opponents.py.

Tic-tac-toe trains once per seed (``--ttt-seeds``, three by default) and reports its worst seed: a claim
about self-play holds for every seed or it is not a claim. Connect four trains once, for ``--c4-steps``
learner decisions: 600k by default, with the recording about 25 minutes of one core here (the target is a win
rate within 30 CPU minutes); the line reports the CPU minutes it took (one torch thread: about its wall
minutes).

Each tic-tac-toe run then makes its difficulty ladder (sparring.ladder, as ``sparring ladder`` does): as many
tiers as the default band allows, each beating the one below 65-75% of the time, every neighbouring pair
checked with 1000 fresh games (400, the command's default, measure a rate to a standard error of 0.023, so
even a pair at the band's middle checks outside a band 0.10 wide about 3% of the time; 1000 games, 0.06%);
``ladder_ordered`` is 1 when every seed's ladder has two or more tiers each beating the one below,
``ladder_band_ok`` the worst seed's fraction of checked pairs inside the band.

    python benchmarks/selfplay.py [--ttt-steps 1000000] [--ttt-seeds 0 1 2] [--c4-steps 600000] [--c4-seed 0]
                                  [--c4-members 1 2] [--c4-teacher 8] [--c4-teacher-second 6 7]
                                  [--c4-teacher-opponents 1 2 3 4] [--c4-demo-games 8000] [--c4-cloning-decays 1]
                                  [--c4-dagger-games 0] [--c4-dagger-rounds 2]

Last line: ``selfplay ttt_loss_rate_vs_perfect=<worst seed's> c4_win_rate_vs_random=<...>
c4_win_rate_vs_depth4=<...> c4_cpu_minutes=<...> c4_steps=<...> c4_depth4_in_league=<0|1>
c4_teacher_depth=<the first seat's depth/the second's, as 8/6+7; 0: none> c4_cloning_decays=<0|1>
c4_dagger_games=<games labelled> train_minutes=<CPU minutes of all training> ladder_ordered=<0|1>
ladder_band_ok=<fraction>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from board_opponents import (  # noqa: E402
    BySeat, ConnectFourAlphaBeta, RandomPlayer, TicTacToePerfect, play_match_by_seat, record_alpha_beta, totals,
)

from sparring.agents.selfplay.scripted import ScriptedOpponent  # noqa: E402

from sparring.agents.selfplay.ladder import LadderError  # noqa: E402
from sparring.agents.selfplay.league import League, LeagueSettings  # noqa: E402
from sparring.agents.selfplay.trainer import SelfPlay  # noqa: E402
from sparring.envs.pettingzoo import PettingZooEnv  # noqa: E402
from sparring.envs.vector import SerialVectorEnv  # noqa: E402
from sparring.ladder import make_ladders  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pettingzoo.classic import connect_four_v3, tictactoe_v3

# ent_coef 0.1: a high entropy bonus keeps self-play varied, so the learner meets the positions a fixed
# opponent will steer it into (0.01 loses 0.14 of tic-tac-toe games to perfect play). Entropy alone still
# left blind spots on some seeds (2 in 9 lost 1-5% of games to perfect play, at 1M and at 2M steps);
# opponent_exploration 0.1, opponents playing a random legal move one move in ten, left none in 10 seeds.
# Connect four without a teacher (--c4-teacher 0): the alpha-beta members punish blunders that self-play alone is
# slow to (measured, CNN, seed 0, with the CPU shared: with them 0.50 against depth 2 after 1M steps; without, 0.00
# at 1M); ent_coef 0.01 (0.1 with them: 0.00 against depth 2 at 500k). PFSP "hard" draws most what it still loses
# to. mirror_learns (every seat of its own games) scored 0.35 against depth 2 at 1M. Alone on the machine: 2M steps
# in 28.6 CPU minutes, 0.50 against depth 2 and 0.000 against depth 4. With depth 4 in the league as well (2M
# steps, 26.8 CPU minutes, the machine shared): 0.440 against depth 4 but 0.000 against depth 3, never met, and
# 0.730 against random play: lines learned against the members it meets, not strength. A policy trained only
# against depth 1 still lost 80% of its games to it between 250k and 500k steps: RL alone learns this board slowly.
# With the teacher by seat (depth 8 first, 6+7 second; five runs sharing the machine), this configuration (8000 games
# recorded in 9.5-9.8 CPU minutes, 600k steps, cloning decaying, 25.4-26.5 CPU minutes in all), seeds 0-4: 0.910,
# 0.940, 0.910, 0.980 and 0.885 against depth 4 (0.84-1.00 of the games as the first player, 0.93-0.98 as the
# second); 0.89-0.95 against depth 3, 0.975-1.000 against depth 2 and 0.985-0.990 against random play. Seeds 5 and 6
# (two runs at once, 24.1 and 24.9 CPU minutes): 0.985 and 0.990 against depth 4, 0.875 and 0.845 against depth 3.
# The teacher itself won 0.970 and 0.975 of 200 games against depth 4 (97 and 97, 97 and 98 of 100 a seat).
# With depth 8 in both seats (``--c4-teacher-second`` with no depths; four runs sharing the machine; 8000 games in 8.5
# CPU minutes, 24.7-24.9 in all), seeds 0-3: 0.970, 0.770, 0.785 and 0.920 against depth 4; 0.855, 0.900, 0.850,
# 0.880 against depth 3; 1.000 against depth 2 and 0.985-0.995 against random play on all four (seed 4, three runs
# sharing the machine: 0.885, 0.885, 1.000, 0.995 in 23.5 CPU minutes). That teacher won 0.88 of its 200 games
# against depth 4 (in 200 more, all 100 as the first player, 85 of 100 as the second), and its students scored about
# that: cloning's ceiling is the teacher's.
# Cloning at a constant rate (the trainer's decays; 6000 games, 450k steps, seeds 0 and 1): 0.760 and 0.755 against
# depth 4, 0.765 and 0.855 against depth 2; the same decaying: 0.965 and 0.820, 1.000 and 1.000 (the
# policy settles as both rates reach 0, rather than move with every cloning pass). Earlier, with cloning constant and
# the search slower: 3000 games (11.3 CPU minutes), 450k steps: 0.935 and 0.755 against depth 4; 2000 games, 600k
# steps: 0.715 and 0.710; the same with the teacher recorded against depths 1-3 only, depth 4 never met anywhere:
# 0.480 (seed 0); with depth 4 in the league too (550k steps): 0.675 and 0.725. With depth 8 in both seats: DAgger
# (6000 games recorded, then 1300 games labelled at 150k, 300k and 450k steps, 1.1-1.3 CPU minutes a round, 26.1-26.2
# in all), seeds 0-3: 0.780, 0.805, 1.000 and 0.810 against depth 4 (0.86-0.90 against depth 3): no better than
# without it. Twice the steps (1.2M, 39-40 CPU minutes, over the target's 30), seeds 1 and 2: 0.780 and 0.995 against
# depth 4, but seed 2 then lost half its games to depth 2 (0.500; 0.930 and 0.825 against depth 3): against
# near-deterministic players one move decides a whole seat's games, and more training does not settle it.
# Tic-tac-toe keeps a snapshot every 10k steps (the window of 100 holds the whole run): every 20k, seed 0's final
# policy beat its neighbouring snapshots 87.2% and 66.5% (1000 games each), neither inside the 65-75% band by a
# standard error, so it had no ladder (and it lost 5.5% of its games to perfect play; every 10k, none on seeds 0-2).
# A later session, same code path: seed 0 lost 6.2% (twice, the same games and ladder: a run repeats on one
# machine), seeds 1 and 2 none, every ladder in band; its trajectories differed from the first's (other ladder
# snapshots), so the seed alone does not fix whether seed 0 loses a few games to perfect play.
LADDER_GAMES = 1000
TEACHER_EXPLORE = 0.1  # either side's move at random, unrecorded: the teacher shows its way back from elsewhere
CLONED_ROWS = 4096  # demonstration rows per cloning pass (each PPO update makes n_epochs passes)
MEMBERS = Path(__file__).resolve().parent / "board_opponents.py"
C4_SPEC = PettingZooEnv(connect_four_v3.env()).specs["player"]
DEMONSTRATIONS = "demonstrations"  # the run folder's folder of .demo files cloning reads: recorded, then labelled
GAMES = {
    "ttt": (tictactoe_v3.env,
            dict(n_steps=64, batch_size=128, n_epochs=4, learning_rate=1e-3, ent_coef=0.1,
                 hidden_sizes=[128, 128], activation="relu"),
            LeagueSettings(save_steps=10_000, swap_steps=10_000, window=100, play_against_latest_model_ratio=0.5,
                           opponent_sampling="uniform", opponent_exploration=0.1)),
    "c4": (connect_four_v3.env,
           dict(n_steps=64, batch_size=1024, n_epochs=4, learning_rate=3e-4, ent_coef=0.01, gamma=0.99,
                hidden_sizes=[256, 256], activation="relu", vis_encode_type="match3"),
           LeagueSettings(save_steps=20_000, swap_steps=10_000, window=100, play_against_latest_model_ratio=0.5,
                          opponent_sampling="pfsp", pfsp_weighting="hard")),
}


def alpha_beta_members(depths: list[int]) -> list[ScriptedOpponent]:
    """The league's scripted members: board_opponents' alpha-beta players at ``depths``."""
    return [ScriptedOpponent(name=f"alpha_beta_depth{d}", kind="callable", function=f"{MEMBERS}:alpha_beta_depth{d}")
            for d in depths]


def make(game: str):
    def env():
        return PettingZooEnv(GAMES[game][0]())
    return env


def train(game: str, steps: int, envs: int, seed: int, run_dir: Path, members: Sequence[ScriptedOpponent] = (),
          callback: Callable[[SelfPlay, object], None] | None = None, **overrides) -> tuple[SelfPlay, float]:
    """Self-play for ``steps`` learner decisions, with ``members`` in its league and ``overrides`` of the game's
    trainer settings, kept in ``run_dir`` as a run's are; returns the model and the CPU minutes of this process it
    took (one torch thread: about its wall minutes)."""
    _, settings, league = GAMES[game]
    league = league.model_copy(update={"opponents": list(members)})
    model = SelfPlay(SerialVectorEnv([make(game)] * envs), League(league, run_dir / "league", seed=seed),
                     seed=seed, **settings | overrides)
    start = time.process_time()
    model.learn(steps, callback)  # in one call: the learning rate decays linearly over all of it
    minutes = (time.process_time() - start) / 60
    model.league.save()
    model.save(run_dir / "final.pt")
    return model, minutes


def teacher(options: argparse.Namespace, seed: int) -> BySeat:
    """The teacher: alpha-beta to ``--c4-teacher``'s depth in the first seat, to ``--c4-teacher-second``'s depths
    summed in the second (``--c4-teacher``'s when none are given)."""
    rng = np.random.default_rng(seed)
    second = tuple(options.c4_teacher_second) or options.c4_teacher
    first_seat, second_seat = connect_four_v3.env().possible_agents
    return BySeat({first_seat: ConnectFourAlphaBeta(options.c4_teacher, rng),
                   second_seat: ConnectFourAlphaBeta(second, rng)})


def teacher_name(options: argparse.Namespace) -> str:
    """``--c4-teacher``'s depth, and the second seat's depths when given: ``8`` or ``8/6+7`` (``0``: no teacher)."""
    second = "+".join(map(str, options.c4_teacher_second))
    return f"{options.c4_teacher}/{second}" if second and options.c4_teacher else str(options.c4_teacher)


def teach(run_dir: Path, options: argparse.Namespace, seed: int) -> tuple[dict, float]:
    """Record the teacher's games into ``run_dir`` (``--c4-teacher``); the trainer settings that clone them and the
    CPU minutes recording took (part of connect four's). No teacher: no settings, no minutes."""
    if not options.c4_teacher:
        return {}, 0.0
    start = time.process_time()
    demos = run_dir / DEMONSTRATIONS
    demos.mkdir()
    rows = record_alpha_beta(connect_four_v3.env, demos / "alpha_beta.demo", C4_SPEC, teacher(options, seed),
                             options.c4_teacher_opponents, options.c4_demo_games, TEACHER_EXPLORE, seed)
    minutes = (time.process_time() - start) / 60
    print(f"(connect four: {rows:,} demonstration rows of alpha-beta depth {teacher_name(options)} against depths "
          f"{' '.join(map(str, options.c4_teacher_opponents))}, {options.c4_demo_games:,} games, recorded in "
          f"{minutes:.1f} CPU minutes)", flush=True)
    decay = {"steps": options.c4_steps} if options.c4_cloning_decays else {}
    return {"behavioral_cloning": {"demo_path": str(demos), "samples_per_update": CLONED_ROWS} | decay}, minutes


class Dagger:
    """A training callback: ``rounds`` times, evenly spaced over the run, the policy plays ``games`` games against
    the teacher's opponents while the teacher labels its decisions (``record_alpha_beta``'s ``player``), into the
    folder of demonstrations cloning reads; cloning then learns from the folder whole."""

    def __init__(self, run_dir: Path, options: argparse.Namespace, seed: int) -> None:
        self.folder, self.options, self.seed = run_dir / DEMONSTRATIONS, options, seed
        rounds = options.c4_dagger_rounds if options.c4_teacher and options.c4_dagger_games else 0
        self.due = [options.c4_steps * (k + 1) // (rounds + 1) for k in range(rounds)]
        self.games = 0  # labelled so far

    def __call__(self, model: SelfPlay, report) -> None:
        if not self.due or model.num_steps < self.due[0]:
            return
        self.due.pop(0)
        o, start = self.options, time.process_time()
        round_ = o.c4_dagger_rounds - len(self.due)
        rows = record_alpha_beta(connect_four_v3.env, self.folder / f"dagger{round_}.demo", C4_SPEC,
                                 teacher(o, self.seed + round_), o.c4_teacher_opponents, o.c4_dagger_games,
                                 TEACHER_EXPLORE, self.seed + round_, player=as_player(model))
        model.learners["player"].cloning.demonstrations.reread()
        minutes = (time.process_time() - start) / 60
        self.games += o.c4_dagger_games
        print(f"(connect four at {model.num_steps:,} steps: {rows:,} rows of the policy's decisions labelled by the "
              f"teacher, {o.c4_dagger_games:,} games, {minutes:.1f} CPU minutes)", flush=True)


def ladder_of(run_dir: Path, envs: int, seed: int) -> tuple[bool, float]:
    """Make the run's difficulty ladder and print it; (ordered, fraction of pairs in the band), (False, 0.0) when
    the band allows fewer than two tiers."""
    try:
        (made,) = make_ladders(run_dir, games=LADDER_GAMES, seed=seed, env=SerialVectorEnv([make("ttt")] * envs))
    except LadderError as exc:
        print(f"ladder         {seed:>4} none: {exc}", flush=True)
        return False, 0.0
    ladder = made.ladder
    rates = " ".join(f"{check.score:.3f}" for check in ladder.checks)
    print(f"ladder         {seed:>4} {' < '.join(tier.id for tier in ladder.tiers)}; checked {rates} "
          f"({sum(ladder.in_band)}/{len(ladder.checks)} in {ladder.band[0]:g}-{ladder.band[1]:g})", flush=True)
    return ladder.ordered, float(np.mean(ladder.in_band))


def as_player(model: SelfPlay):
    """The trained policy as a board_opponents player: deterministic, masked."""
    def play(obs: dict, agent: str) -> int:
        mask = np.asarray(obs["action_mask"], bool)[None]
        return int(model.predict(np.asarray(obs["observation"])[None], "player", mask, deterministic=True)[0])
    return play


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ttt-steps", type=int, default=1_000_000, help="0 skips tic-tac-toe")
    parser.add_argument("--ttt-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--c4-steps", type=int, default=600_000, help="0 skips connect four")
    parser.add_argument("--c4-seed", type=int, default=0)
    parser.add_argument("--envs", type=int, default=16, help="tic-tac-toe's game copies")
    parser.add_argument("--c4-envs", type=int, default=32)
    parser.add_argument("--c4-members", type=int, nargs="*", choices=(1, 2, 4), default=[1, 2],
                        help="depths of the alpha-beta players in the league (4: the one the last line reports)")
    parser.add_argument("--c4-teacher", type=int, default=8,
                        help="depth the cloned alpha-beta player (the teacher) searches in the first seat; 0: none")
    parser.add_argument("--c4-teacher-second", type=int, nargs="*", default=[6, 7],
                        help="depths the teacher searches in the second seat, their scores summed; none: --c4-teacher")
    parser.add_argument("--c4-teacher-opponents", type=int, nargs="+", default=[1, 2, 3, 4],
                        help="depths of the alpha-beta players the teacher is recorded against")
    parser.add_argument("--c4-demo-games", type=int, default=8000, help="games recorded of the teacher")
    parser.add_argument("--c4-cloning-decays", type=int, choices=(0, 1), default=1,
                        help="1: cloning's learning rate decays to 0 over the run, as the trainer's does")
    parser.add_argument("--c4-dagger-games", type=int, default=0,
                        help="games a round of the policy's decisions labelled by the teacher; 0: none")
    parser.add_argument("--c4-dagger-rounds", type=int, default=2, help="rounds, evenly spaced over the run")
    options = parser.parse_args()
    torch.set_num_threads(1)

    print(f"{'game':<14} {'seed':>4} {'opponent':<20} {'games':>6} {'win':>6} {'draw':>6} {'loss':>6} "
          f"{'won first':>9} {'won second':>10}")
    minutes, ttt_losses, c4, ladders, c4_minutes, c4_steps, c4_dagger_games = 0.0, [], {}, [], float("nan"), 0, 0
    for seed in options.ttt_seeds if options.ttt_steps else ():
        with tempfile.TemporaryDirectory() as run_dir:
            model, spent = train("ttt", options.ttt_steps, options.envs, seed, Path(run_dir))
            minutes += spent
            rng = np.random.default_rng(seed)
            record = play_match_by_seat(tictactoe_v3.env, as_player(model), TicTacToePerfect(rng), 1000, 1)
            ttt_losses.append(show("tic-tac-toe", seed, "perfect minimax", record)[1])
            ladders.append(ladder_of(Path(run_dir), options.envs, seed))
    if options.c4_steps:
        seed = options.c4_seed
        with tempfile.TemporaryDirectory() as run_dir:
            cloning, demo_minutes = teach(Path(run_dir), options, seed)
            dagger = Dagger(Path(run_dir), options, seed)
            model, c4_minutes = train("c4", options.c4_steps, options.c4_envs, seed, Path(run_dir),
                                      alpha_beta_members(options.c4_members), dagger, **cloning)
        c4_dagger_games = dagger.games
        c4_minutes += demo_minutes
        minutes += c4_minutes
        c4_steps = model.num_steps
        rng = np.random.default_rng(seed)
        for name, opponent, games, match_seed in (("random", RandomPlayer(rng), 200, 2),
                                                  ("alpha-beta depth 2", ConnectFourAlphaBeta(2, rng), 200, 3),
                                                  ("alpha-beta depth 3", ConnectFourAlphaBeta(3, rng), 200, 5),
                                                  ("alpha-beta depth 4", ConnectFourAlphaBeta(4, rng), 200, 4)):
            record = play_match_by_seat(connect_four_v3.env, as_player(model), opponent, games, match_seed)
            c4[name] = show("connect four", seed, name, record)[0]
    print(f"(tic-tac-toe {options.ttt_steps:,} self-play steps per seed, connect four {c4_steps:,} in "
          f"{c4_minutes:.1f} CPU minutes; both seats, half the games each; the trained policy plays deterministically)")
    print(f"selfplay ttt_loss_rate_vs_perfect={max(ttt_losses, default=float('nan')):.3f} "
          f"c4_win_rate_vs_random={c4.get('random', float('nan')):.3f} "
          f"c4_win_rate_vs_depth4={c4.get('alpha-beta depth 4', float('nan')):.3f} c4_cpu_minutes={c4_minutes:.1f} "
          f"c4_steps={c4_steps} c4_depth4_in_league={int(4 in options.c4_members)} "
          f"c4_teacher_depth={teacher_name(options)} c4_cloning_decays={options.c4_cloning_decays} "
          f"c4_dagger_games={c4_dagger_games} train_minutes={minutes:.1f} "
          f"ladder_ordered={int(all(ordered for ordered, _ in ladders)) if ladders else 'nan'} "
          f"ladder_band_ok={min((ok for _, ok in ladders), default=float('nan')):.2f}")


def show(game: str, seed: int, opponent: str, by_seat: dict[str, dict[str, int]]) -> tuple[float, float]:
    """Print one match's row, with the win rate from each seat; return its (win rate, loss rate)."""
    record = totals(by_seat)
    n = sum(record.values())
    win, draw, loss = record["wins"] / n, record["draws"] / n, record["losses"] / n
    first, second = (counts["wins"] / sum(counts.values()) for counts in by_seat.values())
    print(f"{game:<14} {seed:>4} {opponent:<20} {n:>6} {win:>6.3f} {draw:>6.3f} {loss:>6.3f} {first:>9.3f} "
          f"{second:>10.3f}", flush=True)
    return win, loss


if __name__ == "__main__":
    main()
