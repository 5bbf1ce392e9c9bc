"""Difficulty ladders: matches between two policies (agents/selfplay/matches.py), choosing tiers
(agents/selfplay/ladder.py), and `sparring ladder` on a self-play run (sparring/ladder.py)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

from sparring.agents.evaluation import RandomPolicy
from sparring.agents.selfplay.ladder import Candidate, LadderError, Measurement, build_ladder
from sparring.agents.selfplay.league import League, LeagueSettings
from sparring.agents.selfplay.matches import play_match
from sparring.agents.selfplay.trainer import SelfPlay
from sparring.cli import main
from sparring.envs.pettingzoo import PettingZooEnv
from sparring.envs.vector import SerialVectorEnv
from sparring.export.policy import OnnxPolicy
from sparring.ladder import make_ladders
from toy_envs import TugOfWar

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tictactoe_selfplay.yaml"


def tictactoe() -> PettingZooEnv:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from pettingzoo.classic import tictactoe_v3
    return PettingZooEnv(tictactoe_v3.env())


# -- matches ------------------------------------------------------------------------


def test_a_match_alternates_seats_so_the_first_moves_advantage_cancels():
    """Random against random in tic-tac-toe: the first player scores about 0.65 (wins 0.59, draws 0.13); with
    seats alternating, each side scores one half."""
    env = SerialVectorEnv([tictactoe] * 8)
    specs = env.specs
    alternating = play_match(env, RandomPolicy(specs, seed=1), RandomPolicy(specs, seed=2), "player", 2000, seed=0)
    first_always = play_match(env, RandomPolicy(specs, seed=1), RandomPolicy(specs, seed=2), "player", 2000, seats=1,
                              seed=0)
    assert len(alternating) == len(first_always) == 2000
    assert set(np.unique(alternating)) <= {0.0, 0.5, 1.0}
    assert abs(alternating.mean() - 0.5) < 0.04 and first_always.mean() > 0.6


class OnTheBeat:
    """A tug-of-war puller that always pulls on the beat (the best play)."""

    def predict(self, obs, behaviour=None, action_mask=None, deterministic=True, agent_ids=None):
        return 1 + np.argmax(obs[:, 2:4], axis=1)


@pytest.mark.parametrize("side", ["puller?team=0", "puller?team=1"])
def test_a_match_between_sides_gives_the_score_of_the_side_a_plays(side):
    env = TugOfWar(areas=16)
    random = RandomPolicy({"puller": env.specs[side]}, seed=0)  # asked by group, as a self-play model is
    strong = play_match(env, OnTheBeat(), random, "puller", 100, side=side, seed=0)
    weak = play_match(env, random, OnTheBeat(), "puller", 100, side=side, seed=0)
    assert len(strong) == len(weak) == 100  # a team of two plays one game
    assert strong.mean() > 0.9 and weak.mean() < 0.1


def test_a_match_needs_every_behaviour_to_be_of_the_group():
    with pytest.raises(ValueError, match="no behaviour of group 'Striker'"):
        play_match(TugOfWar(), OnTheBeat(), OnTheBeat(), "Striker", 10, side="puller?team=0")


# -- choosing tiers -----------------------------------------------------------------


def logistic_measure(strength: dict[str, float]):
    """Exact rates from hidden strengths (Elo-like, 400 per factor of ten), so the search is tested alone."""
    def measure(upper: Candidate, lower: Candidate, seed: int) -> Measurement:
        score = 1 / (1 + 10 ** ((strength[lower.id] - strength[upper.id]) / 400))
        return Measurement(upper.id, lower.id, score, 100)
    return measure


def test_tiers_step_down_from_the_final_policy_each_in_the_band_even_where_elo_misleads():
    strength = {f"G@{s}": 6.0 * s for s in range(10, 60, 2)} | {"G (final)": 400.0}  # 60 .. 348, then 400
    elo = {name: 1200.0 + (150 if name == "G@30" else 0) for name in strength}  # flat, one outlier: Elo says little
    candidates = [Candidate(name, 10_000 if name == "G (final)" else int(name[2:]), elo[name]) for name in strength]
    ladder = build_ladder(candidates, logistic_measure(strength), band=(0.65, 0.75))
    assert ladder.tiers[-1].id == "G (final)"
    assert [t.step for t in ladder.tiers] == sorted(t.step for t in ladder.tiers)
    assert len(ladder.tiers) == 3 and ladder.ordered and all(ladder.in_band)
    assert all(abs(check.score - 0.7) <= 0.0125 for check in ladder.checks)  # near the middle, not at an edge
    assert ladder.tried[-len(ladder.checks):] == ladder.checks


def test_more_tiers_than_the_band_allows_are_refused_naming_the_pair_and_its_rate():
    strength = {"G@0": 0.0, "G@1": 150.0, "G@2": 450.0, "G (final)": 600.0}  # a gap of 300 between G@1 and G@2
    candidates = [Candidate(name, step, 1200.0) for step, name in enumerate(strength)]
    with pytest.raises(LadderError, match=r"3 tiers a 65%-75% step apart cannot be found among 4 policies; .* 2 found "
                                          r"\(G \(final\), G@2\), then G@2 beats G@1 84.9% ± 3.6% \(100 games\), above"):
        build_ladder(candidates, logistic_measure(strength), band=(0.65, 0.75), tiers=3)
    with pytest.raises(LadderError, match="5 tiers need 5 policies; the run has 4"):
        build_ladder(candidates, logistic_measure(strength), tiers=5)
    with pytest.raises(LadderError, match="band 0.4-0.6"):
        build_ladder(candidates, logistic_measure(strength), band=(0.4, 0.6))


def test_a_pair_measured_inside_the_band_by_less_than_its_standard_error_is_not_a_tier():
    """74.5% in 100 games (standard error 4.4%) is as likely above 75% as not when the pair is checked again."""
    strength = {"G@0": 0.0, "G (final)": 400 * np.log10(0.745 / 0.255)}
    candidates = [Candidate(name, step, 1200.0) for step, name in enumerate(strength)]
    with pytest.raises(LadderError, match=r"G \(final\) beats G@0 74.5% ± 4.4% \(100 games\), above the band or "
                                          "within a standard error of its top"):
        build_ladder(candidates, logistic_measure(strength), band=(0.65, 0.75), tiers=2)
    assert len(build_ladder(candidates, logistic_measure(strength), band=(0.6, 0.8), tiers=2).tiers) == 2


# -- sparring ladder ----------------------------------------------------------------


def test_a_run_without_a_league_is_refused(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert main(["ladder", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "sparring: error: ladder:" in error and "no league" in error and "Traceback" not in error


@pytest.mark.slow
def test_a_tictactoe_ladder_is_ordered_in_its_band_and_every_tier_plays_from_its_export(
        tmp_path, capsys, learning_seed, measured, one_torch_thread):
    """20k steps of self-play with a small entropy bonus, a snapshot every 500: early snapshots lose clearly to
    late ones. Tic-tac-toe is learned in steep steps (a final policy beat snapshots 1000 steps apart 84% and 57%):
    with a snapshot every 2000 steps and the default band of 65-75%, 2 seeds of 10 had no snapshot to fill such a
    gap, and a check of 400 games (standard error 0.023) fell outside that narrow band on 1 pair of 16. Band
    60-80%, seeds 0-9: three tiers on every seed, checked rates 0.635 to 0.729 (0.635 to 0.754 when a tier could be
    measured inside the band by less than its standard error)."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["env"]["num_envs"] = 8
    config["trainer"].update(max_steps=20_000, checkpoint_interval=20_000, summary_freq=20_000)
    config["trainer"]["hyperparameters"]["ent_coef"] = 0.01
    config["trainer"]["self_play"].update(save_steps=500, swap_steps=1_000, window=5)
    path = tmp_path / "ttt.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--results-dir", str(tmp_path), "--run-id", "ttt",
                 "--seed", str(learning_seed)]) == 0
    run = tmp_path / "ttt"
    assert len(list((run / "league" / "archive").glob("*.pt"))) >= 5  # snapshots older than the window are kept
    capsys.readouterr()
    code = main(["ladder", str(run), "--tiers", "3", "--band", "0.6", "0.8", "--seed", str(learning_seed)])
    out, err = capsys.readouterr()
    (ladder,) = json.loads((run / "ladder" / "ladder.json").read_text())
    rates = [check["score"] for check in ladder["checks"]]
    measured(rates=rates, tiers=[tier["id"] for tier in ladder["tiers"]])
    assert code == 0, err
    assert len(ladder["tiers"]) == 3 and ladder["tiers"][-1]["id"] == "player (final)"
    assert all(0.6 <= rate <= 0.8 for rate in rates)  # in the band, so each tier beats the one below
    assert "Difficulty ladder of player" in out and (run / "ladder" / "ladder.png").read_bytes()[:4] == b"\x89PNG"
    env = SerialVectorEnv([tictactoe] * 4)
    tiers = [OnnxPolicy(run / "ladder" / "player" / f"tier{k}.onnx") for k in (1, 2, 3)]
    for k, (below, tier) in enumerate(zip(tiers, tiers[1:]), start=2):
        assert len(play_match(env, tier, below, "player", 20, seed=0, deterministic=True)) == 20
        meta = {p.key: p.value for p in onnx.load(run / "ladder" / "player" / f"tier{k}.onnx").metadata_props}
        assert meta["ladder_tier"] == str(k) and math.isclose(float(meta["ladder_win_rate_vs_tier_below"]),
                                                              rates[k - 2], abs_tol=1e-4)
        assert (run / "ladder" / "player" / f"tier{k}.mlagents.onnx").exists()
        assert "sample_actions = true" in (run / "ladder" / "player" / f"tier{k}.policy.tres").read_text()
    assert "not exported as godot" in out  # tic-tac-toe masks moves, which the Godot RL Agents plugin cannot


@pytest.fixture(scope="module")
def tug_run(tmp_path_factory):
    """2,000 steps of tug-of-war self-play, a snapshot every 250: the final policy pulls on the beat."""
    folder = tmp_path_factory.mktemp("tug")
    league = League(LeagueSettings(save_steps=250, swap_steps=250, team_change=500, window=3), folder / "league")
    model = SelfPlay(TugOfWar(areas=8), league, n_steps=16, batch_size=64, n_epochs=4, learning_rate=1e-3,
                     ent_coef=0.01).learn(2_000)
    league.save()
    model.save(folder / "final.pt")
    return folder


def test_a_sampled_ladder_tells_the_game_to_sample(tug_run):
    """The tiers were measured sampling their actions: the metadata says so, the Godot addon's policy samples, and
    the Godot RL Agents format (whose plugin plays the most likely action) is not written, saying why."""
    (ladder, _) = make_ladders(tug_run, tiers=2, band=(0.51, 0.99), games=100, env=TugOfWar(areas=8))
    folder = tug_run / "ladder" / "puller_team_0"
    meta = {p.key: p.value for p in onnx.load(folder / "tier2.onnx").metadata_props}
    assert meta["ladder_play"].startswith("sampled: draw each action from the policy")
    assert "sample_actions = true" in (folder / "tier2.policy.tres").read_text()
    assert "most likely action" in ladder.refused["godot"] and not (folder / "tier2.godot.onnx").exists()


def test_a_deterministic_ladder_plays_the_most_likely_actions(tug_run):
    """Played deterministically, both sides of the mirror game pull on every beat, the rope never moves, and no
    game ends with a result (seeds 0-2 alike): refused, naming the pair."""
    with pytest.raises(LadderError, match="none of 100 games of puller .final. against puller@.* ended with a result"):
        make_ladders(tug_run, tiers=2, band=(0.51, 0.99), games=100, env=TugOfWar(areas=8), play="deterministic")


@pytest.mark.slow
def test_games_with_sides_get_a_ladder_per_side(tmp_path, learning_seed, measured, one_torch_thread):
    """Tug of war, team against team, 6k steps of self-play with a snapshot every 500 (a policy that has learned
    to pull on the beat wins every game against the untrained one), checks of 200 games. Seeds 0-9: three tiers
    per side on every seed, checked rates 0.586 to 0.770 (0.586 to 0.835 before tiers had to be measured inside
    the band by a standard error), the two sides' the same: the game is a mirror, and the same seeds play it
    mirrored. With 100 games a check, seed 8 measured 0.87."""
    league = League(LeagueSettings(save_steps=500, swap_steps=250, team_change=1_000, window=3), tmp_path / "league",
                    seed=learning_seed)
    model = SelfPlay(TugOfWar(areas=16), league, seed=learning_seed, n_steps=16, batch_size=128, n_epochs=4,
                     learning_rate=1e-3, ent_coef=0.01).learn(6_000)
    league.save()
    model.save(tmp_path / "final.pt")
    ladders = make_ladders(tmp_path, tiers=3, band=(0.55, 0.85), games=200, seed=learning_seed,
                           env=TugOfWar(areas=16))
    measured(rates={s.side: [check.score for check in s.ladder.checks] for s in ladders})
    assert [s.side for s in ladders] == ["puller?team=0", "puller?team=1"]
    for side_ladder, folder in zip(ladders, ["puller_team_0", "puller_team_1"]):
        assert len(side_ladder.ladder.tiers) == 3 and all(side_ladder.ladder.in_band)
        meta = {p.key: p.value for p in onnx.load(tmp_path / "ladder" / folder / "tier3.onnx").metadata_props}
        assert meta["ladder_side"] == side_ladder.side and meta["ladder_player"] == "puller (final)"
