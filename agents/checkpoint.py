"""What PPO and SAC share as trainers: how they are built from settings and saved to one checkpoint file."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from pydantic import BaseModel

from sparring.agents.rollout import AgentMemory
from sparring.envs.base import BehaviourStep, MultiAgentEnv, StepResult
from sparring.spec import BehaviourSpec, group_of

T = TypeVar("T", bound="Checkpointed")

CHECKPOINT_FORMAT = 2
"""Format 2: each learner's state under ``learners`` (format 1 kept PPO's policies and optimisers apart)."""


class Checkpointed:
    """A trainer with one learner per behaviour, whose ``state_dict`` records its constructor's arguments
    so that a checkpoint alone rebuilds the model.

    Subclasses name their settings model, the rule that applies one behaviour's overrides, and the
    learner class each behaviour gets.

    Args:
        env: the environment to learn in (``None`` for a loaded model used only to predict).
        seed: seeds network initialisation, action sampling, minibatch or replay sampling, and env resets.
        specs: the behaviours, when there is no env.
        behaviour_settings: per behaviour name, hyperparameters that differ from ``settings``
            (what an ML-Agents config gives each behaviour). Behaviours not named use ``settings``.
        **settings: hyperparameters, validated by the subclass's ``settings_type``.
    """

    algorithm: ClassVar[str]  # how checkpoints name the trainer: "ppo", "sac"
    settings_type: ClassVar[type[BaseModel]]
    override_settings: ClassVar[Callable[[Any, Mapping[str, object]], Any]]
    learner_type: ClassVar[Callable[[BehaviourSpec, Any], Any]]

    def __init__(
        self,
        env: MultiAgentEnv | None,
        seed: int = 0,
        specs: Mapping[str, BehaviourSpec] | None = None,
        behaviour_settings: Mapping[str, Mapping[str, object]] | None = None,
        **settings: object,
    ) -> None:
        if env is None and specs is None:
            raise ValueError(f"{type(self).__name__} needs an env (to learn) or behaviour specs (to predict)")
        self.env = env
        self.seed = seed
        self.settings = self.settings_type(**settings)
        self.specs = dict(env.specs if env is not None else specs)
        self.behaviour_settings = {name: dict(values) for name, values in (behaviour_settings or {}).items()}
        torch.manual_seed(seed)  # network initialisation
        self.generator = torch.Generator().manual_seed(seed)  # action sampling and minibatch order
        self.learners = {name: self.learner_type(spec, self.settings_of(name)) for name, spec in self.specs.items()}
        self.num_steps = 0  # agent decisions taken, over all behaviours
        self.total_steps = 0
        self._current: StepResult | None = None
        self._remembered: dict[str, AgentMemory] = {}  # recurrent policies' memory between predict calls

    def settings_of(self, behaviour: str):
        """The hyperparameters ``behaviour`` trains with: ``settings`` updated by its own overrides.

        Overrides may name a behaviour without its ML-Agents team suffix: ``"Striker"`` also
        configures ``"Striker?team=1"``, as in ML-Agents config files.
        """
        overrides = self.behaviour_settings.get(behaviour, self.behaviour_settings.get(group_of(behaviour), {}))
        try:
            return type(self).override_settings(self.settings, overrides)
        except ValueError as exc:
            raise ValueError(f"behaviour {behaviour!r}: {exc}") from None

    def restart_episodes(self) -> None:
        """Reset the env mid-training (a curriculum lesson that requires it): the episodes in progress are given
        up as a lost agent's are (their unfinished transitions dropped, not bootstrapped from a made-up state),
        and every learner observes the fresh start. Agents waiting between two decisions are not known here and
        keep their open transitions. Before ``learn`` starts there is nothing to restart."""
        if self._current is None:
            return
        env = self._env_to_learn_in()
        self._observe({name: replace(BehaviourStep.empty(env.specs[name]), lost=part.decisions.agent_ids)
                       for name, part in self._current.items()})
        self._current = env.reset(seed=self.seed + self.num_steps)
        self._observe(self._current)

    def _observe(self, result: StepResult) -> None:
        """Hand each learner its behaviour's part of ``result`` (self-play routes rows to learners its own way)."""
        for name, learner in self.learners.items():
            learner.observe(result[name])

    def _env_to_learn_in(self) -> MultiAgentEnv:
        if self.env is None:
            name = type(self).__name__
            raise ValueError(f"this {name} model was loaded without an env; pass env= to {name}.load to keep training")
        return self.env

    def _behaviour(self, behaviour: str | None) -> str:
        """``behaviour``, which ``predict`` may omit when there is only one."""
        if behaviour is None:
            if len(self.learners) != 1:
                raise ValueError(f"predict needs behaviour=, one of {sorted(self.learners)}")
            behaviour = next(iter(self.learners))
        return behaviour

    def _recalled(self, behaviour: str, memory_size: int, agent_ids: np.ndarray | None) -> torch.Tensor | None:
        """The memory ``predict`` acts from for these agents (None for a memoryless policy)."""
        if not memory_size:
            return None
        if agent_ids is None:
            raise ValueError(f"behaviour {behaviour!r} has a recurrent policy: pass predict agent_ids, so each agent's "
                             "memory carries over to its next decision (and reset_memory when its episode ends)")
        memory = self._remembered.setdefault(behaviour, AgentMemory(memory_size))
        return torch.from_numpy(memory.get(np.asarray(agent_ids, np.int64)))

    def _remember(self, behaviour: str, agent_ids: np.ndarray | None, state: torch.Tensor | None) -> None:
        if state is not None:
            self._remembered[behaviour].set(np.asarray(agent_ids, np.int64), state.numpy())

    def reset_memory(self, behaviour: str | None = None, agent_ids: np.ndarray | None = None) -> None:
        """Forget what recurrent policies remember from ``predict`` calls: of ``agent_ids`` of ``behaviour``
        (their episodes ended), or everything. Memoryless policies remember nothing; this does nothing for them."""
        if behaviour is None:
            self._remembered.clear()
        elif agent_ids is None:
            self._remembered.pop(behaviour, None)
        elif behaviour in self._remembered:
            self._remembered[behaviour].forget(np.asarray(agent_ids, np.int64))

    def state_dict(self) -> dict:
        """What every trainer's checkpoint holds; subclasses add their learners' state."""
        return {
            "format": CHECKPOINT_FORMAT,
            "algorithm": self.algorithm,
            "seed": self.seed,
            "settings": self.settings.model_dump(),
            "behaviour_settings": self.behaviour_settings,
            "specs": self.specs,
            "num_steps": self.num_steps,
            "total_steps": self.total_steps,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Check that ``state`` is this trainer's checkpoint, of these behaviours, and restore the counters
        every trainer keeps; subclasses then restore their learners."""
        self._check_header(state)
        if set(state["specs"]) != set(self.learners):
            raise ValueError(f"checkpoint behaviours {sorted(state['specs'])} differ from the env's {sorted(self.learners)}")
        self.num_steps = state["num_steps"]
        self.total_steps = state["total_steps"]
        self.generator.set_state(state["generator"])
        self._current = None

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)  # atomic: a crash mid-save never leaves a half-written checkpoint

    @classmethod
    def _check_header(cls, state: dict) -> None:
        """Refuse another trainer's (or another format's) checkpoint before reading anything else of it."""
        if state.get("algorithm") != cls.algorithm:
            raise ValueError(f"not a sparring {cls.algorithm.upper()} checkpoint "
                             f"(format {state.get('format')}, algorithm {state.get('algorithm')})")
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"a sparring {cls.algorithm.upper()} checkpoint of format {state.get('format')}; this "
                             f"version of sparring reads format {CHECKPOINT_FORMAT} (train again, or use the version "
                             "that wrote it)")

    @classmethod
    def load(cls: type[T], path: str | Path, env: MultiAgentEnv | None = None) -> T:
        """Restore a saved model; with ``env`` it can keep learning, without it only predict."""
        return cls.from_state(torch.load(path, map_location="cpu", weights_only=False), env)

    @classmethod
    def from_state(cls: type[T], state: dict, env: MultiAgentEnv | None = None) -> T:
        cls._check_header(state)
        model = cls(env, seed=state["seed"], specs=state["specs"],  # type: ignore[call-arg]
                    behaviour_settings=state.get("behaviour_settings"), **state["settings"])
        model.load_state_dict(state)
        return model
