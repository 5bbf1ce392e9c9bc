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
from sparring_engine import encode_observations, spec_to_proto
from sparring.envs.bridge.server import BridgeServer
from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.spec import BehaviourSpec

import sparring_engine as se

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


# -- hostile and random Hellos: refused before anything is allocated, over both transports ---------------------


def box(shape, dtype=pb.FLOAT32, low=None, high=None) -> pb.BoxSpace:
    space = pb.BoxSpace(shape=shape, dtype=dtype)
    if low is not None:
        space.low.CopyFrom(pb.Tensor(dtype=pb.FLOAT64, shape=[len(low)], data=np.array(low, "<f8").tobytes()))
    if high is not None:
        space.high.CopyFrom(pb.Tensor(dtype=pb.FLOAT64, shape=[len(high)], data=np.array(high, "<f8").tobytes()))
    return space


def behaviour(name="Walker", obs=None, **action) -> pb.BehaviourSpec:
    declared = pb.BehaviourSpec(name=name, **(action or {"discrete": pb.DiscreteSpace(n=3)}))
    declared.observations.add(name="obs", space=obs if obs is not None else box([4]))
    return declared


HOSTILE = {  # a Hello's behaviours -> the field its refusal must name
    "2**40 discrete actions": ([behaviour(discrete=pb.DiscreteSpace(n=2**40))], "hello.behaviours[0].discrete.n"),
    "2**26 observation values": ([behaviour(obs=box([2**26]))], "hello.behaviours[0].observations[0].space.shape"),
    "2**40 observation values": ([behaviour(obs=box([2**20, 2**20]))], "observations[0].space.shape"),
    "a NaN lower bound": ([behaviour(obs=box([4], low=[float("nan")]))], "observations[0].space.low"),
    "low above high": ([behaviour(obs=box([2], low=[1.0, 0.0], high=[0.0, 1.0]))], "observations[0].space.low"),
    "nine dimensions": ([behaviour(obs=box([1] * 9))], "observations[0].space.shape"),
    "65 behaviours": ([behaviour(name=f"b{i}") for i in range(65)], "hello.behaviours"),
    "2**20 continuous actions": ([behaviour(continuous=box([2**20]))], "hello.behaviours[0].continuous.shape"),
    "2**17 multi-discrete actions": ([behaviour(multi_discrete=pb.MultiDiscreteSpace(nvec=[2**16, 2**16]))],
                                     "hello.behaviours[0].multi_discrete.nvec"),
    "a 1000-character name": ([behaviour(name="x" * 1000)], "hello.behaviours[0].name"),
}


def first_answer(port: int, transport: str, message: pb.EngineMessage) -> pb.TrainerMessage:
    with se.EngineConnection(se.BridgeOptions(port, transport=transport, connect_timeout=5)) as conn:
        conn.send(message)
        return conn.receive()


def resident_bytes() -> int:
    return int(next(line for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("VmRSS")).split()[1]) * 1024


@pytest.fixture(scope="module")
def both_transports():
    with BridgeServer(handshake_timeout=2.0) as srv:
        yield srv


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["grpc", "tcp"])
def test_hostile_hellos_are_refused_naming_the_field_before_anything_is_allocated(both_transports, transport):
    port = both_transports.grpc_port if transport == "grpc" else both_transports.tcp_port
    before = resident_bytes()
    for what, (behaviours, field) in HOSTILE.items():
        hello = pb.EngineMessage(hello=pb.Hello(protocol_version=1, engine_name="hostile", behaviours=behaviours))
        answer = first_answer(port, transport, hello)
        assert answer.WhichOneof("message") == "refusal", (what, answer)
        assert field in answer.refusal.reason, (what, answer.refusal.reason)
    assert resident_bytes() - before < 100 * 2**20  # 2**26 float32 values alone would be 256 MB
    session_after = first_answer(port, transport, HELLO)
    assert session_after.WhichOneof("message") == "welcome"
    both_transports.accept(timeout=5).close("done")


@st.composite
def random_hellos(draw) -> pb.EngineMessage:
    dims = st.integers(-2, 2**42)
    def space():
        bound = st.one_of(st.none(), st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=3))
        return box(draw(st.lists(dims, max_size=10)), draw(st.integers(0, 9)), draw(bound), draw(bound))
    declared = []
    for i in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["discrete", "multi_discrete", "continuous", None]))
        action = {"discrete": {"discrete": pb.DiscreteSpace(n=draw(st.integers(-1, 2**62)))},
                  "multi_discrete": {"multi_discrete": pb.MultiDiscreteSpace(nvec=draw(st.lists(dims, max_size=5)))},
                  "continuous": {"continuous": space()}, None: {}}[kind]
        spec = pb.BehaviourSpec(name=draw(st.text(max_size=5)), has_action_mask=draw(st.booleans()), **action)
        for _ in range(draw(st.integers(0, 3))):
            spec.observations.add(name=draw(st.text(max_size=3)), space=space())
        declared.append(spec)
    return pb.EngineMessage(hello=pb.Hello(protocol_version=1, behaviours=declared))


@pytest.mark.timeout(300)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hello=random_hellos(), transport=st.sampled_from(["grpc", "tcp"]))
def test_any_hello_gets_a_welcome_or_a_refusal_and_nothing_else(both_transports, hello, transport):
    port = both_transports.grpc_port if transport == "grpc" else both_transports.tcp_port
    answer = first_answer(port, transport, hello)
    assert answer.WhichOneof("message") in ("welcome", "refusal"), answer
    while (session := both_transports.poll()) is not None:
        session.close("fuzz")
