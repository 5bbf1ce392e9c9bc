"""Trained policy -> a verified ONNX file a game loads: graphs per format, metadata, parity checks.

Every export is checked before it is kept: ``onnx.checker``, then onnxruntime
against the same graph run by torch, on random and on recorded observations.
Logits / means must agree within 1e-5 plus 1e-5 of the outputs' largest value
(two float32 implementations sum in different orders, and the rounding error of a
sum grows with its terms: logits in the hundreds differ by an ulp or two, 8e-6 each)
and deterministic actions exactly; any failure raises :class:`ExportError` and
leaves no file behind.

Opset 15: the newest that Unity Sentis imports (it supports 7-15); onnxruntime
(including the C# build the Godot RL Agents plugin uses) loads it too.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import onnx
import onnxruntime as ort
import torch
from gymnasium import spaces
from torch import nn

from sparring.agents.networks import ACTIVATIONS
from sparring.agents.policy import MASKED_LOGIT, BehaviourPolicy
from sparring.agents.sac import SACActor
from sparring.spec import ActionKey, BehaviourSpec

OPSET = 15
Policy = Union[BehaviourPolicy, SACActor]
"""What is exported: a PPO actor-critic, or a SAC actor (its critics stay behind)."""
FORMATS = ("native", "mlagents", "godot")
TOLERANCE = 1e-5  # absolute, plus RELATIVE_TOLERANCE of the output's largest magnitude
RELATIVE_TOLERANCE = 1e-5


class ExportError(ValueError):
    """An export that cannot be made, or that failed verification (nothing is written)."""


def space_json(space: spaces.Space) -> dict:
    """A JSON description of a Box / Discrete / MultiDiscrete / Dict space, for the model's metadata."""
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_json(v) for k, v in space.spaces.items()}}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
    low = np.where(np.isfinite(space.low), space.low, None).tolist() if np.isfinite(space.low).any() else None
    high = np.where(np.isfinite(space.high), space.high, None).tolist() if np.isfinite(space.high).any() else None
    return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype), "low": low, "high": high}


# -- graphs -------------------------------------------------------------------


def _policy_input(policy: Policy, components: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Flattened, normalised policy input from per-component tensors (the order the trunk was trained on)."""
    parts = [t if t.dim() == 2 else t.flatten(1) for t in (components[key].float() for key in policy.obs_keys)]
    x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    return policy.normalize(x)


def _half(policy: BehaviourPolicy, x: torch.Tensor, which: int) -> torch.Tensor:
    """One of the twin MLPs (0: actor, 1: critic) as plain Gemm + activation layers, on encoded inputs.

    The trainer evaluates both halves as one batched matmul; a game needs only
    the actor, and a chain of Gemms exports to the smallest, fastest graph.
    """
    trunk = policy.trunk
    act = ACTIVATIONS[trunk.activation]
    for w, b in zip(trunk.weights, trunk.biases):
        x = act(torch.addmm(b[which, 0], x, w[which]))
    return x


def actor_heads(policy: Policy, h: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(mean, log_std, logits)`` of the actor from the trunk's input ``h`` (``policy.core``'s output),
    None where the behaviour has no such part.

    ``mean`` and ``log_std`` describe the Gaussian of the continuous actions (for a
    SAC actor, before its tanh squash; see :func:`continuous_action`).
    """
    if isinstance(policy, SACActor):
        return policy.export_heads(h)
    out = policy.actor_head(_half(policy, h, 0))
    c = policy.continuous_size
    mean = out[:, :c] if c else None
    # mean * 0 + log_std: per-row log stds without a runtime broadcast ([DI] in mlagents.py)
    log_std = mean * 0 + policy.log_std if c else None
    return mean, log_std, out[:, c:] if policy.branches else None


def continuous_action(policy: Policy, u: torch.Tensor) -> torch.Tensor:
    """A Gaussian mean or sample -> the continuous action in the env's units, before clipping to the Box.

    A PPO policy's Gaussian is over the actions themselves; a SAC actor squashes it with tanh into the Box.
    """
    return policy.squash(u) if isinstance(policy, SACActor) else u


def _masked_argmax(policy: Policy, logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is not None:
        logits = logits.masked_fill(~mask, MASKED_LOGIT)
    if len(policy.branches) == 1:
        return logits.argmax(-1)
    return torch.stack([part.argmax(-1) for part in torch.split(logits, policy.branches, -1)], -1)


class ExportGraph(nn.Module):
    """What :func:`export_policy` needs of a format's graph: tensor names and how observations feed it."""

    static_outputs: tuple[str, ...] = ()  # constants, without a batch axis
    random_outputs: tuple[str, ...] = ()  # sampled inside the graph: verified by shape only

    def input_names(self) -> list[str]:
        raise NotImplementedError

    def output_names(self) -> list[str]:
        raise NotImplementedError

    def feeds(self, obs: Mapping[str, np.ndarray], mask: np.ndarray | None,
              memory: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Graph inputs for observations per component, a bool action mask (None: continuous) and a
        recurrent policy's memory ``(n, memory_size)``."""
        raise NotImplementedError

    def metadata(self) -> dict[str, str]:
        """Format-specific entries for the model's metadata."""
        return {}

    def error_scale(self, inputs: list[torch.Tensor], outputs: Mapping[str, np.ndarray]) -> float:
        """The magnitude the outputs' float32 rounding error grows with (two implementations sum in different
        orders): the largest value the graph computes among its outputs. A clipped action is no larger than
        1 but carries the rounding error of the mean it was clipped from, so every output is held to it."""
        return max((float(np.max(np.abs(want))) for name, want in outputs.items()
                    if want.dtype.kind == "f" and want.size and name not in self.random_outputs), default=0.0)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        names = self.input_names() + self.output_names()
        return {name: {0: "batch"} for name in names if name not in self.static_outputs}


class NativeGraph(ExportGraph):
    """sparring's own format (see export/README.md).

    Inputs: one float tensor per observation component, named as in the spec
    (``obs`` for a plain Box), batch first; ``action_mask`` (bool, True = allowed)
    for behaviours with discrete actions. Outputs: ``action`` (int64 argmax per
    branch, or the Gaussian mean clipped to the action Box; a hybrid behaviour has
    ``continuous_action`` and ``discrete_action`` instead), then ``mean`` and
    ``log_std`` and/or ``logits``, then ``value`` when asked for. A SAC actor's
    continuous ``action`` is ``tanh(mean)`` scaled to the Box (``mean`` and ``log_std``
    are its Gaussian before the squash), and it has no ``value``. A recurrent policy also
    takes ``recurrent_in`` (float ``(batch, memory_size)``, zeros at an episode's start) and
    gives ``recurrent_out`` last, the memory to feed back at the agent's next decision.
    """

    def __init__(self, policy: Policy, with_value: bool = False) -> None:
        super().__init__()
        self.policy = policy
        self.with_value = with_value
        self.components = list(policy.spec.observation_components)
        box = policy.spec.continuous_space
        self.register_buffer("low", torch.as_tensor(box.low, dtype=torch.float32).reshape(-1) if box is not None else torch.zeros(0))
        self.register_buffer("high", torch.as_tensor(box.high, dtype=torch.float32).reshape(-1) if box is not None else torch.zeros(0))

    def input_names(self) -> list[str]:
        policy = self.policy
        return self.components + (["action_mask"] if policy.branches else []) + (["recurrent_in"] if policy.memory_size else [])

    def output_names(self) -> list[str]:
        policy = self.policy
        actions = ["continuous_action", "discrete_action"] if policy.spec.is_hybrid else ["action"]
        heads = (["mean", "log_std"] if policy.continuous_size else []) + (["logits"] if policy.branches else [])
        return actions + heads + (["value"] if self.with_value else []) + (["recurrent_out"] if policy.memory_size else [])

    def feeds(self, obs: Mapping[str, np.ndarray], mask: np.ndarray | None,
              memory: np.ndarray | None = None) -> dict[str, np.ndarray]:
        return {**{name: obs[name] for name in self.components}, **({} if mask is None else {"action_mask": mask}),
                **({} if memory is None else {"recurrent_in": memory})}

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        policy = self.policy
        x = _policy_input(policy, dict(zip(self.components, inputs)))
        h, memory = policy.core(x, inputs[-1] if policy.memory_size else None)
        mean, log_std, logits = actor_heads(policy, h)
        value = ()
        if self.with_value:  # the value of the game's reward (other reward signals' heads serve training only)
            value = (policy.critic_head(_half(policy, h, 1))[:, policy.value_heads.index("extrinsic")],)
        actions, heads = [], []
        if mean is not None:
            actions.append(torch.max(torch.min(continuous_action(policy, mean), self.high), self.low))
            heads += [mean, log_std]
        if logits is not None:
            actions.append(_masked_argmax(policy, logits, inputs[len(self.components)]))
            heads.append(logits)
        return (*actions, *heads, *value, *(() if memory is None else (memory,)))


def godot_action_keys(spec: BehaviourSpec) -> tuple[ActionKey, ...]:
    """The action keys a Godot RL Agents game declares for ``spec``, in its order: the game's own where the
    behaviour came from such a game, else one ``continuous`` key, then one key per discrete branch (``discrete``,
    or ``discrete_0``, ``discrete_1``, ...), which the export's metadata hands the game to declare."""
    if spec.action_keys:
        return spec.action_keys
    box, branches = spec.continuous_space, spec.action_branches
    keys = [ActionKey("continuous", "continuous", int(np.prod(box.shape)))] if box is not None else []
    names = ["discrete"] if len(branches) == 1 else [f"discrete_{i}" for i in range(len(branches))]
    return (*keys, *(ActionKey(name, "discrete", n) for name, n in zip(names, branches)))


class GodotGraph(ExportGraph):
    """The Godot RL Agents plugin's conventions: one input per observation key and ``state_ins`` in;
    ``output`` and ``state_outs`` out.

    The plugin (``ONNXInference.cs`` since its commit f93cc07) feeds every key of the agent's
    ``get_obs()`` dictionary as an input of that name, float32 ``(batch, size)`` (the key's
    values flattened), plus ``state_ins`` ``(batch,)``. So each observation component is an
    input named after it (a plain Box is ``obs``).

    ``output`` is laid out as the plugin's ``sync.gd`` (``_extract_action_dict``) reads it: key by key in the
    game's action-space order (:func:`godot_action_keys`), a discrete key's logits (the plugin takes their
    argmax), a continuous key's actions, each followed by as many log-stds when any key is discrete (the plugin
    skips them; it reads means only when every key is continuous and the output holds nothing else). The plugin
    clamps every continuous action to [-1, 1], so they are given scaled: the deterministic action (a PPO
    Gaussian's mean clipped to the Box; a SAC actor's squashed into it) mapped from ``[low, high]`` onto
    [-1, 1], which the game maps back as ``low + (a + 1) / 2 * (high - low)`` (the ``godot_action_scale``
    metadata). ``state_outs`` echoes ``state_ins`` (the plugin's recurrent state slot; exported policies
    here have no memory).
    """

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.policy = policy
        self.components = list(policy.spec.observation_components)
        self.keys = godot_action_keys(policy.spec)
        self.means_only = all(key.kind == "continuous" for key in self.keys)
        box = policy.spec.continuous_space
        low, high = (np.zeros(0), np.zeros(0)) if box is None else (box.low.reshape(-1), box.high.reshape(-1))
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))
        self.register_buffer("middle", torch.as_tensor((low + high) / 2, dtype=torch.float32))
        self.register_buffer("half_range", torch.as_tensor((high - low) / 2, dtype=torch.float32))

    def input_names(self) -> list[str]:
        return [*self.components, "state_ins"]

    def output_names(self) -> list[str]:
        return ["output", "state_outs"]

    def feeds(self, obs: Mapping[str, np.ndarray], mask: np.ndarray | None,
              memory: np.ndarray | None = None) -> dict[str, np.ndarray]:
        n = len(obs[self.components[0]])
        return {**{key: obs[key].reshape(n, -1) for key in self.components}, "state_ins": np.zeros(n, np.float32)}

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        *parts, state_ins = inputs
        h, _ = self.policy.core(_policy_input(self.policy, dict(zip(self.components, parts))))
        mean, log_std, logits = actor_heads(self.policy, h)
        if mean is not None:
            action = torch.max(torch.min(continuous_action(self.policy, mean), self.high), self.low)
            scaled, scaled_log_std = (action - self.middle) / self.half_range, log_std - self.half_range.log()
        outputs, c, d = [], 0, 0
        for key in self.keys:
            if key.kind == "discrete":
                outputs.append(logits[:, d : d + key.size])
                d += key.size
                continue
            outputs.append(scaled[:, c : c + key.size])
            if not self.means_only:
                outputs.append(scaled_log_std[:, c : c + key.size])
            c += key.size
        return (outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)), state_ins

    def error_scale(self, inputs: list[torch.Tensor], outputs: Mapping[str, np.ndarray]) -> float:
        """The heads' largest value, in the scaled units of ``output`` (whose clipped, scaled actions hide it)."""
        *parts, _ = inputs
        h, _ = self.policy.core(_policy_input(self.policy, dict(zip(self.components, parts))))
        largest = max(float(head.abs().max()) for head in actor_heads(self.policy, h) if head is not None and head.numel())
        return largest / float(self.half_range.min()) if len(self.half_range) else largest

    def metadata(self) -> dict[str, str]:
        """What the game needs to read ``output``: the action space to declare, and the continuous actions' scale."""
        declared = {key.name: {"size": key.size, "action_type": key.kind} for key in self.keys}
        meta = {"godot_action_space": json.dumps(declared)}
        if len(self.low):
            meta["godot_action_scale"] = json.dumps({"low": self.low.tolist(), "high": self.high.tolist()})
        return meta


def support_problem(spec: BehaviourSpec, fmt: str, memory_size: int = 0, masked: bool = False) -> str | None:
    """Why a policy for ``spec`` (with ``memory_size`` floats of recurrent state, trained with action masks that
    forbade something if ``masked``) cannot be exported in ``fmt``, or None."""
    if fmt not in FORMATS:
        return f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}"
    if fmt == "godot":
        return _godot_problem(spec, memory_size, masked)
    if fmt == "mlagents":
        from sparring.export.mlagents import mlagents_support_problem

        return mlagents_support_problem(spec)
    return None


def _godot_problem(spec: BehaviourSpec, memory_size: int, masked: bool) -> str | None:
    if memory_size:
        return ("the Godot RL Agents plugin cannot carry a recurrent policy's memory: it feeds state_ins as one "
                "constant per call (sync.gd: run_inference(obs, 1.0)) and never reads state_outs; export a "
                "memoryless policy, or use the native format and feed recurrent_out back as recurrent_in")
    taken = sorted(set(spec.observation_components) & {"state_ins", "output", "state_outs"})
    if taken:
        return (f"observation component {taken[0]!r} has the name of one of the Godot RL Agents plugin's own "
                "tensors (state_ins, output, state_outs); rename it")
    if masked:
        return ("it was trained with action masks, and the Godot RL Agents plugin has none (sync.gd takes the "
                "argmax of every logit), so in the game it would choose actions the game forbids; export the native "
                "format, whose graph takes the mask")
    box = spec.continuous_space
    if box is not None and not (np.isfinite(box.low).all() and np.isfinite(box.high).all()):
        return ("its continuous actions are unbounded, and the Godot RL Agents plugin clamps every continuous "
                "action to [-1, 1] (sync.gd); give the action Box finite bounds (the export maps them onto [-1, 1])")
    return None


def build_graph(policy: Policy, fmt: str, with_value: bool = False, masked: bool = False) -> ExportGraph:
    """The module to export for ``fmt`` (ExportError if the behaviour does not fit it; ``masked``: it was trained
    with action masks that forbade something)."""
    problem = support_problem(policy.spec, fmt, policy.memory_size, masked)
    if problem:
        raise ExportError(f"behaviour {policy.spec.name!r} cannot be exported as {fmt}: {problem}")
    if with_value and isinstance(policy, SACActor):
        raise ExportError(f"behaviour {policy.spec.name!r}: a SAC policy has no state value to export (its critics "
                          "value state-action pairs); export it without values")
    if with_value and getattr(policy, "critic_head", None) is None:
        raise ExportError(f"behaviour {policy.spec.name!r}: a MA-POCA policy has no state value of its own (its "
                          "critic values the whole group); export it without values")
    if with_value and "extrinsic" not in policy.value_heads:
        raise ExportError(f"behaviour {policy.spec.name!r} learns without the game's reward (reward signals "
                          f"{', '.join(policy.value_heads)}): it has no value of that reward to export; export it "
                          "without values")
    if fmt == "native":
        return NativeGraph(policy, with_value)
    if fmt == "godot":
        return GodotGraph(policy)
    from sparring.export.mlagents import MLAgentsGraph

    return MLAgentsGraph(policy)


# -- sample inputs ------------------------------------------------------------


def _sample_box(box: spaces.Box, n: int, rng: np.random.Generator) -> np.ndarray:
    low = np.where(np.isfinite(box.low), box.low, -3.0).astype(np.float64)
    high = np.where(np.isfinite(box.high), box.high, 3.0).astype(np.float64)
    sample = rng.uniform(low, high, (n, *box.shape)).astype(np.float32)
    if len(box.shape) == 2:  # an entity list: some entities missing (all-zero rows), some lists empty
        sample[rng.random((n, box.shape[0])) < 0.3] = 0.0
        sample[rng.random(n) < 0.1] = 0.0
    return sample


def _random_mask(spec: BehaviourSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    mask = rng.random((n, spec.mask_size)) > 0.3
    firsts = np.cumsum((0, *spec.action_branches[:-1]))
    allowed = firsts + rng.integers(0, spec.action_branches, size=(n, len(firsts)))
    mask[np.arange(n)[:, None], allowed] = True  # something allowed in every branch
    return mask


def sample_feeds(graph: ExportGraph, spec: BehaviourSpec, n: int, rng: np.random.Generator,
                 recorded: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Inputs for ``graph``: random within the observation space, or ``recorded`` flat observations."""
    components = spec.observation_components
    if recorded is not None:
        keys = graph.policy.obs_keys  # the order the policy flattens components in
        sizes = [int(np.prod(components[k].shape)) for k in keys]
        split = np.split(recorded.astype(np.float32), np.cumsum(sizes)[:-1], axis=1)
        n = len(recorded)
        obs = {k: part.reshape(n, *components[k].shape) for k, part in zip(keys, split)}
    else:
        obs = {k: _sample_box(box, n, rng) for k, box in components.items()}
    mask = _random_mask(spec, n, rng) if spec.mask_size else None
    memory_size = graph.policy.memory_size  # a memory mid-episode: what an LSTM's state looks like after a few steps
    memory = np.tanh(rng.normal(0, 1, (n, memory_size))).astype(np.float32) if memory_size else None
    return graph.feeds(obs, mask, memory)


# -- export + verification ----------------------------------------------------


@dataclass
class ExportReport:
    """What an export wrote and how it was verified."""

    path: Path
    fmt: str
    lines: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join([f"exported {self.path} ({self.fmt}, opset {OPSET})", *("  " + line for line in self.lines)])


def export_policy(
    policy: Policy,
    path: str | Path,
    fmt: str = "native",
    *,
    training_step: int = 0,
    recorded_obs: np.ndarray | None = None,
    with_value: bool = False,
    masked: bool = False,
    seed: int = 0,
    metadata: Mapping[str, str] | None = None,
    sample_actions: bool = False,
) -> ExportReport:
    """Export ``policy`` to ``path`` in ``fmt``, verify it with onnxruntime, and report how (``masked``: it was
    trained with action masks that forbade something, which a format without masks refuses; ``metadata``: more
    properties for the model's metadata, such as a difficulty tier's rating and measured win rates;
    ``sample_actions``: the native export's Godot addon policy samples its discrete actions, see
    :func:`~sparring.export.godot_addon.sidecar_fields`)."""
    path = Path(path)
    graph = build_graph(policy, fmt, with_value, masked).eval()
    rng = np.random.default_rng(seed)
    example = sample_feeds(graph, policy.spec, 2, rng)
    names_in, names_out = graph.input_names(), graph.output_names()
    tmp = path.with_suffix(path.suffix + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript-based exporter is what Sentis-compatible opsets need; its notice is not for users.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        # nn.LSTM's own size checks, and a caution for graphs without h0/c0 inputs: the memory is an input here,
        # and every export is verified below at other batch sizes than the one traced.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"torch\.nn\.modules\.rnn")
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(
            graph, tuple(torch.from_numpy(example[name]) for name in names_in), str(tmp),
            input_names=names_in, output_names=names_out, dynamic_axes=graph.dynamic_axes(), opset_version=OPSET,
            dynamo=False,
        )
    try:
        model = onnx.load(str(tmp))
        props = {
            "sparring_format": fmt,
            "sparring_version": importlib.metadata.version("sparring"),
            "behaviour": policy.spec.name,
            "observation_space": json.dumps(space_json(policy.spec.observation_space)),
            "action_space": json.dumps(space_json(policy.spec.action_space)),
            "team_id": "" if policy.spec.team_id is None else str(policy.spec.team_id),
            "training_step": str(training_step),
            "observation_normalization": "folded into the graph" if policy.normalizer is not None else "none",
            "inputs": ",".join(names_in),
            "outputs": ",".join(names_out),
            **graph.metadata(),
            **(metadata or {}),
        }
        onnx.helper.set_model_props(model, props)
        onnx.save(model, str(tmp))
        report = ExportReport(path, fmt)
        onnx.checker.check_model(str(tmp), full_check=True)
        report.lines.append("onnx.checker: ok")
        checks = [("random observations", sample_feeds(graph, policy.spec, 256, rng))]
        if recorded_obs is not None and len(recorded_obs):
            checks.append((f"{len(recorded_obs)} recorded observations", sample_feeds(graph, policy.spec, 0, rng, recorded_obs)))
        for label, feeds in checks:
            report.lines.append(f"{label}: {_compare(graph, str(tmp), feeds)}")
        if fmt == "native":  # and, where the Godot addon can run it, its GDScript policy beside the file
            from sparring.export.godot_addon import export_sidecar

            report.lines.append(export_sidecar(policy, tmp, path, checks, sample_actions))
        tmp.replace(path)
        return report
    finally:
        tmp.unlink(missing_ok=True)


def _compare(graph: ExportGraph, path: str, feeds: dict[str, np.ndarray]) -> str:
    names_in, names_out = graph.input_names(), graph.output_names()
    with torch.no_grad():
        expected = graph(*(torch.from_numpy(feeds[name]) for name in names_in))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    got = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"]).run(names_out, feeds)
    worst = 0.0
    sampled = set(graph.random_outputs)
    expected = [want.detach().numpy() for want in expected]
    with torch.no_grad():
        scale = graph.error_scale([torch.from_numpy(feeds[name]) for name in names_in], dict(zip(names_out, expected)))
    for name, want, have in zip(names_out, expected, got):
        if want.shape != have.shape and not (want.size == have.size):
            raise ExportError(f"output {name!r}: onnxruntime shape {have.shape}, torch shape {want.shape}")
        if name in sampled:
            continue
        have = have.reshape(want.shape)
        if want.dtype.kind in "iub":  # discrete actions and integer constants must match exactly
            if not np.array_equal(want, have):
                bad = int((want != have).sum())
                raise ExportError(f"output {name!r}: {bad} deterministic actions differ between onnxruntime and torch")
        else:
            diff = float(np.max(np.abs(want - have))) if want.size else 0.0
            limit = TOLERANCE + RELATIVE_TOLERANCE * scale
            if not diff <= limit:
                raise ExportError(f"output {name!r}: onnxruntime differs from torch by {diff:.2e} (limit {limit:.1e}: "
                                  f"{TOLERANCE:.0e} + {RELATIVE_TOLERANCE:.0e} of the largest output value, {scale:.3g})")
            worst = max(worst, diff)
    return f"max abs difference {worst:.1e}, deterministic actions identical ({len(next(iter(feeds.values())))} rows)"


def file_stem(behaviour: str) -> str:
    """A behaviour name as a portable file name: ``"Striker?team=1"`` -> ``"Striker_team_1"``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", behaviour).strip("_") or "behaviour"


@dataclass
class RunExport:
    """What :func:`export_run` wrote, and the behaviours the format cannot represent, each with the reason."""

    reports: list[ExportReport]
    refused: dict[str, str] = field(default_factory=dict)


def export_run(run_dir: str | Path, behaviour: str | None = None, fmt: str = "native",
               out: str | Path | None = None) -> RunExport:
    """Export a finished training run (its ``final.pt``): one behaviour, or every behaviour the format can
    represent (the others are named in the result; ExportError if none can be, or the one asked for cannot)."""
    from sparring.agents import load

    run_dir = Path(run_dir)
    final = run_dir / "final.pt"
    if not final.exists():
        raise ExportError(f"{run_dir}: no finished checkpoint ({final.name} is written when training completes)")
    model = load(final)
    names = [behaviour] if behaviour is not None else list(model.policies)
    unknown = [n for n in names if n not in model.policies]
    if unknown:
        raise ExportError(f"{run_dir}: no behaviour {unknown[0]!r}; this run has {sorted(model.policies)}")
    if out is not None and len(names) > 1:
        raise ExportError("--out names one file: pick the behaviour with --behaviour")
    masked = {name: model.learners[name].masked for name in names}
    refused = {name: problem for name in names
               if (problem := support_problem(model.policies[name].spec, fmt, model.policies[name].memory_size,
                                              masked[name]))}
    if len(refused) == len(names):
        raise ExportError("; ".join(f"behaviour {name!r} cannot be exported as {fmt}: {why}" for name, why in refused.items()))
    suffix = "" if fmt == "native" else f".{fmt}"
    result = RunExport([], refused)
    for name in names:
        if name in refused:
            continue
        target = Path(out) if out is not None else run_dir / f"{file_stem(name)}{suffix}.onnx"
        recorded = model.learners[name].recorded_obs.numpy()
        result.reports.append(export_policy(model.policies[name], target, fmt, training_step=model.num_steps,
                                            recorded_obs=recorded, masked=masked[name]))
    return result
