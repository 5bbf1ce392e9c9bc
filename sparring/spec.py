"""Behaviour specs and batched observation/action helpers shared by every room.

A *behaviour* is a group of agents that share one policy: the same observation
space, the same action space, optionally the same team (DESIGN section 3). These
types are the only vocabulary envs, trainers and exporters need to agree on.

Conventions fixed here, relied on everywhere:
- Observations are a batched ``np.ndarray`` for a ``Box`` space, or a
  ``dict[str, np.ndarray]`` (same keys as the space) for a ``Dict`` of Boxes;
  the first axis is the agent axis.
- Actions are ``int64`` of shape ``(n,)`` for ``Discrete``, ``(n, branches)`` for
  ``MultiDiscrete``, and ``float32`` of shape ``(n, *box.shape)`` for ``Box``.
  *Hybrid* actions (continuous and discrete at once, as Unity ML-Agents allows)
  have a :func:`hybrid_space` ``Dict(continuous=Box, discrete=Discrete|MultiDiscrete)``
  and are batched as ``{"continuous": ..., "discrete": ...}``, each part in the
  convention of its space.
- Action masks are ``bool`` of shape ``(n, sum(branch sizes))``, ``True`` where
  the action is allowed (PettingZoo's convention), branches concatenated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
from gymnasium import spaces

Obs = Union[np.ndarray, dict[str, np.ndarray]]
ObservationSpace = Union[spaces.Box, spaces.Dict]
ActionSpace = Union[spaces.Discrete, spaces.MultiDiscrete, spaces.Box, spaces.Dict]
# A batch is a batched observation or action: an array with the agent axis first,
# or a dict of such arrays (Dict observations, hybrid actions).
Batch = Union[np.ndarray, dict[str, np.ndarray]]
HYBRID_KEYS = ("continuous", "discrete")


def hybrid_space(continuous: spaces.Box, discrete: spaces.Discrete | spaces.MultiDiscrete) -> spaces.Dict:
    """The action space of agents that choose continuous and discrete actions in one decision."""
    return spaces.Dict({"continuous": continuous, "discrete": discrete})


def _discrete_problem(act: spaces.Space) -> str | None:
    if isinstance(act, spaces.Discrete):
        return None if int(act.start) == 0 else "Discrete action space must start at 0"
    if isinstance(act, spaces.MultiDiscrete):
        return None if act.nvec.ndim == 1 and not np.any(act.start != 0) else "MultiDiscrete action space must be 1-D and start at 0"
    return f"expected a Discrete or MultiDiscrete action space, got {type(act).__name__}"


@dataclass(frozen=True)
class ActionKey:
    """One named action of a game whose actions are a dictionary (the Godot RL Agents plugin's
    ``get_action_space()``): ``kind`` ``"continuous"`` (``size`` floats) or ``"discrete"`` (one branch of ``size``).

    The names and their order are the game's: an export for that game lays its outputs out key by key in this order.
    """

    name: str
    kind: str
    size: int


@dataclass(frozen=True)
class BehaviourSpec:
    """What every agent of one behaviour observes and does.

    Args:
        name: the behaviour's name, unique within an env (``"player"``, ``"Striker"``).
        observation_space: a ``Box``, or a ``Dict`` whose values are all ``Box``.
        action_space: ``Discrete`` (start 0), ``MultiDiscrete`` (1-D, start 0) or ``Box``.
        team_id: the team these agents play for in competitive games, if any.
        action_keys: the game's own names for its actions, in its order, where it has them (empty otherwise):
            continuous keys take consecutive slices of the continuous Box in order, discrete keys are the
            discrete branches in order.
    """

    name: str
    observation_space: ObservationSpace
    action_space: ActionSpace
    team_id: int | None = None
    action_keys: tuple[ActionKey, ...] = ()

    def __post_init__(self) -> None:
        obs = self.observation_space
        if isinstance(obs, spaces.Dict):
            bad = [k for k, v in obs.spaces.items() if not isinstance(v, spaces.Box)]
            if bad or not obs.spaces:
                raise TypeError(
                    f"behaviour {self.name!r}: a Dict observation space must hold only Box "
                    f"spaces; keys {bad or '(none)'} are not Box"
                )
        elif not isinstance(obs, spaces.Box):
            raise TypeError(
                f"behaviour {self.name!r}: observation space must be Box or Dict of Box, "
                f"got {type(obs).__name__}"
            )
        act = self.action_space
        if isinstance(act, spaces.Dict):
            if tuple(act.spaces) != HYBRID_KEYS or not isinstance(act["continuous"], spaces.Box):
                raise TypeError(
                    f"behaviour {self.name!r}: a Dict action space is a hybrid one, "
                    f"Dict(continuous=Box, discrete=Discrete|MultiDiscrete); got {act}"
                )
            problem = _discrete_problem(act["discrete"])
        elif isinstance(act, (spaces.Discrete, spaces.MultiDiscrete)):
            problem = _discrete_problem(act)
        elif not isinstance(act, spaces.Box):
            problem = f"action space must be Discrete, MultiDiscrete, Box or hybrid, got {type(act).__name__}"
        else:
            problem = None
        if problem:
            raise TypeError(f"behaviour {self.name!r}: {problem}")
        if self.action_keys:
            self._check_action_keys()

    def _check_action_keys(self) -> None:
        box = self.continuous_space
        continuous = sum(k.size for k in self.action_keys if k.kind == "continuous")
        discrete = tuple(k.size for k in self.action_keys if k.kind == "discrete")
        kinds = {k.kind for k in self.action_keys} - {"continuous", "discrete"}
        if kinds or continuous != (0 if box is None else int(np.prod(box.shape))) or discrete != self.action_branches:
            raise TypeError(f"behaviour {self.name!r}: action keys {self.action_keys} do not describe the action "
                            f"space {self.action_space} (continuous keys' sizes must add up to the Box's, "
                            "discrete keys must be its branches in order)")

    @property
    def is_continuous(self) -> bool:
        """Only continuous actions (a ``Box``)."""
        return isinstance(self.action_space, spaces.Box)

    @property
    def is_hybrid(self) -> bool:
        """Continuous and discrete actions in one decision (see :func:`hybrid_space`)."""
        return isinstance(self.action_space, spaces.Dict)

    @property
    def continuous_space(self) -> spaces.Box | None:
        """The continuous part of the actions, if any."""
        act = self.action_space
        return act["continuous"] if isinstance(act, spaces.Dict) else act if isinstance(act, spaces.Box) else None

    @property
    def discrete_space(self) -> spaces.Discrete | spaces.MultiDiscrete | None:
        """The discrete part of the actions, if any."""
        act = self.action_space
        return act["discrete"] if isinstance(act, spaces.Dict) else None if isinstance(act, spaces.Box) else act

    @property
    def action_branches(self) -> tuple[int, ...]:
        """Sizes of the discrete action branches; empty for continuous actions."""
        act = self.discrete_space
        if isinstance(act, spaces.Discrete):
            return (int(act.n),)
        if isinstance(act, spaces.MultiDiscrete):
            return tuple(int(n) for n in act.nvec)
        return ()

    @property
    def mask_size(self) -> int:
        """Width of this behaviour's action mask (0 without discrete actions)."""
        return int(sum(self.action_branches))

    @property
    def observation_components(self) -> dict[str, spaces.Box]:
        """The observation as named Box components (``{"obs": box}`` for a plain Box)."""
        if isinstance(self.observation_space, spaces.Dict):
            return dict(self.observation_space.spaces)
        return {"obs": self.observation_space}


def group_of(behaviour: str) -> str:
    """The policy a behaviour plays with: its name without an ML-Agents team suffix (``"Striker?team=1"`` ->
    ``"Striker"``). Both teams of a symmetric game share it, as in ML-Agents."""
    return behaviour.partition("?")[0]


def team_of(behaviour: str) -> int | None:
    """The team id in an ML-Agents behaviour name (``"Striker?team=1"`` -> 1), ``None`` without one."""
    _, _, query = behaviour.partition("?")
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "team" and value.lstrip("-").isdigit():
            return int(value)
    return None


def batch_len(batch: Batch) -> int:
    """Number of agents in a batch."""
    if isinstance(batch, dict):
        return len(next(iter(batch.values())))
    return len(batch)


def batch_take(batch: Batch, index: np.ndarray | slice) -> Batch:
    """Rows ``index`` of a batch."""
    if isinstance(batch, dict):
        return {k: v[index] for k, v in batch.items()}
    return batch[index]


def batch_put(batch: Batch, index: np.ndarray | slice | int, rows: Batch) -> None:
    """Write ``rows`` into rows ``index`` of ``batch`` in place."""
    if isinstance(batch, dict):
        for k, v in batch.items():
            v[index] = rows[k]
    else:
        batch[index] = rows


def batch_concat(parts: list[Batch]) -> Batch:
    """Concatenate batches along the agent axis (a single part is returned as it is)."""
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)


def empty_obs(space: ObservationSpace, n: int = 0) -> Obs:
    """A zero-filled batch of ``n`` observations of ``space``."""
    if isinstance(space, spaces.Dict):
        return {k: np.zeros((n, *box.shape), box.dtype) for k, box in space.spaces.items()}
    return np.zeros((n, *space.shape), space.dtype)


def empty_actions(spec: BehaviourSpec, n: int = 0) -> Batch:
    """A zero-filled batch of ``n`` actions in the conventions above."""
    if spec.is_hybrid:
        return {"continuous": _empty_part(spec.continuous_space, n), "discrete": _empty_part(spec.discrete_space, n)}
    return _empty_part(spec.action_space, n)


def _empty_part(act: spaces.Space, n: int) -> np.ndarray:
    if isinstance(act, spaces.Discrete):
        return np.zeros((n,), np.int64)
    if isinstance(act, spaces.MultiDiscrete):
        return np.zeros((n, len(act.nvec)), np.int64)
    return np.zeros((n, *act.shape), np.float32)
