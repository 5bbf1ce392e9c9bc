"""What the game's own player did: the actions a person or a scripted heuristic took for agents the game plays itself.

The trainer records demonstrations from them (``sparring record``): in a recording session
it sends no actions, the game plays every agent itself, and reports each action it took.
A game keeps one :class:`ActionReports` as its ``played`` attribute and reports a batch
of agents at a time, in the step that answers their decision::

    def step(self, actions):
        moves = actions.get("Runner")
        if moves is None:                          # recording: nobody else moves the Runners
            moves = self.read_controls()           # one row per Runner of the last decisions
            self.played.report("Runner", self.deciding, moves)
        ...

:func:`~sparring_engine.run` sends each report with the agent's next decision or terminal
row, as the protocol asks (protocol version 3, ``BehaviourObservations.played_ids``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from sparring_engine.types import BehaviourSpec, BehaviourStep, PlayedActions, action_format


class ActionReports:
    """Actions the game took for its agents, held until each agent's next row goes out."""

    def __init__(self) -> None:
        self._ids: dict[str, np.ndarray] = {}  # per behaviour: agents reported and not yet sent
        self._actions: dict[str, np.ndarray] = {}
        self._fresh: dict[str, np.ndarray] = {}  # reported since the last step went out

    def report(self, behaviour: str, agent_ids, actions) -> None:
        """Agents ``agent_ids`` (one id or an array) took ``actions`` (one row each, as the trainer's actions for
        them would be) at their current decision."""
        ids = np.atleast_1d(np.asarray(agent_ids, np.int64))
        actions = np.asarray(actions)
        if np.ndim(agent_ids) == 0:
            actions = actions[None]
        if ids.ndim != 1 or len(actions) != len(ids):
            raise ValueError(f"behaviour {behaviour!r}: {len(actions)} action rows reported for {len(ids)} agents")
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"behaviour {behaviour!r}: agents reported twice in one call: {ids.tolist()}")
        held = self._ids.get(behaviour, ids[:0])
        again = np.isin(ids, held)
        if again.any():
            raise ValueError(f"behaviour {behaviour!r}: agents {ids[again].tolist()} already reported an action that "
                             "has not been sent yet; an agent reports once per decision")
        self._ids[behaviour] = np.concatenate([held, ids])
        self._actions[behaviour] = actions if behaviour not in self._actions else np.concatenate(
            [self._actions[behaviour], actions.astype(self._actions[behaviour].dtype, copy=False)])
        self._fresh[behaviour] = np.concatenate([self._fresh.get(behaviour, ids[:0]), ids])

    def attach(self, specs: Mapping[str, BehaviourSpec], result: Mapping[str, BehaviourStep],
               decided: Mapping[str, np.ndarray]) -> dict[str, BehaviourStep]:
        """``result`` with each behaviour's ``played`` filled from the reports of the agents that have a row in it;
        the others stay held. ``decided``: the agents of the last decisions, per behaviour, the only ones that
        could have acted (:func:`~sparring_engine.run` passes them)."""
        for name, ids in self._fresh.items():
            stray = np.setdiff1d(ids, decided.get(name, ids[:0]))
            if name not in specs or len(stray):
                self.discard()
                what = f"unknown behaviour {name!r}" if name not in specs else (
                    f"agents {stray.tolist()} of behaviour {name!r}, which did not decide at the last step")
                raise ValueError(f"an action was reported for {what}; report an agent's action in the step that "
                                 "answers its decision")
        self._fresh = {}
        out = dict(result)
        for name, ids in self._ids.items():
            step = result.get(name)
            if step is None or step.played is not None:  # the game filled it itself
                continue
            due = np.isin(ids, np.concatenate([step.decisions.agent_ids, step.terminals.agent_ids]))
            if not due.any():
                continue
            dtype, row = action_format(specs[name].action_space)
            actions = self._actions[name][due]
            if actions.shape[1:] != row:
                raise ValueError(f"behaviour {name!r}: reported actions of shape {actions.shape[1:]} per agent, "
                                 f"expected {row} ({specs[name].action_space})")
            out[name] = dataclasses.replace(step, played=PlayedActions(ids[due], actions.astype(dtype, copy=False)))
            self._ids[name], self._actions[name] = ids[~due], self._actions[name][~due]
        return out

    def discard(self) -> None:
        """Forget every report not yet sent, as a Reset forgets the episodes it cuts off (:func:`run` calls it
        before each Reset)."""
        self._ids, self._actions, self._fresh = {}, {}, {}
