"""Saving and loading a trainer: one file holding its ``state_dict()``, the same for PPO and SAC."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import torch

from sparring.envs.base import MultiAgentEnv

T = TypeVar("T", bound="Checkpointed")


class Checkpointed:
    """``save`` / ``load`` for a trainer whose constructor takes ``(env, seed, specs, behaviour_settings, **settings)``
    and whose ``state_dict`` records them, so a checkpoint alone rebuilds the model."""

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)  # atomic: a crash mid-save never leaves a half-written checkpoint

    @classmethod
    def load(cls: type[T], path: str | Path, env: MultiAgentEnv | None = None) -> T:
        """Restore a saved model; with ``env`` it can keep learning, without it only predict."""
        return cls.from_state(torch.load(path, map_location="cpu", weights_only=False), env)

    @classmethod
    def from_state(cls: type[T], state: dict, env: MultiAgentEnv | None = None) -> T:
        model = cls(env, seed=state["seed"], specs=state["specs"],  # type: ignore[call-arg]
                    behaviour_settings=state.get("behaviour_settings"), **state["settings"])
        model.load_state_dict(state)
        return model
