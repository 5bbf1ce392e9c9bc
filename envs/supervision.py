"""Keeping a fleet of game instances training while some of them crash, hang or misbehave.

Game builds are the least reliable part of training. Both fleets of running
games, :class:`~sparring.envs.bridge.env.MultiEngineEnv` (sparring's bridge) and
:class:`~sparring.envs.unity.MultiUnityEnv` (Unity builds through mlagents-envs),
handle a failing instance the same way, with the pieces here:

- :class:`LiveAgents` knows which agents of an instance are mid-episode, so that
  when it fails they are reported in ``BehaviourStep.lost`` (never as terminals:
  no final observation exists) and learners drop their unfinished transitions.
- :class:`RestartBudget` counts failures by kind, logs them, and decides when a
  slot is relaunched (exponential backoff) and when training must stop
  (:class:`EngineFailure`, after ``max_restarts`` relaunches of one slot).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np

from sparring.envs.base import BehaviourStep, DecisionSteps, StepResult, TerminalSteps
from sparring.spec import BehaviourSpec

NO_IDS = np.zeros(0, np.int64)
NO_IDS.flags.writeable = False


class EngineFailure(RuntimeError):
    """An engine slot (one game instance) failed more often than ``max_restarts`` allows; the env has been closed.

    Attributes:
        slot: the failing slot.
        last_failure: what went wrong the last time.
    """

    def __init__(self, message: str, slot: int, last_failure: str) -> None:
        super().__init__(message)
        self.slot = slot
        self.last_failure = last_failure


class LiveAgents:
    """The agents of one game instance whose episode is under way, per behaviour (sorted local ids)."""

    def __init__(self, behaviours: Sequence[str]) -> None:
        self._live = {name: NO_IDS for name in behaviours}

    def snapshot(self) -> dict[str, np.ndarray]:
        return dict(self._live)

    def update(self, result: StepResult, fresh: bool) -> None:
        """Follow one result; ``fresh``: it answers a reset, so only its decisions are live."""
        for name, part in result.items():
            decided = part.decisions.agent_ids
            if fresh:
                self._live[name] = np.sort(decided)
                continue
            live = self._live[name]
            ended = part.terminals.agent_ids
            if len(ended):
                live = np.setdiff1d(live, ended, assume_unique=True)
            # most steps the same agents decide again: then the live set is unchanged
            if len(decided) and not (len(decided) == len(live) and np.array_equal(decided, live)):
                live = np.union1d(live, decided)
            self._live[name] = live


def lost_result(specs: Mapping[str, BehaviourSpec], lost: Mapping[str, np.ndarray]) -> StepResult:
    """A step result in which nobody decides or ends and ``lost`` agents have left."""
    return {
        name: BehaviourStep(DecisionSteps.empty(spec), TerminalSteps.empty(spec), lost.get(name, NO_IDS))
        for name, spec in specs.items()
    }


class RestartBudget:
    """Failure counters and the relaunch schedule of ``num_slots`` game slots.

    Args:
        kinds: the failure kinds counted (``metrics`` also has ``restarts`` and ``lost_agents``).
        max_restarts: relaunches allowed per slot over the fleet's life; one more failure raises.
        restart_backoff: seconds before a slot's first relaunch; doubles with each further one,
            up to ``max_backoff``.

    Attributes:
        metrics: counters for logs and dashboards.
        failures: the most recent failure descriptions (up to 100), oldest first.
        restarts: relaunches so far, per slot.
    """

    def __init__(
        self,
        num_slots: int,
        kinds: Sequence[str],
        max_restarts: int = 5,
        restart_backoff: float = 0.5,
        max_backoff: float = 30.0,
        log: logging.Logger | None = None,
    ) -> None:
        self.max_restarts = max_restarts
        self.restart_backoff = restart_backoff
        self.max_backoff = max_backoff
        self.metrics: dict[str, int] = dict.fromkeys(("restarts", *kinds, "lost_agents"), 0)
        self.failures: deque[str] = deque(maxlen=100)
        self.restarts = [0] * num_slots
        self._log = log or logging.getLogger("sparring")

    def record(self, slot: int, kind: str, reason: str, lost: Mapping[str, np.ndarray]) -> None:
        """Count and log one failure of ``slot`` whose ``lost`` agents left mid-episode."""
        n_lost = int(sum(len(ids) for ids in lost.values()))
        self.metrics[kind] += 1
        self.metrics["lost_agents"] += n_lost
        self.failures.append(f"slot {slot}: {reason}")
        self._log.warning("engine slot %d failed (%s, %d agents lost): %s", slot, kind, n_lost, reason)

    def next_delay(self, slot: int, reason: str) -> float:
        """Seconds to wait before relaunching ``slot``; :class:`EngineFailure` once its budget is spent."""
        if self.restarts[slot] >= self.max_restarts:
            raise EngineFailure(
                f"engine slot {slot} failed {self.restarts[slot] + 1} times, more than max_restarts="
                f"{self.max_restarts} allows; last failure: {reason}", slot, reason)
        self.restarts[slot] += 1
        self.metrics["restarts"] += 1
        delay = min(self.restart_backoff * 2 ** (self.restarts[slot] - 1), self.max_backoff)
        self._log.info("relaunching engine slot %d in %.1f s (restart %d of at most %d)",
                       slot, delay, self.restarts[slot], self.max_restarts)
        return delay
