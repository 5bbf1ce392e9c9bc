"""The stand-in game checked against the peer: godot-rl's own ``GodotEnv`` drives it, then sparring drives it with
the same seed and actions, and both must see the same exchange (spaces, launch flags, observations, rewards, dones).

godot-rl 0.8.2 speaks the Godot RL Agents plugin's current protocol (0.7), godot-rl 0.5.0 the one its godot3 branch
speaks (0.3); each runs in a venv of its own (``make godot-rl-venvs``, which ``make test`` builds), through
tests/godot_rl_peer.py.
"""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ray_cluster import free_port

from sparring.envs.godot_rl.env import GameCommand, GodotRLFleet

ROOT = Path(__file__).parents[1]
GAME = Path(__file__).with_name("godot_rl_game.py")
PEER = Path(__file__).with_name("godot_rl_peer.py")
PEER_VENVS = {"0.7": ".venv-godot-rl", "0.3": ".venv-godot-rl-godot3"}
AGENTS, STEPS = 3, 10


def peer_python(protocol: str) -> Path:
    python = ROOT / PEER_VENVS[protocol] / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{python} is missing: `make godot-rl-venvs` builds it (`make test` does)")
    return python


def exported_game(folder: Path, protocol: str) -> Path:
    """The stand-in as GodotEnv wants an exported game: an executable file with Linux's ``.x86_64`` suffix."""
    flags = [f"--protocol={protocol}", "--actions=hybrid", "--camera", f"--agents={AGENTS}", "--episode_steps=4"]
    if protocol == "0.7":
        flags.append("--policies=a,b")
    game = folder / "game.x86_64"
    game.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(GAME))} {' '.join(flags)} \"$@\"\n")
    game.chmod(0o755)
    return game


def per_agent(result: dict) -> list[dict]:
    """What each agent (by its index in the game) got in one result: observation, reward, done, truncated."""
    agents: list[dict] = [{} for _ in range(AGENTS)]
    for step in result.values():
        obs = step.decisions.obs
        for row, agent in enumerate(step.decisions.agent_ids):
            agents[agent] = {"obs": {key: value[row] for key, value in obs.items()},
                             "reward": float(step.decisions.rewards[row]), "done": False, "truncated": False}
        for row, agent in enumerate(step.terminals.agent_ids):
            agents[agent].update(reward=float(step.terminals.rewards[row]), done=True,
                                 truncated=bool(step.terminals.truncated[row]))
    return agents


def assert_same_obs(ours: list[dict], theirs: list[dict]) -> None:
    for agent, (mine, peer) in enumerate(zip(ours, theirs)):
        assert sorted(mine["obs"]) == sorted(peer), agent
        for key, value in peer.items():
            np.testing.assert_allclose(mine["obs"][key], value, rtol=1e-6, err_msg=f"agent {agent} key {key}")


@pytest.mark.parametrize("protocol", ["0.7", "0.3"])
def test_godot_rl_and_sparring_see_the_same_game(tmp_path, protocol):
    game = exported_game(tmp_path, protocol)
    rng = np.random.default_rng(0)
    plan = [[{"move_x": [round(float(rng.uniform(-1, 1)), 3)], "move_y": int(rng.integers(3))} for _ in range(AGENTS)]
            for _ in range(STEPS)]
    (tmp_path / "actions.json").write_text(json.dumps(plan))
    subprocess.run([str(peer_python(protocol)), str(PEER), str(game), str(free_port()), "7", str(tmp_path / "actions.json"),
                    str(tmp_path / "peer.json")], check=True, timeout=60, capture_output=True)
    peer = json.loads((tmp_path / "peer.json").read_text())
    assert peer["minor_version"] == protocol.split(".")[1] and peer["n_agents"] == AGENTS
    assert peer["action_keys"] == ["move_x", "move_y"]
    assert peer["action_space"] == {"move_x": "Box", "move_y": "Discrete"}

    with GodotRLFleet(1, GameCommand(str(game), action_repeat=2, speedup=4), protocol=protocol, seed=7) as env:
        ours = env.slots[0].game.call("launch_args")[0]
        assert {**ours, "port": None} == {**peer["launch_args"], "port": None}  # the same flags, another port
        names = peer["policy_names"] or ["shared_policy"] * AGENTS  # godot-rl 0.5 has no policy names
        for name, spec in env.specs.items():
            assert [k.name for k in spec.action_keys] == peer["action_keys"]
            for key, box in spec.observation_space.items():
                declared = peer["observation_space"][key]
                assert [list(box.shape), str(box.dtype), float(box.low.min()), float(box.high.max())] == \
                       [declared["shape"], declared["dtype"], declared["low"], declared["high"]]
        assert_same_obs(per_agent(env.reset(seed=7)), peer["reset_obs"])
        ended = 0
        for actions, expected in zip(plan, peer["steps"]):
            batches = {name: {"continuous": np.array([actions[i]["move_x"] for i in rows], np.float32),
                              "discrete": np.array([actions[i]["move_y"] for i in rows])}
                       for name in env.specs for rows in [[i for i in range(AGENTS) if names[i] == name]]}
            agents = per_agent(env.step(batches))
            assert_same_obs(agents, expected["obs"])
            np.testing.assert_allclose([a["reward"] for a in agents], expected["reward"], rtol=1e-6)
            assert [a["done"] for a in agents] == expected["done"]
            truncated = [bool(info.get("TimeLimit.truncated", False)) for info in expected["info"]]
            assert [a["truncated"] for a in agents] == truncated
            ended += sum(expected["done"])
        assert ended >= AGENTS  # 4-step episodes: every agent finished at least one in the 10 steps
