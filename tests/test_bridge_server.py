"""Bridge server: handshakes over both transports, and every bad engine refused with a clear reason.

Engines here are the Python SDK (or raw sockets) in threads of the test process,
talking to the server over real loopback sockets.
"""

import socket
import struct
import threading

import numpy as np
import pytest
from gymnasium import spaces

from sparring.envs.base import BehaviourStep, DecisionSteps, TerminalSteps, check_env
from sparring.envs.bridge.codec import ProtocolError
from sparring_engine import spec_to_proto
from sparring.envs.bridge.env import BridgeEnv
from sparring.envs.bridge.server import (
    BridgeServer,
    EngineError,
    InvalidFrame,
    SessionClosed,
    SessionTimeout,
    UnexpectedMessage,
)
from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.protos.wire import PROTOCOL_VERSION
from sparring.spec import BehaviourSpec

import sparring_engine as se
from engine_threads import play_in_thread, port_of

pytestmark = pytest.mark.timeout(60)

TRANSPORTS = ["grpc", "tcp"]
SPEC = BehaviourSpec("Walker", spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(4))


class TinyGame:
    """Three walkers; ``bad`` swaps in a broken observation at reset (shape or NaN)."""

    specs = {"Walker": SPEC}

    def __init__(self, bad: str | None = None):
        self.bad = bad

    def _result(self, obs=None):
        ids = np.array([0, 1, 2], np.int64)
        obs = np.zeros((3, 3), np.float32) if obs is None else obs
        return {"Walker": BehaviourStep(DecisionSteps(ids, obs, np.zeros(3, np.float32)), TerminalSteps.empty(SPEC))}

    def reset(self, seed):
        if self.bad == "shape":
            return self._result(np.zeros((3, 4), np.float32))
        if self.bad == "nan":
            obs = np.zeros((3, 3), np.float32)
            obs[1, 2] = np.nan
            return self._result(obs)
        if self.bad == "terminals":  # reports an episode the Reset cut off
            result = self._result()
            result["Walker"].terminals = TerminalSteps(np.array([0]), np.zeros((1, 3), np.float32),
                                                       np.zeros(1, np.float32), np.ones(1, bool))
            return result
        return self._result()

    def step(self, actions):
        assert actions["Walker"].shape == (3,)
        return self._result()


@pytest.fixture
def server():
    with BridgeServer(handshake_timeout=2.0) as s:
        yield s


def raw_tcp(server: BridgeServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5)
    sock.settimeout(5)
    return sock


def read_trainer_frame(sock: socket.socket) -> pb.TrainerMessage:
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        assert chunk, "the server closed the connection without answering"
        header += chunk
    (size,) = struct.unpack("<I", header)
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return pb.TrainerMessage.FromString(data)


def assert_closed(sock: socket.socket) -> None:
    try:
        assert sock.recv(1) == b""
    except ConnectionResetError:
        pass


def assert_still_serving(server: BridgeServer, transport: str = "tcp") -> None:
    options = se.BridgeOptions(port_of(server, transport), transport=transport)
    thread, raised = play_in_thread(TinyGame(), options, "tiny")
    env = BridgeEnv(server.accept(timeout=10), step_timeout=10)
    check_env(env, steps=5)
    env.close()
    thread.join(10)
    assert not thread.is_alive() and not raised


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_handshake_hands_the_trainer_a_session_with_the_declared_specs(transport):
    with BridgeServer(seed=7, environment_parameters={"gravity": 9.8}) as server:
        options = se.BridgeOptions(port_of(server, transport), transport=transport)
        with se.EngineConnection(options) as conn:
            welcome = conn.hello(TinyGame.specs, action_masks=(), engine_name="tiny")
            session = server.accept(timeout=5)
            assert welcome.protocol_version == PROTOCOL_VERSION == 3 and welcome.seed == 7
            assert not welcome.recording  # a training session: the trainer sends the actions
            assert dict(welcome.environment_parameters) == {"gravity": pytest.approx(9.8)}
            assert session.transport == transport and session.engine_name == "tiny"
            assert session.specs == {"Walker": SPEC} and session.masked == frozenset()
            session.close("done")
            assert conn.receive().close.reason == "done"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_session_steps_lock_step_and_passes_check_env(server, transport):
    options = se.BridgeOptions(port_of(server, transport), transport=transport)
    thread, raised = play_in_thread(TinyGame(), options, "tiny")
    env = BridgeEnv(server.accept(timeout=10), step_timeout=10)
    check_env(env, steps=20)
    env.close()
    thread.join(10)
    assert not thread.is_alive() and not raised  # Close ends the engine's loop cleanly


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_or_missing_token_is_refused_without_echoing_it(transport):
    with BridgeServer(token="correct-horse") as server:
        for given, reason in (("battery-staple", "wrong auth token"), ("", "missing auth token")):
            options = se.BridgeOptions(port_of(server, transport), transport=transport, token=given)
            with se.EngineConnection(options) as conn, pytest.raises(se.TrainerRefused, match=reason) as refused:
                conn.hello(TinyGame.specs)
            assert "correct-horse" not in str(refused.value)
            assert not given or given not in str(refused.value)
        options = se.BridgeOptions(port_of(server, transport), transport=transport, token="correct-horse")
        with se.EngineConnection(options) as conn:
            conn.hello(TinyGame.specs)
            assert server.accept(timeout=5).engine_name
        assert server.stats["refused"] == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("version", [0, 4])
def test_unknown_protocol_version_is_refused(server, transport, version):
    with se.EngineConnection(se.BridgeOptions(port_of(server, transport), transport=transport)) as conn:
        conn.send(pb.EngineMessage(hello=pb.Hello(protocol_version=version)))
        answer = conn.receive()
    assert answer.refusal.reason == f"unsupported protocol version {version}; this trainer speaks 1 to 3"
    assert_still_serving(server, transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_version_1_engine_is_welcomed_with_version_1_and_steps(server, transport):
    """Versions 2 and 3 only added fields: an engine written for version 1 still trains, and is told the session's
    version."""
    with se.EngineConnection(se.BridgeOptions(port_of(server, transport), transport=transport)) as conn:
        hello = se.hello_message(TinyGame.specs, engine_name="old")
        hello.protocol_version = 1
        conn.send(pb.EngineMessage(hello=hello))
        assert conn.receive().welcome.protocol_version == 1
        env = BridgeEnv(server.accept(timeout=5), step_timeout=10, environment_parameters={"speed": 2.0})
        assert env.session.protocol_version == 1
        game = TinyGame()
        env.send_reset(seed=1)
        assert dict(conn.receive().reset.environment_parameters) == {"speed": 2.0}
        conn.send(se.serialize_observations(0, TinyGame.specs, game.reset(1)))
        result = env.receive()
        assert result["Walker"].decisions.group_ids.tolist() == [0, 0, 0] and env.drain_stats() == {}
        env.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invalid_specs_are_refused_naming_the_field(server, transport):
    hello = pb.Hello(protocol_version=1)
    hello.behaviours.add(name="Walker").observations.add(name="obs", space=pb.BoxSpace(shape=[3], dtype=pb.FLOAT32))
    with se.EngineConnection(se.BridgeOptions(port_of(server, transport), transport=transport)) as conn:
        conn.send(pb.EngineMessage(hello=hello))  # no action space declared
        answer = conn.receive()
    assert "hello.behaviours[0].action" in answer.refusal.reason
    assert_still_serving(server, transport)


def test_first_message_must_be_hello(server):
    sock = raw_tcp(server)
    payload = pb.EngineMessage(observations=pb.Observations()).SerializeToString()
    sock.sendall(struct.pack("<I", len(payload)) + payload)
    assert read_trainer_frame(sock).refusal.reason == "the first message must be Hello, got observations"
    assert_closed(sock)
    sock.close()


def test_malformed_frame_is_answered_with_an_error_and_the_server_keeps_serving(server):
    sock = raw_tcp(server)
    sock.sendall(struct.pack("<I", 6) + b"\xff\xff\xff\xff\xff\xff")
    answer = read_trainer_frame(sock)
    assert answer.error.field == "frame" and "malformed frame" in answer.error.message
    assert_closed(sock)
    sock.close()
    assert_still_serving(server)


def test_oversized_frame_is_refused_naming_its_size_and_the_limit():
    with BridgeServer(max_message_bytes=1024) as server:
        sock = raw_tcp(server)
        sock.sendall(struct.pack("<I", 1_000_000))  # the server must not wait for (or allocate) the body
        answer = read_trainer_frame(sock)
        assert "1000000 bytes" in answer.error.message and "1024 bytes" in answer.error.message
        assert_closed(sock)
        sock.close()
        assert_still_serving(server)


def test_oversized_observations_after_the_handshake_end_only_that_session():
    big = BehaviourSpec("Walker", spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(4))

    class Flood(TinyGame):
        def reset(self, seed):
            n = 200  # 200 * 3 floats: over the 1 KiB limit
            ids = np.arange(n, dtype=np.int64)
            return {"Walker": BehaviourStep(DecisionSteps(ids, np.zeros((n, 3), np.float32), np.zeros(n, np.float32)),
                                            TerminalSteps.empty(big))}

    with BridgeServer(max_message_bytes=1024, grpc_port=None) as server:
        thread, raised = play_in_thread(Flood(), se.BridgeOptions(server.tcp_port, transport="tcp"), "tiny")
        env = BridgeEnv(server.accept(timeout=10), step_timeout=10)
        with pytest.raises(InvalidFrame, match="exceeds the limit of 1024 bytes"):
            env.reset(seed=0)
        thread.join(10)
        assert isinstance(raised[0], se.TrainerError) and raised[0].field == "frame"
        assert_still_serving(server)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "bad, message",
    [("shape", r"decision_obs\[0\]: expected float32 \(3, 3\), got float32 \[3, 4\]"),
     ("nan", r"decision_obs\[0\]: non-finite values \(NaN or Inf\) in rows \[1\]"),
     ("terminals", r"terminal_ids: the answer to a Reset has no terminals")],
)
def test_wrong_shapes_and_nan_observations_end_the_session_naming_the_field(server, transport, bad, message):
    options = se.BridgeOptions(port_of(server, transport), transport=transport)
    thread, raised = play_in_thread(TinyGame(bad), options, "tiny")
    env = BridgeEnv(server.accept(timeout=10), step_timeout=10)
    with pytest.raises(ProtocolError, match=message) as error:
        env.reset(seed=0)
    field = "observations.behaviours[0]." + ("terminal_ids" if bad == "terminals" else "decision_obs[0]")
    assert error.value.field == field
    thread.join(10)
    # The engine is told which field it got wrong.
    assert isinstance(raised[0], se.TrainerError) and raised[0].field == field
    assert env.session.closed
    assert_still_serving(server, transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_silent_engine_times_out_and_a_departed_one_reads_as_closed(server, transport):
    options = se.BridgeOptions(port_of(server, transport), transport=transport)
    with se.EngineConnection(options) as conn:
        conn.hello(TinyGame.specs)
        session = server.accept(timeout=5)
        with pytest.raises(SessionTimeout, match="did not answer"):
            session.request(pb.TrainerMessage(reset=pb.Reset(seed=1)), timeout=0.3)
        assert session.closed
    with se.EngineConnection(options) as conn:
        conn.hello(TinyGame.specs)
        session = server.accept(timeout=5)
    with pytest.raises(SessionClosed, match="disconnected"):
        session.request(pb.TrainerMessage(reset=pb.Reset(seed=1)), timeout=5)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_engine_error_and_wrong_message_types_raise_session_errors(server, transport):
    options = se.BridgeOptions(port_of(server, transport), transport=transport)
    with se.EngineConnection(options) as conn:
        conn.hello(TinyGame.specs)
        session = server.accept(timeout=5)
        session.send(pb.TrainerMessage(reset=pb.Reset(seed=1)))
        conn.receive()
        conn.send_error("the level failed to load", "reset.seed")
        with pytest.raises(EngineError, match="reported an error at reset.seed: the level failed to load") as error:
            session.receive(timeout=5)
        assert error.value.field == "reset.seed"
    with se.EngineConnection(options) as conn:
        conn.hello(TinyGame.specs)
        session = server.accept(timeout=5)
        session.send(pb.TrainerMessage(reset=pb.Reset(seed=1)))
        conn.receive()
        conn.send(pb.EngineMessage(hello=pb.Hello()))
        with pytest.raises(UnexpectedMessage, match="sent hello where observations was expected"):
            session.receive(timeout=5)
        told = conn.receive()
        assert (told.error.message, told.error.field) == ("expected observations, got hello", "message")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_empty_message_mid_session_is_answered_with_an_error_naming_what_was_expected(server, transport):
    with se.EngineConnection(se.BridgeOptions(port_of(server, transport), transport=transport)) as conn:
        conn.hello(TinyGame.specs)
        session = server.accept(timeout=5)
        session.send(pb.TrainerMessage(reset=pb.Reset(seed=1)))
        conn.receive()
        conn.send(pb.EngineMessage())
        with pytest.raises(UnexpectedMessage, match="sent an empty EngineMessage where observations was expected"):
            session.receive(timeout=5)
        told = conn.receive()
        assert (told.error.message, told.error.field) == ("expected observations, got an empty EngineMessage", "message")
    assert_still_serving(server, transport)


def raw_grpc_session(server: BridgeServer, payloads: list[bytes]) -> list[pb.TrainerMessage]:
    """Send raw request bytes over a gRPC session (as a broken engine might); every reply until the server ends."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        session = channel.stream_stream("/sparring.v1.Bridge/Session", request_serializer=None,
                                        response_deserializer=pb.TrainerMessage.FromString)
        return list(session(iter(payloads), timeout=5))


def test_bytes_that_are_no_message_get_an_error_over_grpc_too(server):
    """Not gRPC's bare INTERNAL status: an Error naming the problem, at the handshake and mid-session."""
    (reply,) = raw_grpc_session(server, [b"\xff\xff\xff"])
    assert (reply.error.field, reply.error.message) == (
        "message", "malformed message: 3 bytes that do not parse as an EngineMessage")
    hello = pb.EngineMessage(hello=pb.Hello(protocol_version=1, behaviours=[spec_to_proto(SPEC)])).SerializeToString()
    replies = []
    thread = threading.Thread(target=lambda: replies.extend(raw_grpc_session(server, [hello, b"\xff\xff"])))
    thread.start()
    session = server.accept(timeout=5)
    session.send(pb.TrainerMessage(reset=pb.Reset(seed=1)))
    with pytest.raises(InvalidFrame, match="2 bytes that do not parse"):
        session.receive(timeout=5)
    thread.join(5)
    assert [r.WhichOneof("message") for r in replies] == ["welcome", "reset", "error"]
    assert replies[-1].error.field == "message"
    assert_still_serving(server, "grpc")


def test_a_connection_that_never_says_hello_is_dropped():
    with BridgeServer(handshake_timeout=0.5) as server:
        sock = raw_tcp(server)
        assert_still_serving(server)  # meanwhile, others are served
        assert_closed(sock)  # after handshake_timeout, without a word
        sock.close()


def test_listening_beyond_loopback_needs_a_token():
    with pytest.raises(ValueError, match="refusing to listen on 0.0.0.0 without a token.*pass token=.*bind 127.0.0.1"):
        BridgeServer(host="0.0.0.0")
    # and TLS as well: tests/test_bridge_tls.py
    with BridgeServer(host="localhost", grpc_port=None) as server:
        assert server.tcp_port


def test_launch_tokens_route_each_engine_to_its_slot(server):
    server.add_launch_token("slot-a-token")
    server.add_launch_token("slot-b-token")
    connections = []
    for token in ("slot-b-token", "slot-a-token"):
        connections.append(se.EngineConnection(se.BridgeOptions(server.tcp_port, transport="tcp", token=token)))
        connections[-1].hello(TinyGame.specs, engine_name=token)
    assert server.accept(timeout=5, token="slot-a-token").engine_name == "slot-a-token"
    assert server.accept(timeout=5, token="slot-b-token").engine_name == "slot-b-token"
    with pytest.raises(TimeoutError, match="no engine connected within 0.1 s"):
        server.accept(timeout=0.1)
    for conn in connections:
        conn.close()
