"""Scripted league members: players that never learn (a game's hand-written AI, an exported policy, random play).

A game rarely wants one unbeatable NPC; it has hand-written AI the learner should beat first, and wants ratings
that mean the same in every run. The ``self_play:`` keys here say so:

- ``opponents``: the scripted members (:class:`ScriptedOpponent`). Each plays one policy group (or every group of
  the env), is drawn like a snapshot (PFSP counts its results) and is rated in the same table.
- ``anchor``: one member whose Elo never moves (:class:`Anchor`), so ratings are on the same scale in every run
  and survive a resume; in a game with sides the member is anchored on every side it plays.
- ``gate``: the curriculum gate (:class:`Gate`): the learner plays only the scripted members until it beats each of
  them often enough, then self-play begins.

:func:`scripted_predictor` turns a member into a :class:`~sparring.agents.evaluation.Predictor`.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sparring.spec import BehaviourSpec, Obs

_NAME = re.compile(r"[A-Za-z][\w.-]*")


class ScriptedOpponent(BaseModel):
    """One league member that never learns (``self_play.opponents[i]``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="How the league names it (letters, digits, _ . -); its table rows read "
                                  "'<name> (<group>)' where it plays several groups.")
    kind: Literal["callable", "onnx", "engine", "random"] = Field(
        description="callable: a Python function of (observations, action masks) returning actions; onnx: an "
        "exported policy (sparring's native format); engine: the game's own AI, which plays the group's agents "
        "itself and reports what it played; random: uniformly random allowed actions.")
    function: str | None = Field(None, description="callable: 'module:function' or 'path/to/file.py:function' "
                                                   "(a path relative to the directory sparring runs in).")
    path: str | None = Field(None, description="onnx: the .onnx file written by `sparring export` or training.")
    group: str | None = Field(None, description="The policy group it plays (a behaviour name without ?team=); "
                                                "left out: every group (required for engine).")
    rating: float | None = Field(None, description="Its starting Elo; left out: its group's initial_elo.")

    @model_validator(mode="after")
    def _what_its_kind_needs(self) -> ScriptedOpponent:
        if not _NAME.fullmatch(self.name) or self.name == "latest":
            raise ValueError(f"name: {self.name!r} must start with a letter and hold only letters, digits, _ . - "
                             "(and not be 'latest')")
        needs = {"callable": "function", "onnx": "path"}.get(self.kind)
        for key in ("function", "path"):
            given = getattr(self, key) is not None
            if key == needs and not given:
                example = "'module:function' or 'path/to/file.py:function'" if key == "function" else "a .onnx file"
                raise ValueError(f"{key}: kind {self.kind} needs it ({example})")
            if key != needs and given:
                raise ValueError(f"{key}: only for kind {'callable' if key == 'function' else 'onnx'}, not {self.kind}")
        if self.function is not None and ":" not in self.function:
            raise ValueError(f"function: {self.function!r} must be 'module:function' or 'path/to/file.py:function'")
        if self.kind == "engine" and self.group is None:
            raise ValueError("group: kind engine needs the group whose agents the game plays itself")
        return self


class Anchor(BaseModel):
    """A member whose Elo is fixed (``self_play.anchor``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="A member of self_play.opponents.")
    rating: float = Field(1000.0, description="Its Elo, on every side it plays, in every run.")


class Gate(BaseModel):
    """The curriculum gate (``self_play.gate``): scripted members only, until the learner beats them."""

    model_config = ConfigDict(extra="forbid")

    win_rate: float = Field(gt=0, le=1, description="The score (draws half) the main learner must reach against "
                                                    "each scripted member it meets, over its last `games` games "
                                                    "against that member, before it plays itself or snapshots.")
    games: int = Field(50, ge=1, description="How many of the most recent games against each member count.")


def check_members(opponents: list[ScriptedOpponent], anchor: Anchor | None, gate: Gate | None) -> None:
    """The keys that relate members to each other: unique names, an anchor that is a member, a gate with members."""
    names = [member.name for member in opponents]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"opponents: the name {twice[0]!r} is given twice; each member needs its own")
    if anchor is not None and anchor.name not in names:
        raise ValueError(f"anchor.name: {anchor.name!r} is not one of self_play.opponents "
                         f"({', '.join(names) or 'none are given'})")
    if gate is not None and not opponents:
        raise ValueError("gate: the gate opens when the learner beats the scripted members; give some in opponents")


class _Function:
    """A scripted function as a Predictor: ``function(obs, action_mask) -> actions`` for a batch of one group."""

    def __init__(self, function: Callable[[Obs, np.ndarray | None], np.ndarray]) -> None:
        self.function = function

    def predict(self, obs: Obs, behaviour: str | None = None, action_mask: np.ndarray | None = None,
                deterministic: bool = True, agent_ids: np.ndarray | None = None) -> np.ndarray:
        return self.function(obs, action_mask)


def load_function(reference: str, key: str = "function") -> Callable:
    """``'module:function'`` or ``'path/to/file.py:function'``: the function it names, or an error naming ``key``."""
    where, _, name = reference.rpartition(":")
    try:
        if where.endswith(".py"):
            spec = importlib.util.spec_from_file_location(f"sparring_scripted_{Path(where).stem}", where)
            if spec is None or not Path(where).is_file():
                raise FileNotFoundError(f"no file {where}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except Exception as exc:
        raise ValueError(f"{key}: {reference!r}: cannot load {where}: {exc}") from exc
    function = getattr(module, name, None)
    if not callable(function):
        raise ValueError(f"{key}: {reference!r}: {where} has no function {name!r}")
    return function


def scripted_predictor(member: ScriptedOpponent, spec: BehaviourSpec, seed: int = 0, key: str = "opponent"):
    """What plays for ``member`` in its group ``spec.name``: a Predictor asked with ``behaviour=spec.name``. A member
    that cannot play is refused naming ``key`` (its config key, ``self_play.opponents.<i>``) and what is wrong.

    An engine member's moves are the game's own; the rows the trainer sends for its agents are ignored by the game,
    so a random draw fills them.
    """
    from sparring.agents.evaluation import RandomPolicy

    if member.kind == "callable":
        return _Function(load_function(member.function, f"{key}.function"))
    if member.kind == "onnx":
        from sparring.export.policy import OnnxPolicy

        try:
            policy = OnnxPolicy(member.path)
        except Exception as exc:
            raise ValueError(f"{key}.path: cannot load {member.path}: {exc}") from exc
        if policy.behaviour != spec.name:
            raise ValueError(f"{key}.path: {member.path} acts for behaviour {policy.behaviour!r}, but member "
                             f"{member.name!r} plays group {spec.name!r}")
        return policy
    return RandomPolicy({spec.name: spec}, seed=seed)
