"""Bridge throughput on loopback: agent-steps per second end to end, per transport, against the transport's floor.

End to end means a real engine process (the Python engine SDK, ``bridge_engine.py``)
encodes N observations of 64 floats, the trainer decodes and validates them,
encodes N actions of 2 discrete branches, and the engine decodes them; one
round trip per step. With ``godot3-server`` installed, the Godot addon's
throughput scene runs the same way over TCP.

Absolute figures measure the machine as much as the bridge (a machine with a
slower loopback measured half of them), so each transport's end-to-end figure is
also given as a fraction of its **floor**: the same two-process layout and the same
bytes each way (a serialized Actions message out, a serialized Observations
message back) with no protocol at all, framed TCP echoed by ``bridge_floor.py``,
or a gRPC stream of raw bytes. The floor's round trips per second times N is the
most a transport could carry here.

Between the two, the **TCP bound**: the real engine against the leanest trainer
conceivable, which sends the same Actions and only views the reply's tensors as
arrays (no env layers, no validation beyond finiteness). What separates the bound
from the floor is the engine SDK's work and the messages themselves; what
separates the end-to-end figure from the bound is the trainer's.

The ML-Agents protocol as shipped, side by side: the trainer-side decode of the
same N observations by ``mlagents_envs`` (``UnityRLOutputProto`` parsing plus
``rpc_utils.steps_from_proto``), and end to end through ``UnityEnvironment`` with
the Unity stand-in player's throughput scene (engines/unity/), which resends one
prebuilt output so that only the protocol is measured. The speedup compares end
to end with end to end.

    python benchmarks/bridge.py [--seconds 3]

Last line: ``bridge agent_steps_per_s_1024=<gRPC> tcp_agent_steps_per_s_1024=<TCP> [godot_agent_steps_per_s_1024=<...>]
grpc_floor_ratio=<gRPC e2e / gRPC floor> tcp_floor_ratio=<TCP e2e / TCP floor>
speedup_vs_mlagents_e2e_1024=<sparring gRPC e2e / ML-Agents e2e>``, all at N = 1024.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
from gymnasium import spaces

from sparring.envs.base import BehaviourStep, DecisionSteps, TerminalSteps
from sparring.envs.bridge.codec import decode_observations, encode_actions, serialize_actions
from sparring.envs.bridge.env import MultiEngineEnv
from sparring.envs.bridge.launcher import GameLauncher, new_token
from sparring.envs.bridge.server import BridgeServer
from sparring.envs.factory import game_command
from sparring.envs.unity import UnityEnv  # installs the protobuf compatibility layer mlagents_envs needs
from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.protos.wire import FRAME_HEADER, read_exactly, read_frame_size, write_frame
from sparring.spec import BehaviourSpec, empty_actions
from sparring_engine import encode_observations

from mlagents_envs.base_env import ActionSpec, ActionTuple, BehaviorSpec, DimensionProperty, ObservationSpec, ObservationType
from mlagents_envs.communicator_objects.agent_info_pb2 import AgentInfoProto
from mlagents_envs.communicator_objects.observation_pb2 import ObservationProto
from mlagents_envs.communicator_objects.unity_rl_output_pb2 import UnityRLOutputProto
from mlagents_envs.rpc_utils import steps_from_proto

HERE = Path(__file__).resolve().parent
SIZES = (1, 64, 1024)
OBS = 64


def end_to_end(env: MultiEngineEnv, seconds: float) -> float:
    """Agent-steps per second of lock-step round trips with valid (all-zero) actions."""
    def zeros(result):
        return {name: empty_actions(env.specs[name], len(part.decisions)) for name, part in result.items()}

    result = env.reset(seed=0)
    for _ in range(20):  # warm up
        result = env.step(zeros(result))
    agents = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        result = env.step(zeros(result))
        agents += sum(len(part.decisions) for part in result.values())
    return agents / (time.perf_counter() - start)


def python_engine(transport: str, n: int, seconds: float) -> float:
    program, args = game_command(str(HERE / "bridge_engine.py"), ["--agents", str(n), "--obs-size", str(OBS)])
    with MultiEngineEnv.launch(program, 1, args, transport=transport, step_timeout=60) as env:
        return end_to_end(env, seconds)


def godot_engine(n: int, seconds: float) -> float:
    args = ["--path", str(HERE.parent / "engines" / "godot" / "example"), "res://checks/throughput.tscn",
            "--agents", str(n), "--obs-size", str(OBS)]
    with MultiEngineEnv.launch("godot3-server", 1, args, transport="tcp", step_timeout=60) as env:
        return end_to_end(env, seconds)


SPEC = BehaviourSpec("bench", spaces.Box(-1, 1, (OBS,), np.float32), spaces.MultiDiscrete([3, 3]))


def messages(n: int) -> tuple[bytes, bytes]:
    """The serialized Observations (engine to trainer) and Actions (trainer to engine) of one step of N agents."""
    rng = np.random.default_rng(0)
    step = BehaviourStep(DecisionSteps(np.arange(n, dtype=np.int64), rng.uniform(-1, 1, (n, OBS)).astype(np.float32),
                                       np.zeros(n, np.float32)), TerminalSteps.empty(SPEC))
    observations = pb.EngineMessage(observations=encode_observations(0, {"bench": SPEC}, {"bench": step}))
    actions = pb.TrainerMessage(actions=encode_actions(0, {"bench": empty_actions(SPEC, n)}))
    return observations.SerializeToString(), actions.SerializeToString()


def tcp_bound(n: int, seconds: float) -> float:
    """Agent-steps per second with the real engine and the leanest trainer conceivable: it sends the same
    Actions and only reads the reply's tensors as arrays (no env layers, no validation beyond finiteness).
    The distance from here to the floor is the engine's and the message format's; from the e2e figure to
    here, the trainer's."""
    server = BridgeServer(tcp_port=0, grpc_port=None)
    program, args = game_command(str(HERE / "bridge_engine.py"), ["--agents", str(n), "--obs-size", str(OBS)])
    launcher, token = GameLauncher(program, args, host="127.0.0.1", transport="tcp"), new_token()
    server.add_launch_token(token)
    launcher.launch(0, server.tcp_port, token)
    try:
        session = server.accept(60, token)
        sock, actions = session._sock, {"bench": empty_actions(SPEC, n)}
        session.request(pb.TrainerMessage(reset=pb.Reset(seed=0)), 60)
        sock.settimeout(None)  # blocking, so that MSG_WAITALL waits for the whole frame
        steps = itertools.count()

        def round_trip() -> None:
            write_frame(sock, serialize_actions(next(steps), actions))
            frame = np.empty(read_frame_size(sock, 1 << 30, None), np.uint8)
            sock.recv_into(frame, len(frame), socket.MSG_WAITALL)
            entry = pb.EngineMessage.FromString(memoryview(frame)).observations.behaviours[0]
            obs = np.frombuffer(entry.decision_obs[0].data, np.float32)
            rewards = np.frombuffer(entry.decision_rewards.data, np.float32)
            assert len(np.frombuffer(entry.decision_ids.data, np.int64)) == n
            assert np.isfinite(obs).all() and np.isfinite(rewards).all()

        return _rate(round_trip, seconds) * n
    finally:
        server.close()
        launcher.close()


def tcp_floor(n: int, seconds: float) -> float:
    """Round trips per second of the step's bytes over framed TCP between this process and an echoing one."""
    reply, request = messages(n)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        child = subprocess.Popen([sys.executable, str(HERE / "bridge_floor.py"), "--transport", "tcp", "--port",
                                  str(listener.getsockname()[1]), "--reply-bytes", str(len(reply))])
        conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    framed = FRAME_HEADER.pack(len(request)) + request

    def round_trip() -> None:
        conn.sendall(framed)
        read_exactly(conn, read_frame_size(conn, 1 << 30, None), None)

    try:
        return _rate(round_trip, seconds)
    finally:
        conn.close()
        child.wait(10)


def grpc_floor(n: int, seconds: float) -> float:
    """Round trips per second of the step's bytes over a gRPC stream of raw bytes, this process serving as the
    trainer does; the loop runs in the server's handler thread, with none of the bridge's hand-offs."""
    reply, request = messages(n)
    rates: list[float] = []

    def session(requests, context):
        next(requests)  # the stream's opening message
        for _ in range(20):  # warm up
            yield request
            next(requests)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            yield request
            next(requests)
            count += 1
        rates.append(count / (time.perf_counter() - start))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=[
        ("grpc.max_receive_message_length", 1 << 30), ("grpc.max_send_message_length", 1 << 30)])
    handler = grpc.stream_stream_rpc_method_handler(session, request_deserializer=None, response_serializer=None)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("floor.Echo", {"Session": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    child = subprocess.Popen([sys.executable, str(HERE / "bridge_floor.py"), "--transport", "grpc", "--port",
                              str(port), "--reply-bytes", str(len(reply))])
    try:
        child.wait(seconds + 60)
        return rates[0]
    finally:
        server.stop(0)


def _rate(round_trip, seconds: float) -> float:
    for _ in range(20):  # warm up
        round_trip()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        round_trip()
        count += 1
    return count / (time.perf_counter() - start)


def decode_only(n: int, seconds: float) -> float:
    """Trainer side alone: parse the serialized message and validate it into numpy arrays."""
    raw, _ = messages(n)
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        message = pb.EngineMessage.FromString(raw)
        decode_observations(message.observations, {"bench": SPEC}, set())
        count += 1
    return count * n / (time.perf_counter() - start)


def mlagents_decode_only(n: int, seconds: float) -> float:
    """ML-Agents' trainer side alone: parse a serialized UnityRLOutputProto and turn it into DecisionSteps."""
    spec = BehaviorSpec([ObservationSpec((OBS,), (DimensionProperty.NONE,), ObservationType.DEFAULT, "obs")],
                        ActionSpec(0, (3, 3)))
    rng = np.random.default_rng(0)
    infos = [AgentInfoProto(id=i, reward=0.0, action_mask=[False] * 6, observations=[ObservationProto(
        shape=[OBS], float_data=ObservationProto.FloatData(data=rng.uniform(-1, 1, OBS).tolist()))]) for i in range(n)]
    raw = UnityRLOutputProto(agentInfos={"bench": UnityRLOutputProto.ListAgentInfoProto(value=infos)}).SerializeToString()
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        output = UnityRLOutputProto.FromString(raw)
        steps_from_proto(output.agentInfos["bench"].value, spec)
        count += 1
    return count * n / (time.perf_counter() - start)


def mlagents_end_to_end(n: int, seconds: float) -> float:
    """Agent-steps per second through ``UnityEnvironment`` (set_actions, step, get_steps) and the stand-in."""
    sys.path.insert(0, str(HERE.parent / "engines" / "unity"))
    from build import build_standin

    with tempfile.TemporaryDirectory() as build_dir, socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
        probe.close()
        player = str(build_standin(build_dir).with_suffix(""))
        env = UnityEnv(player, base_port=port, timeout_wait=60,
                       additional_args=["--scene", "throughput", "--agents", str(n), "--obs-size", str(OBS)])
        unity = env.unity  # ML-Agents' own API, as mlagents-learn uses it
        try:
            zeros = ActionTuple(discrete=np.zeros((n, 2), np.int32))
            for _ in range(20):  # warm up
                unity.set_actions("Bench", zeros)
                unity.step()
            agents = 0
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                unity.set_actions("Bench", zeros)
                unity.step()
                agents += len(unity.get_steps("Bench")[0])
            return agents / (time.perf_counter() - start)
        finally:
            env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per configuration")
    options = parser.parse_args()
    has_godot = shutil.which("godot3-server") is not None
    seconds = options.seconds
    print(f"loopback, {OBS}-float observations, 2 discrete branches; {seconds:.0f} s per cell; agent-steps per second")
    columns = ["gRPC e2e", "gRPC floor", "TCP e2e", "TCP bound", "TCP floor"] + (["Godot TCP e2e"] if has_godot else []) + [
        "decode only", "ML-Agents e2e", "ML-Agents decode"]
    print(f"{'N':>6} " + " ".join(f"{c:>16}" for c in columns))
    rows = {}
    for n in SIZES:
        row = {"grpc": python_engine("grpc", n, seconds), "grpc floor": grpc_floor(n, seconds) * n,
               "tcp": python_engine("tcp", n, seconds), "tcp bound": tcp_bound(n, seconds),
               "tcp floor": tcp_floor(n, seconds) * n}
        if has_godot:
            row["godot"] = godot_engine(n, seconds)
        row |= {"decode": decode_only(n, seconds), "mlagents": mlagents_end_to_end(n, seconds),
                "mlagents decode": mlagents_decode_only(n, seconds)}
        rows[n] = row
        print(f"{n:>6} " + " ".join(f"{v:>16,.0f}" for v in row.values()), flush=True)
    print("\nas fractions:")
    print(f"{'N':>6} {'gRPC / floor':>14} {'TCP / floor':>14} {'TCP bound / floor':>18} {'gRPC / ML-Agents e2e':>22}")
    for n, row in rows.items():
        print(f"{n:>6} {row['grpc'] / row['grpc floor']:>14.2f} {row['tcp'] / row['tcp floor']:>14.2f} "
              f"{row['tcp bound'] / row['tcp floor']:>18.2f} {row['grpc'] / row['mlagents']:>21.1f}x")
    last = rows[1024]
    final = f"bridge agent_steps_per_s_1024={last['grpc']:.0f} tcp_agent_steps_per_s_1024={last['tcp']:.0f}"
    if has_godot:
        final += f" godot_agent_steps_per_s_1024={last['godot']:.0f}"
    final += (f" grpc_floor_ratio={last['grpc'] / last['grpc floor']:.2f} tcp_floor_ratio={last['tcp'] / last['tcp floor']:.2f}"
              f" speedup_vs_mlagents_e2e_1024={last['grpc'] / last['mlagents']:.1f}")
    print(final)


if __name__ == "__main__":
    sys.exit(main())
