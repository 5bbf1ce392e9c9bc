"""The self-play league: Elo, PFSP, opponent sampling, the window, exact resume, OpenSkill, and `sparring league`."""

import json
import math

import numpy as np
import pydantic
import pytest
import torch

from sparring.agents.selfplay import LATEST, League, LeagueSettings
from sparring.agents.selfplay.league import Learner
from sparring.cli import main


def league(tmp_path=None, **settings) -> League:
    return League(LeagueSettings(**settings), None if tmp_path is None else tmp_path / "league", seed=7)


def weights(value: float = 0.0) -> dict:
    return {"pi.weight": torch.full((2, 3), value), "pi.bias": torch.zeros(2)}


def with_snapshots(lg: League, steps=(0, 100, 200), group: str = "G", role: str = "main") -> list[str]:
    return [lg.add_snapshot(group, role, step, weights(step)).id for step in steps]


# -- Elo --------------------------------------------------------------------------


def test_win_between_equals_moves_both_by_half_k():
    lg = league()
    (opponent,) = with_snapshots(lg, [0])
    lg.record("G", opponent, 1.0, step=10)
    # expected 0.5, so the winner gains 16 * 0.5 and the loser gives it up
    assert lg.learner_rating("G") == pytest.approx(1208.0)
    assert lg.players[opponent].rating == pytest.approx(1192.0)
    assert lg.players[opponent].games == 1 and lg.learners["G/main"].games == 1


def rated(learner: float, snapshot: float) -> tuple[League, str]:
    lg = league()
    (opponent,) = with_snapshots(lg, [0])
    lg.learners["G/main"].rating, lg.players[opponent].rating = learner, snapshot
    return lg, opponent


# expected(1400 vs 1200) = 1 / (1 + 10 ** (-200 / 400)) = 1 / (1 + 0.316228) = 0.759747


def test_favourite_losing_falls_by_k_times_its_expected_score():
    lg, opponent = rated(1400.0, 1200.0)
    lg.record("G", opponent, 0.0, step=10)
    # 16 * (0 - 0.759747) = -12.155951
    assert lg.learner_rating("G") == pytest.approx(1387.844049, abs=1e-6)
    assert lg.players[opponent].rating == pytest.approx(1212.155951, abs=1e-6)


def test_favourite_drawing_loses_a_little_to_the_underdog():
    lg, opponent = rated(1400.0, 1200.0)
    lg.record("G", opponent, 0.5, step=10)
    # 16 * (0.5 - 0.759747) = -4.155951
    assert lg.learner_rating("G") == pytest.approx(1395.844049, abs=1e-6)
    assert lg.players[opponent].rating == pytest.approx(1204.155951, abs=1e-6)


def test_mirror_match_counts_in_payoff_but_rates_nobody():
    lg = league()
    (opponent,) = with_snapshots(lg, [0])
    lg.record("G", LATEST, 1.0, step=10)
    lg.record("G", LATEST, 0.5, step=20)
    assert lg.learner_rating("G") == 1200.0 and lg.players[opponent].rating == 1200.0
    assert lg.payoff["G/main"][LATEST] == [1, 1, 0]
    assert lg.win_rate("G", LATEST) == 0.75
    assert [r["player"] for r in lg.history] == [opponent]  # only the snapshot's creation


def test_history_has_one_row_per_rated_side_per_game():
    lg = league()
    (opponent,) = with_snapshots(lg, [0])
    lg.record("G", opponent, 1.0, step=10)
    assert lg.history[1:] == [{"step": 10, "player": "G/main (learner)", "rating": 1208.0},
                              {"step": 10, "player": opponent, "rating": 1192.0}]


def test_snapshot_starts_at_the_learners_current_rating():
    lg = league()
    (first,) = with_snapshots(lg, [0])
    lg.record("G", first, 1.0, step=10)
    second = lg.add_snapshot("G", "main", 100, weights())
    assert second.rating == lg.learner_rating("G") == 1208.0


def test_win_rate_counts_draws_half_and_is_nan_before_any_game():
    lg = league()
    (opponent,) = with_snapshots(lg, [0])
    assert math.isnan(lg.win_rate("G", opponent))
    for score in (1.0, 0.5, 0.0, 0.0):
        lg.record("G", opponent, score, step=1)
    assert lg.payoff["G/main"][opponent] == [1, 1, 2]
    assert lg.win_rate("G", opponent) == pytest.approx(1.5 / 4)


def test_a_score_other_than_win_draw_loss_is_refused():
    lg = league()
    (opponent,) = with_snapshots(lg, [0])
    with pytest.raises(ValueError, match="0.5"):
        lg.record("G", opponent, 0.7, step=1)


def test_team_suffix_names_the_same_learner():
    lg = league()
    (opponent,) = with_snapshots(lg, [0], group="Striker?team=1")
    assert opponent == "Striker@0"
    lg.record("Striker", opponent, 1.0, step=1)
    assert lg.learner_rating("Striker?team=0") == 1208.0


# -- PFSP and opponent sampling -----------------------------------------------------


def pfsp_league(weighting: str) -> tuple[League, list[str]]:
    lg = league(pfsp_weighting=weighting)
    a, b, c, d = with_snapshots(lg, [0, 100, 200, 300])
    for opponent, scores in {a: [1, 1, 1, 0], b: [1, 0, 0, 0], d: [0.5, 0.5]}.items():
        for score in scores:
            lg.record("G", opponent, float(score), step=400)
    return lg, [a, b, c, d]  # learner's p: 0.75, 0.25, never played (0.5), 0.5 by draws


def test_pfsp_hard_weights_favour_the_snapshots_the_learner_loses_to():
    lg, ids = pfsp_league("hard")
    # (1-p)^2 = 0.0625, 0.5625, 0.25, 0.25; sum 1.125
    np.testing.assert_allclose(lg.pfsp_weights("G", ids), [0.0625 / 1.125, 0.5, 0.25 / 1.125, 0.25 / 1.125])


def test_pfsp_variance_weights_favour_even_matches():
    lg, ids = pfsp_league("variance")
    # p(1-p) = 0.1875, 0.1875, 0.25, 0.25; sum 0.875
    np.testing.assert_allclose(lg.pfsp_weights("G", ids), [3 / 14, 3 / 14, 2 / 7, 2 / 7])


def test_pfsp_falls_back_to_uniform_when_every_weight_is_zero():
    lg = league(pfsp_weighting="hard")
    ids = with_snapshots(lg, [0, 100])
    for opponent in ids:
        lg.record("G", opponent, 1.0, step=200)  # p = 1 against both: (1-p)^2 = 0
    np.testing.assert_allclose(lg.pfsp_weights("G", ids), [0.5, 0.5])


def test_pfsp_sampling_follows_the_weights():
    lg, ids = pfsp_league("hard")
    lg.settings.play_against_latest_model_ratio = 0.0
    drawn = [lg.sample_opponent("G") for _ in range(4000)]
    frequency = np.array([drawn.count(i) for i in ids]) / len(drawn)
    np.testing.assert_allclose(frequency, lg.pfsp_weights("G", ids), atol=0.03)


def test_pfsp_in_a_game_with_sides_weighs_by_the_learning_sides_results():
    """The guesser learns and records its games against hider snapshots; the hider draw follows them."""
    lg = league(pfsp_weighting="hard", play_against_latest_model_ratio=0.0)
    easy, hard = with_snapshots(lg, [0, 100], group="hider")
    for opponent, score in ((easy, 1.0), (hard, 0.0)):
        lg.record("guesser", opponent, score, step=200)
    np.testing.assert_allclose(lg.pfsp_weights("guesser", [easy, hard]), [0.0, 1.0])
    assert {lg.sample_opponent("hider", "main", "guesser") for _ in range(50)} == {hard}


def test_no_snapshot_yet_means_playing_the_latest_learner():
    lg = league(play_against_latest_model_ratio=0.0)
    assert lg.sample_opponent("G") == LATEST
    with_snapshots(lg, [0], group="Other")
    assert lg.sample_opponent("G") == LATEST


def test_latest_model_ratio_sets_how_often_the_learner_plays_itself():
    lg = league(play_against_latest_model_ratio=0.3, opponent_sampling="uniform")
    with_snapshots(lg)
    drawn = [lg.sample_opponent("G") for _ in range(2000)]
    assert 0.25 < drawn.count(LATEST) / len(drawn) < 0.35


def test_uniform_draws_every_snapshot_of_the_group_with_any_role_equally():
    lg = league(play_against_latest_model_ratio=0.0, opponent_sampling="uniform")
    ids = with_snapshots(lg, [0, 100]) + with_snapshots(lg, [150], role="league_exploiter0")
    with_snapshots(lg, [0], group="Other")
    drawn = [lg.sample_opponent("G") for _ in range(3000)]
    assert set(drawn) == set(ids)
    assert all(0.28 < drawn.count(i) / len(drawn) < 0.39 for i in ids)


def test_latest_sampling_always_draws_the_newest_snapshot():
    lg = league(play_against_latest_model_ratio=0.0, opponent_sampling="latest")
    *_, newest = with_snapshots(lg, [0, 100, 200])
    assert {lg.sample_opponent("G") for _ in range(50)} == {newest}


def test_main_exploiter_always_faces_the_newest_main_snapshot():
    lg = league(play_against_latest_model_ratio=1.0, opponent_sampling="uniform")
    assert lg.sample_opponent("G", "main_exploiter0") == LATEST
    *_, newest_main = with_snapshots(lg, [0, 100])
    with_snapshots(lg, [150], role="main_exploiter0")
    assert {lg.sample_opponent("G", "main_exploiter0") for _ in range(50)} == {newest_main}


def test_an_unknown_role_is_named():
    with pytest.raises(ValueError, match="'coach'"):
        league().sample_opponent("G", "coach")


# -- window, weights, persistence ------------------------------------------------------


def test_window_drops_the_oldest_snapshot_of_the_role_and_its_file(tmp_path):
    lg = league(tmp_path, window=2, archive=0)
    oldest, *kept = with_snapshots(lg, [0, 100, 200])
    (exploiter,) = with_snapshots(lg, [50], role="main_exploiter0")  # another role's window
    assert list(lg.players) == [*kept, exploiter]
    files = tmp_path / "league" / "snapshots"
    assert (files / "G@0.pt").exists()  # until league.json no longer names it
    lg.save()
    assert not (files / "G@0.pt").exists()
    assert len(list(files.glob("*.pt"))) == 3
    with pytest.raises(KeyError, match="dropped from the window"):
        lg.snapshot_weights(oldest)


def test_snapshots_leaving_the_window_are_archived_and_come_back(tmp_path):
    lg = league(tmp_path, window=1)
    oldest, middle, newest = with_snapshots(lg, [0, 100, 200])
    lg.save()
    assert sorted(p.name for p in (tmp_path / "league" / "archive").iterdir()) == ["G@0.pt", "G@100.pt"]
    assert lg.archived == [oldest, middle] and list(lg.players) == [newest]
    torch.testing.assert_close(League.load(tmp_path / "league").snapshot_weights(oldest), weights(0))


def test_a_full_archive_drops_the_snapshot_whose_neighbours_are_closest_in_elo(tmp_path):
    for directory in (None, tmp_path):
        lg = league(directory, window=1, archive=3)
        for step, rating in zip([0, 100, 200, 300, 400], [1000.0, 1100.0, 1110.0, 1300.0, 1400.0]):
            lg.learners["G/main"] = Learner(rating)  # a snapshot is rated as its learner is when taken
            lg.add_snapshot("G", "main", step, weights(step))
        assert lg.archived == ["G@0", "G@200", "G@300"]  # G@100's neighbours (1000 and 1110) were the closest
        torch.testing.assert_close(lg.snapshot_weights("G@0"), weights(0))
        with pytest.raises(KeyError, match="dropped from the window and the archive"):
            lg.snapshot_weights("G@100")
    lg.save()
    assert sorted(p.name for p in (tmp_path / "league" / "archive").iterdir()) == ["G@0.pt", "G@200.pt", "G@300.pt"]


def test_a_game_finishing_against_a_dropped_snapshot_still_rates_the_learner():
    lg = league(window=1)
    first, _ = with_snapshots(lg, [0, 100])
    lg.record("G", first, 1.0, step=150)
    assert lg.learner_rating("G") == 1208.0 and lg.retired[first].rating == 1192.0


def test_snapshot_weights_come_back_as_saved_on_disk_and_in_memory(tmp_path):
    for lg in (league(), league(tmp_path)):
        original = weights(3.0)
        player = lg.add_snapshot("G", "main", 0, original)
        original["pi.weight"].add_(1.0)  # the learner keeps training; the snapshot must not move
        torch.testing.assert_close(lg.snapshot_weights(player.id)["pi.weight"], torch.full((2, 3), 3.0))


def played_league(tmp_path) -> League:
    lg = league(tmp_path, window=3)
    ids = with_snapshots(lg, [0, 100, 200, 300])
    for i, score in enumerate([1.0, 0.0, 0.5, 1.0, 0.0]):
        lg.record("G", ids[1 + i % 3], score, step=300 + i)
    lg.record_ranking(["G/main", ids[1], ids[2]], [0, 1, 2], step=310)
    return lg


def test_save_and_load_continue_the_sampler_exactly(tmp_path):
    uninterrupted = played_league(tmp_path / "a")
    resumed = played_league(tmp_path / "b")
    for lg in (uninterrupted, resumed):
        [lg.sample_opponent("G") for _ in range(5)]
    resumed.save()
    resumed = League.load(tmp_path / "b" / "league")
    assert resumed.state_dict() == uninterrupted.state_dict()
    assert [resumed.sample_opponent("G") for _ in range(50)] == [uninterrupted.sample_opponent("G") for _ in range(50)]
    torch.testing.assert_close(resumed.snapshot_weights("G@300"), weights(300))


def test_league_json_is_plain_json_with_every_part(tmp_path):
    lg = played_league(tmp_path)
    lg.save()
    state = json.loads((tmp_path / "league" / "league.json").read_text())
    assert set(state) == {"settings", "players", "retired", "archived", "scripted", "learners", "payoff", "openskill",
                          "history", "gate", "rng"}
    assert [p["id"] for p in state["players"]] == ["G@100", "G@200", "G@300"]
    assert not list((tmp_path / "league").glob("*.tmp"))


def test_numpy_scores_and_steps_still_save_as_json(tmp_path):
    lg = league(tmp_path)
    (opponent,) = with_snapshots(lg, [0])
    lg.record("G", opponent, np.float32(1.0), step=np.int64(10))
    lg.save()
    assert json.loads((tmp_path / "league" / "league.json").read_text())["history"][-1]["step"] == 10


def test_in_memory_state_dict_carries_the_weights():
    lg = league()
    with_snapshots(lg, [0, 100])
    lg.record("G", "G@100", 1.0, step=150)
    copy = league()
    copy.load_state_dict(lg.state_dict())
    assert copy.learner_rating("G") == 1208.0
    torch.testing.assert_close(copy.snapshot_weights("G@100"), weights(100))


def test_settings_refuse_unknown_keys_and_accept_mlagents_self_play():
    mlagents = {"save_steps": 50000, "team_change": 200000, "swap_steps": 2000, "window": 10,
                "play_against_latest_model_ratio": 0.5, "initial_elo": 1200.0}
    assert LeagueSettings(**mlagents).swap_steps == 2000
    with pytest.raises(pydantic.ValidationError, match="windw"):
        LeagueSettings.model_validate({"windw": 3})



# -- each group's own settings (ML-Agents: a self_play section per behaviour) ----------------


def test_a_groups_settings_override_the_leagues_for_that_group_only():
    settings = LeagueSettings(swap_steps=1000, window=5, groups={"Striker": {"swap_steps": 4000}})
    assert settings.of("Striker").swap_steps == 4000 and settings.of("Striker").window == 5
    assert settings.of("Striker?team=1").swap_steps == 4000  # a behaviour of the group
    assert settings.of("Goalie").swap_steps == 1000


@pytest.mark.parametrize("group, message", [({"swap_stepz": 10}, "groups.Striker.swap_stepz"),
                                            ({"window": 0}, "groups.Striker.window"),
                                            ({"elo_k": 8.0}, "groups.Striker.elo_k")])  # one scale for all
def test_a_groups_settings_name_an_unknown_key_or_a_bad_value(group, message):
    with pytest.raises(pydantic.ValidationError, match=message.replace(".", r"\.")):
        LeagueSettings(groups={"Striker": group})


def test_each_group_keeps_its_own_window_latest_ratio_and_initial_elo():
    lg = league(window=3, play_against_latest_model_ratio=0.0, opponent_sampling="uniform",
                groups={"Goalie": {"window": 1, "play_against_latest_model_ratio": 1.0, "initial_elo": 1000.0}})
    with_snapshots(lg, group="Striker")
    with_snapshots(lg, group="Goalie")
    assert sorted(lg.players) == ["Goalie@200", "Striker@0", "Striker@100", "Striker@200"]
    assert {lg.sample_opponent("Goalie") for _ in range(20)} == {LATEST}
    assert LATEST not in {lg.sample_opponent("Striker") for _ in range(20)}
    assert (lg.learner_rating("Goalie"), lg.learner_rating("Striker")) == (1000.0, 1200.0)
    assert lg.players["Goalie@200"].rating == 1000.0


def test_each_group_draws_its_snapshots_by_its_own_sampling():
    lg = league(opponent_sampling="latest", play_against_latest_model_ratio=0.0,
                groups={"Goalie": {"opponent_sampling": "uniform"}})
    with_snapshots(lg, group="Striker")
    goalies = with_snapshots(lg, group="Goalie")
    assert {lg.sample_opponent("Striker") for _ in range(50)} == {"Striker@200"}
    assert {lg.sample_opponent("Goalie") for _ in range(100)} == set(goalies)


def test_pfsp_weighs_by_the_drawn_groups_own_weighting():
    """The guesser beat one hider snapshot and lost to the other: "variance" weighs both 0, so the draw is even."""
    lg = league(pfsp_weighting="hard", groups={"hider": {"pfsp_weighting": "variance"}})
    easy, hard = with_snapshots(lg, [0, 100], group="hider")
    for opponent, score in ((easy, 1.0), (hard, 0.0)):
        lg.record("guesser", opponent, score, step=200)
    np.testing.assert_allclose(lg.pfsp_weights("guesser", [easy, hard]), [0.5, 0.5])


def test_a_saved_league_keeps_each_groups_settings_as_written(tmp_path):
    lg = league(tmp_path, groups={"Goalie": {"swap_steps": 1000}})
    with_snapshots(lg, group="Goalie")
    lg.save()
    assert json.loads((tmp_path / "league" / "league.json").read_text())["settings"]["groups"] == {
        "Goalie": {"swap_steps": 1000}}
    assert League.load(tmp_path / "league").settings == lg.settings


# -- OpenSkill ---------------------------------------------------------------------------


def test_ranking_of_three_moves_the_winner_up_and_the_loser_down():
    lg = league()
    a, b = with_snapshots(lg, [0, 100])
    lg.record_ranking(["G/main", a, b], [0, 1, 2], step=150)
    mu = {p: r["mu"] for p, r in lg.openskill.items()}
    assert mu["G/main"] > 25.0 > mu[b]
    assert mu["G/main"] > mu[a] > mu[b]
    assert lg.learner_rating("G") == 1200.0  # Elo is for two-sided games


def test_ranking_names_an_unknown_participant():
    with pytest.raises(KeyError, match="nobody"):
        league().record_ranking(["nobody", "G/main"], [0, 1], step=0)


# -- sparring league ---------------------------------------------------------------------


def test_league_command_prints_the_table_and_writes_the_plot(tmp_path, capsys):
    played_league(tmp_path / "run").save()
    assert main(["league", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ["G@100", "G@200", "G@300", "G/main (learner)"])
    assert "G@0" not in out  # dropped from the window
    plot = tmp_path / "run" / "league" / "ratings.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(plot) in out


def test_league_command_writes_the_plot_where_asked(tmp_path):
    played_league(tmp_path / "run").save()
    assert main(["league", str(tmp_path / "run"), "--plot", str(tmp_path / "elo.png")]) == 0
    assert (tmp_path / "elo.png").read_bytes()[:4] == b"\x89PNG"


def test_league_command_on_a_run_without_a_league_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert main(["league", str(tmp_path / "run")]) == 2
    assert "has no league" in capsys.readouterr().err


def test_the_table_scores_a_sides_snapshots_by_the_other_sides_learner():
    from rich.console import Console

    from sparring.league_report import league_table

    lg = league()
    (hider,) = with_snapshots(lg, [0], group="hider")
    for score in (1.0, 1.0, 0.0):
        lg.record("guesser", hider, score, step=10)
    console = Console(record=True, width=200)
    console.print(league_table(lg))
    row = next(line for line in console.export_text().splitlines() if hider in line)
    assert row.split()[-1] == "67%"  # the guesser's 2 wins in 3 games against the hider snapshot


def table_rows(lg: League) -> list[list[str]]:
    from rich.console import Console

    from sparring.league_report import league_table

    console = Console(record=True, width=200)
    console.print(league_table(lg))
    return [line.split() for line in console.export_text().splitlines() if "@" in line or "(learner)" in line]


def test_the_table_ranks_only_players_that_have_played_and_lists_the_others_apart():
    lg = league()
    weak, strong, unplayed = with_snapshots(lg, [0, 100, 200])
    lg.players[unplayed].rating = 1500.0  # a new snapshot inherits its learner's rating before any game
    for opponent, score in ((weak, 1.0), (weak, 1.0), (strong, 0.0)):
        lg.record("G", opponent, score, step=300)
    rows = table_rows(lg)
    names = [next(cell for cell in row if "@" in cell or cell == "G/main") for row in rows]
    assert names == [strong, "G/main", weak, unplayed], rows  # by Elo, then the unplayed one below, unranked
    assert [row[0] for row in rows] == ["1", "2", "3", "—"]


def test_the_ratings_plot_sets_each_learner_apart_from_the_snapshots_with_a_legend():
    from matplotlib.colors import to_rgba

    from sparring.league_report import ratings_figure

    lg = league()
    (opponent,) = with_snapshots(lg, [0])
    lg.record("G", opponent, 1.0, step=10)
    ax = ratings_figure(lg).axes[0]
    (line,) = ax.get_lines()
    (markers,) = ax.collections
    assert line.get_label() == "G/main (learner)" and markers.get_label() == "G snapshots"
    assert to_rgba(line.get_color())[:3] != tuple(markers.get_facecolor()[0][:3])
    assert line.get_linewidth() > 1.5
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["G snapshots", "G/main (learner)"]
