"""Hand any sparring env (a Unity build, a Godot game) to libraries that speak PettingZoo's ParallelEnv.

The mapping, and where the two APIs disagree:

- Agent ``i`` of behaviour ``b`` is named ``f"{b}_{i}"``. ``possible_agents``
  starts as the agents of one ``reset`` made at construction and grows when a
  new agent first requests a decision (sparring envs may add agents at any step).
- A ParallelEnv agent stays in ``agents`` from its first decision until its
  episode ends. Agents that request decisions at different rates (turn-based
  games) therefore stay listed while waiting their turn: their action is
  ignored, their observation is their latest one, their reward is 0 until it is
  delivered, and ``infos[agent]`` is ``{"waiting": True}`` plus an all-zero
  ``action_mask`` for discrete actions.
- Action masks go into ``infos[agent]["action_mask"]`` as ``int8``.
- Sparring envs reset themselves; a ParallelEnv episode lasts until every agent
  in it has ended. An agent that ends early is idled (fed a fixed legal action)
  inside the wrapped env until then. If, when the episode ends, the wrapped env
  already holds untouched first decisions of the next episode, ``reset()``
  returns them; otherwise, or when given a seed, it resets the wrapped env.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from sparring.envs.base import MultiAgentEnv, StepResult
from sparring.spec import Batch, BehaviourSpec, batch_put, batch_take, empty_actions


def to_parallel_env(env: MultiAgentEnv) -> SparringParallelEnv:
    """Wrap ``env`` as a PettingZoo ``ParallelEnv`` (resets ``env`` once, to discover its agents)."""
    return SparringParallelEnv(env)


class SparringParallelEnv(ParallelEnv):
    """A sparring env seen through PettingZoo's ParallelEnv API (see the module docstring)."""

    metadata = {"name": "sparring_parallel_v0", "render_modes": []}

    def __init__(self, env: MultiAgentEnv) -> None:
        self.env = env
        self.agents: list[str] = []
        self.possible_agents: list[str] = []
        self._behaviour_of: dict[str, str] = {}
        self._deciders: dict[str, list[str]] = {}  # behaviour -> agents of the wrapped env's last decisions
        self._masks: dict[str, np.ndarray] = {}  # agent -> its latest action mask
        self._last_obs: dict[str, Any] = {}
        self._rewards: dict[str, float] = {}  # agent -> reward delivered with its latest decision
        self._ended: set[str] = set()  # agents whose episode ended during this ParallelEnv episode
        self._idled: set[str] = set()  # ended agents already fed an idle action in their next episode
        first = env.reset()
        self._take_decisions(first)
        self._next_start: StepResult | None = first

    def observation_space(self, agent: str) -> spaces.Space:
        return self._spec(agent).observation_space

    def action_space(self, agent: str) -> spaces.Space:
        return self._spec(agent).action_space

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Start the next episode; ``options`` is accepted for the API and ignored (sparring envs take none)."""
        result = self._next_start if seed is None and self._next_start is not None else self.env.reset(seed)
        self._next_start = None
        self.agents = []
        self._last_obs = {}
        self._ended = set()
        self._idled = set()
        obs: dict[str, Any] = {}
        infos: dict[str, dict[str, Any]] = {}
        for name in self._take_decisions(result):
            self.agents.append(name)
            obs[name] = self._last_obs[name]
            infos[name] = self._info(name)
        return obs, infos

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if not self.agents:
            raise RuntimeError("every agent's episode has ended; call reset() to start the next one")
        batched = {}
        for behaviour, names in self._deciders.items():
            spec = self.env.specs[behaviour]
            acts = empty_actions(spec, len(names))
            for row, name in enumerate(names):
                if name in self._ended:
                    batch_put(acts, row, _idle_action(spec, self._masks.get(name)))
                    self._idled.add(name)
                elif name not in actions:
                    raise KeyError(f"no action for agent {name!r}, which requests a decision")
                else:
                    batch_put(acts, row, actions[name])
            batched[behaviour] = acts
        result = self.env.step(batched)

        obs: dict[str, Any] = {}
        rewards: dict[str, float] = {}
        terminations: dict[str, bool] = {}
        truncations: dict[str, bool] = {}
        infos: dict[str, dict[str, Any]] = {}
        for behaviour, part in result.items():
            ends = part.terminals
            for row, agent_id in enumerate(ends.agent_ids.tolist()):
                name = self._name(behaviour, agent_id)
                self._idled.discard(name)  # its idled episode is over; the next one starts untouched
                if name not in self.agents:
                    continue  # an idled agent's episode, or an agent that never decided
                self.agents.remove(name)
                self._ended.add(name)
                obs[name] = batch_take(ends.obs, row)
                rewards[name] = float(ends.rewards[row])
                truncated = bool(ends.truncated[row])
                terminations[name], truncations[name] = not truncated, truncated
                infos[name] = {}
        episode_over = not self.agents
        deciders = self._take_decisions(result)
        if episode_over:
            # Reuse the next episode's first decisions only if no idle action has touched them.
            if not self._idled.intersection(deciders):
                self._next_start = result
            return obs, rewards, terminations, truncations, infos
        decided = set()
        for name in deciders:
            if name in self._ended:
                continue
            if name not in self.agents:
                self.agents.append(name)  # joined mid-episode
            decided.add(name)
            rewards[name] = self._rewards[name]
        for name in self.agents:
            obs[name] = self._last_obs[name]
            rewards.setdefault(name, 0.0)
            terminations[name] = truncations[name] = False
            infos[name] = self._info(name) if name in decided else self._waiting_info(name)
        return obs, rewards, terminations, truncations, infos

    def close(self) -> None:
        self.env.close()

    def _take_decisions(self, result: StepResult) -> list[str]:
        """Record the wrapped env's decision agents (what the next step must act for); return their names."""
        self._deciders = {}
        self._masks = {}
        self._rewards = {}
        names = []
        for behaviour, part in result.items():
            decisions = part.decisions
            if not len(decisions):
                continue
            rows = self._deciders[behaviour] = []
            for row, agent_id in enumerate(decisions.agent_ids.tolist()):
                name = self._name(behaviour, agent_id)
                rows.append(name)
                names.append(name)
                if decisions.action_mask is not None:
                    self._masks[name] = decisions.action_mask[row]
                if name not in self._ended:
                    self._last_obs[name] = batch_take(decisions.obs, row)
                    self._rewards[name] = float(decisions.rewards[row])
        return names

    def _name(self, behaviour: str, agent_id: int) -> str:
        name = f"{behaviour}_{agent_id}"
        if name not in self._behaviour_of:
            self._behaviour_of[name] = behaviour
            self.possible_agents.append(name)
        return name

    def _spec(self, agent: str) -> BehaviourSpec:
        if agent not in self._behaviour_of:
            raise KeyError(f"unknown agent {agent!r}; agents seen so far: {self.possible_agents}")
        return self.env.specs[self._behaviour_of[agent]]

    def _info(self, name: str) -> dict[str, Any]:
        mask = self._masks.get(name)
        return {} if mask is None else {"action_mask": mask.astype(np.int8)}

    def _waiting_info(self, name: str) -> dict[str, Any]:
        spec = self._spec(name)
        if not spec.mask_size:
            return {"waiting": True}
        return {"waiting": True, "action_mask": np.zeros(spec.mask_size, np.int8)}


def _idle_action(spec: BehaviourSpec, mask: np.ndarray | None) -> Batch:
    """A legal placeholder action: the first allowed choice per branch, and the Box point nearest 0."""
    box, sizes = spec.continuous_space, spec.action_branches
    if box is not None:
        still = np.clip(np.zeros(box.shape, np.float32), box.low, box.high)
        if not sizes:
            return still
    if mask is None:
        choice = np.zeros(len(sizes), np.int64)
    else:
        choice = np.array([int(np.argmax(m)) for m in np.split(mask, np.cumsum(sizes)[:-1])], np.int64)
    choice = choice[0] if isinstance(spec.discrete_space, spaces.Discrete) else choice
    return {"continuous": still, "discrete": choice} if box is not None else choice
