"""The trainer's side of the bridge messages: declared specs, observations, game statistics and actions, strictly
validated.

Everything an engine sends is untrusted (DESIGN section 4). Decoding checks it
against the declared spec and raises :class:`ProtocolError` naming the field,
e.g. ``behaviours[0].decision_obs[1]: expected float32 (n, 64), got (3, 63)``.
Tensors are ``numpy.frombuffer`` views of the message bytes: no per-element work.
The wire format itself (frames, tensors, constants) is ``sparring.protos.wire``,
shared with the engine SDK; the engine's side of these messages is
``sparring_engine.messages``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from sparring.envs.base import BehaviourStep, DecisionSteps, GameStats, PlayedActions, StepResult, TerminalSteps
from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.protos.wire import (
    DTYPES, MAX_AGENT_ID, PROTOCOL_VERSION, STAT_AGGREGATIONS, ProtocolError, Serialized, decode_tensor, read_tensor,
)
from sparring.spec import BehaviourSpec, Obs, empty_actions, team_of

__all__ = [
    "DEFAULT_LIMITS", "PROTOCOL_VERSION", "ProtocolError", "SpecLimits", "decode_observations", "decode_stats",
    "encode_actions", "serialize_actions", "spec_difference", "spec_from_proto", "specs_from_hello",
]


# -- specs -------------------------------------------------------------------


@dataclass(frozen=True)
class SpecLimits:
    """What an engine may declare in its Hello; every declaration is checked against these before anything is
    allocated for it, so no Hello can make the trainer build a policy it has no memory for.

    With the defaults, the largest behaviour's policy (two 256-unit layers, actor and critic, with Adam's
    state) takes about 0.8 GB: 65,536 inputs is a 256 x 256 image, or 128 x 128 in colour.
    """

    max_behaviours: int = 64
    max_observation_elements: int = 2**16  # per agent, all components together
    max_action_choices: int = 2**16  # discrete actions, all branches together (the width of the logits and mask)
    max_action_dims: int = 1024  # continuous action values, or discrete branches
    max_name_length: int = 256  # behaviour, component and engine names

    def check_name(self, name: str, field: str, what: str) -> None:
        if not name:
            raise ProtocolError(field, f"{what} needs a name")
        if len(name) > self.max_name_length:
            raise ProtocolError(field, f"{what} name of {len(name)} characters; the limit is {self.max_name_length} "
                                       "(max_name_length)")
        if any(ord(c) < 32 or c in "/\\" for c in name):
            raise ProtocolError(field, f"{what} name {name!r} contains a control character or a path separator")


DEFAULT_LIMITS = SpecLimits()


def _box_shape(msg: pb.BoxSpace, field: str, max_elements: int, setting: str) -> tuple[int, ...]:
    """A Box's shape, refused (naming ``setting``) before anything of that size exists if it holds more than
    ``max_elements`` values."""
    if len(msg.shape) > 8:
        raise ProtocolError(f"{field}.shape", f"{len(msg.shape)} dimensions; at most 8 are supported")
    shape = tuple(int(d) for d in msg.shape)
    if any(d <= 0 for d in shape):
        raise ProtocolError(f"{field}.shape", f"dimensions must be positive, got {list(shape)}")
    if math.prod(shape) > max_elements:
        raise ProtocolError(f"{field}.shape", f"{list(shape)} holds {math.prod(shape):,} values per agent; the limit is "
                                              f"{max_elements:,} ({setting})")
    return shape


def _box_from_proto(msg: pb.BoxSpace, field: str, shape: tuple[int, ...]) -> spaces.Box:
    """A Box of ``shape`` (checked by :func:`_box_shape`) with the message's dtype and bounds."""
    dtype = DTYPES.get(msg.dtype)
    if dtype is None or dtype.kind == "b":
        raise ProtocolError(f"{field}.dtype", f"unknown or unsupported Box dtype {msg.dtype}")
    bounds = []
    for name, default in (("low", -np.inf), ("high", np.inf)):
        if msg.HasField(name):
            value = decode_tensor(getattr(msg, name), f"{field}.{name}").astype(np.float64)
            if np.isnan(value).any():
                raise ProtocolError(f"{field}.{name}", "NaN bound; leave the bound out (or send inf) for no bound")
            try:
                value = np.broadcast_to(value, shape)
            except ValueError:
                raise ProtocolError(f"{field}.{name}", f"shape {list(value.shape)} does not broadcast to {list(shape)}") from None
        else:
            value = np.full(shape, default)
        bounds.append(value)
    low, high = bounds
    if (low > high).any():
        at = tuple(int(i) for i in np.argwhere(low > high)[0])
        raise ProtocolError(f"{field}.low", f"low {low[at]} is above high {high[at]} at index {list(at)}")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = np.clip(low, info.min, info.max), np.clip(high, info.min, info.max)
    return spaces.Box(low.astype(dtype), high.astype(dtype), shape, dtype)


def spec_from_proto(
    msg: pb.BehaviourSpec, field: str, limits: SpecLimits = DEFAULT_LIMITS
) -> tuple[BehaviourSpec, bool]:
    """``(spec, has_action_mask)`` from a Hello's behaviour declaration, within ``limits``."""
    limits.check_name(msg.name, f"{field}.name", "a behaviour")
    if not msg.observations:
        raise ProtocolError(f"{field}.observations", "a behaviour needs at least one observation component")
    budget, shapes = limits.max_observation_elements, []
    for i, component in enumerate(msg.observations):
        where = f"{field}.observations[{i}]"
        limits.check_name(component.name, f"{where}.name", "an observation component")
        shapes.append(_box_shape(component.space, f"{where}.space", budget,
                                 "max_observation_elements, all components together"))
        budget -= math.prod(shapes[-1])
    names = [c.name for c in msg.observations]
    if len(set(names)) != len(names):
        raise ProtocolError(f"{field}.observations", f"component names must be unique, got {names}")
    boxes = {c.name: _box_from_proto(c.space, f"{field}.observations[{i}].space", shape)
             for i, (c, shape) in enumerate(zip(msg.observations, shapes))}
    # OrderedDict: gymnasium sorts a plain dict's keys, but tensors travel in declared order.
    observation = boxes["obs"] if names == ["obs"] else spaces.Dict(OrderedDict(boxes))
    kind = msg.WhichOneof("action")
    if kind == "discrete":
        if not 0 < msg.discrete.n <= limits.max_action_choices:
            raise ProtocolError(f"{field}.discrete.n", f"must lie in [1, {limits.max_action_choices:,}] "
                                                       f"(max_action_choices), got {msg.discrete.n:,}")
        action: spaces.Space = spaces.Discrete(msg.discrete.n)
    elif kind == "multi_discrete":
        nvec = msg.multi_discrete.nvec
        if not nvec or len(nvec) > limits.max_action_dims or min(nvec) <= 0:
            raise ProtocolError(f"{field}.multi_discrete.nvec", f"needs 1 to {limits.max_action_dims} positive branch "
                                                                f"sizes (max_action_dims), got {len(nvec)}")
        if sum(nvec) > limits.max_action_choices:
            raise ProtocolError(f"{field}.multi_discrete.nvec", f"{sum(nvec):,} actions over all branches; the limit is "
                                                                f"{limits.max_action_choices:,} (max_action_choices)")
        action = spaces.MultiDiscrete(list(nvec))
    elif kind == "continuous":
        where = f"{field}.continuous"
        shape = _box_shape(msg.continuous, where, limits.max_action_dims, "max_action_dims")
        action = _box_from_proto(msg.continuous, where, shape)
        if action.dtype.kind != "f":
            raise ProtocolError(f"{where}.dtype", "continuous actions must be float32 or float64")
        action = spaces.Box(action.low.astype(np.float32), action.high.astype(np.float32), action.shape, np.float32)
    else:
        raise ProtocolError(f"{field}.action", "no action space declared (discrete, multi_discrete or continuous)")
    if msg.has_action_mask and kind == "continuous":
        raise ProtocolError(f"{field}.has_action_mask", "action masks need discrete actions")
    named = team_of(msg.name)  # ML-Agents' way to say a team: "Striker?team=1"
    if msg.has_team and named is not None and named != msg.team_id:
        raise ProtocolError(f"{field}.team_id", f"{msg.team_id}, but the name {msg.name!r} says team {named}")
    spec = BehaviourSpec(msg.name, observation, action, msg.team_id if msg.has_team else named)
    return spec, msg.has_action_mask


def specs_from_hello(
    hello: pb.Hello, limits: SpecLimits = DEFAULT_LIMITS
) -> tuple[dict[str, BehaviourSpec], set[str]]:
    """Behaviour specs declared in a Hello, and the names of those that send action masks, within ``limits``."""
    specs, masked = {}, set()
    if not hello.behaviours:
        raise ProtocolError("hello.behaviours", "an engine must declare at least one behaviour")
    if len(hello.behaviours) > limits.max_behaviours:
        raise ProtocolError("hello.behaviours", f"{len(hello.behaviours)} behaviours; the limit is "
                                                f"{limits.max_behaviours} (max_behaviours)")
    if hello.engine_name:
        limits.check_name(hello.engine_name, "hello.engine_name", "an engine")
    for i, declared in enumerate(hello.behaviours):
        spec, has_mask = spec_from_proto(declared, f"hello.behaviours[{i}]", limits)
        if spec.name in specs:
            raise ProtocolError(f"hello.behaviours[{i}].name", f"behaviour {spec.name!r} declared twice")
        specs[spec.name] = spec
        if has_mask:
            masked.add(spec.name)
    return specs, masked


def spec_difference(
    run: Mapping[str, BehaviourSpec], run_masked: set[str], specs: Mapping[str, BehaviourSpec], masked: set[str]
) -> str | None:
    """How an engine's declaration differs from the run's (``None``: it does not), in words an engine author
    can act on: the behaviours missing or extra, then, per behaviour, what of it differs."""
    problems = []
    missing, extra = sorted(set(run) - set(specs)), sorted(set(specs) - set(run))
    if missing:
        problems.append(f"behaviours {missing} are missing")
    if extra:
        problems.append(f"behaviours {extra} are not in the run")
    for name in sorted(set(run) & set(specs)):
        want, got = run[name], specs[name]
        parts = []
        want_obs, got_obs = want.observation_components, got.observation_components
        if list(want_obs) != list(got_obs):
            parts.append(f"observation components {list(got_obs)} where the run has {list(want_obs)}")
        else:
            parts.extend(f"observation {key!r} is {_describe_box(got_obs[key])} where the run's is "
                         f"{_describe_box(want_obs[key])}" for key in want_obs if got_obs[key] != want_obs[key])
        if got.action_space != want.action_space:
            parts.append(f"actions are {got.action_space} where the run's are {want.action_space}")
        if got.team_id != want.team_id:
            parts.append(f"team {got.team_id} where the run has {want.team_id}")
        if (name in masked) != (name in run_masked):
            parts.append("it sends action masks and the run does not" if name in masked else
                         "it sends no action masks and the run does")
        problems.extend(f"behaviour {name!r}: {part}" for part in parts)
    return "; ".join(problems) or None


def _describe_box(box: spaces.Box) -> str:
    bounds = "" if (box.low == box.low.flat[0]).all() and (box.high == box.high.flat[0]).all() else " (per-element bounds)"
    return f"{box.dtype.name} {list(box.shape)} in [{box.low.flat[0]}, {box.high.flat[0]}]{bounds}"


# -- observations ------------------------------------------------------------


def _decode_ids(tensor: pb.Tensor, field: str) -> np.ndarray:
    ids = read_tensor(tensor, field, np.dtype("<i8"), (None,))
    if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():  # engines usually send ids sorted: then they are unique
        unique, counts = np.unique(ids, return_counts=True)
        if len(unique) != len(ids):
            raise ProtocolError(field, f"duplicate agent ids {unique[counts > 1].tolist()}")
        low, high = unique[0], unique[-1]
    elif len(ids):
        low, high = ids[0], ids[-1]
    else:
        return ids
    if low < 0 or high > MAX_AGENT_ID:
        raise ProtocolError(field, f"agent ids must lie in [0, {MAX_AGENT_ID}], got {low}..{high}")
    return ids


def _decode_obs(spec: BehaviourSpec, tensors, n: int, field: str) -> Obs:
    components = spec.observation_components
    if len(tensors) != len(components):
        raise ProtocolError(field, f"{len(tensors)} tensors for {len(components)} observation components {list(components)}")
    parts = {}
    for i, (key, box) in enumerate(components.items()):
        where = f"{field}[{i}]"
        array = read_tensor(tensors[i], where, box.dtype, (n, *box.shape))
        if box.dtype.kind == "f" and not np.isfinite(array).all():
            bad = np.flatnonzero(~np.isfinite(array.reshape(n, -1)).all(axis=1)).tolist()
            raise ProtocolError(where, f"non-finite values (NaN or Inf) in rows {bad}")
        parts[key] = array
    return parts if isinstance(spec.observation_space, spaces.Dict) else parts["obs"]


def _decode_rewards(tensor: pb.Tensor, n: int, field: str) -> np.ndarray:
    rewards = read_tensor(tensor, field, np.dtype("<f4"), (n,))
    if not np.isfinite(rewards).all():
        raise ProtocolError(field, f"non-finite rewards in rows {np.flatnonzero(~np.isfinite(rewards)).tolist()}")
    return rewards


def decode_observations(
    msg: pb.Observations, specs: Mapping[str, BehaviourSpec], masked: set[str]
) -> StepResult:
    """Trainer side: an Observations message as a validated step result (every behaviour present)."""
    result: StepResult = {}
    for i, entry in enumerate(msg.behaviours):
        where = f"observations.behaviours[{i}]"
        spec = specs.get(entry.behaviour)
        if spec is None:
            raise ProtocolError(f"{where}.behaviour", f"unknown behaviour {entry.behaviour!r}; declared: {sorted(specs)}")
        if entry.behaviour in result:
            raise ProtocolError(f"{where}.behaviour", f"behaviour {entry.behaviour!r} appears twice")
        if entry.HasField("decision_ids"):
            decisions = _decode_decisions(entry, spec, entry.behaviour in masked, where)
        else:  # no decisions this step (the other decision_* fields are ignored)
            decisions = DecisionSteps.empty(spec)
        if entry.HasField("terminal_ids"):
            terminals = _decode_terminals(entry, spec, where)
        else:
            terminals = TerminalSteps.empty(spec)
        played = _decode_played(entry, spec, decisions, terminals, where)
        result[entry.behaviour] = BehaviourStep(decisions, terminals, played=played)
    for name, spec in specs.items():
        if name not in result:
            result[name] = BehaviourStep.empty(spec)
    return result


def _decode_decisions(entry: pb.BehaviourObservations, spec: BehaviourSpec, masked: bool, where: str) -> DecisionSteps:
    ids = _decode_ids(entry.decision_ids, f"{where}.decision_ids")
    n = len(ids)
    obs = _decode_obs(spec, entry.decision_obs, n, f"{where}.decision_obs")
    rewards = _decode_rewards(entry.decision_rewards, n, f"{where}.decision_rewards")
    mask = None
    if masked:
        if not entry.HasField("action_mask"):
            raise ProtocolError(f"{where}.action_mask", f"behaviour {entry.behaviour!r} declared masks but sent none")
        mask = read_tensor(entry.action_mask, f"{where}.action_mask", np.dtype("?"), (n, spec.mask_size))
        if n and not _every_branch_allows_something(mask, spec.action_branches):
            raise ProtocolError(f"{where}.action_mask", "a row masks out every action of a branch")
    return DecisionSteps(ids, obs, rewards, mask, *_decode_groups(entry, "decision", n, where))


def _decode_terminals(entry: pb.BehaviourObservations, spec: BehaviourSpec, where: str) -> TerminalSteps:
    ids = _decode_ids(entry.terminal_ids, f"{where}.terminal_ids")
    m = len(ids)
    obs = _decode_obs(spec, entry.terminal_obs, m, f"{where}.terminal_obs")
    rewards = _decode_rewards(entry.terminal_rewards, m, f"{where}.terminal_rewards")
    truncated = read_tensor(entry.terminal_truncated, f"{where}.terminal_truncated", np.dtype("?"), (m,))
    return TerminalSteps(ids, obs, rewards, truncated, *_decode_groups(entry, "terminal", m, where))


def _decode_groups(
    entry: pb.BehaviourObservations, kind: str, n: int, where: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(group ids, group rewards)`` of the ``kind`` rows ("decision" or "terminal"); ``None`` where the engine
    sent none (no group, nothing earned). A group reward needs a group: rewards for group 0 are refused, as they
    would be an engine's bookkeeping bug that learners would silently train on."""
    ids_field, rewards_field = f"{kind}_group_ids", f"{kind}_group_rewards"
    ids = rewards = None
    if entry.HasField(ids_field):
        ids = read_tensor(getattr(entry, ids_field), f"{where}.{ids_field}", np.dtype("<i8"), (n,))
        if n and (ids.min() < 0 or ids.max() > MAX_AGENT_ID):
            raise ProtocolError(f"{where}.{ids_field}", f"group ids must lie in [0, {MAX_AGENT_ID}] (0: no group), "
                                                        f"got {ids.min()}..{ids.max()}")
    if entry.HasField(rewards_field):
        rewards = _decode_rewards(getattr(entry, rewards_field), n, f"{where}.{rewards_field}")
        ungrouped = rewards != 0 if ids is None else (rewards != 0) & (ids == 0)
        if ungrouped.any():
            raise ProtocolError(f"{where}.{rewards_field}", f"group rewards for agents in no group (group id 0) in "
                                                            f"rows {np.flatnonzero(ungrouped).tolist()}; send "
                                                            f"{ids_field} with each agent's group")
    return ids, rewards


def _decode_played(
    entry: pb.BehaviourObservations, spec: BehaviourSpec, decisions: DecisionSteps, terminals: TerminalSteps, where: str
) -> PlayedActions | None:
    """The actions the engine took itself at its agents' previous decisions (protocol version 3), checked: ids of
    this message's rows, each once, and actions the behaviour's action space allows; ``None`` if none were sent."""
    if not entry.HasField("played_ids"):
        if entry.HasField("played_actions"):
            raise ProtocolError(f"{where}.played_ids", "played_actions sent without played_ids (which agents took them)")
        return None
    field = f"{where}.played_ids"
    ids = _decode_ids(entry.played_ids, field)
    rowless = np.setdiff1d(ids, np.concatenate([decisions.agent_ids, terminals.agent_ids]))
    if len(rowless):
        raise ProtocolError(field, f"agents {rowless.tolist()} have no decision or terminal row in this message; a "
                                   "played action travels with the agent's next row")
    field = f"{where}.played_actions"
    if not entry.HasField("played_actions"):
        raise ProtocolError(field, f"{len(ids)} played_ids but no played_actions")
    rows = empty_actions(spec)  # the dtype and row shape of the behaviour's actions, as in Actions
    actions = read_tensor(entry.played_actions, field, rows.dtype.newbyteorder("<"), (len(ids), *rows.shape[1:]))
    bad = _invalid_action_rows(spec, actions)
    if len(bad):
        raise ProtocolError(field, f"actions outside behaviour {spec.name!r}'s action space {spec.action_space} in "
                                   f"rows {bad.tolist()}")
    return PlayedActions(ids, actions)


def _invalid_action_rows(spec: BehaviourSpec, actions: np.ndarray) -> np.ndarray:
    """Rows of ``actions`` that no agent of ``spec`` could take: a choice out of range, a non-finite value."""
    flat = actions.reshape(len(actions), -1)
    if isinstance(spec.action_space, spaces.Box):
        ok = np.isfinite(flat)
    else:
        ok = (flat >= 0) & (flat < np.asarray(spec.action_branches))
    return np.flatnonzero(~ok.all(axis=1))


def decode_stats(msg: pb.Observations, aggregations: dict[str, str]) -> GameStats:
    """An Observations message's game statistics, per key in order, checked: a name the trainer can log under, a
    finite value, a known aggregation, and the same aggregation as the key's earlier values (``aggregations``,
    the session's keys so far, which this extends)."""
    stats: GameStats = {}
    for i, stat in enumerate(msg.stats):
        where = f"observations.stats[{i}]"
        key = stat.key
        if not key or len(key) > DEFAULT_LIMITS.max_name_length or any(ord(c) < 32 for c in key):
            raise ProtocolError(f"{where}.key", f"a statistic needs a name of 1 to {DEFAULT_LIMITS.max_name_length} "
                                                f"characters without control characters, got {key!r}")
        if not math.isfinite(stat.value):
            raise ProtocolError(f"{where}.value", f"statistic {key!r}: non-finite value {stat.value}")
        aggregation = _AGGREGATION_NAMES.get(stat.aggregation)
        if aggregation is None:
            raise ProtocolError(f"{where}.aggregation", f"statistic {key!r}: unknown aggregation {stat.aggregation}; "
                                                        f"one of {dict(STAT_AGGREGATIONS)}")
        first = aggregations.setdefault(key, aggregation)
        if first != aggregation:
            raise ProtocolError(f"{where}.aggregation", f"statistic {key!r} was recorded with aggregation {first!r}, "
                                                        f"now {aggregation!r}; a key keeps its aggregation")
        stats.setdefault(key, []).append((stat.value, aggregation))
    return stats


_AGGREGATION_NAMES = {number: name for name, number in STAT_AGGREGATIONS.items()}


def _every_branch_allows_something(mask: np.ndarray, branches: tuple[int, ...]) -> bool:
    starts = np.cumsum((0, *branches[:-1]))
    return bool(np.logical_or.reduceat(mask, starts, axis=1).all())


# -- actions -----------------------------------------------------------------


def serialize_actions(
    step: int, actions: Mapping[str, np.ndarray], parameters: Mapping[str, float] | None = None
) -> Serialized:
    """Trainer side: the ``TrainerMessage`` carrying the batch of actions for the last decisions, and any
    environment parameters that changed, serialized by reference (the arrays are not copied until the kernel
    gathers them)."""
    body = Serialized()
    body.uint(1, step)
    for name, batch in actions.items():
        entry = Serialized()
        entry.string(1, name)
        entry.tensor(2, batch)
        body.message(2, entry)
    if parameters:  # field 3, after the behaviours: protobuf's own bytes for the map
        body.raw(pb.Actions(environment_parameters=parameters).SerializeToString())
    message = Serialized()
    message.message(4, body)  # TrainerMessage.actions
    return message


def encode_actions(
    step: int, actions: Mapping[str, np.ndarray], parameters: Mapping[str, float] | None = None
) -> pb.Actions:
    """The Actions message :func:`serialize_actions` sends, parsed back."""
    return pb.TrainerMessage.FromString(serialize_actions(step, actions, parameters).tobytes()).actions
