"""Train on any PettingZoo env, AEC or Parallel, with its agents grouped into behaviours.

PettingZoo speaks per-agent dicts; this adapter turns them into the batched,
behaviour-grouped results of :mod:`sparring.envs.base`. It is an edge, so it
loops over agents in Python. Agent ids are positions in ``possible_agents``.

Turn-based (AEC) games yield one decision per step: the agent whose turn it
is. Rewards are accumulated per agent from ``env.rewards`` after every AEC
step and handed over once, in that agent's next decision or terminal row.

Cooperative envs declare ``groups`` (agent name -> group name): agents of one group
share their rewards' fate, and a group-aware learner (MA-POCA) values them together.
PettingZoo gives each agent its own reward, which stays an individual reward here;
group rewards are 0.

With ``opponent`` set, the learner plays one seat per episode and the source
plays every other seat itself, so a single-policy trainer can learn a
two-player game against scripted play.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv

from sparring.envs.base import (
    Actions,
    BehaviourStep,
    DecisionSteps,
    MultiAgentEnv,
    StepResult,
    TerminalSteps,
    random_actions,
)
from sparring.spec import BehaviourSpec, ObservationSpace, empty_obs, team_of

OpponentPolicy = Callable[[Any, Union[np.ndarray, None], str], Any]
"""``(obs, action_mask, agent_name) -> action``: obs as the behaviour's space
describes it (mask split off), mask ``bool`` or ``None``, action as PettingZoo
takes it."""

_SEAT_SUFFIX = re.compile(r"_\d+$")


def default_behaviour(agent: str) -> str:
    """Agents that differ only by a seat number share a policy: ``player_2`` -> ``player``."""
    return _SEAT_SUFFIX.sub("", agent)


_AEC_STATE = ("agents", "agent_selection", "terminations", "truncations", "rewards", "infos")


def _aec_state_holder(env: AECEnv) -> AECEnv:
    """Where to read an AEC env's episode state from, cheaply.

    PettingZoo wrappers forward attribute reads through a ``__getattr__`` per
    layer, which costs more than a tic-tac-toe move. When no wrapper in the
    chain defines any of the state attributes itself, every read would reach
    ``env.unwrapped`` anyway, so read it there directly; otherwise go through
    the wrappers. Methods (``step``, ``observe``, ``reset``) always go through them.
    """
    layer = env
    while layer is not env.unwrapped:
        own = set(vars(layer)) | {name for cls in type(layer).__mro__ if cls is not AECEnv for name in vars(cls)}
        if own & set(_AEC_STATE):
            return env
        layer = layer.env
    return env.unwrapped


class PettingZooEnv(MultiAgentEnv):
    """A PettingZoo ``AECEnv`` or ``ParallelEnv`` as a sparring env.

    Args:
        env: the PettingZoo env (wrapped or raw); which API it speaks is detected.
        behaviours: agent name -> behaviour name, overriding :func:`default_behaviour`
            for the agents it names. A name with a team, ``"player?team=1"``, gives its spec that ``team_id``
            (one policy group, sides told apart by team, as ML-Agents names them).
        opponent: ``None`` (the learner controls every agent), ``"random"``
            (other seats play uniformly among allowed actions, drawn from a
            generator seeded by ``reset``), or an :data:`OpponentPolicy`.
        learner_seat: with an opponent, which agent the learner plays:
            ``"rotate"`` (episode ``k`` after ``reset`` uses ``possible_agents[k % n]``)
            or ``"random"`` (drawn from the same seeded generator).
        groups: agent name -> group name, for agents that cooperate (those not named are in no
            group); a group's agents must share a behaviour. Group ids are 1, 2, ... in the order
            of the groups' names.

    Attributes:
        agent_names: ``possible_agents``; agent id ``i`` is ``agent_names[i]``.
        behaviour_of: agent name -> behaviour name.
    """

    def __init__(
        self,
        env: AECEnv | ParallelEnv,
        behaviours: Mapping[str, str] | None = None,
        opponent: Literal["random"] | OpponentPolicy | None = None,
        learner_seat: Literal["rotate", "random"] = "rotate",
        groups: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(env, AECEnv):
            self._aec = True
        elif isinstance(env, ParallelEnv):
            self._aec = False
        else:
            raise TypeError(f"expected a PettingZoo AECEnv or ParallelEnv, got {type(env).__name__}")
        if isinstance(opponent, str) and opponent != "random":
            raise ValueError(f'opponent must be "random", a callable or None, got {opponent!r}')
        if learner_seat not in ("rotate", "random"):
            raise ValueError(f'learner_seat must be "rotate" or "random", got {learner_seat!r}')
        self.env = env
        self._state = _aec_state_holder(env) if self._aec else env
        self.agent_names: tuple[str, ...] = tuple(env.possible_agents)
        overrides = dict(behaviours or {})
        unknown = sorted(set(overrides) - set(self.agent_names))
        if unknown:
            raise ValueError(
                f"behaviours names agents {unknown} that are not in possible_agents {list(self.agent_names)}"
            )
        self.behaviour_of: dict[str, str] = {a: overrides.get(a, default_behaviour(a)) for a in self.agent_names}
        self._index = {name: i for i, name in enumerate(self.agent_names)}
        self._group_of = self._group_ids(dict(groups or {}))
        self._opponent = opponent
        self._learner_seat = learner_seat

        self.specs: dict[str, BehaviourSpec] = {}
        # behaviour -> the keys left once "action_mask" is split off the observation
        # (a str for the common {"observation", "action_mask"} Dict); None: no mask in obs.
        self._obs_keys: dict[str, str | tuple[str, ...] | None] = {}
        first_agent: dict[str, str] = {}
        for agent in self.agent_names:
            name = self.behaviour_of[agent]
            obs_space, act_space = env.observation_space(agent), env.action_space(agent)
            if name in first_agent:
                other = first_agent[name]
                if obs_space != env.observation_space(other) or act_space != env.action_space(other):
                    raise ValueError(
                        f"agents {other!r} and {agent!r} are both in behaviour {name!r} but have different "
                        f"spaces ({env.observation_space(other)}, {env.action_space(other)}) vs "
                        f"({obs_space}, {act_space}); give them different behaviours with behaviours={{...}}"
                    )
                continue
            first_agent[name] = agent
            keys, obs_space, mask_space = _split_mask_space(obs_space)
            try:
                spec = BehaviourSpec(name, obs_space, act_space, team_id=team_of(name))  # "Name?team=1" as ML-Agents
            except TypeError as err:
                raise TypeError(
                    f"agent {agent!r} (observation space {obs_space}, action space {act_space}): {err}"
                ) from err
            if mask_space is not None and int(np.prod(mask_space.shape)) != spec.mask_size:
                raise ValueError(
                    f"agent {agent!r}: action_mask has shape {mask_space.shape} but action space "
                    f"{act_space} needs {spec.mask_size} entries"
                )
            if opponent == "random" and isinstance(act_space, spaces.Box) and not act_space.is_bounded():
                raise ValueError(
                    f"agent {agent!r}: a random opponent needs a bounded Box action space, got {act_space}"
                )
            self.specs[name] = spec
            self._obs_keys[name] = keys

        n = len(self.agent_names)
        self._acc = np.zeros(n)  # reward earned by each agent since its last row
        self._learner = np.ones(n, bool)  # agents whose rows appear in results
        self._started = False
        self._seed: int | None = None
        self._episode = 0  # episodes begun since reset(); offsets the seed
        self._rng = np.random.default_rng()
        self._pending: dict[str, list[str]] = {}  # behaviour -> agents of the last decisions, in order
        self._opponent_obs: dict[str, tuple[Any, np.ndarray | None]] = {}  # Parallel: opponent seats to act

    def _group_ids(self, groups: dict[str, str]) -> np.ndarray:
        """Each agent's group id by agent id (0: none), after checking ``groups`` names real agents of one behaviour each."""
        unknown = sorted(set(groups) - set(self.agent_names))
        if unknown:
            raise ValueError(f"groups names agents {unknown} that are not in possible_agents {list(self.agent_names)}")
        names = sorted(set(groups.values()))
        for name in names:
            behaviours = {self.behaviour_of[a] for a, g in groups.items() if g == name}
            if len(behaviours) > 1:
                raise ValueError(f"group {name!r} mixes behaviours {sorted(behaviours)}; a group's agents must share one")
        number = {name: i + 1 for i, name in enumerate(names)}
        return np.array([number.get(groups.get(a), 0) for a in self.agent_names], np.int64)

    def reset(self, seed: int | None = None) -> StepResult:
        """Episode ``k`` after this reset uses seed ``seed + k``, so whole runs repeat."""
        self._started = True
        self._seed = seed
        self._episode = 0
        self._rng = np.random.default_rng(seed)
        rows = _Rows(self.specs, self._group_of)
        self._begin_episode(rows)
        return self._advance_aec(rows) if self._aec else rows.result()

    def step(self, actions: Actions) -> StepResult:
        if not self._started:
            raise RuntimeError("step() before reset(); call reset() first")
        chosen: dict[str, Any] = {}
        for name, agents in self._pending.items():
            if name not in actions:
                raise KeyError(f"no actions for behaviour {name!r}, whose agents {agents} request decisions")
            acts = actions[name]
            if len(acts) != len(agents):
                raise ValueError(f"behaviour {name!r}: {len(acts)} actions for {len(agents)} decision agents {agents}")
            space = self.specs[name].action_space
            for row, agent in enumerate(agents):
                chosen[agent] = _env_action(space, acts[row])
        if self._aec:
            (agent,) = chosen
            self.env.step(chosen[agent])
            self._collect_aec_rewards()
            return self._advance_aec(_Rows(self.specs, self._group_of))
        return self._step_parallel(chosen)

    def seats(self, behaviour: str, agent_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One game; an agent's seat is its index among the game's possible agents, which is its agent id."""
        return np.zeros(len(agent_ids), np.int64), np.array(agent_ids, np.int64)

    def close(self) -> None:
        self.env.close()

    def _begin_episode(self, rows: _Rows) -> None:
        seed = None if self._seed is None else self._seed + self._episode
        self._acc[:] = 0.0
        if self._opponent is not None:
            n = len(self.agent_names)
            seat = self._episode % n if self._learner_seat == "rotate" else int(self._rng.integers(n))
            self._learner[:] = False
            self._learner[seat] = True
        self._episode += 1
        if self._aec:
            self.env.reset(seed=seed)
        else:
            obs, infos = self.env.reset(seed=seed)
            self._parallel_decisions(rows, obs, infos, done=set())

    def _advance_aec(self, rows: _Rows) -> StepResult:
        """Play dead-agent and opponent turns until a learner agent must decide."""
        env, state = self.env, self._state
        while True:
            if not state.agents:
                self._begin_episode(rows)
                continue
            agent = state.agent_selection
            i = self._index[agent]
            terminated, truncated = state.terminations[agent], state.truncations[agent]
            if terminated or truncated:
                if self._learner[i]:
                    obs, _ = self._observe(agent, env.observe(agent), None)
                    rows.terminal(self.behaviour_of[agent], i, obs, self._acc[i], bool(truncated and not terminated))
                    self._acc[i] = 0.0
                env.step(None)  # PettingZoo removes a dead agent only when it is stepped with None
                self._collect_aec_rewards()
                continue
            obs, mask = self._observe(agent, env.observe(agent), state.infos.get(agent))
            if self._learner[i]:
                rows.decision(self.behaviour_of[agent], i, obs, self._acc[i], mask)
                self._acc[i] = 0.0
                self._pending = {self.behaviour_of[agent]: [agent]}
                return rows.result()
            env.step(self._opponent_action(agent, obs, mask))
            self._collect_aec_rewards()

    def _collect_aec_rewards(self) -> None:
        for agent, reward in self._state.rewards.items():
            self._acc[self._index[agent]] += reward

    def _step_parallel(self, chosen: dict[str, Any]) -> StepResult:
        for agent, (obs, mask) in self._opponent_obs.items():
            chosen[agent] = self._opponent_action(agent, obs, mask)
        obs, rewards, terminations, truncations, infos = self.env.step(chosen)
        for agent, reward in rewards.items():
            self._acc[self._index[agent]] += reward
        rows = _Rows(self.specs, self._group_of)
        done = set()
        for agent in dict.fromkeys([*terminations, *truncations]):  # ordered, so runs repeat
            terminated, truncated = terminations.get(agent, False), truncations.get(agent, False)
            if not (terminated or truncated):
                continue
            done.add(agent)
            i = self._index[agent]
            if self._learner[i]:
                final, _ = self._observe(agent, obs[agent], None)
                rows.terminal(self.behaviour_of[agent], i, final, self._acc[i], bool(truncated and not terminated))
                self._acc[i] = 0.0
        if self.env.agents:
            self._parallel_decisions(rows, obs, infos, done)
        else:
            self._begin_episode(rows)
        return rows.result()

    def _parallel_decisions(self, rows: _Rows, obs: dict, infos: dict, done: set[str]) -> None:
        """Live agents with an observation decide now; a live agent without one waits its turn."""
        self._pending = {}
        self._opponent_obs = {}
        for agent in self.env.agents:
            if agent in done or agent not in obs:
                continue
            own, mask = self._observe(agent, obs[agent], infos.get(agent))
            i = self._index[agent]
            if self._learner[i]:
                name = self.behaviour_of[agent]
                rows.decision(name, i, own, self._acc[i], mask)
                self._acc[i] = 0.0
                self._pending.setdefault(name, []).append(agent)
            else:
                self._opponent_obs[agent] = (own, mask)

    def _observe(self, agent: str, raw: Any, info: Mapping[str, Any] | None) -> tuple[Any, np.ndarray | None]:
        """Split an agent's raw observation into the behaviour's observation and a bool mask."""
        keys = self._obs_keys[self.behaviour_of[agent]]
        if keys is not None:
            mask = raw["action_mask"]
            raw = raw[keys] if isinstance(keys, str) else {k: raw[k] for k in keys}
        elif info and "action_mask" in info:
            mask = info["action_mask"]
        else:
            return raw, None
        if isinstance(mask, tuple):  # MultiDiscrete masks come one array per branch
            return raw, np.concatenate([np.ravel(m) for m in mask]).astype(bool)
        return raw, np.ravel(mask).astype(bool)

    def _opponent_action(self, agent: str, obs: Any, mask: np.ndarray | None) -> Any:
        if self._opponent == "random":
            spec = self.specs[self.behaviour_of[agent]]
            return _env_action(spec.action_space, random_actions(spec, 1, None if mask is None else mask[None], self._rng)[0])
        return self._opponent(obs, mask, agent)


class _Rows:
    """One result's rows per behaviour, gathered agent by agent, batched at the end."""

    def __init__(self, specs: Mapping[str, BehaviourSpec], group_of: np.ndarray) -> None:
        self.specs = specs
        self.group_of = group_of
        self.decisions: dict[str, list[tuple[int, Any, float, np.ndarray | None]]] = {b: [] for b in specs}
        self.terminals: dict[str, list[tuple[int, Any, float, bool]]] = {b: [] for b in specs}

    def decision(self, behaviour: str, agent_id: int, obs: Any, reward: float, mask: np.ndarray | None) -> None:
        self.decisions[behaviour].append((agent_id, obs, reward, mask))

    def terminal(self, behaviour: str, agent_id: int, obs: Any, reward: float, truncated: bool) -> None:
        self.terminals[behaviour].append((agent_id, obs, reward, truncated))

    def result(self) -> StepResult:
        out: StepResult = {}
        for name, spec in self.specs.items():
            decisions = DecisionSteps.empty(spec)
            if self.decisions[name]:
                ids, obs, rewards, masks = zip(*self.decisions[name])
                action_mask = None
                if any(m is not None for m in masks):
                    action_mask = np.ones((len(ids), spec.mask_size), bool)
                    for row, m in enumerate(masks):
                        if m is not None:
                            action_mask[row] = m
                ids = np.array(ids, np.int64)
                decisions = DecisionSteps(ids, _batch(spec.observation_space, obs), np.array(rewards, np.float32),
                                          action_mask, self.group_of[ids])
            terminals = TerminalSteps.empty(spec)
            if self.terminals[name]:
                ids, obs, rewards, truncated = zip(*self.terminals[name])
                ids = np.array(ids, np.int64)
                terminals = TerminalSteps(ids, _batch(spec.observation_space, obs), np.array(rewards, np.float32),
                                          np.array(truncated, bool), self.group_of[ids])
            out[name] = BehaviourStep(decisions, terminals)
        return out


def _batch(space: ObservationSpace, items: tuple[Any, ...]) -> Any:
    """Stack per-agent observations in the space's dtype (PettingZoo envs are loose about it)."""
    batch = empty_obs(space, len(items))
    if isinstance(batch, dict):
        for key, arr in batch.items():
            for row, item in enumerate(items):
                arr[row] = item[key]
    else:
        for row, item in enumerate(items):
            batch[row] = item
    return batch


def _split_mask_space(space: spaces.Space) -> tuple[str | tuple[str, ...] | None, spaces.Space, spaces.Space | None]:
    """PettingZoo's masked observations are ``Dict(observation=..., action_mask=...)``; the mask is not an input."""
    if not isinstance(space, spaces.Dict) or "action_mask" not in space.spaces:
        return None, space, None
    rest = {k: v for k, v in space.spaces.items() if k != "action_mask"}
    if list(rest) == ["observation"]:
        return "observation", rest["observation"], space["action_mask"]
    return tuple(rest), spaces.Dict(rest), space["action_mask"]


def _env_action(space: spaces.Space, row: np.ndarray) -> Any:
    """One agent's action as PettingZoo envs expect it: an int for Discrete, else an array."""
    if isinstance(space, spaces.Discrete):
        return int(row)
    return np.asarray(row, space.dtype)
