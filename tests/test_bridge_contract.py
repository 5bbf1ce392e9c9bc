"""The bridge keeps what protos/README.md promises an engine author: each promise here is one the docs make.

Engines are real processes (the arena example, or small scripts on the Python SDK) or raw protocol
clients; the trainer side is the real server, env and CLI.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml
from gymnasium import spaces

from sparring.agents import PPO
from sparring.env_config import BridgeEnvConfig
from sparring_engine import spec_to_proto
from sparring.envs.bridge.env import MultiEngineEnv
from sparring.envs.factory import make_env
from sparring.envs.supervision import EngineFailure
from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.spec import BehaviourSpec

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ROOT / "engines" / "python"
ARENA = str(ENGINES / "examples" / "arena.py")

import sparring_engine as se

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_arena(port: int, transport: str, *extra: str) -> subprocess.Popen:
    """An arena engine started by hand, as a person starts a game from the editor."""
    command = [sys.executable, ARENA, "--sparring-port", str(port), "--sparring-transport", transport,
               "--arenas", "2", *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


@pytest.mark.parametrize("transport", ["grpc", "tcp"])
def test_editor_mode_says_where_to_connect_and_whether_a_token_is_needed(transport, capsys):
    port = free_port()
    engine = start_arena(port, transport)
    try:
        config = BridgeEnvConfig(source="bridge", transport=transport, port=port, connect_timeout=30)
        with make_env(config):
            pass
    finally:
        stop(engine)
    err = capsys.readouterr().err
    assert (f"waiting for 1 engine(s) to connect over {transport} to 127.0.0.1:{port}; "
            "no token needed on loopback (any token is accepted)") in err


def test_an_engine_whose_behaviours_differ_from_the_runs_is_refused_saying_how():
    """Refused at its Hello, before any Welcome, with what differs; the run goes on with its engine."""
    with MultiEngineEnv.launch(sys.executable, 1, [ARENA, "--arenas", "2"], transport="tcp",
                               step_timeout=10) as env:
        runner = env.specs["Runner"]
        box = runner.observation_space
        narrower = BehaviourSpec("Runner", spaces.Box(box.low[:-1], box.high[:-1]), runner.action_space)
        hello = pb.Hello(protocol_version=1, behaviours=[spec_to_proto(narrower, has_action_mask=True),
                                                         spec_to_proto(env.specs["Turret"])])
        env.server.add_launch_token("late")
        hello.auth_token = "late"
        with se.EngineConnection(se.BridgeOptions(env.port, transport="tcp", connect_timeout=5)) as conn:
            conn.send(pb.EngineMessage(hello=hello))
            answer = conn.receive()
        assert answer.WhichOneof("message") == "refusal"
        reason = answer.refusal.reason
        assert reason.startswith("this engine's behaviours differ from the run's: behaviour 'Runner': observation "
                                 "'obs' is float32 [") and "where the run's is float32 [" in reason
        result = env.reset(seed=0)
        assert len(result["Runner"].decisions) > 0


def test_max_message_bytes_is_a_config_key_that_reaches_the_server(tmp_path):
    """An arena engine's first observations (32 arenas) are larger than 2 KB: refused, naming the setting."""
    config = BridgeEnvConfig(source="bridge", executable=ARENA, args=["--arenas", "32"], transport="tcp",
                             max_message_bytes=2048, max_restarts=0, step_timeout=10)
    with pytest.raises(EngineFailure, match=r"exceeds the limit of 2048 bytes \(max_message_bytes\)"):
        with make_env(config, log_dir=tmp_path) as env:
            env.reset(seed=0)



def test_the_config_keys_default_to_the_protocols_own_defaults():
    """The limits are written twice (the env config imports only pydantic, so it cannot import them): they agree."""
    import inspect

    from sparring.envs.bridge.codec import DEFAULT_LIMITS
    from sparring.envs.bridge.server import BridgeServer
    from sparring.protos.wire import DEFAULT_MAX_MESSAGE_BYTES

    options = BridgeEnvConfig(source="bridge", executable="game").server_options()
    assert options["limits"] == DEFAULT_LIMITS
    assert options["max_message_bytes"] == DEFAULT_MAX_MESSAGE_BYTES
    assert options["handshake_timeout"] == inspect.signature(BridgeServer).parameters["handshake_timeout"].default

SILENT_AT_RESET = """
import sys, time
import sparring_engine as se
from sparring.envs.bridge import codec

options = se.from_command_line()
with se.EngineConnection(options) as conn:
    import numpy as np
    from gymnasium import spaces
    from sparring.spec import BehaviourSpec
    conn.hello({{"B": BehaviourSpec("B", spaces.Box(-1, 1, (2,), np.float32), spaces.Discrete(2))}})
    conn.receive()  # the Reset, never answered: a level that never finishes loading
    time.sleep(600)
"""


def test_an_engine_silent_at_its_first_reset_is_dropped_after_reset_timeout(tmp_path):
    """Not after a fixed minute: reset_timeout (by default step_timeout) says how long a Reset may take."""
    script = tmp_path / "silent.py"
    script.write_text(textwrap.dedent(SILENT_AT_RESET.format(engines=str(ENGINES))))
    config = BridgeEnvConfig(source="bridge", executable=str(script), transport="tcp", step_timeout=1.0,
                             max_restarts=0)
    start = time.monotonic()
    with pytest.raises(EngineFailure, match="did not answer in time"):
        with make_env(config, log_dir=tmp_path) as env:
            env.reset(seed=0)
    assert time.monotonic() - start < 15


def test_a_connection_that_never_says_hello_is_dropped_after_handshake_timeout():
    port = free_port()
    config = BridgeEnvConfig(source="bridge", transport="tcp", port=port, handshake_timeout=0.5, connect_timeout=3)
    dropped = []

    def silent_client():
        for _ in range(100):  # the trainer is starting
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    start = time.monotonic()
                    dropped.append(sock.recv(1) == b"" and time.monotonic() - start)
                    return
            except OSError:
                time.sleep(0.05)

    thread = threading.Thread(target=silent_client)
    thread.start()
    start = time.monotonic()
    with pytest.raises(EngineFailure, match=r"no engine connected on tcp port \d+ within 3.0 s"):
        make_env(config)  # nobody completes a handshake: training stops once connect_timeout has passed
    assert time.monotonic() - start < 6
    thread.join(10)
    assert dropped and 0.3 < dropped[0] < 2.0


IGNORES_DISCONNECT = """
import sys, time
sys.path.insert(0, {examples!r})
import arena, sparring_engine as se

try:
    se.run(arena.Arena(arenas=2), se.from_command_line())
except BaseException:
    pass
time.sleep(600)  # a game that keeps running when the trainer goes away
"""


def test_a_trainer_stopped_with_sigterm_takes_its_launched_engines_down(tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text(textwrap.dedent(IGNORES_DISCONNECT.format(examples=str(ENGINES / "examples"))))
    config = {"env": {"source": "bridge", "executable": str(script), "num_envs": 1, "transport": "tcp"},
              "trainer": {"max_steps": 10_000_000, "summary_freq": 1000, "checkpoint_interval": 10_000_000,
                          "hyperparameters": {"n_steps": 16, "batch_size": 64}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    trainer = subprocess.Popen([sys.executable, "-m", "sparring.cli", "train", str(path), "--results-dir",
                                str(tmp_path / "results"), "--run-id", "r"], stderr=subprocess.PIPE, text=True)
    try:
        log = tmp_path / "results" / "r" / "engines" / "slot0-1.log"
        deadline = time.monotonic() + 60
        while not (tmp_path / "results" / "r" / "metrics.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert log.exists(), "the trainer never got going"
        engine_pids = [int(p) for p in subprocess.run(["pgrep", "-f", str(script)], capture_output=True,
                                                      text=True).stdout.split()]
        assert engine_pids
        trainer.send_signal(signal.SIGTERM)
        _, err = trainer.communicate(timeout=30)
        assert trainer.returncode == 1 and "interrupted at step" in err
        time.sleep(0.5)
        assert all(not Path(f"/proc/{pid}").exists() for pid in engine_pids), "a launched engine outlived the trainer"
    finally:
        if trainer.poll() is None:
            trainer.kill()
        subprocess.run(["pkill", "-f", str(script)])


@pytest.mark.timeout(180)
@pytest.mark.parametrize("transport", ["grpc", "tcp"])
def test_after_hostile_hellos_the_trainer_trains_with_the_engine_that_follows(transport):
    """Engines declaring 2**40 actions or 2**26 observation values are refused; the proper one then trains."""
    from test_bridge_fuzz import HOSTILE

    port = free_port()
    answers, engines = [], []

    def engines_arrive():
        for behaviours, _ in HOSTILE.values():
            hello = pb.EngineMessage(hello=pb.Hello(protocol_version=1, behaviours=behaviours))
            with se.EngineConnection(se.BridgeOptions(port, transport=transport, connect_timeout=30)) as conn:
                conn.send(hello)
                answers.append(conn.receive().WhichOneof("message"))
        engines.append(start_arena(port, transport))

    thread = threading.Thread(target=engines_arrive)
    thread.start()
    try:
        config = BridgeEnvConfig(source="bridge", transport=transport, port=port, connect_timeout=60)
        with make_env(config) as env:
            assert answers == ["refusal"] * len(HOSTILE)
            model = PPO(env, seed=0, n_steps=16, batch_size=64, n_epochs=1)
            model.learn(2_000)
            assert model.num_steps >= 2_000 and env.restarts == 0
    finally:
        thread.join(30)
        for engine in engines:
            stop(engine)
