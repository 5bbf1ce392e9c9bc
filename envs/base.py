"""The one batched, behaviour-grouped multi-agent env API every source produces.

The contract (DESIGN section 3), modelled on how game engines already batch
agents (ML-Agents' DecisionSteps/TerminalSteps):

- ``env.specs`` maps behaviour name -> :class:`BehaviourSpec`; it is known
  before ``reset`` and never changes.
- ``reset(seed)`` and ``step(actions)`` return a :data:`StepResult`: for *every*
  behaviour in ``specs`` (possibly with zero agents), a :class:`BehaviourStep`
  holding the agents that request a decision now and the agents whose episode
  ended since the last call.
- ``step(actions)`` takes, per behaviour, one action row for each agent of that
  behaviour's most recent :class:`DecisionSteps`, in the same order. A behaviour
  with no decision agents may be omitted.
- A reward is what the agent earned since its previous decision (or since its
  episode began). Each agent's rewards arrive exactly once, in its next decision
  or in its terminal step.
- An agent in :class:`TerminalSteps` has ended an episode. If the same agent id
  is also in the same result's :class:`DecisionSteps`, that decision is the first
  of its next episode. Envs reset themselves: training code calls ``reset`` once.
- Agents that share rewards form *groups* (ML-Agents' ``SimpleMultiAgentGroup``):
  ``group_ids`` gives each agent's group (0: none) and ``group_rewards`` what its
  group earned since the agent's previous decision, reported to every member like
  ``rewards``. A group's members belong to one behaviour; an agent leaves its
  group by ending its episode while the others play on (DungeonEscape's agent
  that sacrifices itself), and the group's later rewards reach it only through
  learners that value the group (MA-POCA). Independent learners train on
  :attr:`DecisionSteps.total_rewards`, individual plus group reward, as
  ML-Agents' PPO and SAC do.
- Agent ids are ``int64`` and unique within a behaviour at any moment. Agents
  may request decisions at different rates, and join or leave at any step. An
  agent that leaves mid-episode (its game crashed) is listed in
  ``BehaviourStep.lost``; its id may come back later, starting a new episode.
- A game may play some agents itself (a person at the controls, a scripted
  heuristic; while ``sparring record`` records, every agent). It then reports
  what they did in ``BehaviourStep.played``: the action each took at its
  *previous* decision, arriving with the agent's next decision or terminal row,
  as its reward for that action does. Sources that report nothing leave it ``None``.

Everything is batched along the first axis; consumers never loop over agents.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from sparring.envs.parameters import ParameterValue
from sparring.spec import Batch, BehaviourSpec, Obs, batch_len, batch_take, empty_actions, empty_obs


class _Grouped:
    """Group membership and group rewards of a batch of agents (see the module docstring).

    Sources without groups leave both ``None``; they then read as no group and no group reward.
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
        """Individual plus group reward: what an independent learner (PPO, SAC) trains on."""
        return self.rewards + self.group_rewards


@dataclass
class DecisionSteps(_Grouped):
    """Agents of one behaviour that request an action now.

    Attributes:
        agent_ids: ``int64 (n,)``.
        obs: batched observation (see :mod:`sparring.spec`).
        rewards: ``float32 (n,)``, earned since each agent's previous decision.
        action_mask: ``bool (n, spec.mask_size)``, ``True`` = allowed; ``None``
            when the source declares no masks (everything allowed).
        group_ids: ``int64 (n,)``, each agent's group, 0 for none.
        group_rewards: ``float32 (n,)``, earned by each agent's group since its previous decision.
    """

    agent_ids: np.ndarray
    obs: Obs
    rewards: np.ndarray
    action_mask: np.ndarray | None = None
    group_ids: np.ndarray | None = None
    group_rewards: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> DecisionSteps:
        """The agents at ``rows`` (an index or boolean array)."""
        return DecisionSteps(self.agent_ids[rows], batch_take(self.obs, rows), self.rewards[rows],
                             None if self.action_mask is None else self.action_mask[rows],
                             self.group_ids[rows], self.group_rewards[rows])

    @classmethod
    def empty(cls, spec: BehaviourSpec) -> DecisionSteps:
        return cls(np.zeros(0, np.int64), empty_obs(spec.observation_space), np.zeros(0, np.float32))


@dataclass
class TerminalSteps(_Grouped):
    """Agents of one behaviour whose episode ended since the last call.

    Attributes:
        agent_ids: ``int64 (n,)``.
        obs: the final observation of each agent's episode.
        rewards: ``float32 (n,)``, earned since each agent's previous decision.
        truncated: ``bool (n,)``. ``True`` when the episode was cut short (a time
            limit, an interrupted game) rather than reaching a terminal state:
            learners bootstrap from the final observation's value only then.
        group_ids, group_rewards: as in :class:`DecisionSteps`.
    """

    agent_ids: np.ndarray
    obs: Obs
    rewards: np.ndarray
    truncated: np.ndarray
    group_ids: np.ndarray | None = None
    group_rewards: np.ndarray | None = None

    @property
    def terminated(self) -> np.ndarray:
        return ~self.truncated

    def take(self, rows: np.ndarray) -> TerminalSteps:
        """The agents at ``rows`` (an index or boolean array)."""
        return TerminalSteps(self.agent_ids[rows], batch_take(self.obs, rows), self.rewards[rows], self.truncated[rows],
                             self.group_ids[rows], self.group_rewards[rows])

    @classmethod
    def empty(cls, spec: BehaviourSpec) -> TerminalSteps:
        return cls(
            np.zeros(0, np.int64),
            empty_obs(spec.observation_space),
            np.zeros(0, np.float32),
            np.zeros(0, bool),
        )


@dataclass
class PlayedActions:
    """Actions the game took itself for some agents of one behaviour (a person or a heuristic playing them).

    Attributes:
        agent_ids: ``int64 (k,)``, unique; each in this step's decisions or terminals.
        actions: ``(k, ...)`` rows as ``step`` takes them: the action each agent took at its previous
            decision (for an agent in both decisions and terminals, the last decision of the episode that ended).
    """

    agent_ids: np.ndarray
    actions: Batch

    def __len__(self) -> int:
        return len(self.agent_ids)


_NO_AGENTS = np.zeros(0, np.int64)
_NO_AGENTS.flags.writeable = False


@dataclass
class BehaviourStep:
    """One behaviour's share of a reset or step result.

    ``lost`` lists agents that left without ending their episode (their game
    instance crashed, hung or disconnected). They are not terminals: no final
    observation exists, so learners discard the unfinished transition and the
    partial episode instead of bootstrapping from a made-up state.

    ``played`` holds the actions the game took itself at these agents' previous
    decisions (see :class:`PlayedActions`); ``None`` where it reports none.
    """

    decisions: DecisionSteps
    terminals: TerminalSteps
    lost: np.ndarray = field(default_factory=lambda: _NO_AGENTS)
    played: PlayedActions | None = None

    @classmethod
    def empty(cls, spec: BehaviourSpec) -> BehaviourStep:
        return cls(DecisionSteps.empty(spec), TerminalSteps.empty(spec))


StepResult = dict[str, BehaviourStep]
Actions = Mapping[str, Batch]  # per behaviour, one action row per deciding agent

STAT_AGGREGATIONS = ("average", "most_recent", "sum", "histogram")
"""How a game statistic's values within one summary period become one figure (ML-Agents'
``StatsAggregationMethod``; a histogram is summarised by its mean and also logged whole)."""

GameStats = dict[str, list[tuple[float, str]]]
"""Statistics a game recorded under names it chose: per name, ``(value, aggregation)`` pairs in order."""


def merge_stats(parts: list[GameStats]) -> GameStats:
    """Several sources' statistics as one, each name's values in source order."""
    merged: GameStats = {}
    for part in parts:
        for name, values in part.items():
            merged.setdefault(name, []).extend(values)
    return merged


class MultiAgentEnv(ABC):
    """A batched multi-agent environment (see the module docstring for the contract)."""

    specs: Mapping[str, BehaviourSpec]

    @abstractmethod
    def reset(self, seed: int | None = None) -> StepResult:
        """Start (or restart) every episode; terminal steps are empty."""

    @abstractmethod
    def step(self, actions: Actions) -> StepResult:
        """Apply one action per decision agent and advance to the next decisions."""

    def seats(self, behaviour: str, agent_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Which game each agent plays in and its seat there, as two int64 arrays ``(games, seats)``.

        For envs where agents of one behaviour play against each other in one game without team ids (a
        PettingZoo board game): self-play needs to know which rows sit at one table to give the learner one
        seat in each. ``None`` where the env does not say; self-play then needs team ids, i.e. sides (as
        ML-Agents requires). An agent keeps its game and seat for as long as it keeps its id, so callers
        (and wrappers holding copies) may remember the answer.
        """
        return None

    def set_parameters(self, parameters: Mapping[str, ParameterValue]) -> None:
        """Environment parameters (a curriculum's lesson, samplers) the game reads from its next episodes on.

        Values stay until set again; a name not given keeps its previous value. Sources that cannot
        carry parameters refuse, naming themselves.
        """
        raise NotImplementedError(f"{type(self).__name__} takes no environment parameters")

    def drain_stats(self) -> GameStats:
        """The statistics the game recorded since the last call (ML-Agents' ``StatsRecorder``), then forgets them.

        Sources without game statistics return nothing; the trainer logs these to TensorBoard under the
        names the game gave.
        """
        return {}

    def close(self) -> None:
        """Release processes, sockets or windows the env holds."""

    def __enter__(self) -> MultiAgentEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_step_result(specs: Mapping[str, BehaviourSpec], result: StepResult) -> None:
    """Raise ``ValueError`` naming the behaviour and field where ``result`` breaks the contract.

    Cheap enough for tests and for validating untrusted sources; the trainer's
    hot path does not call it.
    """
    missing = set(specs) - set(result)
    unknown = set(result) - set(specs)
    if missing or unknown:
        raise ValueError(f"step result behaviours: missing {sorted(missing)}, unknown {sorted(unknown)}")
    for name, spec in specs.items():
        step = result[name]
        for kind, part in (("decisions", step.decisions), ("terminals", step.terminals)):
            where = f"behaviour {name!r} {kind}"
            n = len(part.agent_ids)
            if part.agent_ids.dtype != np.int64 or part.agent_ids.ndim != 1:
                raise ValueError(f"{where}.agent_ids: expected int64 (n,), got {part.agent_ids.dtype} {part.agent_ids.shape}")
            if len(np.unique(part.agent_ids)) != n:
                raise ValueError(f"{where}.agent_ids: duplicate agent ids {part.agent_ids.tolist()}")
            if part.rewards.shape != (n,) or part.rewards.dtype != np.float32:
                raise ValueError(f"{where}.rewards: expected float32 ({n},), got {part.rewards.dtype} {part.rewards.shape}")
            if part.group_ids.shape != (n,) or part.group_ids.dtype != np.int64:
                raise ValueError(f"{where}.group_ids: expected int64 ({n},), got {part.group_ids.dtype} {part.group_ids.shape}")
            if part.group_rewards.shape != (n,) or part.group_rewards.dtype != np.float32:
                raise ValueError(
                    f"{where}.group_rewards: expected float32 ({n},), got {part.group_rewards.dtype} {part.group_rewards.shape}"
                )
            if batch_len(part.obs) != n:
                raise ValueError(f"{where}.obs: {batch_len(part.obs)} rows for {n} agents")
            _check_obs(where, spec, part.obs)
        mask = step.decisions.action_mask
        n = len(step.decisions)
        if mask is not None and (mask.dtype != bool or mask.shape != (n, spec.mask_size)):
            raise ValueError(
                f"behaviour {name!r} decisions.action_mask: expected bool ({n}, {spec.mask_size}), "
                f"got {mask.dtype} {mask.shape}"
            )
        truncated = step.terminals.truncated
        if truncated.dtype != bool or truncated.shape != (len(step.terminals),):
            raise ValueError(f"behaviour {name!r} terminals.truncated: expected bool ({len(step.terminals)},)")
        if step.lost.dtype != np.int64 or step.lost.ndim != 1:
            raise ValueError(f"behaviour {name!r} lost: expected int64 (n,), got {step.lost.dtype} {step.lost.shape}")
        if step.played is not None:
            _check_played(name, spec, step)


def _check_played(name: str, spec: BehaviourSpec, step: BehaviourStep) -> None:
    where = f"behaviour {name!r} played"
    ids, actions = step.played.agent_ids, step.played.actions
    k = len(ids)
    if ids.dtype != np.int64 or ids.ndim != 1:
        raise ValueError(f"{where}.agent_ids: expected int64 (k,), got {ids.dtype} {ids.shape}")
    if len(np.unique(ids)) != k:
        raise ValueError(f"{where}.agent_ids: duplicate agent ids {ids.tolist()}")
    rowless = np.setdiff1d(ids, np.concatenate([step.decisions.agent_ids, step.terminals.agent_ids]))
    if len(rowless):
        raise ValueError(f"{where}.agent_ids: agents {rowless.tolist()} have no decision or terminal row in this step")
    expected = empty_actions(spec, k)
    for key, want in (expected.items() if isinstance(expected, dict) else [(None, expected)]):
        got = actions[key] if key is not None else actions
        label = f"{where}.actions" + (f"[{key!r}]" if key is not None else "")
        if not isinstance(got, np.ndarray) or got.shape != want.shape or got.dtype != want.dtype:
            raise ValueError(f"{label}: expected {want.dtype} {want.shape}, got "
                             f"{getattr(got, 'dtype', type(got).__name__)} {getattr(got, 'shape', '')}")


def _check_obs(where: str, spec: BehaviourSpec, obs: Obs) -> None:
    components = spec.observation_components
    parts = obs if isinstance(obs, dict) else {"obs": obs}
    if set(parts) != set(components):
        raise ValueError(f"{where}.obs: keys {sorted(parts)}, expected {sorted(components)}")
    for key, box in components.items():
        arr = parts[key]
        if arr.shape[1:] != box.shape or arr.dtype != box.dtype:
            raise ValueError(
                f"{where}.obs[{key!r}]: expected {box.dtype} (n, {', '.join(map(str, box.shape))}), "
                f"got {arr.dtype} {arr.shape}"
            )


def random_actions(spec: BehaviourSpec, n: int, mask: np.ndarray | None, rng: np.random.Generator) -> Batch:
    """``n`` uniformly random valid actions, never choosing an action ``mask`` forbids (None: all allowed)."""
    box = spec.continuous_space
    if box is not None:
        low = np.where(np.isfinite(box.low), box.low, -1.0)
        high = np.where(np.isfinite(box.high), box.high, 1.0)
        continuous = rng.uniform(low, high, (n, *box.shape)).astype(np.float32)
        if not spec.is_hybrid:
            return continuous
    mask = mask if mask is not None else np.ones((n, spec.mask_size), bool)
    picks = []
    for part in np.split(mask, np.cumsum(spec.action_branches)[:-1], axis=1):
        picks.append(np.argmax(rng.random(part.shape) * part, axis=1))  # random key per allowed action
    discrete = picks[0] if len(picks) == 1 else np.stack(picks, axis=1)
    return {"continuous": continuous, "discrete": discrete} if spec.is_hybrid else discrete


def random_rollout(env: MultiAgentEnv, steps: int, seed: int = 0) -> Iterator[StepResult]:
    """Reset ``env``, then step it ``steps`` times with random valid actions, yielding every checked result.

    The shared engine of :func:`check_env` and ``sparring check-engine``: a result
    that breaks the contract raises ``ValueError`` before it is yielded.
    """
    rng = np.random.default_rng(seed)
    result = env.reset(seed=seed)
    check_step_result(env.specs, result)
    yield result
    for _ in range(steps):
        actions = {
            name: random_actions(env.specs[name], len(step.decisions), step.decisions.action_mask, rng)
            for name, step in result.items()
            if len(step.decisions)
        }
        result = env.step(actions)
        check_step_result(env.specs, result)
        yield result


def check_env(env: MultiAgentEnv, steps: int = 100, seed: int = 0) -> None:
    """Drive ``env`` with random valid actions and raise ``ValueError`` where it breaks the contract.

    The conformance check for authors of new sources, in the spirit of
    PettingZoo's ``parallel_api_test``.
    """
    for _ in random_rollout(env, steps, seed):
        pass
