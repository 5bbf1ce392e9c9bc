"""Scripted opponents in self-play (agents/selfplay/scripted.py through SelfPlay): every kind plays its seats and is
rated, the curriculum gate, an anchored rating across a resume and on both sides of an asymmetric game, and games of
three players rated by OpenSkill."""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from sparring.agents.selfplay.league import LATEST, League, LeagueSettings
from sparring.agents.selfplay.trainer import SelfPlay, game_ranking
from sparring.envs.base import DecisionSteps
from sparring.envs.pettingzoo import PettingZooEnv
from sparring.envs.vector import SerialVectorEnv
from sparring.export.exporter import export_policy
from sparring.export.policy import OnnxPolicy
from toy_envs import Showdown

PLAYERS = Path(__file__).resolve().parent / "scripted_players.py"
RANDOM = {"name": "random", "kind": "random"}
PICK_ZERO = {"name": "zero", "kind": "callable", "function": "scripted_players:pick_zero"}
SMALL = dict(n_steps=16, batch_size=64, n_epochs=2, learning_rate=3e-3, hidden_sizes=[32], lr_schedule="constant")


def tictactoe() -> PettingZooEnv:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from pettingzoo.classic import tictactoe_v3
    return PettingZooEnv(tictactoe_v3.env())


def showdown_env(players: int, behaviours: dict | None = None) -> PettingZooEnv:
    return PettingZooEnv(Showdown(players), behaviours=behaviours)


def showdown(players: int = 2, copies: int = 4, league_dir=None, seed: int = 0, behaviours=None, **league) -> SelfPlay:
    settings = LeagueSettings(**{"save_steps": 256, "swap_steps": 64, "team_change": 512, "window": 5, **league})
    env = SerialVectorEnv([partial(showdown_env, players, behaviours)] * copies)
    return SelfPlay(env, League(settings, league_dir, seed=seed), seed=seed, **SMALL)  # seats: counted as seated


# -- every kind of member, in tic-tac-toe ------------------------------------------------------


@pytest.fixture(scope="module")
def ttt_league(tmp_path_factory):
    """Tic-tac-toe against only scripted members: a function by module, one by file, an exported policy, random."""
    folder = tmp_path_factory.mktemp("ttt")
    exported = SelfPlay(SerialVectorEnv([tictactoe]), League(LeagueSettings()), seed=5, **SMALL)
    export_policy(exported.learners["player"].policy, folder / "player.onnx")
    opponents = [{"name": "first", "kind": "callable", "function": "scripted_players:first_legal"},
                 {"name": "by_file", "kind": "callable", "function": f"{PLAYERS}:first_legal"},
                 {"name": "exported", "kind": "onnx", "path": str(folder / "player.onnx")}, RANDOM]
    settings = LeagueSettings(opponents=opponents, play_against_latest_model_ratio=0.0, opponent_sampling="uniform",
                              swap_steps=32, save_steps=10_000)
    model = SelfPlay(SerialVectorEnv([tictactoe] * 4), League(settings), seed=0, **SMALL)
    return model.learn(400), folder / "player.onnx"


def test_every_kind_of_scripted_member_is_drawn_and_rated(ttt_league):
    model, _ = ttt_league
    league = model.league
    faced = league.payoff["player/main"]
    assert {"first", "by_file", "exported", "random"} <= set(faced)  # each drawn at a swap
    for member in ("first", "by_file", "exported", "random"):
        player = league.scripted[member]
        assert player.games == sum(faced[member]) > 0 and player.rating != 1200.0
    assert [row for row in league.history if row["player"] == "random"]


def test_scripted_members_play_their_own_moves(ttt_league):
    model, onnx = ttt_league
    n = 64
    rng = np.random.default_rng(0)
    mask = rng.random((n, 9)) < 0.6
    mask[:, 8] = True
    obs = rng.integers(0, 2, (n, 3, 3, 2)).astype(np.int8)
    decisions = DecisionSteps(np.arange(n, dtype=np.int64), obs, np.zeros(n, np.float32), mask)

    def moves(player: str) -> np.ndarray:
        return model._opponent_act("player", np.array([player] * n, object), decisions)

    first = np.argmax(mask, axis=1)
    np.testing.assert_array_equal(moves("first"), first)
    np.testing.assert_array_equal(moves("by_file"), first)
    np.testing.assert_array_equal(moves("exported"), OnnxPolicy(onnx).predict(obs, "player", mask))
    random = moves("random")
    assert mask[np.arange(n), random].all() and len(set(random.tolist())) > 3


def test_a_member_that_cannot_play_is_refused_at_start_naming_its_key(ttt_league):
    _, onnx = ttt_league
    cases = [({"name": "x", "kind": "onnx", "path": str(onnx)},
              r"self_play.opponents.1.path: .*player.onnx acts for behaviour 'player', "
              r"but member 'x' plays group 'red'"),
             ({"name": "x", "kind": "callable", "function": "scripted_players:nowhere"},
              r"self_play.opponents.1.function: 'scripted_players:nowhere': "
              r"scripted_players has no function 'nowhere'"),
             ({"name": "x", "kind": "callable", "function": "no/such/file.py:f"},
              r"self_play.opponents.1.function: 'no/such/file.py:f': cannot load no/such/file.py")]
    for member, message in cases:
        settings = LeagueSettings(opponents=[RANDOM, member])
        env = SerialVectorEnv([partial(showdown_env, 2, {"player_0": "red", "player_1": "red"})])
        with pytest.raises(ValueError, match=message):
            SelfPlay(env, League(settings), **SMALL)


# -- the curriculum gate -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_gate_holds_self_play_back_until_the_learner_beats_the_scripted_member(learning_seed, measured,
                                                                                    one_torch_thread):
    """Showdown of two against `zero` (always 0): the best score is 5/6, random play 1/2; the gate opens at 0.75
    over the last 40 games (four standard deviations above random play). Seeds 0-9: it opened after 344 to 932
    learner steps."""
    model = showdown(seed=learning_seed, opponents=[PICK_ZERO], gate={"win_rate": 0.75, "games": 40})
    league = model.league
    seen = []  # per update: gate open, opponents of the game copies, opponents in the payoff table

    def update(m, report):
        seen.append((league.gate_open("player"), set(m.copy_opponents), set(league.payoff.get("player/main", {}))))

    model.learn(1_500, callback=update)
    closed = [s for s in seen if not s[0]]
    assert closed and all(copies == {"zero"} and faced == {"zero"} for _, copies, faced in closed)
    opened = league.gate_passed.get("player/main")
    measured(gate_opened_at=opened)
    assert opened is not None
    assert league.gate_score("player") >= 0.75
    assert seen[-1][2] - {"zero"}  # then self-play: itself and its snapshots
    assert LATEST in seen[-1][2] or any(p.games for p in league.players.values())


# -- the anchor ----------------------------------------------------------------------------------


def test_an_anchored_rating_stays_fixed_across_a_resume_and_the_others_carry_over(tmp_path):
    league = dict(opponents=[RANDOM, PICK_ZERO], anchor={"name": "random", "rating": 1000})
    first = showdown(league_dir=tmp_path / "league", **league)
    first.learn(300)
    first.save(tmp_path / "checkpoint.pt")
    before = first.league.state_dict()
    assert first.league.scripted["random"].games > 0 and first.league.scripted["random"].rating == 1000.0
    resumed = showdown(league_dir=tmp_path / "league", **league)
    resumed.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=False))
    assert resumed.league.state_dict()["learners"] == before["learners"]
    assert resumed.league.scripted["zero"].rating == first.league.scripted["zero"].rating != 1200.0
    assert {p.id: p.rating for p in resumed.league.players.values()} == {
        p.id: p.rating for p in first.league.players.values()}
    games = resumed.league.scripted["random"].games
    resumed.learn(600)
    assert resumed.league.scripted["random"].games > games and resumed.league.scripted["random"].rating == 1000.0


@pytest.mark.slow
def test_equal_sides_of_an_asymmetric_game_keep_ratings_near_each_other(learning_seed, measured, one_torch_thread):
    """Showdown of two with its seats as two policy groups (red, blue): the same game from either side. Random play
    is anchored at 1000 on both sides ('random (red)', 'random (blue)'); each side learns in turn. Seeds 0-9, 4,000
    learner steps: the sides' Elo ended 4 to 108 apart (median 20; one game moves a rating by up to 16), all
    between 1,124 and 1,254."""
    model = showdown(seed=learning_seed, behaviours={"player_0": "red", "player_1": "blue"}, opponents=[RANDOM],
                     anchor={"name": "random", "rating": 1000}, team_change=256)
    model.learn(4_000)
    league = model.league
    red, blue = league.learner_rating("red"), league.learner_rating("blue")
    measured(red=red, blue=blue)
    assert league.scripted["random (red)"].rating == league.scripted["random (blue)"].rating == 1000.0
    assert abs(red - blue) < 150 and min(red, blue) > 1050


# -- three players ---------------------------------------------------------------------------------


def test_a_games_places_come_from_final_rewards_and_a_player_in_several_seats_takes_its_best():
    assert game_ranking(["me", "x", "x"], np.array([-1.0, 1.0, -1.0])) == (["me", "x"], [1, 0])
    assert game_ranking(["me", "x", "y"], np.array([0.0, 0.0, 0.0])) == (["me", "x", "y"], [0, 0, 0])
    assert game_ranking(["me", "me", "me"], np.array([1.0, -1.0, -1.0])) == (["me"], [0])


def test_a_three_player_game_trains_and_rates_by_openskill():
    model = showdown(players=3, opponents=[RANDOM, PICK_ZERO], play_against_latest_model_ratio=0.3, save_steps=96)
    model.learn(400)
    league = model.league
    rated = set(league.openskill)
    assert {"player/main", "random", "zero"} <= rated and rated & set(league.players)  # snapshots too
    assert all(p.rating == 1200.0 for p in [*league.scripted.values(), *league.players.values()])  # no Elo
    assert league.learners["player/main"].rating == 1200.0 and league.payoff["player/main"]["random"]


def test_a_three_team_game_rates_the_learning_side_against_the_others_by_openskill():
    """Teams 0, 1, 2 of one group (sides, not seats): every side takes its turn at learning and every result moves
    OpenSkill ratings; Elo is left be."""
    teams = {f"player_{i}": f"player?team={i}" for i in range(3)}
    model = showdown(players=3, behaviours=teams, opponents=[RANDOM, PICK_ZERO], play_against_latest_model_ratio=0.0,
                     save_steps=96, swap_steps=32, team_change=128)
    model.learn(400)
    league = model.league
    assert model.free_for_all and len({side for side, _ in model.sides}) == 1 and len(model.sides) == 3
    assert {"player/main", "random", "zero"} <= set(league.openskill)
    assert all(p.rating == 1200.0 for p in [*league.scripted.values(), *league.players.values()])
    assert league.learners["player/main"].rating == 1200.0 and sum(map(sum, league.payoff["player/main"].values()))


@pytest.mark.slow
def test_a_three_player_learner_rises_above_the_scripted_members(learning_seed, measured, one_torch_thread):
    """Seeds 0-9, 3,000 learner steps: the learner's OpenSkill mu ended 26.8 to 30.4, random's 22.6 to 25.0 and
    zero's 19.8 to 21.6; the learner stood at least 4.0 above both on every seed."""
    model = showdown(players=3, seed=learning_seed, opponents=[RANDOM, PICK_ZERO])
    model.learn(3_000)
    mu = {k: v["mu"] for k, v in model.league.openskill.items()}
    measured(**{k: mu[k] for k in ("player/main", "random", "zero")})
    assert mu["player/main"] > max(mu["random"], mu["zero"]) + 2


# -- the engine's own AI, over the bridge ----------------------------------------------------------------------


@pytest.mark.parametrize("report", [True, False])
def test_the_engines_own_keepers_are_a_league_member_over_the_bridge(report):
    """tests/engines/keeper_game.py run by the Python SDK: the game plays every keeper itself (and says so in its
    played actions); the shooters learn against it, every game counts against the member 'builtin', and the
    keepers never learn. A game that does not report what it played is refused: its results would lie."""
    from engine_threads import engine_in_thread, load_engine

    from sparring.envs.bridge.server import BridgeServer

    settings = LeagueSettings(opponents=[{"name": "builtin", "kind": "engine", "group": "Keeper"}],
                              save_steps=128, swap_steps=64, team_change=128)
    with BridgeServer(handshake_timeout=5.0) as server:
        with engine_in_thread(server, "tcp", load_engine("keeper_game").Shootout(report=report)) as env:
            model = SelfPlay(env, League(settings), **SMALL)
            keeper = [p.clone() for p in model.learners["Keeper"].policy.parameters()]
            if not report:
                with pytest.raises(ValueError, match="kind engine plays 'Keeper', but the game reported no action"):
                    model.learn(300)
                return
            learning = []
            model.learn(256, callback=lambda m, r: learning.append(m.learning_group))
    league = model.league
    assert set(learning) == {"Shooter"}  # past team_change too: the keepers' side is the game's
    assert set(league.payoff["Shooter/main"]) == {"builtin"} and league.scripted["builtin"].games >= 200
    assert league.scripted["builtin"].rating != 1200.0
    for before, after in zip(keeper, model.learners["Keeper"].policy.parameters()):
        torch.testing.assert_close(before, after)


def test_an_engine_member_in_a_game_without_sides_is_refused():
    settings = LeagueSettings(opponents=[{"name": "builtin", "kind": "engine", "group": "player"}])
    with pytest.raises(ValueError, match=r"self_play.opponents: kind engine plays groups \['player'\] of \['player'\]"):
        SelfPlay(SerialVectorEnv([partial(showdown_env, 2)]), League(settings), **SMALL)


def test_the_scripted_example_runs_from_the_cli_logs_its_gate_and_lists_its_members(tmp_path, capsys):
    """examples/tictactoe_scripted.yaml, shortened: functions by file path, random anchored, the gate in the
    run's metrics and the members in `sparring league`."""
    import json

    import yaml

    from sparring.cli import main

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "examples" / "tictactoe_scripted.yaml").read_text())
    config["env"]["num_envs"] = 4
    config["trainer"].update(max_steps=600, summary_freq=300, checkpoint_interval=600)
    config["trainer"]["self_play"].update(swap_steps=100, save_steps=300, gate={"win_rate": 0.8, "games": 20})
    for member in config["trainer"]["self_play"]["opponents"]:
        if "function" in member:
            member["function"] = str(root / member["function"])
    path = tmp_path / "ttt.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--results-dir", str(tmp_path), "--run-id", "ttt"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "ttt" / "metrics.jsonl").read_text().splitlines()]
    logged = [row for row in rows if row["behaviour"] == "player"]
    assert logged and all(row["Self-play/Gate open"] in (0.0, 1.0) and "Self-play/Scripted score" in row
                          for row in logged)
    capsys.readouterr()
    assert main(["league", str(tmp_path / "ttt")]) == 0
    out = capsys.readouterr().out
    assert "beginner" in out and "blocker" in out and "scripted (anchor)" in out
