"""The engine's side of the bridge messages: its Hello, its Observations, and the trainer's Actions read back.

The counterpart of the trainer's ``sparring.envs.bridge.codec``; both build on the
shared wire format, ``sparring.protos.wire``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np

from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.protos.wire import DTYPE_CODES, PROTOCOL_VERSION, ProtocolError, decode_tensor, encode_tensor, expect, fill_tensor
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


def _fill_obs(tensors, spec: BehaviourSpec, obs) -> None:
    parts = [obs[key] for key in observation_components(spec.observation_space)] if isinstance(obs, dict) else [obs]
    for part in parts:
        fill_tensor(tensors.add(), part)


def encode_observations(
    step: int, specs: Mapping[str, BehaviourSpec], result: StepResult, out: pb.Observations | None = None
) -> pb.Observations:
    """A step result as an Observations message, filled into ``out`` if given.

    Pass the field of the message you will send (``engine_message.observations``)
    so the tensors are written once, where they are serialized from.
    """
    msg = pb.Observations() if out is None else out
    msg.step = step
    for name, part in result.items():
        d, t = part.decisions, part.terminals
        entry = msg.behaviours.add(behaviour=name)
        fill_tensor(entry.decision_ids, np.asarray(d.agent_ids).astype(np.int64, copy=False))
        _fill_obs(entry.decision_obs, specs[name], d.obs)
        fill_tensor(entry.decision_rewards, np.asarray(d.rewards).astype(np.float32, copy=False))
        if d.action_mask is not None:
            fill_tensor(entry.action_mask, np.asarray(d.action_mask).astype(bool, copy=False))
        if len(t.agent_ids):
            fill_tensor(entry.terminal_ids, np.asarray(t.agent_ids).astype(np.int64, copy=False))
            _fill_obs(entry.terminal_obs, specs[name], t.obs)
            fill_tensor(entry.terminal_rewards, np.asarray(t.rewards).astype(np.float32, copy=False))
            fill_tensor(entry.terminal_truncated, np.asarray(t.truncated).astype(bool, copy=False))
    return msg


def decode_actions(msg: pb.Actions, specs: Mapping[str, BehaviourSpec], counts: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Actions per behaviour, checked against the spec and the number of decisions asked for.

    A behaviour with no deciding agent may come with an empty entry (0 rows, passed on as such) or none.
    """
    out = {}
    for i, entry in enumerate(msg.behaviours):
        where = f"actions.behaviours[{i}].actions"
        spec = specs.get(entry.behaviour)
        if spec is None:
            raise ProtocolError(f"actions.behaviours[{i}].behaviour", f"unknown behaviour {entry.behaviour!r}")
        dtype, row = action_format(spec.action_space)
        out[entry.behaviour] = expect(decode_tensor(entry.actions, where), where, dtype,
                                      (counts.get(entry.behaviour, 0), *row))
    for name, n in counts.items():
        if n and name not in out:
            raise ProtocolError("actions.behaviours", f"no actions for behaviour {name!r}, which has {n} deciding agents")
    return out
