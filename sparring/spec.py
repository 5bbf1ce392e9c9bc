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
ActionSpace = Union[spaces.Discrete, spaces.MultiDiscrete, spaces.Box]


@dataclass(frozen=True)
class BehaviourSpec:
    """What every agent of one behaviour observes and does.

    Args:
        name: the behaviour's name, unique within an env (``"player"``, ``"Striker"``).
        observation_space: a ``Box``, or a ``Dict`` whose values are all ``Box``.
        action_space: ``Discrete`` (start 0), ``MultiDiscrete`` (1-D, start 0) or ``Box``.
        team_id: the team these agents play for in competitive games, if any.
    """

    name: str
    observation_space: ObservationSpace
    action_space: ActionSpace
    team_id: int | None = None

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
        if isinstance(act, spaces.Discrete):
            if int(act.start) != 0:
                raise TypeError(f"behaviour {self.name!r}: Discrete action space must start at 0")
        elif isinstance(act, spaces.MultiDiscrete):
            if act.nvec.ndim != 1 or np.any(act.start != 0):
                raise TypeError(
                    f"behaviour {self.name!r}: MultiDiscrete action space must be 1-D and start at 0"
                )
        elif not isinstance(act, spaces.Box):
            raise TypeError(
                f"behaviour {self.name!r}: action space must be Discrete, MultiDiscrete or Box, "
                f"got {type(act).__name__}"
            )

    @property
    def is_continuous(self) -> bool:
        return isinstance(self.action_space, spaces.Box)

    @property
    def action_branches(self) -> tuple[int, ...]:
        """Sizes of the discrete action branches; empty for continuous actions."""
        act = self.action_space
        if isinstance(act, spaces.Discrete):
            return (int(act.n),)
        if isinstance(act, spaces.MultiDiscrete):
            return tuple(int(n) for n in act.nvec)
        return ()

    @property
    def mask_size(self) -> int:
        """Width of this behaviour's action mask (0 for continuous actions)."""
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


def obs_len(obs: Obs) -> int:
    """Number of agents in a batched observation."""
    if isinstance(obs, dict):
        return len(next(iter(obs.values())))
    return len(obs)


def obs_take(obs: Obs, index: np.ndarray | slice) -> Obs:
    """Rows ``index`` of a batched observation."""
    if isinstance(obs, dict):
        return {k: v[index] for k, v in obs.items()}
    return obs[index]


def obs_concat(parts: list[Obs]) -> Obs:
    """Concatenate batched observations along the agent axis (a single part is returned as it is)."""
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


def empty_actions(spec: BehaviourSpec, n: int = 0) -> np.ndarray:
    """A zero-filled batch of ``n`` actions in the conventions above."""
    act = spec.action_space
    if isinstance(act, spaces.Discrete):
        return np.zeros((n,), np.int64)
    if isinstance(act, spaces.MultiDiscrete):
        return np.zeros((n, len(act.nvec)), np.int64)
    return np.zeros((n, *act.shape), np.float32)
