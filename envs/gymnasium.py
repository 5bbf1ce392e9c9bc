"""Train on single-agent Gymnasium envs: N in-process copies become one behaviour with N agents.

This is the source behind the CartPole/Pendulum benchmarks, so ``step`` is a
plain loop over the copies that writes straight into fresh result arrays: no
Gymnasium vector wrappers, no per-agent objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sparring.envs.base import Actions, BehaviourStep, DecisionSteps, MultiAgentEnv, StepResult, TerminalSteps
from sparring.spec import BehaviourSpec, empty_obs

EnvFactory = Callable[[], gym.Env]


class GymnasiumEnv(MultiAgentEnv):
    """N copies of one Gymnasium env as a single behaviour; agent id ``i`` is copy ``i``.

    Every copy requests a decision every step. When copy ``i`` ends an episode
    the same result holds its terminal row and, as the contract asks, the first
    decision of its next episode (reward 0): the copy is reset in place.

    Args:
        env: a registered Gymnasium id (``"CartPole-v1"``) or a list of
            factories, one per copy (all must build envs with the same spaces).
        num_envs: copies to make from an id; with factories, leave it ``None``
            or give ``len(env)``.
        env_kwargs: keyword arguments for ``gymnasium.make`` (``max_episode_steps``,
            ``render_mode``, the env's own options); only with an id.
        behaviour: the behaviour name; defaults to the id without module, namespace
            or version (``"CartPole"``; ``"Chase"`` for ``"my_games:Chase-v0"``), or
            ``"agent"`` for factories.
    """

    def __init__(
        self,
        env: str | Sequence[EnvFactory],
        num_envs: int | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
        behaviour: str | None = None,
    ) -> None:
        if isinstance(env, str):
            copies = num_envs if num_envs is not None else 1
            if copies < 1:
                raise ValueError(f"num_envs must be at least 1, got {copies}")
            kwargs = dict(env_kwargs or {})
            self.envs: list[gym.Env] = [gym.make(env, **kwargs) for _ in range(copies)]
            name = behaviour or gym.envs.registration.parse_env_id(env.rpartition(":")[2])[1]
            source = f"gymnasium env {env!r}"
        else:
            if env_kwargs:
                raise ValueError("env_kwargs applies to a gymnasium id; pass factories that build the env themselves")
            if num_envs is not None and num_envs != len(env):
                raise ValueError(f"num_envs={num_envs} but {len(env)} env factories were given")
            if not env:
                raise ValueError("need at least one env factory")
            self.envs = [factory() for factory in env]
            name = behaviour or "agent"
            made = self.envs[0]
            source = f"gymnasium env {made.spec.id if made.spec else type(made).__name__}"

        first = self.envs[0]
        for i, copy in enumerate(self.envs[1:], start=1):
            if copy.observation_space != first.observation_space or copy.action_space != first.action_space:
                raise ValueError(
                    f"{source}: copy {i} has spaces ({copy.observation_space}, {copy.action_space}), "
                    f"copy 0 has ({first.observation_space}, {first.action_space}); all copies must match"
                )
        _check_spaces(source, first.observation_space, first.action_space)
        spec = BehaviourSpec(name, first.observation_space, first.action_space)
        self.specs: dict[str, BehaviourSpec] = {name: spec}
        self._name = name
        self._n = len(self.envs)
        self._obs_space = first.observation_space
        self._dict_obs = isinstance(first.observation_space, spaces.Dict)
        # Python ints step Discrete envs fastest; array rows suit the rest.
        self._discrete = isinstance(first.action_space, spaces.Discrete)
        # Constant per-step arrays are shared, read-only, so consumers may keep them.
        self._ids = _frozen(np.arange(self._n, dtype=np.int64))
        self._no_terminals = TerminalSteps.empty(spec)
        for arr in (self._no_terminals.agent_ids, self._no_terminals.rewards, self._no_terminals.truncated):
            _frozen(arr)

    def reset(self, seed: int | None = None) -> StepResult:
        """Copy ``i`` is reset with ``seed + i``, so copies differ yet runs repeat."""
        obs = empty_obs(self._obs_space, self._n)
        for i, env in enumerate(self.envs):
            ob, _ = env.reset(seed=None if seed is None else seed + i)
            self._write_obs(obs, i, ob)
        decisions = DecisionSteps(self._ids, obs, np.zeros(self._n, np.float32))
        return {self._name: BehaviourStep(decisions, self._no_terminals)}

    def step(self, actions: Actions) -> StepResult:
        acts = actions[self._name]
        if self._discrete:
            acts = acts.tolist()
        obs = empty_obs(self._obs_space, self._n)
        rewards = np.empty(self._n, np.float32)
        ended: list[tuple[int, Any, float, bool]] = []
        dict_obs = self._dict_obs
        for i, env in enumerate(self.envs):
            ob, reward, terminated, truncated, _ = env.step(acts[i])
            if terminated or truncated:
                ended.append((i, ob, reward, truncated and not terminated))
                ob, _ = env.reset()
                reward = 0.0
            if dict_obs:
                self._write_obs(obs, i, ob)
            else:
                obs[i] = ob
            rewards[i] = reward
        decisions = DecisionSteps(self._ids, obs, rewards)
        terminals = self._terminals(ended) if ended else self._no_terminals
        return {self._name: BehaviourStep(decisions, terminals)}

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def _write_obs(self, obs: Any, i: int, ob: Any) -> None:
        if self._dict_obs:
            for key, arr in obs.items():
                arr[i] = ob[key]
        else:
            obs[i] = ob

    def _terminals(self, ended: list[tuple[int, Any, float, bool]]) -> TerminalSteps:
        obs = empty_obs(self._obs_space, len(ended))
        for row, (_, ob, _, _) in enumerate(ended):
            self._write_obs(obs, row, ob)
        return TerminalSteps(
            np.array([e[0] for e in ended], np.int64),
            obs,
            np.array([e[2] for e in ended], np.float32),
            np.array([e[3] for e in ended], bool),
        )


def _check_spaces(source: str, obs_space: spaces.Space, act_space: spaces.Space) -> None:
    """Name the unsupported space up front, before BehaviourSpec's generic message."""
    obs_ok = isinstance(obs_space, spaces.Box) or (
        isinstance(obs_space, spaces.Dict) and all(isinstance(s, spaces.Box) for s in obs_space.spaces.values())
    )
    if not obs_ok:
        raise TypeError(
            f"{source}: observation space {obs_space} is not supported; sparring needs a Box or a "
            f"Dict of Box (wrap the env, e.g. one-hot a Discrete observation into a Box)"
        )
    if not isinstance(act_space, (spaces.Discrete, spaces.MultiDiscrete, spaces.Box)):
        raise TypeError(
            f"{source}: action space {act_space} is not supported; sparring needs Discrete, "
            f"MultiDiscrete or Box"
        )


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr
