"""The Unity stand-in player (engines/unity/) driven by mlagents_envs' own ``UnityEnvironment``.

Every test launches the built stand-in exactly as ``UnityEnvironment`` launches a
Unity build (by file name, on its own port), so what passes here is the real
ML-Agents protocol, communication API 1.5.0.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from sparring.envs import mlagents_compat

mlagents_compat.install()  # before anything from mlagents_envs

from mlagents_envs.base_env import ActionTuple  # noqa: E402
from mlagents_envs.environment import UnityEnvironment  # noqa: E402
from mlagents_envs.exception import (  # noqa: E402
    UnityCommunicatorStoppedException,
    UnityEnvironmentException,
    UnityTimeOutException,
)
from mlagents_envs.side_channel.engine_configuration_channel import EngineConfigurationChannel  # noqa: E402
from mlagents_envs.side_channel.environment_parameters_channel import EnvironmentParametersChannel  # noqa: E402
from unity_harness import DISTUTILS_WARNING, MOVER, SEEKER, build_player, free_ports  # noqa: E402

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings(DISTUTILS_WARNING),
]

AGENTS, GRID = 4, 5  # the player's defaults
SEEKER_LIMIT, MOVER_LIMIT = 30, 20
MOVES = np.array([(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)])  # stay, left, right, down, up


@pytest.fixture(scope="module")
def player(tmp_path_factory) -> str:
    """The file name to give UnityEnvironment: it finds StandIn.x86_64 as it finds a Unity Linux build."""
    return build_player(tmp_path_factory.mktemp("standin"))


@contextmanager
def launch(player: str, *args: str, timeout_wait: int = 20, **kwargs) -> Iterator[UnityEnvironment]:
    env = UnityEnvironment(file_name=player, base_port=free_ports(), no_graphics=True, timeout_wait=timeout_wait,
                           additional_args=list(args), **kwargs)
    try:
        yield env
    finally:
        env.close()


def seeker_cells(vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Own and target cells (x, y), read back from a batch of [0, 1]-scaled SeekerVector observations."""
    cells = np.rint(vector * (GRID - 1)).astype(int)
    return cells[:, :2], cells[:, 2:]


def random_allowed(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row among those the mask allows (True in an ML-Agents mask means NOT allowed)."""
    return np.array([[rng.choice(np.flatnonzero(~row))] for row in mask], dtype=np.int32)


def test_handshake_announces_both_behaviours_with_their_specs(player, tmp_path):
    with launch(player, "--agents", "3", "--grid-size", "6", "-screen-width", "80", "--unknown-flag",
                num_areas=2, log_folder=str(tmp_path)) as env:
        env.reset()
        specs = env.behavior_specs
        assert set(specs) == {SEEKER, MOVER}
        seeker, mover = specs[SEEKER], specs[MOVER]
        assert [(o.name, o.shape) for o in seeker.observation_specs] == [("SeekerVector", (4,)),
                                                                         ("GridSensor", (6, 6, 1))]
        assert seeker.action_spec.discrete_branches == (5,) and seeker.action_spec.continuous_size == 0
        assert [(o.name, o.shape) for o in mover.observation_specs] == [("MoverVector", (2,))]
        assert mover.action_spec.continuous_size == 1 and mover.action_spec.discrete_size == 0
        (seekers, seekers_done), (movers, movers_done) = env.get_steps(SEEKER), env.get_steps(MOVER)
        assert len(seekers) == len(movers) == 3 * 2 and len(seekers_done) == len(movers_done) == 0  # 2 areas
        assert len(set(seekers.agent_id) | set(movers.agent_id)) == 12  # episode ids are unique across behaviours
    assert "connected" in (tmp_path / "Player-0.log").read_text()  # UnityEnvironment passed -logFile


def test_seekers_follow_masks_moves_and_rewards_under_random_allowed_actions(player):
    rng = np.random.default_rng(0)
    expected_cells: dict[int, np.ndarray] = {}  # episode id -> where its last action should have taken it
    steps: dict[int, int] = {}  # episode id -> decisions taken
    ended: set[int] = set()
    outcomes = {"reached": 0, "interrupted": 0}
    with launch(player, seed=3) as env:
        env.reset()
        for _ in range(300):
            seekers, done = env.get_steps(SEEKER)
            assert len(seekers) == AGENTS  # an ended episode is followed by the agent's next one at once

            cells, targets = seeker_cells(done.obs[0])
            for index, agent in enumerate(done.agent_id):
                reached = (cells[index] == targets[index]).all()
                assert (cells[index] == expected_cells[agent]).all()
                assert done.reward[index] == pytest.approx(1.0 if reached else -0.01)
                assert done.interrupted[index] == (not reached)
                assert steps[agent] <= SEEKER_LIMIT if reached else steps[agent] == SEEKER_LIMIT
                outcomes["reached" if reached else "interrupted"] += 1
                ended.add(agent)

            cells, targets = seeker_cells(seekers.obs[0])
            for index, agent in enumerate(seekers.agent_id):
                (x, y), (target_x, target_y) = cells[index], targets[index]
                assert seekers.action_mask[0][index].tolist() == [False, x == 0, x == GRID - 1, y == 0, y == GRID - 1]
                grid = seekers.obs[1][index, :, :, 0]
                assert grid[y, x] == 0.5 and grid[target_y, target_x] == 1.0 and grid.sum() == 1.5
                if agent in steps and agent not in ended:  # an episode going on
                    assert (cells[index] == expected_cells[agent]).all()
                    assert seekers.reward[index] == pytest.approx(-0.01)
                else:  # the first decision of a new episode, under an id never used before
                    assert agent not in steps and seekers.reward[index] == 0.0

            actions = random_allowed(seekers.action_mask[0], rng)
            expected_cells = {agent: cells[i] + MOVES[actions[i, 0]] for i, agent in enumerate(seekers.agent_id)}
            for agent in seekers.agent_id:
                steps[agent] = steps.get(agent, 0) + 1
            env.set_actions(SEEKER, ActionTuple(discrete=actions))
            env.step()
    assert min(outcomes.values()) > 5


def test_movers_steer_and_are_interrupted_after_20_steps(player):
    rng = np.random.default_rng(1)
    with launch(player, seed=4) as env:
        env.reset()
        seen = set(env.get_steps(MOVER)[0].agent_id)
        for step in range(1, 2 * MOVER_LIMIT + 1):
            movers, _ = env.get_steps(MOVER)
            push = rng.uniform(-1.5, 1.5, (AGENTS, 1)).astype(np.float32)  # beyond [-1, 1]: clipped
            expected = {agent: np.clip(position + 0.2 * np.clip(p, -1, 1), -1, 1)
                        for agent, (position, _), p in zip(movers.agent_id, movers.obs[0], push[:, 0])}
            env.set_actions(MOVER, ActionTuple(continuous=push))
            env.step()

            movers, done = env.get_steps(MOVER)
            moved = done if step % MOVER_LIMIT == 0 else movers
            assert set(moved.agent_id) == set(expected)
            for index, agent in enumerate(moved.agent_id):
                position, target = moved.obs[0][index]
                assert position == pytest.approx(expected[agent], abs=1e-6)
                assert moved.reward[index] == pytest.approx(-0.1 * abs(position - target), abs=1e-6)
            if step % MOVER_LIMIT == 0:
                assert len(done) == AGENTS and done.interrupted.all()
                assert not seen & set(movers.agent_id) and (movers.reward == 0).all()
                seen |= set(movers.agent_id)
            else:
                assert len(done) == 0


def test_environment_parameter_sets_the_seekers_step_limit(player):
    parameters = EnvironmentParametersChannel()
    parameters.set_float_parameter("seeker_max_steps", 5)
    stay = ActionTuple(discrete=np.zeros((AGENTS, 1), dtype=np.int32))  # never on the target: it starts elsewhere
    with launch(player, side_channels=[parameters]) as env:
        env.reset()
        first = set(env.get_steps(SEEKER)[0].agent_id)
        for _ in range(4):
            env.set_actions(SEEKER, stay)
            env.step()
            assert len(env.get_steps(SEEKER)[1]) == 0
        env.set_actions(SEEKER, stay)
        env.step()
        seekers, done = env.get_steps(SEEKER)
    assert set(done.agent_id) == first and done.interrupted.all()
    assert len(seekers) == AGENTS and not first & set(seekers.agent_id)


def test_engine_configuration_is_accepted_and_recorded(player, tmp_path):
    engine = EngineConfigurationChannel()
    engine.set_configuration_parameters(width=84, height=84, quality_level=1, time_scale=20.0,
                                        target_frame_rate=-1, capture_frame_rate=60)
    with launch(player, side_channels=[engine], log_folder=str(tmp_path)) as env:
        env.reset()
        env.step()
        assert len(env.get_steps(SEEKER)[0]) == AGENTS
    assert "'time_scale': 20.0" in (tmp_path / "Player-0.log").read_text()


def test_same_seed_plays_the_same_game(player):
    def observations(seed: int) -> list[np.ndarray]:
        with launch(player, seed=seed) as env:
            env.reset()
            for _ in range(MOVER_LIMIT + 5):  # empty actions; the movers' second episodes start too
                env.step()
            return [obs for name in (SEEKER, MOVER) for obs in env.get_steps(name)[0].obs]

    first, again, other = observations(5), observations(5), observations(6)
    assert all((a == b).all() for a, b in zip(first, again))
    assert not all((a == b).all() for a, b in zip(first, other))


def test_incompatible_communication_version_is_refused(player):
    with pytest.raises(UnityEnvironmentException, match="communication API version"):
        UnityEnvironment(file_name=player, base_port=free_ports(), timeout_wait=20,
                         additional_args=["--communication-version", "2.0.0"])


def test_crash_is_reported_within_seconds(player):
    with launch(player, "--crash-after-steps", "3") as env:
        env.reset()
        for _ in range(3):
            env.step()
        process = env._process  # UnityEnvironment keeps no public handle on the player
        started = time.monotonic()
        with pytest.raises((UnityEnvironmentException, UnityCommunicatorStoppedException, UnityTimeOutException)):
            env.step()
        assert time.monotonic() - started < 5
        assert process.poll() == 3


def test_hung_player_times_out_and_is_killed_on_close(player):
    with launch(player, "--hang-after-steps", "2", timeout_wait=2) as env:
        env.reset()
        env.step()
        env.step()
        process = env._process
        with pytest.raises(UnityTimeOutException):
            env.step()
        assert process.poll() is None  # alive, only not answering
    assert process.wait(5) == -9  # close() gave it timeout_wait seconds, then killed it


def test_close_makes_the_player_exit_with_status_0(player):
    env = UnityEnvironment(file_name=player, base_port=free_ports(), timeout_wait=20)
    env.reset()
    env.step()
    process = env._process
    env.close()
    assert process.returncode == 0


TRAINER = """
import os, signal, sys
from sparring.envs import mlagents_compat
mlagents_compat.install()
from mlagents_envs.environment import UnityEnvironment
env = UnityEnvironment(file_name=sys.argv[1], base_port=int(sys.argv[2]), log_folder=sys.argv[3], timeout_wait=20)
env.reset()
env.step()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_player_quits_soon_after_its_trainer_is_killed(player, tmp_path):
    trainer = subprocess.run([sys.executable, "-c", TRAINER, player, str(free_ports()), str(tmp_path)], timeout=30)
    assert trainer.returncode == -9
    log = tmp_path / "Player-0.log"
    deadline = time.monotonic() + 5
    while "lost the trainer" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "lost the trainer" in log.read_text()
