"""Bridge throughput on loopback: agent-steps per second end to end, per transport, and the decode-only cost.

End to end means a real engine process (the Python engine SDK, ``bridge_engine.py``)
encodes N observations of 64 floats, the trainer decodes and validates them,
encodes N actions of 2 discrete branches, and the engine decodes them; one
round trip per step. With ``godot3-server`` installed, the Godot addon's
throughput scene runs the same way over TCP.

The ML-Agents protocol as shipped, side by side: the trainer-side decode of the
same N observations by ``mlagents_envs`` (``UnityRLOutputProto`` parsing plus
``rpc_utils.steps_from_proto``), and end to end through ``UnityEnvironment`` with
the Unity stand-in player's throughput scene (engines/unity/), which resends one
prebuilt output so that only the protocol is measured.

    python benchmarks/bridge.py [--seconds 3]

Last line: ``bridge agent_steps_per_s_1024=<gRPC> tcp_agent_steps_per_s_1024=<TCP> [godot_agent_steps_per_s_1024=<...>]
mlagents_decode_agent_steps_per_s_1024=<...> speedup_vs_mlagents_1024=<gRPC end to end / ML-Agents decode only>``.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from gymnasium import spaces

from sparring.envs.base import BehaviourStep, DecisionSteps, TerminalSteps
from sparring.envs.bridge.codec import decode_observations
from sparring_engine import encode_observations
from sparring.envs.bridge.env import MultiEngineEnv
from sparring.envs.factory import game_command
from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.envs.unity import UnityEnv  # installs the protobuf compatibility layer mlagents_envs needs
from sparring.spec import BehaviourSpec, empty_actions

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


def decode_only(n: int, seconds: float) -> float:
    """Trainer side alone: parse the serialized message and validate it into numpy arrays."""
    spec = BehaviourSpec("bench", spaces.Box(-1, 1, (OBS,), np.float32), spaces.MultiDiscrete([3, 3]))
    rng = np.random.default_rng(0)
    step = BehaviourStep(DecisionSteps(np.arange(n, dtype=np.int64), rng.uniform(-1, 1, (n, OBS)).astype(np.float32),
                                       np.zeros(n, np.float32)), TerminalSteps.empty(spec))
    raw = pb.EngineMessage(observations=encode_observations(0, {"bench": spec}, {"bench": step})).SerializeToString()
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        message = pb.EngineMessage.FromString(raw)
        decode_observations(message.observations, {"bench": spec}, set())
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
    print(f"loopback, {OBS}-float observations, 2 discrete branches; {options.seconds:.0f} s per cell")
    columns = ["decode only", "gRPC e2e", "TCP e2e"] + (["Godot TCP e2e"] if has_godot else []) + [
        "ML-Agents decode", "ML-Agents e2e", "speedup"]
    print(f"{'N':>6} " + " ".join(f"{c:>16}" for c in columns))
    rows = {}
    for n in SIZES:
        row = [decode_only(n, options.seconds), python_engine("grpc", n, options.seconds),
               python_engine("tcp", n, options.seconds)]
        if has_godot:
            row.append(godot_engine(n, options.seconds))
        mlagents_decode = mlagents_decode_only(n, options.seconds)
        row += [mlagents_decode, mlagents_end_to_end(n, options.seconds), row[1] / mlagents_decode]
        rows[n] = row
        print(f"{n:>6} " + " ".join(f"{v:>16,.0f}" for v in row[:-1]) + f" {row[-1]:>15.1f}x", flush=True)
    print("(agent-steps per second; speedup = sparring gRPC end to end / ML-Agents decode only)")
    final = f"bridge agent_steps_per_s_1024={rows[1024][1]:.0f} tcp_agent_steps_per_s_1024={rows[1024][2]:.0f}"
    if has_godot:
        final += f" godot_agent_steps_per_s_1024={rows[1024][3]:.0f}"
    final += f" mlagents_decode_agent_steps_per_s_1024={rows[1024][-3]:.0f} speedup_vs_mlagents_1024={rows[1024][-1]:.1f}"
    print(final)


if __name__ == "__main__":
    sys.exit(main())
