"""Games made with the Godot RL Agents plugin as a source: what env_info becomes, how games are launched or awaited,
and what happens when a game breaks the protocol. The games are real processes of the stand-in game
(tests/godot_rl_game.py), which speaks the plugin's side of the protocol."""

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from gymnasium import spaces
from ray_cluster import free_port

from sparring.agents import PPO
from sparring.cli import main
from sparring.envs.base import check_env
from sparring.envs.godot_rl.env import GameCommand, GodotRLFleet
from sparring.envs.supervision import EngineFailure
from sparring.spec import ActionKey, hybrid_space

ROOT = Path(__file__).resolve().parents[1]
GAME = str(ROOT / "tests" / "godot_rl_game.py")
ID_STRIDE = 2**32


def fleet(*flags: str, num_envs: int = 1, action_repeat: int | None = None, speedup: float | None = None,
          **options) -> GodotRLFleet:
    """``num_envs`` stand-in games launched with ``flags``, relaunched at once after a failure."""
    command = GameCommand(sys.executable, (GAME, *flags), action_repeat=action_repeat, speedup=speedup)
    return GodotRLFleet(num_envs, command, restart_backoff=0.05, **options)


def test_each_policy_name_is_a_behaviour_with_the_games_action_keys_in_order():
    with fleet("--actions=hybrid", "--agents=3", "--policies=chaser,runner?team=1") as env:
        assert list(env.specs) == ["chaser", "runner?team=1"]
        runner = env.specs["runner?team=1"]
        assert runner.team_id == 1 and env.specs["chaser"].team_id is None
        assert runner.observation_space == spaces.Box(-1, 1, (2,), np.float32)  # a lone "obs" key is a Box
        assert runner.action_space == hybrid_space(spaces.Box(-1, 1, (1,), np.float32), spaces.Discrete(3))
        assert runner.action_keys == (ActionKey("move_x", "continuous", 1), ActionKey("move_y", "discrete", 3))
        result = env.reset(seed=0)
        assert result["chaser"].decisions.agent_ids.tolist() == [0, 2]  # policies dealt in turn: a, b, a
        assert result["runner?team=1"].decisions.agent_ids.tolist() == [1]


def test_discrete_keys_are_branches_images_uint8_pixels_and_discrete_observations_one_hot():
    with fleet("--actions=discrete", "--camera", "--quadrant", "--agents=2") as env:
        spec = env.specs["shared_policy"]
        assert spec.action_space == spaces.MultiDiscrete([3, 3])
        assert spec.observation_space == spaces.Dict({"camera_2d": spaces.Box(0, 255, (2, 2, 1), np.uint8),
                                                     "obs": spaces.Box(-1, 1, (2,), np.float32),
                                                     "quadrant": spaces.Box(0, 1, (4,), np.float32)})
        obs = env.reset(seed=0)["shared_policy"].decisions.obs
        image = obs["camera_2d"].reshape(2, 4)
        assert image.dtype == np.uint8 and (np.sort(image) == [0, 0, 0, 255]).all()  # the target's quadrant is lit
        np.testing.assert_array_equal(obs["quadrant"], image / 255)  # and is the one-hot quadrant


def test_the_godot3_protocol_shares_one_space_and_sends_float16_images():
    with fleet("--protocol=0.3", "--camera", "--agents=2", protocol="0.3") as env:
        assert list(env.specs) == ["shared_policy"]  # godot3 games send no policy names
        spec = env.specs["shared_policy"]
        assert spec.observation_space["camera_2d"] == spaces.Box(-1, 1, (2, 2, 1), np.float32)
        image = env.reset(seed=0)["shared_policy"].decisions.obs["camera_2d"]
        assert (np.sort(image.reshape(2, 4)) == [0, 0, 0, 1]).all()


def test_auto_serves_a_godot3_game_and_names_the_setting_its_images_need():
    with fleet("--protocol=0.3", "--agents=2") as env:
        check_env(env, steps=30)
    with fleet("--protocol=0.3", "--camera", max_restarts=0) as env:
        with pytest.raises(EngineFailure, match=r"'camera_2d'\]: 8 bytes for 4 uint8 values .*set protocol '0.3'"):
            env.reset(seed=0)


def test_every_result_keeps_the_env_contract_and_agent_ids_stay_the_agents():
    with fleet("--actions=hybrid", "--agents=3", "--episode_steps=5", num_envs=2) as env:
        check_env(env, steps=40)
        result = env.step({"shared_policy": {"continuous": np.zeros((6, 1), np.float32),
                                             "discrete": np.ones(6, np.int64)}})
        ids = [0, 1, 2, ID_STRIDE, ID_STRIDE + 1, ID_STRIDE + 2]
        assert result["shared_policy"].decisions.agent_ids.tolist() == ids


@pytest.mark.parametrize("protocol, truncated", [("0.7", True), ("0.3", False)])
def test_done_ends_the_episode_and_the_agent_decides_again_from_the_same_observation(protocol, truncated):
    """Standing still never reaches the target, so the 2-step limit ends every episode: 0.7's info says so
    ("TimeLimit.truncated"); 0.3 has no info, so the episode counts as ended by the game."""
    with fleet(f"--protocol={protocol}", "--agents=2", "--episode_steps=2", protocol=protocol) as env:
        env.reset(seed=0)
        still = {"shared_policy": np.zeros((2, 2), np.float32)}
        first = env.step(still)["shared_policy"]
        assert len(first.terminals) == 0 and first.decisions.rewards.tolist() == [0, 0]
        step = env.step(still)["shared_policy"]
        assert step.terminals.agent_ids.tolist() == [0, 1]
        assert step.terminals.truncated.tolist() == [truncated, truncated]
        assert step.decisions.agent_ids.tolist() == [0, 1] and step.decisions.rewards.tolist() == [0, 0]
        np.testing.assert_array_equal(step.decisions.obs, step.terminals.obs)


def test_launched_games_get_the_flags_godotenv_gives_and_answer_calls():
    with fleet("--agents=2", num_envs=2, action_repeat=3, speedup=8.0, seed=5) as env:
        returns = env.slots[1].game.call("launch_args")
        assert len(returns) == 2  # one per agent node
        args = returns[0]
        assert args["port"] == str(env.ports[1]) and env.ports[0] != env.ports[1]
        assert args["env_seed"] == "6" and args["action_repeat"] == "3" and args["speedup"] == "8"
        assert args["headless"] == "" and args["disable-render-loop"] == ""


def test_editor_mode_announces_the_port_and_takes_the_game_that_connects():
    port = free_port()
    announced: list[str] = []
    made: dict[str, GodotRLFleet] = {}
    waiting = threading.Thread(target=lambda: made.update(env=GodotRLFleet(1, None, port=port,
                                                                            announce=announced.append)))
    waiting.start()
    while not announced:
        time.sleep(0.01)
    assert f"port(s) {port}: press Play in the Godot editor" in announced[0]
    game = subprocess.Popen([sys.executable, GAME, f"--port={port}"], stdout=subprocess.DEVNULL)
    waiting.join(30)
    with made["env"] as env:
        assert env.processes == [None]
        check_env(env, steps=5)
    assert game.wait(10) == 0  # told to close, it quit


def test_editor_mode_with_no_game_fails_naming_the_port():
    port = free_port()
    with pytest.raises(EngineFailure, match=f"no game connected to port {port} within 0.3 s"):
        GodotRLFleet(1, None, port=port, connect_timeout=0.3, announce=lambda message: None)


FAULTS = [
    ("malformed_json", "invalid_messages", r"the reply to 'action': malformed JSON \(Expecting value at line 1 column 47\)"),
    ("wrong_type", "invalid_messages", r"the reply to 'action': field 'type' is 'steps', expected 'step'"),
    ("out_of_order", "invalid_messages", r"field 'type' is 'env_info', expected 'step' \(a message out of order\)"),
    ("bad_reward", "invalid_messages", r"the reply to 'action': field 'reward'\[0\]: expected a finite number, got 'lots'"),
    ("nan_obs", "invalid_messages", r"field 'obs'\['obs'\]: non-finite values \(NaN or infinity\) from agents \[1\]"),
    ("huge_length", "invalid_messages", r"length prefix 4294967280 exceeds max_message_bytes=67108864"),
    ("disconnect", "crashes", r"the game closed the connection awaiting the reply to 'action'.* exited with code 3"),
    ("hang", "timeouts", r"the reply to 'action' did not arrive in time.*, killed"),
]


@pytest.mark.parametrize("fault, kind, reason", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_game_that_breaks_the_protocol_is_named_dropped_and_relaunched(fault, kind, reason):
    still = {"shared_policy": np.zeros((2, 2), np.float32)}
    with fleet("--agents=2", f"--fault={fault}@3", "--fault_seed=0", seed=0, step_timeout=1.0) as env:
        env.reset(seed=0)
        env.step(still)
        env.step(still)
        broken = env.step(still)["shared_policy"]  # the third action's answer is the bad one
        assert broken.lost.tolist() == [0, 1] and len(broken.decisions) == 0
        assert env.metrics[kind] == 1 and env.restarts == 1
        assert re.search(reason, env.failures[-1]), env.failures[-1]
        rejoined = env.step({})["shared_policy"]  # relaunched with another seed, so it behaves
        assert rejoined.decisions.agent_ids.tolist() == [0, 1]


def test_a_game_whose_env_info_is_invalid_is_named_and_relaunched():
    with fleet("--fault=bad_env_info@0", "--fault_seed=0", seed=0) as env:
        assert env.metrics["connect_failures"] == 1 and list(env.specs) == ["shared_policy"]
        assert "env_info.action_space[0]['move'].action_type: expected 'continuous' or 'discrete', got 'analog'" \
            in env.failures[-1]


def test_ppo_trains_on_while_a_game_disconnects_mid_episode():
    with fleet("--agents=2", "--fault=disconnect@40", "--fault_seed=1", num_envs=2, seed=0) as env:
        model = PPO(env, seed=0, n_steps=32, batch_size=64, n_epochs=1).learn(512)
        assert model.num_steps >= 512
        assert env.metrics["crashes"] == 1 and env.metrics["lost_agents"] == 2


def godot_rl_config(tmp_path: Path, env: dict, **trainer) -> Path:
    config = {"env": {"source": "godot_rl", "executable": GAME, **env},
              "trainer": {"max_steps": 256, "summary_freq": 128, "checkpoint_interval": 128,
                          "hyperparameters": {"n_steps": 32, "batch_size": 64, "n_epochs": 1}, **trainer},
              "seed": 0}
    path = tmp_path / "godot_rl.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_sparring_train_runs_the_example_config_into_a_run_folder_with_an_export(tmp_path):
    config = yaml.safe_load((ROOT / "examples" / "godot_rl.yaml").read_text())
    config["env"]["executable"] = GAME
    config["trainer"].update(max_steps=256, summary_freq=128, checkpoint_interval=128)
    path = tmp_path / "godot_rl.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--results-dir", str(tmp_path / "results"), "--run-id", "walk"]) == 0
    run = tmp_path / "results" / "walk"
    assert (run / "configuration.yaml").is_file() and (run / "shared_policy.onnx").is_file()
    assert PPO.load(run / "final.pt").num_steps >= 256


def test_a_game_that_keeps_failing_stops_training_and_leaves_the_checkpoints_intact(tmp_path, capsys):
    config = godot_rl_config(tmp_path, {"args": ["--agents=2", "--fault=malformed_json@100"], "max_restarts": 1},
                             max_steps=2048)
    assert main(["train", str(config), "--results-dir", str(tmp_path / "results"), "--run-id", "broken"]) == 1
    err = capsys.readouterr().err
    assert "engine slot 0 failed 2 times, more than max_restarts=1 allows" in err and "malformed JSON" in err
    newest = max((tmp_path / "results" / "broken" / "checkpoints").glob("step_*.pt"), key=lambda p: p.stat().st_mtime)
    assert PPO.load(newest).num_steps >= 128


def test_editor_mode_refuses_launch_flags_naming_the_key(tmp_path, capsys):
    config = godot_rl_config(tmp_path, {"executable": None, "speedup": 4})
    assert main(["train", str(config), "--results-dir", str(tmp_path / "results")]) == 2
    assert "env.speedup reaches a game on the command line" in capsys.readouterr().err


def test_game_copies_run_as_ray_workers_each_on_its_own_port(ray_cluster):
    """Each worker launches its own copy from a path taken from this working directory; with a configured port,
    worker i listens on port + i (on one machine the second would otherwise find the port taken)."""
    from sparring.env_config import GodotRLEnvConfig, ScaleConfig
    from sparring.envs.factory import make_env

    config = GodotRLEnvConfig(source="godot_rl", executable=os.path.relpath(GAME), args=["--agents=2"], num_envs=2,
                              port=free_port())
    with make_env(config, scale=ScaleConfig(ray=ray_cluster.address, worker_cpus=0)) as env:
        assert len(env.worker_nodes) == 2
        check_env(env, steps=10)
