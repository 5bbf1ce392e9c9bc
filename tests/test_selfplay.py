"""Self-play (agents/selfplay/trainer.py): routing between learner and opponents, schedules, resume, learning."""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from gymnasium import spaces
from pettingzoo import ParallelEnv

from sparring.agents.evaluation import evaluate
from sparring.agents.selfplay.league import LATEST, League, LeagueSettings
from sparring.agents.selfplay.trainer import GroupClock, POCASelfPlay, SelfPlay, game_score
from sparring.envs.base import DecisionSteps
from sparring.envs.pettingzoo import PettingZooEnv
from sparring.envs.vector import SerialVectorEnv
from sparring.spec import group_of
from toy_envs import TugOfWar, tug_results

TTT = dict(n_steps=64, batch_size=128, n_epochs=4, learning_rate=1e-3, ent_coef=0.1, hidden_sizes=[128, 128],
           activation="relu")


def tictactoe(opponent=None) -> PettingZooEnv:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from pettingzoo.classic import tictactoe_v3
    return PettingZooEnv(tictactoe_v3.env(), opponent=opponent)


def self_play_tictactoe(league_dir=None, seed=0, copies=8, **league) -> SelfPlay:
    settings = LeagueSettings(**{"save_steps": 20_000, "swap_steps": 10_000, "window": 10, **league})
    return SelfPlay(SerialVectorEnv([tictactoe] * copies), League(settings, league_dir, seed=seed), seed=seed, **TTT)


def test_groups_and_game_scores_follow_ml_agents():
    assert group_of("Striker?team=1") == "Striker" and group_of("player") == "player"
    np.testing.assert_array_equal(game_score(np.array([1.0, 0.0, -1.0, 0.3])), [1.0, 0.5, 0.0, 1.0])


def test_the_learner_plays_one_seat_per_game_and_rotates_every_episode():
    model = self_play_tictactoe()
    seats_seen = []
    original = model.observe

    def observe(behaviour, step):  # which seat the learner holds in copy 0 at each of its decisions
        mine = original(behaviour, step)
        ids = mine.decisions.agent_ids
        seats_seen.extend((ids[ids < 2**32] % 2**32).tolist())
        return mine

    model.observe = observe
    finished = []
    model.learn(1, callback=lambda m, report: finished.append(len(report.behaviours["player"].episode_returns)))
    assert model.learner_seat.shape == (8,)
    assert 64 * 8 * 0.4 <= model.num_steps <= 64 * 8 * 0.6  # one rollout: about half of all moves are the learner's
    assert set(seats_seen) == {0, 1}  # copy 0's learner changed seats between games
    assert [p.step for p in model.league.players.values()] == [0]  # the step-0 snapshot
    assert finished[0] > 0


def test_with_mirror_learns_the_learner_takes_every_seat_of_games_against_itself():
    """Every game against the learner itself: every move is the learner's, no opponent acts (the other seat's
    moves still count as opponent steps, which swap_steps counts), and each decided game is counted once from each
    seat, a win and a loss."""
    model = self_play_tictactoe(copies=4, play_against_latest_model_ratio=1.0, mirror_learns=True)
    model.learn(1_000)
    assert model.mirrored.all() and not model._opponents
    assert 0.4 * model.num_steps <= model.clocks["player"].played <= 0.6 * model.num_steps
    wins, draws, losses = model.league.payoff["player/main"]["latest"]
    assert wins == losses > 0 and (wins + draws + losses) % 2 == 0


def test_with_mirror_learns_an_opponent_drawn_mid_game_takes_its_seats_from_the_next_game():
    """Against snapshots half the time: a game's seats change hands only between its episodes, and its result is
    recorded against whoever played them."""
    model = self_play_tictactoe(copies=8, play_against_latest_model_ratio=0.5, mirror_learns=True, save_steps=200,
                                swap_steps=60)
    changes = []
    original = model.observe

    def observe(behaviour, step):  # the games whose seats changed hands in this step, and whether an episode ended
        before = model.mirrored.copy()
        mine = original(behaviour, step)
        changed = np.flatnonzero(before != model.mirrored[: len(before)])
        ended = set(model.env.seats(behaviour, step.terminals.agent_ids)[0].tolist())
        changes.append(set(changed.tolist()) <= ended)
        return mine

    model.observe = observe
    model.learn(3_000)
    assert all(changes) and len(model.league.players) > 2 and model.clocks["player"].played > 0
    assert model.mirrored.any() and not model.mirrored.all()


@pytest.mark.parametrize("exploration", [0.0, 1.0])
def test_opponent_exploration_replaces_that_share_of_opponent_moves_with_uniform_legal_ones(exploration):
    """0: the opponent plays its policy (here one that always takes the first legal cell); 1: every move is a
    uniform draw among the legal ones, so the learner meets positions its own play never reaches."""
    model = self_play_tictactoe(opponent_exploration=exploration)
    with torch.no_grad():  # a policy that strongly prefers cell 0
        model.learners["player"].policy.actor_head.bias.copy_(torch.tensor([20.0] + [0.0] * 8))
    n = 900
    mask = np.ones((n, 9), bool)
    mask[:, 0] = np.arange(n) % 2 == 0  # cell 0 is taken in half of the positions
    decisions = DecisionSteps(np.arange(n, dtype=np.int64), np.zeros((n, 3, 3, 2), np.int8),
                              np.zeros(n, np.float32), mask)
    actions = model._opponent_act("player", np.array([LATEST] * n, object), decisions)
    assert mask[np.arange(n), actions].all()  # always a legal move
    free = mask[:, 0]
    if exploration == 0.0:
        assert (actions[free] == 0).all()
    else:
        counts = np.bincount(actions[free], minlength=9)  # 450 positions, 9 legal cells each
        assert counts.min() > 25 and counts[0] < 80


def test_snapshots_swaps_and_results_reach_the_league(tmp_path):
    model = self_play_tictactoe(tmp_path / "league", save_steps=2_000, swap_steps=1_000)
    model.learn(6_000)
    league = model.league
    snapshots = sorted(p.step for p in league.players.values())
    assert snapshots[0] == 0 and len(snapshots) >= 3
    assert all(b - a >= 2_000 for a, b in zip(snapshots, snapshots[1:]))
    games = sum(p.games for p in league.players.values())
    assert games > 0
    assert set(model.copy_opponents) <= {LATEST, *league.players}
    assert len(set(model.copy_opponents)) > 1  # every game copy draws its own opponent


@pytest.mark.parametrize("exploiters", [0, 1])
def test_resume_continues_exactly(tmp_path, exploiters):
    """Two runs resumed from one checkpoint (league, routing, opponents and all) play on identically."""
    league = dict(save_steps=1_500, swap_steps=1_000, main_exploiters=exploiters, league_exploiters=exploiters)
    first = self_play_tictactoe(tmp_path / "league", **league)
    first.learn(1_600)
    first.save(tmp_path / "checkpoint.pt")
    runs = []
    for _ in range(2):  # the same league folder: the snapshots on disk are the checkpoint's
        resumed = self_play_tictactoe(tmp_path / "league", **league)
        resumed.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=False))
        runs.append(resumed.learn(3_500))
    a, b = runs
    assert a.num_steps == b.num_steps and a.copy_opponents == b.copy_opponents
    assert a.league.state_dict()["history"] == b.league.state_dict()["history"]
    assert a.league.players.keys() == b.league.players.keys() and len(a.league.players) >= 2
    for pa, pb in zip(a.learners["player"].policy.parameters(), b.learners["player"].policy.parameters()):
        torch.testing.assert_close(pa, pb)
    for role in a.exploiters:
        for pa, pb in zip(a.exploiters[role]["player"].policy.parameters(),
                          b.exploiters[role]["player"].policy.parameters()):
            torch.testing.assert_close(pa, pb)


def test_exploiters_learn_against_their_own_opponents_and_join_the_league(tmp_path):
    """Copies 0, 3, 6 are the main learner's, 1, 4, 7 the main exploiter's, 2, 5 the league exploiter's."""
    model = self_play_tictactoe(tmp_path / "league", save_steps=2_000, swap_steps=1_000,
                                main_exploiters=1, league_exploiters=1)
    assert model.roles == ["main", "main_exploiter0", "league_exploiter0"]
    initial = {k: v.clone() for k, v in model.exploiters["main_exploiter0"]["player"].policy.state_dict().items()}
    resets = []

    def after_update(m, report):
        clock = m.clocks["player"]
        if clock.snapshot == clock.learned:  # a snapshot was just taken: the main exploiter starts over
            weights = m.exploiters["main_exploiter0"]["player"].policy.state_dict()
            resets.append(all(torch.equal(weights[k], initial[k]) for k in initial))

    model.learn(5_000, callback=after_update)
    league = model.league
    roles = {p.role for p in league.players.values()}
    assert roles == {"main", "main_exploiter0", "league_exploiter0"}
    assert resets and all(resets)
    main_exploiter = league.payoff["player/main_exploiter0"]
    assert main_exploiter and all(league.players[o].role == "main" for o in main_exploiter if o in league.players)
    assert league.payoff["player/league_exploiter0"]
    league_exploiter = model.exploiters["league_exploiter0"]["player"].policy
    assert any(not torch.equal(a, b) for a, b in zip(league_exploiter.parameters(), model.learners["player"].policy.parameters()))
    # the main learner meets exploiter snapshots once they are in the league
    main_opponents = {o for o in league.payoff["player/main"] if o in league.players}
    assert any(league.players[o].role != "main" for o in main_opponents)


class HideAndGuess(ParallelEnv):
    """An asymmetric one-move game: the hider picks a cell, the guesser wins (+1, hider -1) by naming it."""

    metadata = {"name": "hide_and_guess_v0"}
    possible_agents = ["hider", "guesser"]

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def observation_space(self, agent):
        return spaces.Box(0, 1, (2,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(3)

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.hint = self.rng.integers(2)  # a coin both see: the game is not always the same
        obs = np.array([self.hint, 1 - self.hint], np.float32)
        return {a: obs for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        found = actions["hider"] == actions["guesser"]
        rewards = {"hider": -1.0 if found else 1.0, "guesser": 1.0 if found else -1.0}
        obs, _ = self.reset()
        done = {a: True for a in self.agents}
        self.agents = []
        return obs, rewards, done, {a: False for a in done}, {a: {} for a in done}


def test_asymmetric_sides_take_turns_at_learning_and_both_enter_the_league():
    model = hide_and_guess(4)
    assert not model.symmetric and [g for g, _ in model.sides] == ["guesser", "hider"]
    learned = []

    def changed(m, report):  # which groups' weights moved in this update
        now = {g: torch.cat([p.flatten() for p in learner.policy.parameters()]).clone()
               for g, learner in m.learners.items()}
        learned.append(sorted(g for g in now if not torch.equal(now[g], before[g])))
        before.update(now)

    before = {g: torch.cat([p.flatten() for p in learner.policy.parameters()]).clone()
              for g, learner in model.learners.items()}
    model.learn(2_400, callback=changed)
    assert all(len(groups) == 1 for groups in learned)  # one side learns at a time, the other is frozen
    order = [groups[0] for groups in learned]
    assert order[0] == "guesser" and "hider" in order  # the learning side changed after team_change steps
    groups = {p.group for p in model.league.players.values()}
    assert groups == {"guesser", "hider"}
    assert model.league.learners["guesser/main"].games > 0 and model.league.learners["hider/main"].games > 0


def hide_and_guess(copies: int, league_dir=None, **league) -> SelfPlay:
    settings = LeagueSettings(**{"save_steps": 300, "swap_steps": 200, "team_change": 600, "window": 5, **league})
    return SelfPlay(SerialVectorEnv([lambda: PettingZooEnv(HideAndGuess())] * copies),
                    League(settings, league_dir, seed=1), seed=1,
                    n_steps=16, batch_size=32, n_epochs=2, lr_schedule="constant")


def test_exploiters_of_each_side_learn_when_their_side_does():
    """Copies 0, 3 are the main learners', 1, 4 the main exploiters', 2, 5 the league exploiters'."""
    model = hide_and_guess(6, main_exploiters=1, league_exploiters=1)
    assert set(model.exploiters["main_exploiter0"]) == {"guesser", "hider"}
    flat = lambda learner: torch.cat([p.flatten() for p in learner.policy.parameters()]).clone()  # noqa: E731
    learners = {(role, group): by_group[group] for role, by_group in model.exploiters.items() for group in by_group}
    before = {key: flat(learner) for key, learner in learners.items()}
    moved, learning = [], [model.learning_group]  # the side that learned in each update; it may change after one

    def changed(m, report):
        now = {key: flat(learner) for key, learner in learners.items()}
        moved.append((learning[-1], {key for key in now if not torch.equal(now[key], before[key])}))
        learning.append(m.learning_group)
        before.update(now)

    model.learn(2_400, callback=changed)
    for group, keys in moved:  # only the learning side's exploiters move (a main exploiter reset moves it too)
        assert {g for _, g in keys} <= {group}
    assert {group for group, keys in moved if ("league_exploiter0", group) in keys} == {"guesser", "hider"}
    league = model.league
    assert {(p.group, p.role) for p in league.players.values()} == {
        (g, r) for g in ("guesser", "hider") for r in ("main", "main_exploiter0", "league_exploiter0")}
    for group, other in (("guesser", "hider"), ("hider", "guesser")):
        faced = [o for o in league.payoff[f"{group}/main_exploiter0"] if o in league.players]
        assert faced and all(league.players[o].role == "main" and league.players[o].group == other for o in faced)
        assert league.payoff[f"{group}/league_exploiter0"]


def group_events(model: SelfPlay) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Lists that fill as ``model`` learns: per draw of who plays a group, the group and its opponent steps then;
    per snapshot of a group, the group and its learner steps then."""
    draws, snapshots = [], []
    sample, add = model.league.sample_opponent, model.league.add_snapshot

    def drawing(group, role="main", learner_group=None):
        draws.append((group, model.clocks[group].played))
        return sample(group, role, learner_group)

    def adding(group, role, step, weights):
        snapshots.append((group, model.clocks[group].learned))
        return add(group, role, step, weights)

    model.league.sample_opponent, model.league.add_snapshot = drawing, adding
    return draws, snapshots


def gaps(events: list[tuple[str, int]], group: str) -> set[int]:
    """The steps between one event of ``group`` and its next (0, two draws at once at a change of side, left out)."""
    steps = [step for g, step in events if g == group]
    return {b - a for a, b in zip(steps, steps[1:])} - {0}


# Every update each side takes 64 decisions (4 copies x n_steps 16); team_change 768 is a multiple of every
# schedule below, so the draws of both groups when the learning side changes fall on their schedules too.


def test_each_group_draws_who_plays_it_every_swap_steps_of_its_own_opponent_steps():
    """ML-Agents' StrikersVsGoalie gives each side its own swap_steps, counted in its ghost steps."""
    model = hide_and_guess(4, swap_steps=256, team_change=768, groups={"hider": {"swap_steps": 64}})
    draws, _ = group_events(model)
    model.learn(3_200)
    assert gaps(draws, "hider") == {64} and gaps(draws, "guesser") == {256}
    assert {group for group, _ in draws} == {"hider", "guesser"}


def test_each_group_is_snapshotted_every_save_steps_of_its_own_learner_steps():
    model = hide_and_guess(4, save_steps=256, team_change=768, groups={"guesser": {"save_steps": 128}})
    _, snapshots = group_events(model)
    model.learn(3_200)
    assert gaps(snapshots, "guesser") == {128} and gaps(snapshots, "hider") == {256}
    assert sorted(snapshots[:2]) == [("guesser", 0), ("hider", 0)]  # the step-0 snapshots


def test_each_side_learns_for_its_own_groups_team_change():
    """As ML-Agents' GhostController: the learning team's own team_change says when the next team learns."""
    model = hide_and_guess(4, team_change=768, groups={"hider": {"team_change": 384}})
    learning = [model.learning_group]  # the side that learns in each update
    model.learn(3_500, callback=lambda m, report: learning.append(m.learning_group))
    runs = [(group, len(list(updates))) for group, updates in itertools.groupby(learning[:-1])]
    assert runs[:4] == [("guesser", 12), ("hider", 6), ("guesser", 12), ("hider", 6)]


def test_settings_for_a_group_the_env_lacks_are_refused_at_start():
    with pytest.raises(ValueError, match=r"self_play.groups.seeker: the env has no policy group 'seeker'; its "
                                         r"groups are guesser, hider"):
        hide_and_guess(2, groups={"seeker": {"swap_steps": 10}})


def test_exploiters_need_a_game_copy_per_role():
    with pytest.raises(ValueError, match=r"3 roles \(main, main_exploiter0, league_exploiter0\).*the env has 2"):
        hide_and_guess(2, main_exploiters=1, league_exploiters=1)


def test_asymmetric_resume_with_exploiters_and_group_schedules_continues_exactly(tmp_path):
    league = dict(main_exploiters=1, league_exploiters=1, groups={"hider": {"swap_steps": 50, "save_steps": 150}})
    first = hide_and_guess(3, tmp_path / "league", **league)
    first.learn(700)
    first.save(tmp_path / "checkpoint.pt")
    runs = []
    for _ in range(2):
        resumed = hide_and_guess(3, tmp_path / "league", **league)
        resumed.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=False))
        assert resumed.clocks == first.clocks  # each group's counts and the marks of its schedules
        runs.append(resumed.learn(1_600))
    a, b = runs
    assert a.num_steps == b.num_steps and a.opponents == b.opponents and a.learning_side == b.learning_side
    assert a.clocks == b.clocks
    assert a.league.state_dict()["history"] == b.league.state_dict()["history"]
    for role in a.exploiters:
        for group in a.exploiters[role]:
            for pa, pb in zip(a.exploiters[role][group].policy.parameters(),
                              b.exploiters[role][group].policy.parameters()):
                torch.testing.assert_close(pa, pb)


def test_a_checkpoint_from_before_group_schedules_resumes_each_group_from_its_global_marks():
    """Such a checkpoint counted every schedule in num_steps: each group's counts start there."""
    first = hide_and_guess(3)
    first.learn(700)
    state = first.state_dict()
    del state["self_play"]["clocks"]
    state["self_play"]["marks"] = {"snapshot": 600, "swap": 650, "team_change": 0}
    resumed = hide_and_guess(3)
    resumed.load_state_dict(state)
    step = first.num_steps
    assert resumed.clocks == {group: GroupClock(step, step, 600, 650, 0) for group in ("guesser", "hider")}
    assert resumed.learn(1_200).num_steps >= 1_200


def test_unity_team_behaviours_play_self_play_through_the_real_protocol(tmp_path):
    """Team ids come from Unity behaviour names ("Seeker?team=0"); each team's side is a group of its own here."""
    from sparring.envs.unity import MultiUnityEnv
    from unity_harness import build_player, free_ports

    settings = LeagueSettings(save_steps=500, swap_steps=250, team_change=1_000)
    with MultiUnityEnv(build_player(tmp_path), 1, base_port=free_ports(), timeout_wait=20) as env:
        model = SelfPlay(env, League(settings, tmp_path / "league"), n_steps=32, batch_size=64, n_epochs=2)
        assert model.sides == [("Mover", 1), ("Seeker", 0)]
        model.learn(2_500)
    assert {p.group for p in model.league.players.values()} == {"Mover", "Seeker"}
    assert model.league.learners["Seeker/main"].games > 0  # the Seekers' goals are wins


def test_cli_self_play_run_resumes_and_reports_its_league(tmp_path, capsys):
    import yaml

    from sparring.cli import main

    config = yaml.safe_load(open(Path(__file__).resolve().parents[1] / "examples" / "tictactoe_selfplay.yaml"))
    config["trainer"].update(max_steps=3_000, checkpoint_interval=1_000, summary_freq=1_000)
    config["trainer"]["self_play"].update(save_steps=1_000, swap_steps=500)
    path = tmp_path / "ttt.yaml"
    path.write_text(yaml.safe_dump(config))
    results = tmp_path / "results"
    assert main(["train", str(path), "--results-dir", str(results), "--run-id", "sp"]) == 0
    run = results / "sp"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("Self-play/ELO" in row for row in rows if row["behaviour"] == "player")
    config["trainer"]["max_steps"] = 5_000
    path.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["train", str(path), "--results-dir", str(results), "--run-id", "sp", "--resume"]) == 0
    assert "resuming sp from" in capsys.readouterr().err
    league = json.loads((run / "league" / "league.json").read_text())
    assert max(p["step"] for p in league["players"]) >= 4_000  # snapshots kept coming after the resume
    assert main(["league", str(run)]) == 0
    out = capsys.readouterr().out
    assert "player@0" in out and (run / "league" / "ratings.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "player.onnx").exists()  # exported like any run: policies are keyed by group


def test_cli_self_play_naming_a_group_the_env_lacks_is_a_usage_error(tmp_path, capsys):
    import yaml

    from sparring.cli import main

    config = yaml.safe_load(open(Path(__file__).resolve().parents[1] / "examples" / "tictactoe_selfplay.yaml"))
    config["trainer"]["self_play"]["groups"] = {"Striker": {"swap_steps": 4000}}
    path = tmp_path / "ttt.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--results-dir", str(tmp_path / "results")]) == 2
    error = capsys.readouterr().err
    assert "sparring: error:" in error and "Striker" in error and "Traceback" not in error


@pytest.mark.slow
def test_the_self_play_example_beats_a_random_player_it_never_met(tmp_path, learning_seed, measured, one_torch_thread):
    """examples/tictactoe_selfplay.yaml through the CLI, for 300k of its 1M steps: the learner plays only itself and
    its snapshots, then meets a random player from both seats. A perfect player that breaks ties at random wins about
    0.88 of such games (benchmarks/board_opponents.py); random against random about 0.58 from both seats.

    Seeds 0-9, 1000 games each: won 0.928 to 0.966, lost 0 to 0.008. (The whole 1M steps, with the hand-written PPO
    gradients: won 0.939 to 0.954, lost none, nor any of 1000 games to a perfect minimax player.)
    """
    from sparring.agents import PPO
    from sparring.cli import main

    example = yaml.safe_load((Path(__file__).resolve().parents[1] / "examples" / "tictactoe_selfplay.yaml").read_text())
    example["trainer"]["max_steps"] = 300_000  # the suite's time; the claim at 1M is the benchmark's
    config = tmp_path / "tictactoe_selfplay.yaml"
    config.write_text(yaml.safe_dump(example))
    assert main(["train", str(config), "--results-dir", str(tmp_path), "--run-id", "ttt",
                 "--seed", str(learning_seed)]) == 0
    model = PPO.load(tmp_path / "ttt" / "final.pt")
    returns = evaluate(model, tictactoe(opponent="random"), episodes=1000, seed=2024 + learning_seed)["player"]
    win, loss = float((returns > 0).mean()), float((returns < 0).mean())
    measured(win=win, loss=loss)
    assert win > 0.9 and loss < 0.02, f"win rate {win:.3f}, loss rate {loss:.3f}"


def test_poca_teams_learn_by_self_play_and_beat_a_random_team(tmp_path, learning_seed, measured, one_torch_thread):
    """Tug of war, two against two, group rewards only: MA-POCA learners take turns at learning each side against
    the other side's snapshots. 20k decisions. Seeds 0-9: the greedy team 0 beats a team pulling at random in
    400 of 400 games (1.000 on all ten; the untrained greedy team wins 0.72 of them)."""
    league = League(LeagueSettings(save_steps=2_000, swap_steps=1_000, team_change=4_000), tmp_path, seed=learning_seed)
    model = POCASelfPlay(TugOfWar(areas=16), league, seed=learning_seed, n_steps=16, batch_size=128, n_epochs=4,
                         learning_rate=1e-3, ent_coef=0.01, ent_schedule="linear").learn(20_000)
    snapshot = next(iter(league.players))
    assert not any(key.startswith("critic_head") for key in league.snapshot_weights(snapshot))  # actors only
    assert {p.group for p in league.players.values()} == {"puller"}
    scores = tug_results(model, seed=100 + learning_seed)
    measured(win_rate=float(np.mean(scores > 0)))
    assert np.mean(scores > 0) >= 0.95
