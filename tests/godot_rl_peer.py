"""Drive a game with the peer's own trainer side, godot-rl's ``GodotEnv``, and record the exchange as JSON.

Runs in a venv of its own that holds godot-rl (``make godot-rl-venvs``), never in sparring's::

    .venv-godot-rl/bin/python tests/godot_rl_peer.py GAME.x86_64 PORT SEED ACTIONS.json OUT.json

``ACTIONS.json`` holds, per step, one object per agent: action key -> value (a list of floats for a
continuous key, an int for a discrete one). ``OUT.json`` gets what GodotEnv made of the game: its
protocol version, spaces, policy names, the command line it launched the game with (the stand-in's
answer to a ``call`` of ``launch_args``), the reset observations, and every step's observations,
rewards, dones and infos.
"""

import json
import sys

import numpy as np
from godot_rl.core.godot_env import GodotEnv


def plain(value):
    """Observations as JSON: arrays as nested lists."""
    if isinstance(value, dict):
        return {key: plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value.tolist() if isinstance(value, np.ndarray) else value


def main(game: str, port: int, seed: int, actions_path: str, out_path: str) -> None:
    env = GodotEnv(env_path=game, port=port, seed=seed, action_repeat=2, speedup=4)
    action_space = env.action_spaces[0] if hasattr(env, "action_spaces") else env._action_space
    keys = list(action_space.keys())
    record = {
        "minor_version": GodotEnv.MINOR_VERSION,
        "n_agents": env.num_envs,
        "observation_space": {key: {"shape": list(box.shape), "dtype": str(box.dtype), "low": float(box.low.min()),
                                    "high": float(box.high.max())} for key, box in env.observation_space.spaces.items()},
        "action_space": {key: type(space).__name__ for key, space in action_space.items()},
        "action_keys": keys,
        "policy_names": getattr(env, "agent_policy_names", None),
    }
    record["launch_args"] = env.call("launch_args")[0]  # the stand-in answers with its command line
    obs, _ = env.reset()
    record["reset_obs"] = plain(obs)
    record["steps"] = []
    with open(actions_path) as f:
        plan = json.load(f)
    for step in plan:
        # GodotEnv takes one array per action key, agents along its first axis
        batch = [np.array([agent[key] for agent in step]) for key in keys]
        obs, reward, done, _, info = env.step(batch)
        record["steps"].append({"obs": plain(obs), "reward": list(reward), "done": list(done), "info": list(info)})
    env.close()
    with open(out_path, "w") as f:
        json.dump(record, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
