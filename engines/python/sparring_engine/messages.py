"""The engine's side of the bridge messages: its Hello, its Observations (with groups and statistics), and the trainer's
Actions read back.

The counterpart of the trainer's ``sparring.envs.bridge.codec``; both build on the
shared wire format, ``sparring.protos.wire``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np

from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.protos.wire import DTYPE_CODES, PROTOCOL_VERSION, ProtocolError, Serialized, encode_tensor, read_tensor
from sparring_engine.types import BehaviourSpec, StepResult, action_format, action_kind, observation_components


def _box_to_proto(box) -> pb.BoxSpace:
    dtype = np.dtype(box.dtype)
    shape = tuple(int(d) for d in box.shape)
    msg = pb.BoxSpace(shape=shape, dtype=DTYPE_CODES[dtype.name])
    for name in ("low", "high"):
        bound = np.broadcast_to(np.asarray(getattr(box, name), np.float64), shape)
        if np.isfinite(bound).any():
            getattr(msg, name).CopyFrom(encode_tensor(np.ascontiguousarray(bound)))
    return msg


def spec_to_proto(spec: BehaviourSpec, has_action_mask: bool = False) -> pb.BehaviourSpec:
    """How an engine declares a behaviour in its Hello (any spec with ``name``, ``observation_space``,
    ``action_space`` and ``team_id``, the trainer's own included)."""
    msg = pb.BehaviourSpec(name=spec.name, has_action_mask=has_action_mask)
    for key, box in observation_components(spec.observation_space).items():
        msg.observations.add(name=key, space=_box_to_proto(box))
    try:
        act, kind = spec.action_space, action_kind(spec.action_space)
    except ValueError as exc:
        raise ValueError(f"behaviour {spec.name!r}: {exc}") from None
    if kind == "discrete":
        msg.discrete.n = int(act.n)
    elif kind == "multi_discrete":
        msg.multi_discrete.nvec.extend(int(n) for n in np.atleast_1d(act.nvec))
    else:
        msg.continuous.CopyFrom(_box_to_proto(act))
    team = getattr(spec, "team_id", None)
    if team is not None:
        msg.has_team, msg.team_id = True, team
    return msg


def hello_message(specs: Mapping[str, BehaviourSpec], action_masks: Collection[str] = (), token: str = "",
                  engine_name: str = "python") -> pb.Hello:
    """The Hello declaring ``specs`` (``action_masks``: the behaviours whose decisions carry masks)."""
    hello = pb.Hello(protocol_version=PROTOCOL_VERSION, auth_token=token, engine_name=engine_name)
    hello.behaviours.extend(spec_to_proto(spec, name in action_masks) for name, spec in specs.items())
    return hello


def _observation_tensors(out: Serialized, number: int, spec: BehaviourSpec, obs) -> None:
    parts = [obs[key] for key in observation_components(spec.observation_space)] if isinstance(obs, dict) else [obs]
    for part in parts:
        out.tensor(number, part)


def serialize_observations(step: int, specs: Mapping[str, BehaviourSpec], result: StepResult,
                           stats: Sequence[pb.GameStat] = ()) -> Serialized:
    """A step result, and the game statistics recorded since the last one, as the serialized ``EngineMessage``
    that carries them, the arrays referenced, not copied.

    This is what :func:`run` sends each step: the kernel gathers the arrays into the frame. Group columns
    travel only for rows where some agent is in a group (or, wrongly, earns a group reward); played actions
    only for a behaviour whose ``played`` has rows.
    """
    observations = Serialized()
    observations.uint(1, step)
    for name, part in result.items():
        d, t = part.decisions, part.terminals
        entry = Serialized()
        entry.string(1, name)
        entry.tensor(2, np.asarray(d.agent_ids).astype(np.int64, copy=False))
        _observation_tensors(entry, 3, specs[name], d.obs)
        entry.tensor(4, np.asarray(d.rewards).astype(np.float32, copy=False))
        if d.action_mask is not None:
            entry.tensor(5, np.asarray(d.action_mask).astype(bool, copy=False))
        ended = len(t.agent_ids) > 0
        if ended:
            entry.tensor(6, np.asarray(t.agent_ids).astype(np.int64, copy=False))
            _observation_tensors(entry, 7, specs[name], t.obs)
            entry.tensor(8, np.asarray(t.rewards).astype(np.float32, copy=False))
            entry.tensor(9, np.asarray(t.truncated).astype(bool, copy=False))
        _group_tensors(entry, 10, d)
        if ended:
            _group_tensors(entry, 12, t)
        if part.played is not None and len(part.played.agent_ids):
            dtype, _ = action_format(specs[name].action_space)
            entry.tensor(14, np.asarray(part.played.agent_ids).astype(np.int64, copy=False))
            entry.tensor(15, np.asarray(part.played.actions).astype(dtype, copy=False))
        observations.message(2, entry)
    if stats:  # field 3, after the behaviours: protobuf's own bytes for them
        observations.raw(pb.Observations(stats=stats).SerializeToString())
    message = Serialized()
    message.message(2, observations)  # EngineMessage.observations
    return message


def _group_tensors(out: Serialized, number: int, rows) -> None:
    """Group ids and group rewards of ``rows`` as fields ``number`` and ``number + 1``, unless nobody is grouped."""
    group_ids = np.asarray(rows.group_ids).astype(np.int64, copy=False)
    group_rewards = np.asarray(rows.group_rewards).astype(np.float32, copy=False)
    if group_ids.any() or group_rewards.any():
        out.tensor(number, group_ids)
        out.tensor(number + 1, group_rewards)


def encode_observations(step: int, specs: Mapping[str, BehaviourSpec], result: StepResult,
                        stats: Sequence[pb.GameStat] = ()) -> pb.Observations:
    """A step result as an Observations message: what :func:`serialize_observations` sends, parsed back."""
    return pb.EngineMessage.FromString(serialize_observations(step, specs, result, stats).tobytes()).observations


def decode_actions(msg: pb.Actions, specs: Mapping[str, BehaviourSpec], counts: Mapping[str, int],
                   recording: bool = False) -> dict[str, np.ndarray]:
    """Actions per behaviour, checked against the spec and the number of decisions asked for.

    A behaviour with no deciding agent may come with an empty entry (0 rows, passed on as such) or none. In a
    ``recording`` session the trainer sends no entries at all: the game plays every agent itself.
    """
    out = {}
    for i, entry in enumerate(msg.behaviours):
        where = f"actions.behaviours[{i}].actions"
        spec = specs.get(entry.behaviour)
        if spec is None:
            raise ProtocolError(f"actions.behaviours[{i}].behaviour", f"unknown behaviour {entry.behaviour!r}")
        dtype, row = action_format(spec.action_space)
        out[entry.behaviour] = read_tensor(entry.actions, where, dtype, (counts.get(entry.behaviour, 0), *row))
    for name, n in counts.items():
        if n and name not in out and not recording:
            raise ProtocolError("actions.behaviours", f"no actions for behaviour {name!r}, which has {n} deciding agents")
    return out
