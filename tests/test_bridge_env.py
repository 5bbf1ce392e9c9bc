"""Engines over the bridge as envs: the arena in real processes over both transports, crashing, hanging,
lying, and coming back.
"""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from sparring.envs.base import check_env, check_step_result, random_actions
from sparring.envs.bridge.env import BridgeEnv, EngineFailure, MultiEngineEnv
from sparring.envs.bridge.launcher import GameLauncher
from sparring.envs.bridge.server import BridgeServer
from sparring.envs.vector import split_agent_ids

ENGINES = Path(__file__).resolve().parents[1] / "engines" / "python"
ARENA = str(ENGINES / "examples" / "arena.py")
TRANSPORTS = ["grpc", "tcp"]
ARENAS = 4  # per engine: 8 Runners, 4 Turrets

pytestmark = pytest.mark.timeout(120)


def launch_arenas(tmp_path, transport="tcp", num_engines=2, **options) -> MultiEngineEnv:
    return MultiEngineEnv.launch(
        sys.executable, num_engines, [ARENA, "--arenas", str(ARENAS)],
        transport=transport, log_dir=tmp_path / "logs", headless_args=["--headless"], **options)


def random_step(env, result, rng):
    actions = {name: random_actions(env.specs[name], len(step.decisions), step.decisions.action_mask, rng)
               for name, step in result.items() if len(step.decisions)}
    result = env.step(actions)
    check_step_result(env.specs, result)
    return result


def slots_deciding(result) -> set[int]:
    return {int(s) for step in result.values() for s in split_agent_ids(step.decisions.agent_ids)[0]}


def lost_by_slot(result) -> dict[str, np.ndarray]:
    return {name: step.lost for name, step in result.items() if len(step.lost)}


def step_until(env, result, rng, condition, seconds=30.0):
    """Step with random actions until ``condition(result)``; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition(result):
        assert time.monotonic() < deadline, "condition not reached in time"
        result = random_step(env, result, rng)
    return result


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_arena_engines_pass_check_env(tmp_path, transport):
    with launch_arenas(tmp_path, transport) as env:
        assert set(env.specs) == {"Runner", "Turret"}
        check_env(env, steps=150)
        assert env.metrics["restarts"] == 0
        processes = env.processes
    assert all(p.poll() == 0 for p in processes)  # Close ends them cleanly; nothing is left running


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_single_launched_session_passes_check_env(tmp_path, transport):
    """The launched command line is the documented one: each flag, then its value as a separate argument."""
    with BridgeServer() as server, GameLauncher(sys.executable, [ARENA], transport=transport,
                                                log_dir=tmp_path) as launcher:
        server.add_launch_token("t0k3n")
        port = server.grpc_port if transport == "grpc" else server.tcp_port
        process = launcher.launch(0, port, "t0k3n")
        assert process.command == [sys.executable, ARENA, "--sparring-host", "127.0.0.1", "--sparring-port", str(port),
                                   "--sparring-transport", transport, "--sparring-token", "t0k3n"]
        with BridgeEnv(server.accept(timeout=30, token="t0k3n"), step_timeout=10) as env:
            assert env.session.engine_name == "arena" and env.session.masked == {"Runner"}
            check_env(env, steps=100)
        assert process.wait(10) == 0


def test_agent_ids_are_folded_with_the_slot(tmp_path):
    with launch_arenas(tmp_path) as env:
        result = env.reset(seed=0)
        slot, local = split_agent_ids(result["Runner"].decisions.agent_ids)
        assert sorted(zip(slot.tolist(), local.tolist())) == [(s, i) for s in (0, 1) for i in range(2 * ARENAS)]
        assert result["Runner"].decisions.action_mask.shape == (4 * ARENAS, 5)


def test_killed_engine_agents_are_lost_it_is_relaunched_and_they_rejoin(tmp_path):
    rng = np.random.default_rng(0)
    with launch_arenas(tmp_path, restart_backoff=0.1) as env:
        result = env.reset(seed=0)
        for _ in range(5):
            result = random_step(env, result, rng)
        victim = env.processes[0]
        victim_pid = victim.pid
        os.kill(victim_pid, signal.SIGKILL)
        result = step_until(env, result, rng, lambda r: lost_by_slot(r), seconds=10)
        lost = lost_by_slot(result)
        # Every agent of slot 0 was mid-episode (Turrets included, between their decisions).
        assert lost["Runner"].tolist() == list(range(2 * ARENAS))
        assert lost["Turret"].tolist() == list(range(ARENAS))
        assert slots_deciding(result) == {1}  # not terminals; the other engine plays on
        assert 0 not in split_agent_ids(result["Runner"].terminals.agent_ids)[0]
        assert env.restarts == 1 and env.metrics["crashes"] == 1
        assert env.metrics["lost_agents"] == 3 * ARENAS
        assert "killed by SIGKILL" in env.slots[0].last_failure
        result = step_until(env, result, rng, lambda r: 0 in slots_deciding(r), seconds=30)
        assert env.processes[0].pid != victim_pid and env.engines_up == 2
        for _ in range(5):
            result = random_step(env, result, rng)
            assert slots_deciding(result) == {0, 1}
        assert victim.poll() == -signal.SIGKILL


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_engine_that_stops_answering_times_out_and_is_relaunched(tmp_path, transport):
    rng = np.random.default_rng(1)
    with launch_arenas(tmp_path, transport, step_timeout=1.0, restart_backoff=0.1) as env:
        result = env.reset(seed=0)
        result = random_step(env, result, rng)
        hung = env.processes[1]
        os.kill(hung.pid, signal.SIGSTOP)  # alive, connected, silent
        started = time.monotonic()
        result = step_until(env, result, rng, lambda r: lost_by_slot(r), seconds=10)
        assert time.monotonic() - started < 5
        assert env.metrics["timeouts"] == 1 and env.restarts == 1
        assert "did not answer" in env.slots[1].last_failure
        assert hung.wait(5) == -signal.SIGKILL  # a hung game is killed, not left behind
        assert split_agent_ids(lost_by_slot(result)["Runner"])[0].tolist() == [1] * 2 * ARENAS
        step_until(env, result, rng, lambda r: slots_deciding(r) == {0, 1}, seconds=30)


BROKEN_ENGINE = """
import sys
import numpy as np
sys.path.insert(0, {examples!r})
import sparring_engine as se
from arena import Arena

class Broken(Arena):
    def step(self, actions):
        result = super().step(actions)
        if self.t == 3:
            result["Runner"].decisions.obs[0, 1] = np.nan
        return result

se.run(Broken(arenas=2), se.from_command_line())
"""


def test_invalid_messages_restart_the_engine_until_max_restarts_then_raise(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text(textwrap.dedent(BROKEN_ENGINE.format(examples=str(ENGINES / "examples"))))
    env = MultiEngineEnv.launch(sys.executable, 1, [str(script)], transport="tcp",
                                log_dir=tmp_path / "logs", max_restarts=2, restart_backoff=0.05)
    rng = np.random.default_rng(2)
    result = env.reset(seed=0)
    lost_seen = 0
    with pytest.raises(EngineFailure) as failure:
        for _ in range(100):
            result = random_step(env, result, rng)
            lost_seen += bool(lost_by_slot(result))
    message = str(failure.value)
    assert "engine slot 0 failed 3 times, more than max_restarts=2" in message
    assert "decision_obs[0]: non-finite values (NaN or Inf) in rows [0]" in message
    assert failure.value.slot == 0 and lost_seen == 2
    assert env.metrics["invalid_messages"] == 3 and env.restarts == 2
    assert all(p.poll() is not None for p in env.launcher.processes)  # the env closed itself: nothing left running


def test_a_game_that_exits_before_connecting_is_reported_with_its_exit_code(tmp_path):
    with pytest.raises(EngineFailure, match=r"slot 0 failed 2 times.*exited with code 3 before connecting"):
        MultiEngineEnv.launch(sys.executable, 1, ["-c", "import sys; sys.exit(3)"], transport="tcp",
                              log_dir=tmp_path, max_restarts=1, restart_backoff=0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_editor_mode_waits_for_engines_and_takes_back_one_that_reconnects(tmp_path):
    port = free_port()
    command = [sys.executable, ARENA, "--sparring-transport", "tcp", "--sparring-port", str(port),
               "--sparring-token", "editor-secret", "--arenas", "2"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = None
    try:
        with MultiEngineEnv.listen(1, transport="tcp", port=port, token="editor-secret", connect_timeout=30) as env:
            rng = np.random.default_rng(3)
            result = random_step(env, env.reset(seed=0), rng)
            first.kill()  # the user stops the game in the editor
            result = step_until(env, result, rng, lambda r: lost_by_slot(r), seconds=10)
            second = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            result = step_until(env, result, rng, lambda r: len(r["Runner"].decisions) > 0, seconds=30)
            assert env.restarts == 0 and env.metrics["disconnects"] == 1
        assert second.wait(10) == 0  # editor engines are told Close, never killed
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
