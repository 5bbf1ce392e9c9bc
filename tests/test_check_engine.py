"""`sparring check-engine` passes a conforming engine and names the field where a faulty one breaks the protocol."""

import shutil
import sys
from pathlib import Path

import pytest

from sparring.cli import main

ROOT = Path(__file__).resolve().parents[1]
ARENA = str(ROOT / "engines" / "python" / "examples" / "arena.py")
FAULTY = str(ROOT / "tests" / "engines" / "faulty_game.py")
SQUADS = str(ROOT / "tests" / "engines" / "squad_game.py")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["grpc", "tcp"])
def test_the_example_arena_conforms(transport, capsys):
    assert main(["check-engine", "--transport", transport, "--steps", "100", ARENA]) == 0
    out = capsys.readouterr().out
    assert "PASS  hello: engine 'arena'" in out and "exited with code 0 after Close" in out
    assert "FAIL" not in out


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "fault,stage,message",
    [("short-obs", "step 3", "observations.behaviours[0].decision_obs[0]: expected float32 (2, 3), got float32 [2, 2]"),
     ("nan-obs", "step 3", "observations.behaviours[0].decision_obs[0]: non-finite values"),
     ("terminals-at-reset", "second reset (in the middle of episodes)",
      "observations.behaviours[0].terminal_ids: the answer to a Reset has no terminals"),
     ("empty-entry", "step 2", "reported an error: RuntimeError in the game: no watcher decided, yet an action "
                               "entry for it came"),
     ("nan-group-reward", "step 3", "observations.behaviours[0].decision_group_rewards: non-finite rewards in rows [1]"),
     ("short-group-ids", "step 3", "observations.behaviours[0].decision_group_ids: expected int64 (2), got int64 [1]"),
     ],
)
def test_a_faulty_engine_is_reported_field_by_field(fault, stage, message, capsys):
    assert main(["check-engine", "--steps", "50", FAULTY, "--fault", fault]) == 1
    captured = capsys.readouterr()
    (failure,) = [line for line in captured.out.splitlines() if line.startswith("FAIL")]
    assert failure.startswith(f"FAIL  {stage}: ") and message in failure, captured.out
    assert "does not conform" in captured.err


@pytest.mark.timeout(120)
def test_an_engine_without_episode_ends_is_reported(capsys):
    assert main(["check-engine", "--steps", "3", FAULTY]) == 1
    assert "no agent ended an episode in 3 steps" in capsys.readouterr().out


@pytest.mark.timeout(120)
def test_the_report_names_every_case_it_exercised(capsys):
    assert main(["check-engine", "--transport", "tcp", "--steps", "30", FAULTY]) == 0
    out = capsys.readouterr().out
    for case in ("PASS  reset: step 0", "PASS  second reset (in the middle of episodes)", "PASS  episode ends: 14",
                 "truncation: not seen", "action masks: none declared", "agents joining after the first decisions",
                 "behaviours with no deciding agent: 25 times; 13 answered with an empty action entry, 12 with the "
                 "entry left out, both accepted"):
        assert case in out, out


@pytest.mark.timeout(120)
def test_groups_statistics_and_parameters_are_checked_and_reported(capsys):
    assert main(["check-engine", "--transport", "grpc", "--steps", "60", SQUADS]) == 0
    out = capsys.readouterr().out
    for case in ("PASS  hello: engine 'squads' (protocol version 3)",
                 "PASS  environment parameters: 'sparring_check_engine' sent with the Actions of step 31",
                 "groups: ", " rows of agents in 2 groups, ", "ended their episode while their group played on",
                 "statistics: Squads/Earned (sum, 80 values), Squads/Speed (most_recent, 80 values), "
                 "Squads/Action (histogram, 320 values)"):
        assert case in out, out
    assert "FAIL" not in out


@pytest.mark.timeout(60)
def test_an_engine_that_exits_before_its_handshake_is_reported_at_once(capsys):
    import time

    start = time.monotonic()
    assert main(["check-engine", "--timeout", "30", sys.executable, "-c", "import sys; sys.exit(2)"]) == 1
    assert time.monotonic() - start < 10  # not the whole --timeout
    assert "the engine exited before completing its handshake; the engine exited with code 2" in capsys.readouterr().out


@pytest.mark.timeout(60)
def test_an_engine_that_never_connects_is_reported(capsys):
    assert main(["check-engine", "--timeout", "3", sys.executable, "-c", "import time; time.sleep(30)"]) == 1
    assert "FAIL  handshake" in capsys.readouterr().out


@pytest.mark.godot
@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("godot3-server") is None, reason="godot3-server is not installed")
@pytest.mark.parametrize("scene", [[], ["res://checks/teams.tscn"]], ids=["seekers", "teams"])
def test_the_example_godot_games_conform(scene, capsys):
    args = ["check-engine", "--transport", "tcp", "--steps", "200", "godot3-server", "--path",
            str(ROOT / "engines" / "godot" / "example"), *scene]
    assert main(args) == 0, capsys.readouterr().out
