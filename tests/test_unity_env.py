"""Unity builds as sparring envs (envs/unity.py), through the real mlagents_envs code path.

The build is the stand-in player (engines/unity/), launched by ``UnityEnvironment``
exactly as a Unity Linux build is, speaking communication API 1.5.0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from sparring.agents import PPO
from sparring.agents.evaluation import evaluate
from sparring.cli import main
from sparring.envs.base import check_env, random_actions
from sparring.envs.parallel import to_parallel_env
from sparring.envs.supervision import EngineFailure
from sparring.envs.unity import MultiUnityEnv, UnityEnv
from sparring.spec import hybrid_space, team_of
from unity_harness import DISTUTILS_WARNING, MOVER, PARKER, SEEKER, build_player, free_ports

from mlagents_envs.exception import UnityEnvironmentException  # after sparring.envs.unity: needs the compat layer

pytestmark = [pytest.mark.timeout(180), pytest.mark.filterwarnings(DISTUTILS_WARNING)]

GRID = 5


@pytest.fixture(scope="module")
def player(tmp_path_factory) -> str:
    return build_player(tmp_path_factory.mktemp("standin"))


def launch(player: str, num_envs: int = 2, log_folder=None, **options) -> MultiUnityEnv:
    options.setdefault("timeout_wait", 20)
    return MultiUnityEnv(player, num_envs, base_port=free_ports(num_envs), no_graphics=True,
                         log_folder=None if log_folder is None else str(log_folder), **options)


def train_ppo(env, steps: int, seed: int, also=None) -> dict[str, float]:
    """PPO on the stand-in's game, then each behaviour's mean return over 200 episodes of its deterministic play."""
    model = PPO(env, seed=seed, n_steps=64, batch_size=256, n_epochs=8, learning_rate=1e-3, gamma=0.95, ent_coef=0.01)
    model.learn(steps, callback=also)
    return {name: float(r.mean()) for name, r in evaluate(model, env, 200, seed=1000 + seed).items() if len(r)}


def test_team_ids_come_from_behaviour_names():
    assert team_of("Striker?team=1") == 1
    assert team_of("Goalie?team=0&other=x") == 0
    assert team_of("Walker") is None


def test_two_builds_pass_check_env_with_unity_specs_masks_and_teams(player, tmp_path):
    with launch(player, log_folder=tmp_path) as env:
        assert set(env.specs) == {SEEKER, MOVER}
        seeker, mover = env.specs[SEEKER], env.specs[MOVER]
        assert (seeker.team_id, mover.team_id) == (0, 1)
        assert set(seeker.observation_space.spaces) == {"SeekerVector", "GridSensor"}
        assert seeker.observation_space["GridSensor"].shape == (GRID, GRID, 1)
        assert seeker.action_branches == (5,) and mover.action_space.shape == (1,)
        check_env(env)

        # masks are sparring's (True = allowed): moving off the grid is never allowed
        result = env.reset()
        rng = np.random.default_rng(0)
        for _ in range(50):
            decisions = result[SEEKER].decisions
            cells = np.rint(decisions.obs["SeekerVector"][:, :2] * (GRID - 1))
            mask = decisions.action_mask
            np.testing.assert_array_equal(mask[:, 1], cells[:, 0] > 0)  # left
            np.testing.assert_array_equal(mask[:, 2], cells[:, 0] < GRID - 1)  # right
            assert mask[:, 0].all()  # staying is always allowed
            result = env.step({name: random_actions(env.specs[name], len(part.decisions), part.decisions.action_mask, rng)
                               for name, part in result.items()})
        # two builds: agent ids of build 1 are folded above 2**32
        assert (result[MOVER].decisions.agent_ids >= 2**32).sum() == 4


def test_environment_parameters_and_env_args_reach_the_build(player):
    """--env-args go to the build's command line; environment parameters through the side channel."""
    with launch(player, 1, additional_args=["--agents", "2"], environment_parameters={"seeker_max_steps": 5}) as env:
        result = env.reset()
        assert len(result[SEEKER].decisions) == 2 and len(result[MOVER].decisions) == 2
        lengths, steps = [], Counter(result[SEEKER].decisions.agent_ids.tolist())  # decisions per episode id
        rng = np.random.default_rng(1)
        for _ in range(60):
            result = env.step({name: random_actions(env.specs[name], len(part.decisions), part.decisions.action_mask, rng)
                               for name, part in result.items()})
            steps.update(result[SEEKER].decisions.agent_ids.tolist())
            terminals = result[SEEKER].terminals
            for agent, truncated in zip(terminals.agent_ids, terminals.truncated):
                if truncated:
                    lengths.append(steps[agent])
        assert lengths and set(lengths) == {5}


@pytest.mark.slow
def test_ppo_learns_both_behaviours_of_two_builds(player, tmp_path, one_torch_thread, learning_seed, measured):
    """Random play scores about +0.18 (Seeker) and -1.36 (Mover) per episode; the best about +0.98 and -0.14.

    Seeds 0-9: Seekers 0.975 to 0.978, Movers -0.09 to -0.19.
    """
    with launch(player, log_folder=tmp_path) as env:
        returns = train_ppo(env, 50_000, learning_seed)
    measured(**returns)
    assert returns[SEEKER] >= 0.9, returns
    assert returns[MOVER] >= -0.5, returns


@pytest.mark.slow
def test_training_continues_when_a_build_is_killed_mid_run(player, tmp_path, one_torch_thread, learning_seed, measured):
    """Seeds 0-9, with build 0 killed at the third update: Seekers 0.976 to 0.979, Movers -0.16 to -0.25."""
    with launch(player, log_folder=tmp_path, restart_backoff=0.1) as env:
        victim = []

        def kill_once(m, report):
            if m.num_updates == 3:
                victim.append(env.slots[0].env.process.pid)
                os.kill(victim[0], signal.SIGKILL)

        returns = train_ppo(env, 50_000, learning_seed, kill_once)
        assert env.metrics["crashes"] == 1 and env.restarts == 1
        assert env.metrics["lost_agents"] == 8  # the 4 Seekers and 4 Movers of build 0, all mid-episode
        assert "code -9" in env.slots[0].last_failure
        assert env.slots[0].env.process.pid != victim[0] and env.builds_up == 2
    measured(**returns)
    assert returns[SEEKER] >= 0.9 and returns[MOVER] >= -0.5, returns


def test_a_build_that_keeps_crashing_stops_training_after_max_restarts(player):
    env = launch(player, 1, additional_args=["--crash-after-steps", "5"], max_restarts=2, restart_backoff=0.05,
                 timeout_wait=10)
    result = env.reset()
    rng = np.random.default_rng(0)
    with pytest.raises(EngineFailure, match=r"engine slot 0 failed 3 times, more than max_restarts=2.*code 3"):
        for _ in range(100):
            result = env.step({name: random_actions(env.specs[name], len(part.decisions), part.decisions.action_mask, rng)
                               for name, part in result.items()})
    assert env.metrics["crashes"] == 3 and env.restarts == 2
    assert env._closed


def test_a_hung_build_times_out_and_is_replaced(player):
    with launch(player, 1, additional_args=["--hang-after-steps", "3"], timeout_wait=3, restart_backoff=0.05) as env:
        result = env.reset()
        rng = np.random.default_rng(0)
        lost = 0
        for _ in range(6):
            result = env.step({name: random_actions(env.specs[name], len(part.decisions), part.decisions.action_mask, rng)
                               for name, part in result.items()})
            lost += sum(len(part.lost) for part in result.values())
        assert env.metrics["timeouts"] == 1 and env.restarts == 1 and lost == 8


def test_a_nan_observation_is_named_and_its_build_replaced(player):
    """mlagents_envs refuses NaN observations; the build counts as misbehaving, the trainer never sees the NaN."""
    with launch(player, 1, additional_args=["--nan-after-steps", "3"], max_restarts=1, restart_backoff=0.05) as env:
        result = env.reset()
        rng = np.random.default_rng(0)
        with pytest.raises(EngineFailure, match="observations provided had NaN values"):
            for _ in range(20):
                result = env.step({name: random_actions(env.specs[name], len(part.decisions),
                                                        part.decisions.action_mask, rng)
                                   for name, part in result.items()})
                for part in result.values():
                    assert np.isfinite(part.decisions.obs if isinstance(part.decisions.obs, np.ndarray)
                                       else part.decisions.obs["SeekerVector"]).all()
        assert env.metrics["invalid_messages"] == 2 and env.restarts == 1


def test_incompatible_build_is_refused_with_ml_agents_error(player):
    with pytest.raises(UnityEnvironmentException, match="communication API version is not compatible"):
        launch(player, 1, additional_args=["--communication-version", "2.0.0"])


def test_unity_action_specs_map_onto_sparring_spaces():
    from gymnasium import spaces
    from mlagents_envs.base_env import ActionSpec, BehaviorSpec, DimensionProperty, ObservationSpec, ObservationType

    from sparring.envs.unity import behaviour_spec

    obs = [ObservationSpec((3,), (DimensionProperty.NONE,), ObservationType.DEFAULT, "v")]
    spec = behaviour_spec("Car?team=2", BehaviorSpec(obs, ActionSpec(0, (3, 2))))
    assert spec.action_space == spaces.MultiDiscrete([3, 2]) and spec.team_id == 2
    hybrid = behaviour_spec("Car", BehaviorSpec(obs, ActionSpec(2, (3,))))
    assert hybrid.is_hybrid and hybrid.action_space == hybrid_space(spaces.Box(-1, 1, (2,), np.float32), spaces.Discrete(3))
    with pytest.raises(ValueError, match="has no actions"):
        behaviour_spec("Idle", BehaviorSpec(obs, ActionSpec(0, ())))


def test_sensors_keep_the_order_unity_sent_them_in_so_an_export_reads_obs_i_from_sensor_i(tmp_path):
    """Unity numbers a model's inputs by its sensors sorted with a culture-aware comparison ("ammo" before
    "Zone"); Python's sort puts "Zone" first, and a policy keyed that way would read each sensor from the
    other's input. The order survives the checkpoint (pickled specs) and reaches the export."""
    import pickle

    import onnx
    from mlagents_envs.base_env import ActionSpec, BehaviorSpec, DimensionProperty, ObservationSpec, ObservationType

    from sparring.agents.policy import BehaviourPolicy
    from sparring.envs.unity import behaviour_spec
    from sparring.export.exporter import export_policy

    sent = [ObservationSpec((2,), (DimensionProperty.NONE,), ObservationType.DEFAULT, "ammo"),
            ObservationSpec((3,), (DimensionProperty.NONE,), ObservationType.DEFAULT, "Zone")]
    spec = pickle.loads(pickle.dumps(behaviour_spec("Guard", BehaviorSpec(sent, ActionSpec(0, (3,))))))
    assert list(spec.observation_components) == ["ammo", "Zone"]
    export_policy(BehaviourPolicy(spec), tmp_path / "guard.onnx", "mlagents")  # verified against onnxruntime
    inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim][1:]
              for i in onnx.load(str(tmp_path / "guard.onnx")).graph.input}
    assert inputs["obs_0"] == [2] and inputs["obs_1"] == [3]


def test_hybrid_actions_travel_both_parts_through_the_protocol(player):
    """Parkers take a throttle and a park/drive choice in one decision; parking is masked at first."""
    with launch(player, 1, additional_args=["--hybrid", "--agents", "3"]) as env:
        parker = env.specs[PARKER]
        assert parker.continuous_space.shape == (1,) and parker.action_branches == (2,)
        check_env(env, steps=60)
        result = env.reset()
        assert (result[PARKER].decisions.action_mask == [[True, False]] * 3).all()
        full_throttle = {"continuous": np.ones((3, 1), np.float32), "discrete": np.zeros(3, np.int64)}
        rng = np.random.default_rng(0)
        for _ in range(3):
            before = result[PARKER].decisions.obs[:, 0]
            actions = {name: random_actions(env.specs[name], 3, part.decisions.action_mask, rng)
                       for name, part in result.items()}
            result = env.step({**actions, PARKER: full_throttle})
            after = result[PARKER].decisions.obs[:, 0]
            np.testing.assert_allclose(after, np.minimum(before + 0.25, 1.0), atol=1e-6)  # the throttle arrived
        assert (result[PARKER].decisions.action_mask).all()


@pytest.mark.slow
def test_ppo_learns_hybrid_actions(player, tmp_path, one_torch_thread, learning_seed, measured):
    """Parkers must steer (continuous) and park (discrete): random play scores about -0.38
    per episode, never parking -0.20, driving to the target and parking there +0.97.

    Seeds 0-9: Parkers 0.92 to 0.95.
    """
    with launch(player, log_folder=tmp_path, additional_args=["--hybrid"]) as env:
        returns = train_ppo(env, 60_000, learning_seed)
    measured(**returns)
    assert returns[PARKER] >= 0.85, returns


def test_a_unity_build_is_a_pettingzoo_parallel_env(player):
    env = UnityEnv(player, base_port=free_ports(), timeout_wait=20, additional_args=["--agents", "2", "--hybrid"])
    parallel = to_parallel_env(env)
    try:
        assert sorted(parallel.possible_agents)[:2] == [f"{MOVER}_{i}" for i in sorted(env.live_agents[MOVER])][:2]
        parallel_api_test(parallel, num_cycles=60)
    finally:
        parallel.close()


def test_a_script_that_forgets_to_close_still_exits(player, tmp_path):
    """mlagents_envs closes builds only after Python joins its threads; sparring closes them before."""
    import subprocess

    script = (f"from sparring.envs.unity import MultiUnityEnv\n"
              f"env = MultiUnityEnv({player!r}, 1, base_port={free_ports()}, timeout_wait=20)\n"
              f"env.reset()\n")
    finished = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]


@pytest.mark.slow
def test_an_ml_agents_config_file_trains_a_build_through_the_cli(
        player, tmp_path, capsys, one_torch_thread, learning_seed, measured):
    """examples/mlagents/standin.yaml, as mlagents-learn takes it, with mlagents-learn's flags.

    Seeds 0-9, mean training return of the first and last summaries (swish, beta and epsilon decaying as
    ML-Agents decays them, trajectories cut at time_horizon 64): Seekers from 0.16-0.28 to 0.84-0.89, Movers
    from -1.29 to -1.44 to -0.29 to -0.33.
    """
    config = Path(__file__).resolve().parents[1] / "examples" / "mlagents" / "standin.yaml"
    results = tmp_path / "results"
    assert main(["train", str(config), "--run-id", "standin", "--results-dir", str(results), "--env", player,
                 "--num-envs", "2", "--base-port", str(free_ports(2)), "--no-graphics", "--time-scale", "10",
                 "--seed", str(learning_seed), "--env-args", "--agents", "3"]) == 0
    err = capsys.readouterr().err
    assert "ignoring ML-Agents settings" not in err  # time_horizon included: trajectories are cut every 64 decisions
    run = results / "standin"
    assert {p.name for p in run.glob("*.onnx")} == {"Seeker_team_0.onnx", "Mover_team_1.onnx"}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    returns = [(row["behaviour"], row["Environment/Cumulative Reward"]) for row in rows
               if "Environment/Cumulative Reward" in row]
    first, last = dict(reversed(returns)), dict(returns)
    measured(first=first, last=last)
    # ML-Agents' slower settings (lr 3e-4, 3 epochs): from random play (about 0.3 and -1.4) most of the way
    assert last[SEEKER] >= 0.75 and last[SEEKER] - first[SEEKER] >= 0.4, (first, last)
    assert last[MOVER] >= -0.5 and last[MOVER] - first[MOVER] >= 0.6, (first, last)
    assert rows[-1]["Engines/Restarts"] == 0
    player_logs = sorted(p.name for p in (run / "engines").glob("*.log"))
    assert player_logs == ["Player-0.log", "Player-1.log"]
    assert "'time_scale': 10.0" in (run / "engines" / "Player-0.log").read_text()


def test_mlagents_messages_are_native_protobuf_built_from_their_embedded_descriptors():
    """No pure-Python protobuf fallback and no downgrade: the messages are modern protobuf's own (upb) classes."""
    from google.protobuf.internal import api_implementation
    from mlagents_envs.communicator_objects.agent_info_pb2 import AgentInfoProto
    from mlagents_envs.communicator_objects.observation_pb2 import PNG, ObservationProto

    from sparring.envs.mlagents_compat import LegacyProtoError, embedded_file_descriptor

    assert api_implementation.Type() == "upb"
    info = AgentInfoProto(id=7, reward=0.5, observations=[ObservationProto(shape=[2], compression_type=PNG)])
    assert AgentInfoProto.FromString(info.SerializeToString()) == info
    assert AgentInfoProto.DESCRIPTOR.full_name == "communicator_objects.AgentInfoProto"
    with pytest.raises(LegacyProtoError, match="no FileDescriptor"):
        embedded_file_descriptor("x = 1\n", "broken_pb2.py")


def test_a_3x_build_s_camera_and_buffer_sensor_arrive_channels_last_and_export_in_unity_s_layout(player, tmp_path):
    """The Spotters (``--visual``) send a PNG camera channels first, as ML-Agents 3.x+ does, and a buffer sensor."""
    from sparring.agents.policy import BehaviourPolicy
    from sparring.export.exporter import export_policy
    import onnxruntime as ort

    env = UnityEnv(player, base_port=free_ports(), timeout_wait=20, additional_args=["--visual", "--agents", "8"])
    try:
        result = env.reset(seed=0)
        spec = env.specs["Spotter"]
        assert list(spec.observation_space) == ["BufferSensor", "CameraSensor"]  # the order Unity sent them in
        assert spec.observation_space["CameraSensor"].shape == (24, 20, 3)
        assert spec.observation_space["BufferSensor"].shape == (4, 3)
        decisions = result["Spotter"].decisions
        camera, entities = decisions.obs["CameraSensor"], decisions.obs["BufferSensor"]
        assert camera.shape == (8, 24, 20, 3) and entities.shape == (8, 4, 3)
        answers = []
        for frame in camera:
            rows, cols = np.nonzero(frame[..., 0])
            assert len(rows) == 16 and np.ptp(rows) == 3 and np.ptp(cols) == 3  # one 4x4 red square
            np.testing.assert_allclose(frame[rows, cols, 1], 0.0)  # no green in it
            green = np.delete(frame[..., 1].reshape(-1), rows * 20 + cols)
            np.testing.assert_allclose(green, 51 / 255)  # green 0.2 everywhere else
            assert not frame[..., 2].any()
            answers.append(int(cols.mean() > 10))  # the right half of a 20-wide frame
        present = np.abs(entities).sum(-1) > 0
        assert (entities[present][:, 2] == 1.0).all()  # present entities end in 1, missing ones are all zero
        rng = np.random.default_rng(0)
        actions = {name: random_actions(env.specs[name], len(step.decisions), step.decisions.action_mask, rng)
                   for name, step in result.items() if name != "Spotter"}
        result = env.step({**actions, "Spotter": np.array(answers)})
        np.testing.assert_array_equal(result["Spotter"].terminals.rewards, 1.0)  # the game saw what we saw
    finally:
        env.close()
    export_policy(BehaviourPolicy(spec), tmp_path / "spotter.onnx", "mlagents")
    session = ort.InferenceSession(str(tmp_path / "spotter.onnx"), providers=["CPUExecutionProvider"])
    shapes = {i.name: i.shape for i in session.get_inputs()}
    # SentisModelParamLoader: CheckRankTwoObsShape (entities, size); CheckVisualObsShape (channels, height, width)
    assert shapes == {"obs_0": ["batch", 4, 3], "obs_1": ["batch", 3, 24, 20], "action_masks": ["batch", 2]}


@pytest.mark.slow
def test_ppo_with_memory_learns_what_a_unity_build_shows_once(player, tmp_path, one_torch_thread, learning_seed,
                                                              measured):
    """Recallers (``--memory``) see a cue at their first decision and must name it at their sixth; the other
    behaviours train alongside without memory. Each Unity episode is a new agent id: memories and sequences
    follow them. Seeds 0-9: 1.0 on every seed (0.5 is chance)."""
    from sparring.export.exporter import export_policy
    import onnxruntime as ort

    with launch(player, log_folder=tmp_path, additional_args=["--memory"]) as env:
        model = PPO(env, seed=learning_seed, n_steps=64, batch_size=256, n_epochs=8, learning_rate=1e-3, gamma=0.95,
                    ent_coef=0.01, behaviour_settings={"Recaller": {"memory": {"memory_size": 32, "sequence_length": 8}}})
        model.learn(40_000)
        recalled = float(evaluate(model, env, 200, seed=1000 + learning_seed)["Recaller"].mean())
    measured(recalled=recalled)
    assert recalled >= 0.9
    export_policy(model.policies["Recaller"], tmp_path / "recaller.onnx", "mlagents")
    inputs = {i.name: i.shape for i in ort.InferenceSession(str(tmp_path / "recaller.onnx")).get_inputs()}
    assert inputs == {"obs_0": ["batch", 3], "action_masks": ["batch", 2], "recurrent_in": ["batch", 1, 32]}
