"""Recording demonstrations: a person (or a scripted heuristic) plays the game, and every decision they make becomes a
record of an ML-Agents ``.demo`` file, for behavioural cloning and GAIL.

In a recording session (bridge protocol version 3, ``Welcome.recording``) the game plays every agent itself and
reports, with each agent's next row, the action it took at the agent's previous decision
(:class:`~sparring.envs.base.PlayedActions`). :class:`Recorder` pairs each decision's observation with that action
and writes records the way ML-Agents' ``demo_loader`` reads them:

- record ``t`` of an episode: the observation at decision ``t``, the action taken there, the reward *received* at
  decision ``t`` (earned by the previous action, as Unity's ``AgentInfo.reward``), ``done`` false. The loader
  takes a transition's reward and ``done`` from the record after it, so ``(obs_t, a_t)`` learns from ``r_{t+1}``;
- the episode's end is one more record: the final observation, a zero action (Unity clears it there), the last
  reward, ``done`` true and ``max_step_reached`` when a time limit cut the episode short.

Each agent's episode is written in one piece once it ends, under an id of its own (as Unity's recorder writes
episode ids), so a file reads as consecutive trajectories: ``mlagents-learn`` reads a file as one agent's. When
the recording stops, episodes under way are written as far as their decisions have actions, without an end::

    with make_env(config.env, recording=True) as env:
        report = record(env, "demos/runner.demo", "Runner", episodes=10)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparring.envs.base import BehaviourStep, MultiAgentEnv, StepResult
from sparring.envs.bridge.server import SessionError
from sparring.envs.supervision import EngineFailure
from sparring.envs.demonstrations import DemonstrationWriter
from sparring.envs.vector import split_agent_ids
from sparring.protos.wire import ProtocolError
from sparring.spec import Batch, BehaviourSpec, Obs, batch_concat, batch_take, empty_actions

UNITY_REFUSAL = (
    "sparring cannot record a Unity build: ML-Agents' protocol carries no actions from Unity to the trainer (its "
    "AgentInfoProto has observations, reward, done, mask and group fields, no action), and an agent whose "
    "Heuristic() a person drives (Behavior Type 'Heuristic Only') does not talk to the trainer at all. Record in "
    "Unity instead: add a Demonstration Recorder component to the agent, tick Record, and play; sparring reads the "
    ".demo files it writes (sparring.envs.demonstrations.load_demonstrations)"
)
"""Why ``sparring record`` refuses a Unity source, and what to use instead."""


class RecordingError(RuntimeError):
    """The game broke a recording session's contract: an agent that decided came back without the action it took."""


@dataclass
class RecordingReport:
    """How a recording went.

    Attributes:
        path: the ``.demo`` file, or ``None`` when nothing was recorded (no file is left behind then).
        behaviour: the behaviour recorded.
        decisions: records of a decision and the action taken there.
        episodes: episodes recorded to their end.
        unfinished: episodes under way when the recording stopped, written up to their last reported action.
        stopped: why the recording ended, in words.
        complete: the recording ended as asked (its stop condition reached; without one, the game closed or Ctrl-C).
    """

    path: Path | None
    behaviour: str
    decisions: int
    episodes: int
    unfinished: int
    stopped: str
    complete: bool

    def __str__(self) -> str:
        where = f"to {self.path}" if self.path is not None else "(nothing was written)"
        partial = f", and {self.unfinished} unfinished" if self.unfinished else ""
        return (f"recorded {self.decisions} decisions of {self.behaviour!r} in {self.episodes} finished episodes"
                f"{partial} {where}; {self.stopped}")


@dataclass
class _Row:
    """One record waiting for its episode to be written: a 1-row batch of each field."""

    obs: Obs
    action: Batch
    reward: float
    done: bool
    truncated: bool
    mask: np.ndarray | None


class Recorder:
    """Turns one behaviour's step results into demonstration records (see the module docstring for their layout).

    Call :meth:`observe` with the behaviour's share of every result, from the Reset's on, and :meth:`finish` once at
    the end.
    """

    def __init__(self, writer: DemonstrationWriter, spec: BehaviourSpec) -> None:
        self.writer = writer
        self.spec = spec
        self.decisions = 0
        self.episodes = 0
        self.unfinished = 0
        self._pending: dict[int, _Row] = {}  # per agent: its last decision, awaiting the action taken there
        self._rows: dict[int, list[_Row]] = {}  # per agent: the records of its episode under way
        self._next_id = 0

    def observe(self, step: BehaviourStep) -> None:
        """Take one result: actions played complete the decisions they answer, ends write episodes, and new
        decisions wait for their actions. :class:`RecordingError` if an agent's next row came without its action."""
        played = step.played
        if played is not None:
            for i, agent in enumerate(played.agent_ids.tolist()):
                row = self._pending.pop(agent, None)
                if row is not None:  # a report for an agent with nothing pending has nothing to pair with
                    row.action = batch_take(played.actions, slice(i, i + 1))
                    self._rows.setdefault(agent, []).append(row)
                    self.decisions += 1
        terminals, decisions = step.terminals, step.decisions
        unanswered = sorted({a for a in (*terminals.agent_ids.tolist(), *decisions.agent_ids.tolist())
                             if a in self._pending})
        if unanswered:
            raise RecordingError(f"{_agents(unanswered)} of behaviour {self.spec.name!r} came back without the action "
                                 "the game took at their previous decision; in a recording session the game plays every "
                                 "agent itself and must report each action its player took (protocol: "
                                 "BehaviourObservations.played_ids and played_actions; Python SDK: "
                                 "ActionReports.report)")
        for i, agent in enumerate(terminals.agent_ids.tolist()):
            rows = self._rows.pop(agent, [])
            if rows:  # an episode with a recorded decision; an agent that never decided left nothing to end
                rows.append(_Row(batch_take(terminals.obs, slice(i, i + 1)), empty_actions(self.spec, 1),
                                 float(terminals.rewards[i]), True, bool(terminals.truncated[i]), None))
                self._write(rows)
                self.episodes += 1
        mask = decisions.action_mask
        for i, agent in enumerate(decisions.agent_ids.tolist()):
            self._pending[agent] = _Row(batch_take(decisions.obs, slice(i, i + 1)), None, float(decisions.rewards[i]),
                                        False, False, None if mask is None else mask[i:i + 1])
        for agent in step.lost.tolist():  # its game went away mid-episode: keep what it recorded
            self._pending.pop(agent, None)
            self._finish_agent(agent)

    def finish(self) -> None:
        """Write the episodes under way as far as their decisions have actions (the last decision of each has none
        yet, and is dropped)."""
        self._pending.clear()
        for agent in list(self._rows):
            self._finish_agent(agent)

    def _finish_agent(self, agent: int) -> None:
        rows = self._rows.pop(agent, [])
        if rows:
            self._write(rows)
            self.unfinished += 1

    def _write(self, rows: list[_Row]) -> None:
        n = len(rows)
        masks = None
        if self.spec.mask_size and any(row.mask is not None for row in rows):
            masks = np.concatenate([np.ones((1, self.spec.mask_size), bool) if row.mask is None else row.mask
                                    for row in rows])
        self.writer.add(np.full(n, self._next_id, np.int64), batch_concat([row.obs for row in rows]),
                        batch_concat([row.action for row in rows]), np.array([row.reward for row in rows], np.float32),
                        np.array([row.done for row in rows]), np.array([row.truncated for row in rows]), masks)
        self._next_id += 1


def choose_behaviour(specs: Mapping[str, BehaviourSpec], behaviour: str | None) -> str:
    """The behaviour to record: ``behaviour`` if the game has it, or the game's only one; ``ValueError`` naming the
    behaviours there are otherwise."""
    if behaviour is None:
        if len(specs) == 1:
            return next(iter(specs))
        raise ValueError(f"the game has behaviours {sorted(specs)}: say which to record with --behaviour")
    if behaviour not in specs:
        raise ValueError(f"the game has no behaviour {behaviour!r}; its behaviours are {sorted(specs)}")
    return behaviour


def record(
    env: MultiAgentEnv,
    path: str | Path,
    behaviour: str | None = None,
    *,
    episodes: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    name: str | None = None,
) -> RecordingReport:
    """Record ``behaviour`` of ``env``, an env whose games play every agent themselves (``make_env(...,
    recording=True)``), to the ``.demo`` file ``path``.

    Resets ``env`` with ``seed``, then steps it (the game ignores the action rows it is sent) until ``episodes``
    episodes have ended or ``steps`` decisions have been recorded, whichever comes first; without either, until
    the game closes or Ctrl-C. A game that leaves, or that does not report an action it took, ends the recording
    early; what was recorded is kept in a file that loads, and the report says why it stopped. A file with no
    record is not kept. ``name``: the demonstration name in the file (default: the file's stem).
    """
    behaviour = choose_behaviour(env.specs, behaviour)
    spec = env.specs[behaviour]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    goal_episodes = math.inf if episodes is None else episodes
    goal_steps = math.inf if steps is None else steps
    open_ended = episodes is None and steps is None
    with DemonstrationWriter(path, spec, name) as writer:
        recorder = Recorder(writer, spec)
        try:
            result = env.reset(seed=seed)
            while True:
                recorder.observe(result[behaviour])
                if recorder.episodes >= goal_episodes or recorder.decisions >= goal_steps:
                    stopped, complete = _reached(recorder, episodes, steps), True
                    break
                gone = _engines_gone(env, result)
                if gone:
                    stopped, complete = f"the game left: {gone}", open_ended
                    break
                result = env.step(_ignored_actions(env.specs, result))
        except RecordingError as exc:
            stopped, complete = f"stopped: {exc}", False
        except KeyboardInterrupt:
            stopped, complete = "interrupted (Ctrl-C)", open_ended
        except (SessionError, ProtocolError, EngineFailure) as exc:  # a single BridgeEnv's, or a fleet given up on
            stopped, complete = f"the game left: {exc}", open_ended
        finally:
            recorder.finish()
    kept = len(writer) > 0
    if not kept:
        path.unlink(missing_ok=True)
    return RecordingReport(path if kept else None, behaviour, recorder.decisions, recorder.episodes,
                           recorder.unfinished, stopped, complete)


def _reached(recorder: Recorder, episodes: int | None, steps: int | None) -> str:
    if episodes is not None and recorder.episodes >= episodes:
        return f"stopped after {episodes} episodes, as asked"
    return f"stopped after {steps} decisions, as asked"


def _engines_gone(env: MultiAgentEnv, result: StepResult) -> str:
    """Why a game of ``env`` went away during the last step (``""``: none did). A fleet of engines
    (:class:`~sparring.envs.bridge.env.MultiEngineEnv`) reports it as lost agents and engines not up."""
    up = getattr(env, "engines_up", None)
    lost = any(len(part.lost) for part in result.values())
    if not lost and (up is None or up >= getattr(env, "num_envs", 1)):
        return ""
    failures = getattr(env, "failures", None)
    return failures[-1] if failures else "its connection ended"


def _ignored_actions(specs: Mapping[str, BehaviourSpec], result: StepResult) -> dict[str, Batch]:
    """One row per deciding agent, as ``step`` takes them; a recording session sends none of them to the game."""
    return {name: empty_actions(specs[name], len(part.decisions)) for name, part in result.items() if len(part.decisions)}


def _agents(ids: list[int]) -> str:
    """Agent ids in words, with the engine slot when there are several (``slot * 2**32 + local id``)."""
    slots, local = split_agent_ids(np.asarray(ids, np.int64))
    if not slots.any():
        return f"agents {local.tolist()}"
    return "agents " + ", ".join(f"{l} of engine slot {s}" for s, l in zip(slots.tolist(), local.tolist()))
