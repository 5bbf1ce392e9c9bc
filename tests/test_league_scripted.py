"""Scripted league members (agents/selfplay/scripted.py): enrolment per group, PFSP over them, the anchor, the gate,
resume, the settings' checks and the league table."""

import math

import numpy as np
import pydantic
import pytest
import torch
from rich.console import Console

from sparring.agents.selfplay import LATEST, League, LeagueSettings
from sparring.agents.selfplay.league import elo_expected
from sparring.config import describe_validation_error
from sparring.league_report import league_table

RANDOM = {"name": "random", "kind": "random"}
GREEDY = {"name": "greedy", "kind": "callable", "function": "scripted_players:first_legal"}


def league(env_groups=("G",), **settings) -> League:
    lg = League(LeagueSettings(**settings), seed=3)
    lg.enrol(env_groups)
    return lg


def weights() -> dict:
    return {"pi.weight": torch.zeros(2, 3)}


def test_a_member_plays_every_group_with_a_rating_of_its_own_unless_it_names_one():
    lg = league(("hider", "guesser"), opponents=[RANDOM, {**GREEDY, "group": "hider"}], initial_elo=1100,
                groups={"guesser": {"initial_elo": 900}})
    assert {i: (p.group, p.rating) for i, p in lg.scripted.items()} == {
        "random (guesser)": ("guesser", 900.0), "random (hider)": ("hider", 1100.0), "greedy": ("hider", 1100.0)}
    assert league(opponents=[RANDOM]).scripted["random"].group == "G"  # one group: named as given
    assert lg.member("random (hider)").kind == "random" and lg.member("hider@0") is None


def test_a_member_naming_a_group_the_env_lacks_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"self_play.opponents.1.group: the env has no policy group 'seeker'"):
        league(("hider", "guesser"), opponents=[RANDOM, {**GREEDY, "group": "seeker"}])


def test_scripted_members_are_drawn_with_the_snapshots_and_pfsp_counts_their_results():
    lg = league(opponents=[RANDOM, GREEDY], play_against_latest_model_ratio=0.0)
    lg.add_snapshot("G", "main", 0, weights())
    for _ in range(6):
        lg.record("G", "random", 1.0, step=1)  # the learner beats random: p = 1, weight (1-p)^2 = 0
    lg.record("G", "greedy", 0.0, step=1)  # and loses to greedy: p = 0, weight 1
    ids = ["G@0", "random", "greedy"]
    np.testing.assert_allclose(lg.pfsp_weights("G", ids), [0.25 / 1.25, 0.0, 1 / 1.25])
    drawn = [lg.sample_opponent("G") for _ in range(2000)]
    assert set(drawn) == {"G@0", "greedy"}
    assert drawn.count("greedy") / len(drawn) == pytest.approx(0.8, abs=0.03)


def test_the_anchor_keeps_its_rating_while_its_opponents_move():
    lg = league(opponents=[RANDOM, GREEDY], anchor={"name": "random", "rating": 800})
    assert lg.scripted["random"].rating == 800.0
    lg.record("G", "random", 1.0, step=1)
    gain = 16 * (1 - elo_expected(1200, 800))
    assert lg.learner_rating("G") == pytest.approx(1200 + gain) and lg.scripted["random"].rating == 800.0
    lg.record("G", "greedy", 1.0, step=2)  # an unanchored member moves as a snapshot does
    assert lg.scripted["greedy"].rating < 1200.0


def test_the_anchor_keeps_its_openskill_rating_in_games_of_more_than_two():
    lg = league(opponents=[RANDOM, GREEDY], anchor={"name": "random"})
    lg.record_ranking(["G/main", "greedy", "random"], [0, 1, 2], step=1)
    assert "random" not in lg.openskill and lg.openskill["G/main"]["mu"] > lg.openskill["greedy"]["mu"] > 25


def test_a_resumed_league_keeps_every_rating_and_the_anchor_stays_where_the_config_puts_it():
    settings = dict(opponents=[RANDOM, GREEDY], anchor={"name": "random", "rating": 800})
    lg = league(**settings)
    lg.add_snapshot("G", "main", 0, weights())
    for opponent, score in [("random", 1.0), ("greedy", 0.0), ("G@0", 1.0), ("greedy", 1.0)]:
        lg.record("G", opponent, score, step=5)
    state = lg.state_dict()
    resumed = league(**settings)
    resumed.load_state_dict(state)
    assert resumed.learner_rating("G") == lg.learner_rating("G")
    assert resumed.scripted["greedy"].rating == lg.scripted["greedy"].rating != 1200.0
    assert resumed.players["G@0"].rating == lg.players["G@0"].rating
    assert resumed.scripted["random"].rating == 800.0
    elsewhere = league(opponents=[RANDOM], anchor={"name": "random", "rating": 1500})  # greedy left the config
    elsewhere.load_state_dict(state)
    assert elsewhere.scripted["random"].rating == 1500.0 and list(elsewhere.scripted) == ["random"]
    assert elsewhere.retired["greedy"].rating == lg.scripted["greedy"].rating  # its games still count


def test_behind_the_gate_only_scripted_members_are_drawn_until_the_learner_beats_each():
    lg = league(opponents=[RANDOM, GREEDY], gate={"win_rate": 0.8, "games": 4}, play_against_latest_model_ratio=0.5)
    lg.add_snapshot("G", "main", 0, weights())
    assert {lg.sample_opponent("G") for _ in range(200)} == {"random", "greedy"}  # neither LATEST nor G@0
    assert not lg.gate_open("G") and lg.gate_open("G", "league_exploiter0")
    for score in (1.0, 1.0, 1.0, 1.0):
        lg.record("G", "random", score, step=10)
    for score in (0.0, 1.0, 1.0, 1.0):
        lg.record("G", "greedy", score, step=20)
    assert not lg.gate_open("G")  # 0.75 against greedy
    assert lg.metrics("G")["Self-play/Gate open"] == 0.0 and lg.gate_score("G") == 0.75
    lg.record("G", "greedy", 0.5, step=30)  # its last 4: 1 1 1 0.5
    assert lg.gate_open("G") and lg.gate_passed == {"G/main": 30}
    assert lg.metrics("G") == {"Self-play/ELO": lg.learner_rating("G"), "Self-play/Gate open": 1.0,
                               "Self-play/Scripted score": 0.875}
    # then itself and snapshots too; random, beaten every time, weighs nothing under PFSP's "hard" weighting
    assert {lg.sample_opponent("G") for _ in range(200)} == {LATEST, "G@0", "greedy"}


def test_the_gate_is_part_of_the_saved_league():
    lg = league(opponents=[RANDOM], gate={"win_rate": 0.5, "games": 2})
    lg.record("G", "random", 1.0, step=1)
    resumed = league(opponents=[RANDOM], gate={"win_rate": 0.5, "games": 2})
    resumed.load_state_dict(lg.state_dict())
    assert math.isclose(resumed.gate_score("G"), 1.0) and not resumed.gate_open("G")
    resumed.record("G", "random", 0.0, step=2)
    assert resumed.gate_open("G")


@pytest.mark.parametrize("settings, message", [
    ({"opponents": [{"name": "g", "kind": "callable"}]}, "opponents.0.function: kind callable needs it"),
    ({"opponents": [{"name": "g", "kind": "onnx", "path": "g.onnx", "function": "m:f"}]},
     "opponents.0.function: only for kind callable, not onnx"),
    ({"opponents": [{"name": "g", "kind": "callable", "function": "players"}]}, "opponents.0.function: 'players' must"),
    ({"opponents": [{"name": "g", "kind": "engine"}]}, "opponents.0.group: kind engine needs the group"),
    ({"opponents": [{"name": "g h", "kind": "random"}]}, "opponents.0.name: 'g h' must start with a letter"),
    ({"opponents": [RANDOM, RANDOM]}, "opponents: the name 'random' is given twice"),
    ({"opponents": [RANDOM], "anchor": {"name": "greedy"}}, "anchor.name: 'greedy' is not one of"),
    ({"gate": {"win_rate": 0.6}}, "gate: the gate opens when the learner beats the scripted members"),
    ({"opponents": [{**RANDOM, "weights": "x"}]}, "opponents.0.weights: unknown key"),
    ({"gate": {"win_rate": 1.5}, "opponents": [RANDOM]}, "gate.win_rate: Input should be less than or equal to 1"),
])
def test_settings_name_the_key_that_is_wrong(settings, message):
    with pytest.raises(pydantic.ValidationError) as error:
        LeagueSettings.model_validate(settings)
    assert message in describe_validation_error(error.value)


def test_the_table_lists_scripted_members_and_marks_the_anchor():
    lg = league(opponents=[RANDOM, GREEDY], anchor={"name": "random"})
    lg.record("G", "random", 1.0, step=1)
    console = Console(width=200, record=True)
    console.print(league_table(lg))
    text = console.export_text()
    random_row = next(line for line in text.splitlines() if " random " in line)
    assert "scripted (anchor)" in random_row and "1000.0" in random_row and "—" in random_row
    assert text.index("greedy") > text.index("random")  # below the line: it has not played
    assert text.index("G/main (learner)") < text.index("random")  # ranked by Elo: the learner won
