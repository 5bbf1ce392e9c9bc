"""A policy for the sparring Godot addon's own inference (``SparringPolicy``, GDScript, no .NET): the sidecar file
written beside a native export, and a numpy reference of what the addon computes, held to onnxruntime before the
file is kept.

The sidecar is a Godot text resource, ``<Behaviour>.policy.tres``, whose script is the addon's
``res://addons/sparring/policy.gd``: Godot loads it natively (``load()``, or the inspector's ``policy_path``), a
game's export includes it like any other resource, and it is readable text. Its numbers are PoolRealArrays written
with 9 significant digits, which round-trip float32 exactly (Godot parses them as doubles and stores float32).
A binary ``File.get_var()`` file would be smaller, but Godot's export leaves out files that are not resources
unless the game's export filter names them.

What it holds is the deterministic policy of the native graph: the observation normaliser (offset, scale, clip),
the actor's MLP (the actor half of PPO's twin MLPs, or SAC's actor), its head cut to the means and logits, and what
turns those into actions (masked argmax per branch, the mean clipped to the action Box, SAC's tanh squash). The
addon runs vector observations only: image (CNN) and entity-list (attention) encoders and recurrent (LSTM) policies
are refused, here and when the addon loads a file that describes one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sparring.agents.policy import MASKED_LOGIT, BehaviourPolicy
from sparring.agents.sac import SACActor

SUFFIX = ".policy.tres"
FORMAT_VERSION = 1
SCRIPT = "res://addons/sparring/policy.gd"
FLOAT32_MAX = float(np.finfo(np.float32).max)  # an unbounded side of the action Box: clipping to it changes nothing
ENCODERS = {"image": "a CNN encoder", "entities": "an attention encoder"}


def sidecar_path(onnx_path: str | Path) -> Path:
    """Where the sidecar of a native export lives: ``Runner.onnx`` -> ``Runner.policy.tres``."""
    return Path(onnx_path).with_suffix(SUFFIX)


def addon_problem(policy: BehaviourPolicy | SACActor, sample: bool = False) -> str | None:
    """Why the addon's GDScript inference cannot run ``policy`` (sampling its actions, with ``sample``), or None."""
    if sample and policy.continuous_size:
        return ("its actions are to be sampled, and SparringPolicy samples discrete actions only (continuous ones are "
                "its mean); sample the native .onnx's mean and log_std with onnxruntime instead")
    for component in policy.layout:
        if component.kind in ENCODERS:
            return (f"observation {component.key!r} is {'an image' if component.kind == 'image' else 'an entity list'} "
                    f"read by {ENCODERS[component.kind]}, and SparringPolicy runs vector observations only; run the "
                    "native .onnx with onnxruntime instead")
    if policy.memory_size:
        return ("it is a recurrent (LSTM) policy, and SparringPolicy runs memoryless policies only; run the native "
                ".onnx with onnxruntime instead")
    return None


def sidecar_fields(policy: BehaviourPolicy | SACActor, sample: bool = False) -> dict[str, object]:
    """The sidecar's properties (``SparringPolicy``'s exported variables), in the order they are written.

    ``weights[k]`` is layer k's ``(inputs, outputs)`` matrix in row-major order (``h @ W + b``); the last layer is the
    actor head, cut to the continuous means followed by the logits of every branch. ``sample``: the policy draws
    each discrete action from its softmax over the allowed actions instead of taking the most likely (a difficulty
    tier measured so).
    """
    problem = addon_problem(policy, sample)
    if problem:
        raise ValueError(f"behaviour {policy.spec.name!r}: {problem}")
    c, branches = policy.continuous_size, tuple(policy.branches)
    if isinstance(policy, SACActor):
        layers = [(layer.weight.T, layer.bias) for layer in policy.layers]
        layers.append((policy.head.weight.T[:, : c + sum(branches)], policy.head.bias[: c + sum(branches)]))
        activation = policy.activation
    else:
        trunk = policy.trunk
        layers = [(w[0], b[0, 0]) for w, b in zip(trunk.weights, trunk.biases)]
        layers.append((policy.actor_head.weight.T, policy.actor_head.bias))
        activation = trunk.activation
    layers = [(_floats(w), _floats(b)) for w, b in layers]
    norm = policy.normalizer
    box = policy.spec.continuous_space
    squash = isinstance(policy, SACActor) and c
    components = policy.spec.observation_components
    return {
        "format_version": FORMAT_VERSION,
        "behaviour": policy.spec.name,
        "observation_names": list(policy.obs_keys),
        "observation_sizes": [int(np.prod(components[key].shape)) for key in policy.obs_keys],
        "observation_kinds": [component.kind for component in policy.layout],
        "memory_size": int(policy.memory_size),
        "norm_offset": _floats(norm.offset) if norm is not None else _floats([]),
        "norm_scale": _floats(norm.scale) if norm is not None else _floats([]),
        "norm_clip": float(norm.clip) if norm is not None else 0.0,
        "activation": activation,
        "layer_sizes": [layers[0][0].shape[0], *(w.shape[1] for w, _ in layers)],
        "weights": [w.reshape(-1) for w, _ in layers],
        "biases": [b for _, b in layers],
        "continuous_size": c,
        "branches": list(branches),
        "action_low": _bound(box.low) if c else _floats([]),
        "action_high": _bound(box.high) if c else _floats([]),
        "squash_scale": _floats(policy.action_scale if squash else []),
        "squash_offset": _floats(policy.action_offset if squash else []),
        "sample_actions": sample,
    }


def _bound(values: np.ndarray) -> np.ndarray:
    """One side of the action Box, flattened, an infinite side as float32's largest value (text cannot hold inf)."""
    return _floats(np.nan_to_num(np.asarray(values, np.float64).reshape(-1), posinf=FLOAT32_MAX, neginf=-FLOAT32_MAX))


def _floats(values: object) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, np.float32)


# -- the text resource -----------------------------------------------------------------


def write_sidecar(fields: Mapping[str, object], path: str | Path) -> None:
    """Write ``fields`` as a Godot 3 text resource whose script is the addon's SparringPolicy."""
    lines = [
        '[gd_resource type="Resource" load_steps=2 format=2]', "",
        f'[ext_resource path="{SCRIPT}" type="Script" id=1]', "",
        "[resource]", "script = ExtResource( 1 )",
        *(f"{key} = {_godot_value(value)}" for key, value in fields.items()),
    ]
    Path(path).write_text("\n".join(lines) + "\n")


def _godot_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, np.ndarray):
        return f"PoolRealArray( {', '.join(_godot_float(v) for v in value.tolist())} )"
    if isinstance(value, float):
        return _godot_float(value)
    if isinstance(value, int):
        return str(value)
    if all(isinstance(v, np.ndarray) for v in value):
        return f"[ {', '.join(_godot_value(v) for v in value)} ]"
    if all(isinstance(v, str) for v in value):
        return f"PoolStringArray( {', '.join(json.dumps(v) for v in value)} )"
    return f"PoolIntArray( {', '.join(str(int(v)) for v in value)} )"


def _godot_float(value: float) -> str:
    text = "%.9g" % value  # 9 significant digits: the float32 it was, exactly, once parsed and rounded again
    return text if re.search(r"[.en]", text) else text + ".0"


def read_sidecar(path: str | Path) -> dict[str, object]:
    """The properties of a sidecar, as :func:`sidecar_fields` gives them (arrays as float32 numpy arrays)."""
    text = Path(path).read_text()
    fields: dict[str, object] = {}
    for line in text.split("[resource]", 1)[1].splitlines():
        key, _, value = line.partition(" = ")
        if key and key != "script":
            fields[key] = _python_value(value)
    return fields


def _python_value(text: str) -> object:
    if text.startswith("["):
        return [_python_value(part) for part in re.findall(r"PoolRealArray\([^)]*\)", text)]
    kind, _, inner = text.partition("(")
    inner = inner.rstrip(" )").strip()
    if kind == "PoolRealArray":
        return np.array([float(v) for v in inner.split(",") if v.strip()], np.float32)
    if kind == "PoolIntArray":
        return [int(v) for v in inner.split(",") if v.strip()]
    if kind == "PoolStringArray":
        return json.loads(f"[{inner}]")
    return json.loads(text)


# -- what the addon computes -------------------------------------------------------------


ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, np.float32(0)),
    "swish": lambda x: x / (np.float32(1) + np.exp(-x)),
}


def reference_outputs(fields: Mapping[str, object], rows: np.ndarray) -> np.ndarray:
    """The actor head's outputs (means, then logits) for flat observation rows ``(n, inputs)``, in float32 as the
    addon computes them."""
    x = rows.astype(np.float32)
    if len(fields["norm_offset"]):
        clip = np.float32(fields["norm_clip"])
        x = np.clip((x - fields["norm_offset"]) * fields["norm_scale"], -clip, clip)
    sizes = fields["layer_sizes"]
    act = ACTIVATIONS[fields["activation"]]
    last = len(fields["weights"]) - 1
    for k, (w, b) in enumerate(zip(fields["weights"], fields["biases"])):
        x = x @ w.reshape(sizes[k], sizes[k + 1]) + b
        if k < last:
            x = act(x)
    return x


def reference_actions(fields: Mapping[str, object], outputs: np.ndarray,
                      mask: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(continuous actions, discrete actions)`` from the head's outputs (None where the behaviour has no such
    part): the mean (SAC: squashed with tanh into the Box) clipped to the Box; the masked argmax of every branch."""
    c, branches = fields["continuous_size"], fields["branches"]
    continuous = discrete = None
    if c:
        u = outputs[:, :c]
        if len(fields["squash_scale"]):
            u = np.tanh(u) * fields["squash_scale"] + fields["squash_offset"]
        continuous = np.maximum(np.minimum(u, fields["action_high"]), fields["action_low"])
    if branches:
        logits = outputs[:, c:]
        if mask is not None:
            logits = np.where(mask, logits, np.float32(MASKED_LOGIT))
        starts = np.cumsum([0, *branches[:-1]])
        discrete = np.stack([logits[:, s : s + n].argmax(1) for s, n in zip(starts, branches)], 1)
    return continuous, discrete


# -- export ------------------------------------------------------------------------------


def export_sidecar(policy: BehaviourPolicy | SACActor, onnx_path: str | Path, target: str | Path,
                   checks: Sequence[tuple[str, Mapping[str, np.ndarray]]], sample: bool = False) -> str:
    """Write the sidecar of the native export at ``onnx_path`` (being written to ``target``) beside ``target``,
    after its reference forward pass agrees with onnxruntime on every ``checks`` feed (the exporter's random and
    recorded observations); one line for the export's report. A policy the addon cannot run gets no sidecar (a
    stale one is removed) and the line says why; a disagreement is an error, and nothing is written. ``sample``:
    as :func:`sidecar_fields` (the check is of the outputs and the most likely actions all the same)."""
    from sparring.export.exporter import ExportError

    side = sidecar_path(target)
    problem = addon_problem(policy, sample)
    if problem:
        side.unlink(missing_ok=True)
        return f"Godot addon policy: not written: {problem}"
    tmp = side.with_name(side.name + ".tmp")
    try:
        write_sidecar(sidecar_fields(policy, sample), tmp)
        fields = read_sidecar(tmp)  # verify what was written, not what was meant
        worst, rows = 0.0, 0
        for label, feeds in checks:
            try:
                worst = max(worst, _compare(policy, fields, onnx_path, feeds))
            except ValueError as exc:
                raise ExportError(f"Godot addon policy ({label}): {exc}") from None
            rows += len(next(iter(feeds.values())))
        tmp.replace(side)
    finally:
        tmp.unlink(missing_ok=True)
    return (f"Godot addon policy {side.name}: max abs difference {worst:.1e} from onnxruntime, deterministic actions "
            f"identical ({rows} rows)")


def _compare(policy: BehaviourPolicy | SACActor, fields: Mapping[str, object], onnx_path: str | Path,
             feeds: Mapping[str, np.ndarray]) -> float:
    """The largest difference between the sidecar's reference and onnxruntime on ``feeds`` (ValueError beyond the
    exporter's tolerance, or on any differing discrete action)."""
    from sparring.export.exporter import RELATIVE_TOLERANCE, TOLERANCE

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, dict(feeds))))
    n = len(next(iter(feeds.values())))
    rows = np.concatenate([np.asarray(feeds[key], np.float32).reshape(n, -1) for key in policy.obs_keys], 1)
    outputs = reference_outputs(fields, rows)
    continuous, discrete = reference_actions(fields, outputs, feeds.get("action_mask"))
    c = fields["continuous_size"]
    wanted = {"mean": got.get("mean"), "logits": got.get("logits")}
    have = {"mean": outputs[:, :c], "logits": outputs[:, c:]}
    if continuous is not None:
        wanted["continuous"] = got.get("continuous_action", got.get("action"))
        have["continuous"] = continuous
    scale = max(float(np.abs(v).max()) for v in wanted.values() if v is not None and v.size)
    limit = TOLERANCE + RELATIVE_TOLERANCE * scale
    worst = 0.0
    for name, want in wanted.items():
        if want is None:
            continue
        diff = float(np.abs(want.reshape(n, -1) - have[name]).max())
        if not diff <= limit:
            raise ValueError(f"{name} differs from onnxruntime by {diff:.2e} (limit {limit:.1e})")
        worst = max(worst, diff)
    if discrete is not None:
        want = got.get("discrete_action", got.get("action")).reshape(n, -1)
        if not np.array_equal(want, discrete):
            raise ValueError(f"{int((want != discrete).any(1).sum())} of {n} rows' discrete actions differ from "
                             "onnxruntime's")
    return worst
