"""What a game declares and hands over each step: spaces, behaviour specs, and batched step results.

These are the engine's own small types, so a game needs nothing of the trainer. They
have the shapes of the trainer's env API (``sparring.envs.base``): a game written
against them is a sparring env. Gymnasium's ``Box``, ``Discrete``, ``MultiDiscrete``
and ``Dict`` spaces are accepted wherever these are, for games that already use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np


@dataclass(frozen=True)
class Box:
    """Values in ``[low, high]`` (scalars or arrays broadcast to ``shape``; +-inf for no bound), as gymnasium's Box."""

    low: Any
    high: Any
    shape: tuple[int, ...]
    dtype: Any = np.float32

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))


@dataclass(frozen=True)
class Discrete:
    """One choice among ``n`` actions, 0 to n-1."""

    n: int


@dataclass(frozen=True)
class MultiDiscrete:
    """One choice per branch, branch ``i`` among ``nvec[i]`` actions."""

    nvec: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "nvec", tuple(int(n) for n in self.nvec))


Space = Any
"""A space of this module or gymnasium's (duck-typed: ``shape``/``low``/``high``/``dtype``, ``n``, or ``nvec``)."""


def _named_parts(space: Space) -> Mapping[str, Any] | None:
    """The named Boxes of a mapping (or gymnasium Dict) space; ``None`` for a single Box."""
    if isinstance(space, Mapping):
        return space
    inner = getattr(space, "spaces", None)  # gymnasium's Dict
    return inner if isinstance(inner, Mapping) else None


def observation_components(space: Space) -> dict[str, Any]:
    """A behaviour's observation as named Boxes: a mapping (or gymnasium Dict) as it is, a single Box as ``"obs"``."""
    parts = _named_parts(space)
    return {"obs": space} if parts is None else dict(parts)


def action_kind(space: Space) -> str:
    """``"multi_discrete"``, ``"discrete"`` or ``"box"``; ``ValueError`` for anything the bridge cannot carry."""
    if hasattr(space, "nvec"):
        return "multi_discrete"
    if hasattr(space, "n"):
        return "discrete"
    if all(hasattr(space, a) for a in ("low", "high", "shape")):
        return "box"
    raise ValueError(f"the bridge protocol (sparring.v1) carries Discrete, MultiDiscrete or Box actions, not hybrid or "
                     f"other ones ({space!r}); declare continuous and discrete parts as two behaviours")


def action_format(space: Space) -> tuple[np.dtype, tuple[int, ...]]:
    """The dtype and per-row shape of one behaviour's actions: int64 (), int64 (branches,), float32 (*shape)."""
    kind = action_kind(space)
    if kind == "discrete":
        return np.dtype(np.int64), ()
    if kind == "multi_discrete":
        return np.dtype(np.int64), (len(np.atleast_1d(space.nvec)),)
    return np.dtype(np.float32), tuple(space.shape)


@dataclass(frozen=True)
class BehaviourSpec:
    """What every agent of one behaviour observes and does.

    Args:
        name: unique within the game (``"Runner"``).
        observation_space: a :class:`Box`, or a mapping of names to Boxes (one tensor each, in that order).
        action_space: :class:`Discrete`, :class:`MultiDiscrete` or :class:`Box`.
        team_id: the team these agents play for in competitive games, if any.
    """

    name: str
    observation_space: Space
    action_space: Space
    team_id: int | None = None

    def __post_init__(self) -> None:
        try:  # refuse what the protocol cannot carry, here where the game declares it
            action_kind(self.action_space)
        except ValueError as exc:
            raise ValueError(f"behaviour {self.name!r}: {exc}") from None

    @property
    def observation_components(self) -> dict[str, Any]:
        return observation_components(self.observation_space)


class _Grouped:
    """Group membership and group rewards of a batch of agents, as in the trainer's env API.

    ``group_ids`` (int64, 0 for no group) and ``group_rewards`` (float32, what each agent's group earned since
    its previous decision) default to zeros: agents in no group. :class:`~sparring_engine.AgentGroups` fills them
    for games that keep their groups there.
    """

    agent_ids: np.ndarray
    rewards: np.ndarray
    group_ids: np.ndarray | None
    group_rewards: np.ndarray | None

    def __post_init__(self) -> None:
        if self.group_ids is None:
            self.group_ids = np.zeros(len(self.agent_ids), np.int64)
        if self.group_rewards is None:
            self.group_rewards = np.zeros(len(self.agent_ids), np.float32)

    def __len__(self) -> int:
        return len(self.agent_ids)

    @property
    def total_rewards(self) -> np.ndarray:
        """Individual plus group reward: what an independent learner trains on."""
        return self.rewards + self.group_rewards


@dataclass
class DecisionSteps(_Grouped):
    """The agents of one behaviour that request an action now (arrays along the first axis).

    ``obs`` is an array, or a dict of arrays keyed like the observation components; ``action_mask`` is
    ``bool (n, sum of branch sizes)``, True = allowed, for behaviours declared with masks.
    """

    agent_ids: np.ndarray
    obs: Any
    rewards: np.ndarray
    action_mask: np.ndarray | None = None
    group_ids: np.ndarray | None = None
    group_rewards: np.ndarray | None = None

    @classmethod
    def empty(cls, spec: BehaviourSpec) -> DecisionSteps:
        return cls(np.zeros(0, np.int64), _empty_obs(spec), np.zeros(0, np.float32))


@dataclass
class TerminalSteps(_Grouped):
    """The agents of one behaviour whose episode ended since the last step: final observation, last rewards,
    and ``truncated`` (True when a time limit cut the episode short rather than the game ending it)."""

    agent_ids: np.ndarray
    obs: Any
    rewards: np.ndarray
    truncated: np.ndarray
    group_ids: np.ndarray | None = None
    group_rewards: np.ndarray | None = None

    @classmethod
    def empty(cls, spec: BehaviourSpec) -> TerminalSteps:
        return cls(np.zeros(0, np.int64), _empty_obs(spec), np.zeros(0, np.float32), np.zeros(0, bool))


@dataclass
class PlayedActions:
    """Actions the game took itself (a person at the controls, a scripted heuristic) for agents of one behaviour.

    ``agent_ids`` (int64, each with a decision or terminal row in the same step) and ``actions`` (one row each, in
    the behaviour's action format: int64 ``(k,)`` or ``(k, branches)``, float32 ``(k, *shape)``): the action each
    agent took at its previous decision. :class:`~sparring_engine.ActionReports` fills them for games that report
    as they play.
    """

    agent_ids: np.ndarray
    actions: np.ndarray

    def __len__(self) -> int:
        return len(self.agent_ids)


@dataclass
class BehaviourStep:
    """One behaviour's share of a step result (``played``: the actions the game took itself, if any)."""

    decisions: DecisionSteps
    terminals: TerminalSteps
    lost: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # for env API parity; never sent
    played: PlayedActions | None = None


StepResult = dict[str, BehaviourStep]
Obs = Union[np.ndarray, dict[str, np.ndarray]]


def _empty_obs(spec: BehaviourSpec) -> Obs:
    parts = {k: np.zeros((0, *box.shape), np.dtype(box.dtype)) for k, box in spec.observation_components.items()}
    return parts["obs"] if _named_parts(spec.observation_space) is None else parts
