"""Self-play for any game: a duel whose sides are team ids, played by engine processes over the bridge and by a
Unity build; a two-team game of the Godot addon; recurrent learners and opponents; a one-behaviour game that does
not seat its agents is refused.

The duel is engines/python/examples/duel.py: two players race for coins; its scripted player walks at its nearest
coin and stumbles one move in five. In this process (seeds 0-2, 960 games each, half from each side): the scripted
player beats random play in 0.984-0.988 of games and random play beats it in 0.009-0.017; the same walker without
stumbles beats it in 0.748-0.765 and loses 0.200-0.207.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from godot_harness import GODOT, PROJECT
from sparring.agents.selfplay.league import LATEST, League, LeagueSettings
from sparring.agents.selfplay.trainer import SelfPlay
from sparring.envs.base import MultiAgentEnv
from sparring.envs.bridge.env import MultiEngineEnv

DUEL = Path(__file__).resolve().parents[1] / "engines" / "python" / "examples" / "duel.py"
_spec = importlib.util.spec_from_file_location("sparring_example_duel", DUEL)
duel = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(duel)

Player = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Moves for a batch of one side's observations and action masks."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def duel_results(env: MultiAgentEnv, players: tuple[Player, Player], per_duel: int, seed: int) -> np.ndarray:
    """Side 0's results (+1 win, 0 draw, -1 loss) of the first ``per_duel`` games of every duel of ``env``: every
    duel counts as many games, so quick wins are not favoured."""
    result = env.reset(seed=seed)
    counted: dict[int, int] = {}
    results = []
    while True:
        terminals = result[duel.SIDES[0]].terminals
        for duel_id, reward in zip(terminals.agent_ids.tolist(), terminals.rewards.tolist()):
            if counted.get(duel_id, 0) < per_duel:
                counted[duel_id] = counted.get(duel_id, 0) + 1
                results.append(np.sign(reward))
        duels = result[duel.SIDES[0]].decisions.agent_ids
        if all(counted.get(d, 0) >= per_duel for d in duels.tolist()):
            return np.array(results)
        result = env.step({name: player(result[name].decisions.obs, result[name].decisions.action_mask)
                           for name, player in zip(duel.SIDES, players)})


def both_seats(env: MultiAgentEnv, player: Player, rival: Player, per_duel: int, seed: int) -> np.ndarray:
    """``player``'s results against ``rival``, half of the games from each side."""
    return np.concatenate([duel_results(env, (player, rival), per_duel, seed),
                           -duel_results(env, (rival, player), per_duel, seed + 1)])


def scripted(seed: int) -> Player:
    rng = np.random.default_rng(seed)
    return lambda obs, mask: duel.chase_nearest_coin(obs, mask, rng)


def uniform(seed: int) -> Player:
    rng = np.random.default_rng(seed)
    return lambda obs, mask: np.argmax(rng.random(mask.shape) * mask, 1)


def test_the_scripted_duelist_beats_random_play():
    """The yardstick is a real player: in-process duels, both seats."""
    game = duel.Duel(games=16)
    results = both_seats(game, scripted(0), uniform(1), per_duel=10, seed=0)
    assert (results > 0).mean() > 0.9, (results > 0).mean()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_self_play_alone_learns_the_duel_through_engine_processes(tmp_path, learning_seed, measured):
    """Two duel engines over the bridge; the learner meets only itself and its snapshots (one side learns at a time,
    sides swap every team_change steps), then plays random and scripted players it never met, from both sides
    (640 games each). 60k decisions, about 11 s on two cores.

    Seeds 0-9: it beat random play in 0.984-0.997 of games, and the scripted player in 0.706-0.766 (losing
    0.184-0.245): as well as a walker that never stumbles does.
    """
    settings = LeagueSettings(save_steps=4_000, swap_steps=2_000, team_change=8_000, window=5)
    with MultiEngineEnv.launch(sys.executable, 2, [str(DUEL)], log_dir=tmp_path, step_timeout=30) as env:
        model = SelfPlay(env, League(settings, tmp_path / "league", seed=learning_seed), seed=learning_seed,
                         n_steps=64, batch_size=512, n_epochs=4, learning_rate=1e-3, ent_coef=0.01)
        model.learn(60_000)
        trained: Player = lambda obs, mask: model.predict(obs, "Duelist", mask)  # noqa: E731
        against_random = both_seats(env, trained, uniform(learning_seed), per_duel=10, seed=100 + learning_seed)
        against_scripted = both_seats(env, trained, scripted(learning_seed), per_duel=10, seed=200 + learning_seed)
    assert {p.group for p in model.league.players.values()} == {"Duelist"}
    win_random, win_scripted = float((against_random > 0).mean()), float((against_scripted > 0).mean())
    measured(win_random=win_random, win_scripted=win_scripted, loss_scripted=float((against_scripted < 0).mean()))
    assert win_random >= 0.95 and win_scripted >= 0.65, (win_random, win_scripted)


@pytest.mark.godot
@pytest.mark.timeout(120)
@pytest.mark.skipif(GODOT is None, reason="godot3-server is not on PATH (apt-get install godot3-server)")
def test_a_godot_game_with_two_teams_learns_by_self_play_and_beats_random_play(tmp_path, learning_seed, measured):
    """engines/godot/example/checks/showdown.tscn through the Godot addon: behaviours "showdowner?team=0/1" of one
    group, 8 games at once. Self-play alone for 3,000 decisions, then 400 games against random play from side 0
    (naming the target always scores 5/6, random play 1/2). Seeds 0-9: 0.799-0.855 (400 games: standard error
    0.02); asserted >= 0.75. The behaviours' names say their teams; the addon's team_id is left unset."""
    from sparring.agents.evaluation import RandomPolicy
    from sparring.agents.selfplay.matches import play_match

    settings = LeagueSettings(save_steps=500, swap_steps=250, team_change=1_000, window=3)
    with MultiEngineEnv.launch(GODOT, 1, ["--path", str(PROJECT), "res://checks/showdown.tscn"], transport="tcp",
                               log_dir=tmp_path, step_timeout=30) as env:
        assert sorted(env.specs) == ["showdowner?team=0", "showdowner?team=1"]
        model = SelfPlay(env, League(settings, tmp_path / "league", seed=learning_seed), seed=learning_seed,
                         n_steps=16, batch_size=64, n_epochs=4, learning_rate=3e-3, hidden_sizes=[32])
        model.learn(3_000)
        rival = RandomPolicy({"showdowner": model.learners["showdowner"].spec}, seed=learning_seed)
        scores = play_match(env, model, rival, "showdowner", 400, side="showdowner?team=0", seed=learning_seed)
    assert model.sides == [("showdowner", 0), ("showdowner", 1)] and model.league.learners["showdowner/main"].games
    measured(score=float(scores.mean()))
    assert scores.mean() >= 0.75, scores.mean()


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore:distutils Version classes are deprecated:DeprecationWarning")
def test_a_unity_build_with_two_teams_of_one_behaviour_learns_by_self_play(tmp_path):
    """The duel as a Unity build sends it (the stand-in player's duel scene, through mlagents_envs): both teams share
    the group's one policy, the sides take turns at learning, and the games' results reach the league."""
    from sparring.envs.unity import MultiUnityEnv
    from unity_harness import build_player, free_ports

    settings = LeagueSettings(save_steps=1_000, swap_steps=500, team_change=1_000)
    with MultiUnityEnv(build_player(tmp_path), 1, base_port=free_ports(), no_graphics=True, timeout_wait=20,
                       additional_args=["--scene", "duel", "--agents", "16"]) as env:
        assert sorted(env.specs) == list(duel.SIDES)
        model = SelfPlay(env, League(settings, tmp_path / "league"), n_steps=32, batch_size=256, n_epochs=2)
        learning = []
        model.learn(4_000, callback=lambda m, report: learning.append(m.sides[m.learning_side]))
    assert model.sides == [("Duelist", 0), ("Duelist", 1)] and set(model.learners) == {"Duelist"}
    assert set(learning) == {("Duelist", 0), ("Duelist", 1)}
    assert model.league.learners["Duelist/main"].games > 0
    assert len(model.league.players) >= 3  # the step-0 snapshot and one every save_steps


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore:distutils Version classes are deprecated:DeprecationWarning")
def test_a_one_behaviour_game_without_teams_or_seats_is_refused_at_start(tmp_path):
    """A Unity build's one behaviour without team ids: nothing says which agents play each other."""
    from sparring.envs.unity import MultiUnityEnv
    from unity_harness import build_player, free_ports

    with MultiUnityEnv(build_player(tmp_path), 1, base_port=free_ports(), no_graphics=True, timeout_wait=20,
                       additional_args=["--scene", "throughput", "--agents", "4"]) as env:
        with pytest.raises(ValueError, match=r"'Bench' has no team ids .* declare a team id per side"):
            SelfPlay(env, League(LeagueSettings(), tmp_path / "league"))


def test_recurrent_learners_and_opponents_self_play(tmp_path):
    """Tic-tac-toe with an LSTM policy: the learner trains on sequences; each opponent (the learner as it is, and
    snapshots once swaps begin) remembers each agent it plays and forgets it as that agent's game ends."""
    from test_selfplay import TTT, tictactoe

    from sparring.envs.vector import SerialVectorEnv

    settings = LeagueSettings(save_steps=300, swap_steps=300, window=5)
    model = SelfPlay(SerialVectorEnv([tictactoe] * 4), League(settings, tmp_path / "league"), seed=0,
                     **{**TTT, "n_steps": 32, "hidden_sizes": [32]}, memory={"memory_size": 16, "sequence_length": 4})
    before = [p.detach().clone() for p in model.learners["player"].policy.parameters()]
    original = model.observe
    remembered, forgotten, players = [], [], set()

    def observe(behaviour, step):  # after each step: what every opponent remembers of the agents it plays
        mine = original(behaviour, step)
        for (_, player), opponent in model._opponents.items():
            players.add(player)
            remembered.append(bool(np.abs(opponent.memory.get(step.decisions.agent_ids)).sum() > 0))
            forgotten.append(not opponent.memory.get(step.terminals.agent_ids).any())
        return mine

    model.observe = observe
    model.learn(2_000)
    assert model.num_updates >= 3 and len(model.league.players) >= 3
    assert any(remembered) and all(forgotten) and players - {LATEST}  # snapshots played too
    after = list(model.learners["player"].policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
