"""`sparring record`: a scripted player (tests/engines/player_game.py, the Python SDK, launched as a real process on a
loopback bridge) plays the game, and the .demo file written holds exactly what it did, lined up as ML-Agents reads it.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from sparring.cli import main
from sparring.envs.demonstrations import DemonstrationError, load_demonstrations

pytestmark = pytest.mark.timeout(120)

PLAYER_GAME = Path(__file__).resolve().parent / "engines" / "player_game.py"


def config(tmp_path: Path, *game_args: str, transport: str = "tcp") -> Path:
    """A run config whose env is the player game, launched with ``game_args``; its transcript goes to tmp_path."""
    path = tmp_path / "players.yaml"
    path.write_text(yaml.safe_dump({
        "env": {"source": "bridge", "executable": str(PLAYER_GAME), "transport": transport, "step_timeout": 30,
                "args": ["--transcript", str(tmp_path / "transcript.jsonl"), *game_args]},
        "trainer": {"max_steps": 1000},
    }))
    return path


def played_episodes(tmp_path: Path) -> tuple[list[list[dict]], list[list[dict]]]:
    """``(finished, unfinished)`` Runner episodes as the game played them: lists of decision lines, then the end."""
    lines = [json.loads(line) for line in (tmp_path / "transcript.jsonl").read_text().splitlines()]
    finished, current = [], {}
    for line in lines:
        episode = current.setdefault(line["runner"], [])
        episode.append(line)
        if "truncated" in line:
            finished.append(current.pop(line["runner"]))
    return finished, list(current.values())


def recorded_episodes(demo) -> list[dict[str, np.ndarray]]:
    """The demonstration's episodes (one record id each), in file order."""
    ids, starts = np.unique(demo.agent_ids, return_index=True)
    episodes = []
    for start in sorted(starts):
        rows = demo.agent_ids == demo.agent_ids[start]
        episodes.append({"obs": demo.obs[rows], "actions": demo.actions[rows], "rewards": demo.rewards[rows],
                         "dones": demo.dones[rows], "max_step_reached": demo.max_step_reached[rows],
                         "masks": demo.action_masks[rows]})
    return episodes


def as_played(episode: list[dict]) -> dict[str, np.ndarray]:
    """A played episode in the fields of recorded records: each decision with its action, then the end (zero action)."""
    end = episode[-1] if "truncated" in episode[-1] else None
    return {
        "obs": np.array([line["obs"] for line in episode], np.float32),
        "actions": np.array([line.get("action", 0) for line in episode], np.int64),
        "rewards": np.array([line["reward"] for line in episode], np.float32),
        "dones": np.array([end is not None and line is end for line in episode]),
        "max_step_reached": np.array([end is not None and line is end and line["truncated"] for line in episode]),
        "masks": np.array([line.get("mask", [True] * 3) for line in episode]),
    }


def assert_same(recorded: dict[str, np.ndarray], played: dict[str, np.ndarray]) -> None:
    for field, value in played.items():
        np.testing.assert_array_equal(recorded[field], value, err_msg=field)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """Four finished Runner episodes recorded through the CLI over TCP: (exit status, output, demo path, folder)."""
    tmp_path = tmp_path_factory.mktemp("recording")
    out = tmp_path / "runner.demo"
    status = main(["record", str(config(tmp_path)), "--out", str(out), "--behaviour", "Runner", "--episodes", "4"])
    return status, out, tmp_path


def test_a_recording_holds_exactly_what_the_player_did(recording, capsys):
    status, out, tmp_path = recording
    assert status == 0
    demo = load_demonstrations(out)
    assert demo.spec.name == "Runner" and demo.episodes == 5 and int(demo.dones.sum()) == 4
    finished, unfinished = played_episodes(tmp_path)
    episodes = recorded_episodes(demo)
    assert len(finished) == 4 and len(episodes) == 5
    for recorded, played in zip(episodes[:4], finished):  # in the order they ended
        assert_same(recorded, as_played(played))
    assert episodes[2]["max_step_reached"].tolist() == [False, False, False, True]  # runner 9's, cut at its limit
    # The episode under way when the recording stopped: its decisions whose actions had reached the trainer.
    (cut,) = [episode for episode in unfinished if episode[0]["obs"] == episodes[4]["obs"][0].tolist()]
    kept = len(episodes[4]["obs"])
    assert 1 <= kept <= len(cut) and not episodes[4]["dones"].any()
    assert_same(episodes[4], as_played(cut[:kept]))


def test_records_line_up_as_ml_agents_demo_loader_pairs_them(recording):
    """demo_loader makes transition t of records t and t + 1: record t's observation and action, record t + 1's
    reward and done. That must be the decision, the action the player took there, and what that action earned."""
    _, out, tmp_path = recording
    demo = load_demonstrations(out)
    finished, _ = played_episodes(tmp_path)
    for recorded, played in zip(recorded_episodes(demo), finished):
        for t, decision in enumerate(played[:-1]):
            obs, action = recorded["obs"][t], recorded["actions"][t]
            reward, done = recorded["rewards"][t + 1], recorded["dones"][t + 1]
            earned_by_it = played[t + 1]["reward"]  # reported with the runner's next row
            assert (obs.tolist(), int(action), float(reward), bool(done)) == (
                decision["obs"], decision["action"], earned_by_it, t + 1 == len(played) - 1)


@pytest.mark.parametrize("transport", ["grpc", "tcp"])
def test_a_recording_stops_after_the_decisions_asked_for(tmp_path, transport):
    out = tmp_path / "turret.demo"
    assert main(["record", str(config(tmp_path, transport=transport)), "--out", str(out), "--behaviour", "Turret",
                 "--steps", "5"]) == 0
    demo = load_demonstrations(out)
    assert demo.spec.name == "Turret" and len(demo) == 5 and not demo.dones.any()
    assert demo.actions.tolist() == [1, 0, 1, 0, 1]  # the player's shots, ticks 1 to 5
    assert demo.episodes == 1


def test_a_behaviour_the_game_lacks_is_refused_naming_its_behaviours(tmp_path, capsys):
    out = tmp_path / "x.demo"
    assert main(["record", str(config(tmp_path)), "--out", str(out), "--behaviour", "Runer", "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert "the game has no behaviour 'Runer'; its behaviours are ['Runner', 'Turret']" in err, err
    assert not out.exists()


def test_a_game_with_several_behaviours_needs_one_named(tmp_path, capsys):
    assert main(["record", str(config(tmp_path)), "--out", str(tmp_path / "x.demo"), "--steps", "5"]) == 2
    assert "the game has behaviours ['Runner', 'Turret']: say which to record with --behaviour" in capsys.readouterr().err


def test_a_game_that_does_not_report_its_actions_ends_the_recording_saying_so(tmp_path, capsys):
    out = tmp_path / "x.demo"
    assert main(["record", str(config(tmp_path, "--no-report")), "--out", str(out), "--behaviour", "Runner",
                 "--episodes", "2"]) == 1
    said = capsys.readouterr().out
    assert "agents [5] of behaviour 'Runner' came back without the action the game took at their previous " \
           "decision" in said, said  # runner 5 decides again at once; runner 9 not yet
    assert "must report each action its player took" in said and "nothing was written" in said
    assert not out.exists()


def test_a_game_that_quits_mid_recording_leaves_a_file_that_loads(tmp_path, capsys):
    out = tmp_path / "x.demo"
    assert main(["record", str(config(tmp_path, "--quit-after", "9")), "--out", str(out), "--behaviour", "Runner",
                 "--episodes", "50"]) == 1
    said = capsys.readouterr().out
    assert "the game left" in said and "disconnected" in said, said
    demo = load_demonstrations(out)
    finished, _ = played_episodes(tmp_path)
    episodes = recorded_episodes(demo)
    assert len(finished) == int(demo.dones.sum()) == 4  # by its 9th tick
    for recorded, played in zip([e for e in episodes if e["dones"].any()], finished):
        assert_same(recorded, as_played(played))
    assert demo.episodes == len(episodes) == 5  # and runner 9's episode under way, as far as it had got


def test_a_unity_source_is_refused_pointing_to_unitys_demonstration_recorder(tmp_path, capsys):
    path = tmp_path / "unity.yaml"
    path.write_text(yaml.safe_dump({"env": {"source": "unity", "env_path": "Game.x86_64"}, "trainer": {"max_steps": 10}}))
    assert main(["record", str(path), "--out", str(tmp_path / "x.demo"), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "ML-Agents' protocol carries no actions from Unity to the trainer" in err
    assert "Demonstration Recorder component" in err and "load_demonstrations" in err


def test_an_existing_file_is_kept_unless_forced(tmp_path, capsys):
    out = tmp_path / "x.demo"
    out.write_bytes(b"keep me")
    assert main(["record", str(config(tmp_path)), "--out", str(out), "--steps", "1"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    with pytest.raises(DemonstrationError):
        load_demonstrations(out)
