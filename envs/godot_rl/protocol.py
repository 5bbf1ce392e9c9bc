"""The Godot RL Agents plugin's messages as sparring reads and writes them: versions, spaces, observations, actions.

A session, the trainer listening and the game connecting (to port 11008 unless told ``--port=N``)::

    trainer -> game                                         game -> trainer
    {"type": "handshake", "major_version": "0",             (no answer: the game only logs a mismatch)
     "minor_version": "7"}
    {"type": "env_info"}                                    {"type": "env_info", "observation_space": ...,
                                                             "action_space": ..., "n_agents": N,
                                                             "agent_policy_names": [...]}
    {"type": "reset"}                                       {"type": "reset", "obs": [...], "info": [...]}
    {"type": "action", "action": [{key: value}, ...]}       {"type": "step", "obs": [...], "reward": [...],
                                                             "done": [...], "info": [...]}
    {"type": "call", "method": "name"}                      {"type": "call", "returns": [...]}
    {"type": "close"}                                       (the game quits)

Lists hold one entry per training agent, in the game's order. Two versions of it are spoken
(the plugin's ``MAJOR_VERSION.MINOR_VERSION``):

========================  ==============================================  ======================================
                          ``"0.7"``: plugin main branch (Godot 4),        ``"0.3"``: plugin ``godot3`` branch
                          godot-rl >= 0.7                                 (Godot 3.5), godot-rl 0.4-0.5
========================  ==============================================  ======================================
handshake                 ``minor_version`` ``"7"``                       ``"3"``
env_info spaces           a list, one per agent                           one dict that every agent shares
agent_policy_names        one per agent                                   absent: all ``"shared_policy"``
box ``low`` / ``high``    optional keys, default -1 and 1                 absent: -1 and 1
image keys (``"2d"`` in   hex of uint8 bytes: ``Box(0, 255, uint8)``      hex of float16: ``Box(-1, 1, float32)``
the name)
``info``                  a dict per agent in reset and step replies      absent
========================  ==============================================  ======================================

Both forms of env_info are read whatever the version, as godot-rl 0.7 reads them; ``"auto"`` handshakes
as 0.7 (a godot3 game only logs the mismatch) and so serves both, except a godot3 game with image
observations, whose float16 pixels need ``"0.3"`` (the error says so).

What becomes what in sparring:

- each policy name is a behaviour (``team_id`` from an ML-Agents ``?team=N`` suffix); an agent's id is its
  index in the game's list, the same for the whole session;
- a lone ``"obs"`` key is a ``Box`` observation, several keys a ``Dict`` of ``Box``; a ``"discrete"``
  observation of size n is one-hot, ``Box(0, 1, (n,))``;
- continuous action keys are consecutive slices of one ``Box(-1, 1)``, discrete keys are the branches
  (``Discrete`` or ``MultiDiscrete``), both together a :func:`~sparring.spec.hybrid_space`; the keys,
  kinds and sizes in the game's order are ``BehaviourSpec.action_keys``;
- ``done`` ends the agent's episode: a terminal row, truncated only where the agent's info says
  ``"TimeLimit.truncated": true`` (Stable-Baselines3's key, which godot-rl passes through), and a
  decision row with the same observation and reward 0, since the game sends one observation and
  the agent plays on from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from sparring.envs.base import BehaviourStep, DecisionSteps, StepResult, TerminalSteps
from sparring.envs.godot_rl.wire import GameProtocolError
from sparring.spec import ActionKey, Batch, BehaviourSpec, Obs, batch_take, hybrid_space, team_of

PROTOCOLS = ("auto", "0.7", "0.3")
DEFAULT_PORT = 11008
DEFAULT_POLICY = "shared_policy"
TRUNCATED_KEY = "TimeLimit.truncated"


def handshake(protocol: str) -> dict[str, str]:
    """The trainer's first message; ``"auto"`` introduces itself as 0.7."""
    return {"type": "handshake", "major_version": "0", "minor_version": "3" if protocol == "0.3" else "7"}


@dataclass(frozen=True)
class _ObsKey:
    """One observation key: how its values arrive (``"box"``, ``"image"``, ``"discrete"``) and the Box they become."""

    name: str
    kind: str
    box: spaces.Box


@dataclass(frozen=True)
class _Behaviour:
    spec: BehaviourSpec
    rows: np.ndarray  # the game's indices of its agents, ascending: also their agent ids
    obs_keys: tuple[_ObsKey, ...]


class GameLayout:
    """What a game's env_info declared, and the conversions between its messages and sparring's batches.

    Args:
        env_info: the game's env_info message.
        protocol: ``"auto"``, ``"0.7"`` or ``"0.3"``.
        game: how errors name the game.
    """

    def __init__(self, env_info: dict[str, Any], protocol: str, game: str) -> None:
        self.game = game
        self.float16_images = protocol == "0.3"
        where = f"{game}: env_info"
        n = _field(env_info, "n_agents", where)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise GameProtocolError(f"{where}.n_agents: expected a positive integer (training agents), got {n!r}")
        self.n_agents = n
        observation_spaces = _per_agent(env_info, "observation_space", n, where)
        action_spaces = _per_agent(env_info, "action_space", n, where)
        names = env_info.get("agent_policy_names", [DEFAULT_POLICY] * n)
        if not isinstance(names, list) or len(names) != n or not all(isinstance(x, str) and x for x in names):
            raise GameProtocolError(f"{where}.agent_policy_names: expected {n} non-empty strings, got {names!r}")
        first: dict[str, int] = {}
        declared: dict[str, tuple[tuple[_ObsKey, ...], tuple[ActionKey, ...]]] = {}
        for i, name in enumerate(names):
            agent = (self._obs_keys(observation_spaces[i], f"{where}.observation_space[{i}]"),
                     _action_keys(action_spaces[i], f"{where}.action_space[{i}]"))
            if name not in declared:
                first[name], declared[name] = i, agent
            elif agent != declared[name]:
                raise GameProtocolError(f"{where}: agent {i} has other spaces than agent {first[name]}, though both play "
                                        f"policy {name!r}; agents of one policy must observe and act alike")
        self.behaviours = {name: _Behaviour(_spec(name, *agent), _agents_of(names, name), agent[0])
                           for name, agent in declared.items()}
        self.specs = {name: b.spec for name, b in self.behaviours.items()}

    def _obs_keys(self, declared: Any, where: str) -> tuple[_ObsKey, ...]:
        if not isinstance(declared, dict) or not declared:
            raise GameProtocolError(f"{where}: expected an object of observation keys, got {declared!r}")
        return tuple(self._obs_key(str(key), entry, f"{where}[{key!r}]") for key, entry in declared.items())

    def _obs_key(self, key: str, entry: Any, where: str) -> _ObsKey:
        space = _field(entry, "space", where) if isinstance(entry, dict) else None
        if space == "discrete":
            size = _field(entry, "size", where)
            if not _positive(size):
                raise GameProtocolError(f"{where}.size: a discrete observation needs a positive integer size, got {size!r}")
            return _ObsKey(key, "discrete", spaces.Box(0.0, 1.0, (size,), np.float32))
        if space != "box":
            raise GameProtocolError(f"{where}.space: expected 'box' or 'discrete', got {space!r}")
        size = _field(entry, "size", where)
        shape = (size,) if _positive(size) else tuple(size) if _is_shape(size) else None
        if shape is None:
            raise GameProtocolError(f"{where}.size: expected a list of positive integers (the shape), got {size!r}")
        if "2d" in key:
            box = (spaces.Box(-1.0, 1.0, shape, np.float32) if self.float16_images else spaces.Box(0, 255, shape, np.uint8))
            return _ObsKey(key, "image", box)
        low, high = entry.get("low", -1.0), entry.get("high", 1.0)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
            raise GameProtocolError(f"{where}: low {low!r} and high {high!r} must be numbers, low < high")
        return _ObsKey(key, "box", spaces.Box(float(low), float(high), shape, np.float32))

    # -- game -> trainer --------------------------------------------------------

    def reset_result(self, message: dict[str, Any]) -> StepResult:
        """Every agent's first decision, from the reply to ``reset``."""
        obs = self._observations(message, "the reply to 'reset'")
        return {name: BehaviourStep(DecisionSteps(b.rows, obs[name], np.zeros(len(b.rows), np.float32)),
                                    TerminalSteps.empty(b.spec))
                for name, b in self.behaviours.items()}

    def step_result(self, message: dict[str, Any]) -> StepResult:
        """Decisions and ended episodes from the reply to ``action`` (see the module docstring for ``done``)."""
        awaited = "the reply to 'action'"
        obs = self._observations(message, awaited)
        rewards = self._numbers(message, "reward", awaited)
        done = self._flags(message, awaited)
        truncated = done & self._truncated(message, awaited)
        result = {}
        for name, b in self.behaviours.items():
            ended = done[b.rows]
            reward = rewards[b.rows]
            decisions = DecisionSteps(b.rows, obs[name], np.where(ended, np.float32(0), reward))
            terminals = (TerminalSteps(b.rows[ended], batch_take(obs[name], ended), reward[ended], truncated[b.rows][ended])
                         if ended.any() else TerminalSteps.empty(b.spec))
            result[name] = BehaviourStep(decisions, terminals)
        return result

    def _observations(self, message: dict[str, Any], awaited: str) -> dict[str, Obs]:
        where = f"{self.game}: {awaited}: field 'obs'"
        agents = self._list(message, "obs", awaited)
        for i, agent in enumerate(agents):
            if not isinstance(agent, dict):
                raise GameProtocolError(f"{where}[{i}]: expected an object of observation keys, got {agent!r:.80}")
        batches = {}
        for name, b in self.behaviours.items():
            parts = {}
            for key in b.obs_keys:
                missing = [int(i) for i in b.rows if key.name not in agents[i]]
                if missing:
                    raise GameProtocolError(f"{where}[{missing[0]}]: key {key.name!r} is missing (declared in env_info)")
                values = [agents[i][key.name] for i in b.rows]
                parts[key.name] = self._decode(key, values, b.rows, where)
            batches[name] = parts["obs"] if len(parts) == 1 and "obs" in parts else parts
        return batches

    def _decode(self, key: _ObsKey, values: list[Any], rows: np.ndarray, where: str) -> np.ndarray:
        box = key.box
        size = int(np.prod(box.shape))
        if key.kind == "discrete":
            for i, v in zip(rows, values):
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < size:
                    raise GameProtocolError(f"{where}[{i}][{key.name!r}]: expected an integer in [0, {size}), got {v!r:.80}")
            return np.eye(size, dtype=np.float32)[np.asarray(values, np.int64)]
        if key.kind == "image":
            return np.stack([self._pixels(key, v, f"{where}[{i}][{key.name!r}]") for i, v in zip(rows, values)])
        batch = _number_rows(values, size)
        if batch is None:
            for i, v in zip(rows, values):
                if _number_rows([v], size) is None:
                    raise GameProtocolError(f"{where}[{i}][{key.name!r}]: expected {size} numbers (shape "
                                            f"{list(box.shape)}), got {v!r:.80}")
            batch = np.concatenate([_number_rows([v], size) for v in values])  # nested differently, each fits
        bad = ~np.isfinite(batch).all(axis=1)
        if bad.any():
            raise GameProtocolError(f"{where}[{key.name!r}]: non-finite values (NaN or infinity) from agents "
                                    f"{rows[bad].tolist()}")
        return batch.astype(np.float32).reshape(len(values), *box.shape)

    def _pixels(self, key: _ObsKey, value: Any, where: str) -> np.ndarray:
        dtype = np.float16 if self.float16_images else np.uint8
        size = int(np.prod(key.box.shape))
        try:
            raw = bytes.fromhex(value)
        except (TypeError, ValueError):
            raise GameProtocolError(f"{where}: expected a string of hex digits (an image's bytes), "
                                    f"got {value!r:.80}") from None
        if len(raw) != size * np.dtype(dtype).itemsize:
            hint = ("; that is float16 pixels, as the godot3 plugin sends: set protocol '0.3'"
                    if len(raw) == 2 * size and not self.float16_images else "")
            raise GameProtocolError(f"{where}: {len(raw)} bytes for {size} {np.dtype(dtype).name} values of shape "
                                    f"{list(key.box.shape)}{hint}")
        return np.frombuffer(raw, dtype).reshape(key.box.shape).astype(key.box.dtype)

    def _list(self, message: dict[str, Any], field: str, awaited: str) -> list[Any]:
        value = _field(message, field, f"{self.game}: {awaited}")
        if not isinstance(value, list) or len(value) != self.n_agents:
            got = f"{len(value)} entries" if isinstance(value, list) else repr(value)[:80]
            raise GameProtocolError(f"{self.game}: {awaited}: field {field!r}: expected a list of {self.n_agents} "
                                    f"(one per agent), got {got}")
        return value

    def _numbers(self, message: dict[str, Any], field: str, awaited: str) -> np.ndarray:
        values = self._list(message, field, awaited)
        bad = [i for i, v in enumerate(values) if isinstance(v, bool) or not isinstance(v, (int, float))
               or not np.isfinite(v)]
        if bad:
            raise GameProtocolError(f"{self.game}: {awaited}: field {field!r}[{bad[0]}]: expected a finite number, "
                                    f"got {values[bad[0]]!r:.80}")
        return np.asarray(values, np.float32)

    def _flags(self, message: dict[str, Any], awaited: str) -> np.ndarray:
        values = self._list(message, "done", awaited)
        bad = [i for i, v in enumerate(values) if not isinstance(v, bool)]
        if bad:
            raise GameProtocolError(f"{self.game}: {awaited}: field 'done'[{bad[0]}]: expected true or false, got "
                                    f"{values[bad[0]]!r:.80}")
        return np.asarray(values, bool)

    def _truncated(self, message: dict[str, Any], awaited: str) -> np.ndarray:
        if "info" not in message:  # 0.3 sends none
            return np.zeros(self.n_agents, bool)
        infos = self._list(message, "info", awaited)
        bad = [i for i, v in enumerate(infos) if not isinstance(v, dict)]
        if bad:
            raise GameProtocolError(f"{self.game}: {awaited}: field 'info'[{bad[0]}]: expected an object, got "
                                    f"{infos[bad[0]]!r:.80}")
        return np.array([bool(info.get(TRUNCATED_KEY, False)) for info in infos])

    # -- trainer -> game --------------------------------------------------------

    def actions_message(self, actions: dict[str, Batch], deciding: dict[str, int] | None = None) -> dict[str, Any]:
        """The ``action`` message: one object per agent in the game's order, key by key as the game declared them.

        A batch of the wrong shape is the trainer's mistake: ``ValueError`` before anything is sent.
        """
        unknown = set(actions) - set(self.behaviours)
        if unknown:
            raise ValueError(f"actions for unknown behaviours {sorted(unknown)}; this game has {list(self.behaviours)}")
        per_agent: list[dict[str, Any]] = [{} for _ in range(self.n_agents)]
        for name, b in self.behaviours.items():
            if name not in actions:
                raise ValueError(f"actions for behaviour {name!r} missing: its {len(b.rows)} agents decide every step")
            continuous, discrete = _parts(b.spec, actions[name], len(b.rows))
            for row, agent in enumerate(b.rows):
                c = d = 0
                for key in b.spec.action_keys:
                    if key.kind == "continuous":
                        per_agent[agent][key.name] = continuous[row][c:c + key.size]
                        c += key.size
                    else:
                        per_agent[agent][key.name] = discrete[row][d]
                        d += 1
        return {"type": "action", "action": per_agent}


def _spec(name: str, obs_keys: tuple[_ObsKey, ...], action_keys: tuple[ActionKey, ...]) -> BehaviourSpec:
    if len(obs_keys) == 1 and obs_keys[0].name == "obs":
        observation: spaces.Space = obs_keys[0].box
    else:
        observation = spaces.Dict({key.name: key.box for key in obs_keys})
    width = sum(k.size for k in action_keys if k.kind == "continuous")
    branches = [k.size for k in action_keys if k.kind == "discrete"]
    box = spaces.Box(-1.0, 1.0, (width,), np.float32) if width else None
    discrete = (spaces.Discrete(branches[0]) if len(branches) == 1 else spaces.MultiDiscrete(branches)) if branches else None
    action = hybrid_space(box, discrete) if box is not None and discrete is not None else box or discrete
    return BehaviourSpec(name, observation, action, team_of(name), action_keys)


def _agents_of(names: list[str], name: str) -> np.ndarray:
    """The indices of the agents that play ``name``: their ids in every result, shared, so read-only."""
    rows = np.flatnonzero(np.asarray(names) == name).astype(np.int64)
    rows.flags.writeable = False
    return rows


def _action_keys(declared: Any, where: str) -> tuple[ActionKey, ...]:
    if not isinstance(declared, dict) or not declared:
        raise GameProtocolError(f"{where}: expected an object of action keys, got {declared!r:.80}")
    keys = []
    for key, entry in declared.items():
        at = f"{where}[{key!r}]"
        kind = _field(entry, "action_type", at) if isinstance(entry, dict) else None
        if kind not in ("continuous", "discrete"):
            raise GameProtocolError(f"{at}.action_type: expected 'continuous' or 'discrete', got {kind!r}")
        size = _field(entry, "size", at)
        if not _positive(size):
            raise GameProtocolError(f"{at}.size: expected a positive integer, got {size!r}")
        keys.append(ActionKey(str(key), kind, size))
    return tuple(keys)


def _parts(spec: BehaviourSpec, batch: Batch, n: int) -> tuple[list, list]:
    """A behaviour's action batch as per-row Python lists: continuous values, discrete branch choices."""
    if spec.is_hybrid:
        continuous, discrete = batch["continuous"], batch["discrete"]
    elif spec.is_continuous:
        continuous, discrete = batch, np.zeros((n, 0))
    else:
        continuous, discrete = np.zeros((n, 0)), batch
    width = spec.continuous_space.shape[0] if spec.continuous_space is not None else 0
    continuous = np.asarray(continuous, np.float32)
    discrete = np.asarray(discrete, np.int64)
    if continuous.size != n * width or len(continuous) != n or discrete.size != n * len(spec.action_branches) \
            or len(discrete) != n:
        raise ValueError(f"actions for behaviour {spec.name!r}: expected {n} rows (one per agent) of {width} continuous "
                         f"values and {len(spec.action_branches)} discrete choices, got shapes {continuous.shape} "
                         f"and {discrete.shape}")
    return continuous.reshape(n, width).tolist(), discrete.reshape(n, -1).tolist()


def _number_rows(values: list[Any], size: int) -> np.ndarray | None:
    """``values`` as ``(len(values), size)`` float64, or ``None`` where they are not that many numbers each."""
    try:
        return np.asarray(values, np.float64).reshape(len(values), size)
    except (ValueError, TypeError):
        return None


def _per_agent(env_info: dict[str, Any], field: str, n: int, where: str) -> list[Any]:
    """A space field as one entry per agent: 0.7's list, or 0.3's one dict shared by all."""
    value = _field(env_info, field, where)
    if isinstance(value, dict):
        return [value] * n
    if not isinstance(value, list) or len(value) != n:
        raise GameProtocolError(f"{where}.{field}: expected one object for every agent or a list of {n} (n_agents), "
                                f"got {value!r:.80}")
    return value


def _field(message: Any, key: str, where: str) -> Any:
    if not isinstance(message, dict) or key not in message:
        raise GameProtocolError(f"{where}: field {key!r} is missing")
    return message[key]


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(map(_positive, value))


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
