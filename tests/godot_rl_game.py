"""A stand-in for a game made with the Godot RL Agents plugin, written from the plugin's protocol (its ``sync.gd``).

Run as an exported game is run: ``python tests/godot_rl_game.py --port=11008 --env_seed=1 --action_repeat=2``.
It connects to the trainer, reads the handshake, answers env_info, then plays in lock step as the plugin's
Sync node does. Standard library only, so it starts fast and runs under any Python.

The game: every agent walks a plane towards its own target. It observes ``"obs"``: half the offset to the
target (and, with ``--camera``, a 2x2 ``"camera_2d"`` image of the target's quadrant; with ``--quadrant``, the
quadrant's number). Each physics frame
it moves 0.05 per unit of action along x and y; an action is held for ``action_repeat`` frames. Reward: the
distance it closed, plus 1 on reaching the target (within 0.15), which ends the episode; ``--episode_steps``
decisions without reaching it end the episode too (``"TimeLimit.truncated"`` in 0.7's info). An agent whose
episode ended starts a new one before its next action is applied, as plugin games reset on ``needs_reset``.

Flags of the stand-in itself:
    --protocol=0.7|0.3     the plugin's main branch (Godot 4) or its godot3 branch
    --actions=continuous|discrete|hybrid   ``move`` (2 floats); ``move_x``, ``move_y`` (3 choices each);
                           or ``move_x`` (1 float) and ``move_y`` (3 choices)
    --agents=N             training agents (default 2)
    --policies=a,b         policy names, dealt to the agents in turn (0.7 only; default: shared_policy)
    --episode_steps=N      decisions per episode at most (default 25)
    --camera               add the image observation
    --quadrant             add a discrete observation: the quadrant the target is in (0-3)
    --fault=KIND@STEP      misbehave when answering the STEP-th action (1 = the first); KIND: malformed_json,
                           wrong_type, out_of_order, bad_reward, nan_obs, huge_length, disconnect, hang;
                           or bad_env_info (an action type the plugin does not have, in env_info)
    --fault_seed=S         only misbehave when launched with --env_seed=S (its relaunches get other seeds)
"""

from __future__ import annotations

import json
import math
import random
import socket
import struct
import sys
import time

HALF_SIZE = 0.15
SPEED = 0.05


def parse_args(argv: list[str]) -> dict[str, str]:
    """``--key=value`` -> ``{key: value}``, ``--flag`` -> ``{flag: ""}``, as the plugin's ``_get_args``."""
    args = {}
    for arg in argv:
        key, _, value = arg.partition("=")
        args[key.lstrip("-")] = value
    return args


class Agent:
    def __init__(self, rng: random.Random, policy: str) -> None:
        self.rng, self.policy = rng, policy
        self.reset()

    def reset(self) -> None:
        self.x, self.y = self.rng.uniform(-1, 1), self.rng.uniform(-1, 1)
        self.tx, self.ty = self.rng.uniform(-1, 1), self.rng.uniform(-1, 1)
        self.steps, self.needs_reset = 0, False

    def distance(self) -> float:
        return math.hypot(self.tx - self.x, self.ty - self.y)

    def quadrant(self) -> int:
        """Where the target is: 0 left and below, 1 right and below, 2 left and above, 3 right and above."""
        return int(self.tx >= self.x) + 2 * int(self.ty >= self.y)

    def obs(self, camera: bool, quadrant: bool, float16: bool) -> dict:
        obs = {"obs": [0.5 * (self.tx - self.x), 0.5 * (self.ty - self.y)]}
        if camera:
            lit = [i == self.quadrant() for i in range(4)]
            pixels = (struct.pack("<4e", *map(float, lit)) if float16 else bytes(255 * v for v in lit))
            obs["camera_2d"] = pixels.hex()
        if quadrant:
            obs["quadrant"] = self.quadrant()
        return obs


class Game:
    def __init__(self, args: dict[str, str]) -> None:
        self.args = args
        self.protocol = args.get("protocol", "0.7")
        self.kind = args.get("actions", "continuous")
        self.camera = "camera" in args
        self.quadrant = "quadrant" in args
        self.action_repeat = int(args.get("action_repeat", "1"))
        self.episode_steps = int(args.get("episode_steps", "25"))
        rng = random.Random(int(args.get("env_seed", "1")))
        policies = args.get("policies", "shared_policy").split(",")
        self.agents = [Agent(rng, policies[i % len(policies)]) for i in range(int(args.get("agents", "2")))]
        fault, _, at = args.get("fault", "").partition("@")
        armed = "fault_seed" not in args or args["fault_seed"] == args.get("env_seed", "1")
        self.fault, self.fault_step = (fault, int(at)) if fault and armed else (None, 0)
        self.actions_answered = 0
        self.sock = socket.create_connection(("127.0.0.1", int(args.get("port", "11008"))), timeout=30)
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- the wire: Godot's put_string / get_string ------------------------------

    def send(self, message: dict) -> None:
        body = json.dumps(message).encode("ascii")
        self.sock.sendall(struct.pack("<I", len(body)) + body)

    def receive(self) -> dict | None:
        header = self.read(4)
        return None if header is None else json.loads(self.read(struct.unpack("<I", header)[0]))

    def read(self, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                return None  # the trainer went away: the plugin quits
            data += chunk
        return data

    # -- the Sync node ----------------------------------------------------------

    def action_space(self) -> dict:
        continuous = lambda size: {"size": size, "action_type": "continuous"}  # noqa: E731
        discrete = {"size": 3, "action_type": "discrete"}
        return {"continuous": {"move": continuous(2)},
                "discrete": {"move_x": discrete, "move_y": discrete},
                "hybrid": {"move_x": continuous(1), "move_y": discrete}}[self.kind]

    def env_info(self) -> dict:
        obs_space = {"obs": {"size": [2], "space": "box"}}
        if self.camera:
            obs_space["camera_2d"] = {"size": [2, 2, 1], "space": "box"}
        if self.quadrant:
            obs_space["quadrant"] = {"size": 4, "space": "discrete"}
        if self.protocol == "0.3":  # one space for every agent, no policy names
            return {"type": "env_info", "observation_space": obs_space, "action_space": self.action_space(),
                    "n_agents": len(self.agents)}
        return {"type": "env_info", "observation_space": [obs_space] * len(self.agents),
                "action_space": [self.action_space()] * len(self.agents), "n_agents": len(self.agents),
                "agent_policy_names": [agent.policy for agent in self.agents]}

    def observations(self) -> list[dict]:
        return [agent.obs(self.camera, self.quadrant, self.protocol == "0.3") for agent in self.agents]

    def apply(self, actions: list[dict]) -> tuple[list[float], list[bool], list[dict]]:
        assert len(actions) == len(self.agents), f"{len(actions)} actions for {len(self.agents)} agents"
        rewards, dones, infos = [], [], []
        for agent, action in zip(self.agents, actions):
            if agent.needs_reset:
                agent.reset()
            dx, dy = self.movement(action)
            before = agent.distance()
            for _ in range(self.action_repeat):
                agent.x = min(max(agent.x + SPEED * dx, -1.5), 1.5)
                agent.y = min(max(agent.y + SPEED * dy, -1.5), 1.5)
            agent.steps += 1
            reward = before - agent.distance()
            reached = agent.distance() < HALF_SIZE
            timed_out = not reached and agent.steps >= self.episode_steps
            rewards.append(reward + (1.0 if reached else 0.0))
            dones.append(reached or timed_out)
            infos.append({"TimeLimit.truncated": True} if timed_out else {})
            agent.needs_reset = reached or timed_out
        return rewards, dones, infos

    def movement(self, action: dict) -> tuple[float, float]:
        assert set(action) == set(self.action_space()), f"action keys {sorted(action)}"
        clip = lambda v: min(max(float(v), -1.0), 1.0)  # noqa: E731
        choice = lambda v: {0: -1.0, 1: 0.0, 2: 1.0}[v]  # noqa: E731
        if self.kind == "continuous":
            assert len(action["move"]) == 2, action
            return clip(action["move"][0]), clip(action["move"][1])
        if self.kind == "discrete":
            return choice(action["move_x"]), choice(action["move_y"])
        assert len(action["move_x"]) == 1, action
        return clip(action["move_x"][0]), choice(action["move_y"])

    def reply(self, message: dict) -> None:
        if self.protocol == "0.7":
            message.setdefault("info", [{} for _ in self.agents])
        else:
            message.pop("info", None)
        self.send(message)

    def misbehave(self, reply: dict) -> bool:
        """Answer the current action as the fault says; False when there is no fault now."""
        if self.fault is None or self.actions_answered != self.fault_step:
            return False
        if self.fault == "malformed_json":
            body = b'{"type": "step", "obs": [{"obs": [0.1, 0.2]}, '
            self.sock.sendall(struct.pack("<I", len(body)) + body)
        elif self.fault == "wrong_type":
            self.reply({**reply, "type": "steps"})
        elif self.fault == "out_of_order":
            self.send(self.env_info())
        elif self.fault == "bad_reward":
            self.reply({**reply, "reward": ["lots"] + reply["reward"][1:]})
        elif self.fault == "nan_obs":
            reply["obs"][-1]["obs"][0] = float("nan")
            self.reply(reply)
        elif self.fault == "huge_length":
            self.sock.sendall(struct.pack("<I", 0xFFFFFFF0) + b"{")
        elif self.fault == "disconnect":
            self.sock.close()
            sys.exit(3)
        elif self.fault == "hang":
            time.sleep(3600)
        return True

    def run(self) -> None:
        handshake = self.receive()
        assert handshake["type"] == "handshake", handshake
        print(f"handshake: version {handshake['major_version']}.{handshake['minor_version']}", flush=True)
        assert self.receive()["type"] == "env_info"
        info = self.env_info()
        if self.fault == "bad_env_info":
            info["action_space"][0] = {"move": {"size": 2, "action_type": "analog"}}
        self.send(info)
        while (message := self.receive()) is not None:
            if message["type"] == "close":
                return
            if message["type"] == "reset":
                for agent in self.agents:
                    agent.reset()
                self.reply({"type": "reset", "obs": self.observations()})
            elif message["type"] == "call":
                returns = [self.args if message["method"] == "launch_args" else None for _ in self.agents]
                self.send({"type": "call", "returns": returns})
            elif message["type"] == "action":
                rewards, dones, infos = self.apply(message["action"])
                self.actions_answered += 1
                reply = {"type": "step", "obs": self.observations(), "reward": rewards, "done": dones, "info": infos}
                if not self.misbehave(reply):
                    self.reply(reply)
            else:
                print(f"message was not handled: {message['type']!r}", flush=True)


if __name__ == "__main__":
    Game(parse_args(sys.argv[1:])).run()
