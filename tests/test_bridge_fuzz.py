"""Random and mutated frames thrown at a live bridge server: it refuses them and keeps serving."""

import socket
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparring.envs.base import BehaviourStep, DecisionSteps, TerminalSteps
from sparring.envs.bridge.codec import encode_observations, spec_to_proto
from sparring.envs.bridge.server import BridgeServer
from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.spec import BehaviourSpec

SPEC = BehaviourSpec("Walker", spaces.Box(-1, 1, (4,), np.float32), spaces.Discrete(3))
HELLO = pb.EngineMessage(hello=pb.Hello(protocol_version=1, engine_name="fuzz", behaviours=[spec_to_proto(SPEC)]))
OBS = pb.EngineMessage(observations=encode_observations(0, {"Walker": SPEC}, {"Walker": BehaviourStep(
    DecisionSteps(np.arange(2, dtype=np.int64), np.zeros((2, 4), np.float32), np.zeros(2, np.float32)),
    TerminalSteps.empty(SPEC))}))


def frame(payload: bytes) -> bytes:
    return struct.pack("<I", len(payload)) + payload


@pytest.fixture(scope="module")
def server():
    srv = BridgeServer(grpc_port=None, tcp_port=0, handshake_timeout=0.5, max_message_bytes=1 << 16)
    yield srv
    srv.close()


def send_and_hang_up(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        try:  # the server may hang up first (it refuses a bad frame at once): that is fine
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):  # read whatever the server answers (a Refusal or an Error) until it closes
                pass
        except OSError:
            pass


def drain(server: BridgeServer) -> None:
    """Sessions whose mutated Hello was still valid: ask for a step, which they cannot answer, and drop them."""
    while (session := server.poll()) is not None:
        session.close("fuzz")


def a_proper_engine_still_gets_through(server: BridgeServer) -> None:
    with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5) as sock:
        sock.sendall(frame(HELLO.SerializeToString()))
        session = server.accept(timeout=5)
        (size,) = struct.unpack("<I", sock.recv(4, socket.MSG_WAITALL))
        reply = pb.TrainerMessage.FromString(sock.recv(size, socket.MSG_WAITALL))
        assert reply.WhichOneof("message") == "welcome"
        session.close("done")


def mutate(data: bytes, draw) -> bytes:
    raw = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        i = draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "flip" and raw:
            raw[i] = draw(st.integers(0, 255))
        elif kind == "cut":
            del raw[i:i + draw(st.integers(1, 8))]
        else:
            raw[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(raw)


@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_and_mutated_frames_never_take_the_server_down(server, data):
    choice = data.draw(st.sampled_from(["random bytes", "random frame", "mutated hello", "hello then mutated obs",
                                        "huge length"]))
    if choice == "random bytes":
        payload = data.draw(st.binary(max_size=256))
    elif choice == "random frame":
        payload = frame(data.draw(st.binary(max_size=256)))
    elif choice == "mutated hello":
        payload = mutate(frame(HELLO.SerializeToString()), data.draw)
    elif choice == "hello then mutated obs":
        payload = frame(HELLO.SerializeToString()) + mutate(frame(OBS.SerializeToString()), data.draw)
    else:
        payload = struct.pack("<I", data.draw(st.integers(1 << 16, 2**32 - 1))) + b"\x00" * 16
    send_and_hang_up(server.tcp_port, payload)
    drain(server)


@pytest.mark.timeout(60)
def test_the_server_serves_a_proper_engine_after_the_fuzzing(server):
    time.sleep(0.6)  # let half-open handshakes from the fuzz test time out
    drain(server)
    a_proper_engine_still_gets_through(server)


@pytest.mark.timeout(120)
def test_a_bridge_env_passes_pettingzoos_parallel_api_test(tmp_path):
    """Any bridge env can be handed to other libraries as a ParallelEnv (turrets decide every 3rd tick)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from pettingzoo.test import parallel_api_test

    from sparring.envs.bridge.env import MultiEngineEnv
    from sparring.envs.parallel import to_parallel_env

    arena = Path(__file__).resolve().parents[1] / "engines" / "python" / "examples" / "arena.py"
    with MultiEngineEnv.launch(sys.executable, 1, [str(arena), "--arenas", "1"], log_dir=tmp_path) as env:
        parallel_api_test(to_parallel_env(env), num_cycles=300)
