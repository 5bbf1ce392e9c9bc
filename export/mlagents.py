"""The Unity ML-Agents model format: a sparring policy that drops into a Behavior Parameters component.

Everything here mirrors what the official ML-Agents trainer exports and what the
Unity package's loader checks. Sources (Unity-Technologies/ml-agents, as stored in
the public code index; symbols named so they can be found in any recent release):

[TN]  com.unity.ml-agents/Runtime/Inference/TensorNames.cs and
      ml-agents/mlagents/trainers/torch_entities/model_serialization.py ``class TensorNames``:
      inputs ``obs_{i}`` (ObservationPlaceholderPrefix = "obs_", GetObservationName(i)),
      ``action_masks`` (ActionMaskPlaceholder), ``recurrent_in`` (RecurrentInPlaceholder); outputs
      ``version_number``, ``memory_size``, ``recurrent_out``,
      ``continuous_actions``, ``continuous_action_output_shape``,
      ``deterministic_continuous_actions``, ``discrete_actions``,
      ``discrete_action_output_shape``, ``deterministic_discrete_actions``.
[MS]  model_serialization.py ``ModelSerializer.__init__``: dummy obs are
      ``zeros([1] + obs_shape)`` (batch first; only rank-3 obs are permuted to NCHW),
      dummy masks ``ones([1, sum(discrete_branches)])`` (float); input names are
      ``obs_0..obs_{n-1}`` then ``action_masks``, ``recurrent_in``; every input gets
      ``dynamic_axes {0: "batch"}``; output names are ``[version_number, memory_size]``,
      then ``[continuous_actions, continuous_action_output_shape,
      deterministic_continuous_actions]`` only if ``continuous_size > 0``, then
      ``[discrete_actions, discrete_action_output_shape, deterministic_discrete_actions]``
      only if ``discrete_size > 0``, then ``recurrent_out`` only if memory_size > 0.
      ``export_policy_model``: ``opset_version=SerializationSettings.onnx_opset``.
[ST]  ml-agents/mlagents/trainers/settings.py ``class SerializationSettings``: ``onnx_opset = 9``.
[NW]  ml-agents/mlagents/trainers/torch_entities/networks.py ``class SimpleActor``:
      ``MODEL_EXPORT_VERSION = 3  # Corresponds to ModelApiVersion.MLAgents2_0``;
      ``version_number = Parameter(torch.Tensor([3]))`` (float32, shape (1,));
      ``continuous_act_size_vector = torch.Tensor([continuous_size])`` (float32, (1,));
      ``discrete_act_size_vector = torch.Tensor([discrete_branches])`` (float32, shape
      (1, num_branches)); ``memory_size_vector = torch.Tensor([memory_size])`` (float32, (1,));
      ``SimpleActor.forward`` returns them in the order of [MS].
[AM]  ml-agents/mlagents/trainers/torch_entities/action_model.py ``ActionModel.get_action_out``:
      ``continuous_out = dists.continuous.exported_model_output()`` (a sample),
      ``deterministic_continuous_out = deterministic_sample()`` (the mean), and when
      ``clip_action`` (no tanh squash) both become ``torch.clamp(x, -3, 3) / 3``;
      ``discrete_out = torch.cat([d.exported_model_output() ...], dim=1)`` and
      ``deterministic_discrete_out = torch.cat([d.deterministic_sample() ...], dim=1)``.
[DI]  ml-agents/mlagents/trainers/torch_entities/distributions.py:
      ``GaussianDistInstance.sample = mean + torch.randn_like(mean) * std``
      (log_sigma broadcast as ``mu * 0 + log_sigma``, "Sentis throws error on runtime
      broadcasting"); ``CategoricalDistInstance``: ``probs = softmax(logits)``,
      ``sample = torch.multinomial(probs, 1)``, ``deterministic_sample =
      argmax(probs, dim=1, keepdim=True)`` (int64, (batch, 1) per branch);
      ``MultiCategoricalDistribution._mask_branch(logits, allow_mask)``:
      ``block_mask = -1.0 * allow_mask + 1.0; logits * allow_mask - 1e8 * block_mask``
      ("-1 * tensor + constant instead of constant - tensor because ... Sentis might swap
      the inputs of a Sub"). So ``action_masks`` is float, **1 = allowed, 0 = masked**.
[GI]  com.unity.ml-agents/Runtime/Inference/GeneratorImpl.cs ``ActionMaskInputGenerator``:
      ``isUnmasked = (maskList != null && maskList[j]) ? 0.0f : 1.0f`` -- Unity feeds 1.0 for
      allowed actions, 0.0 for masked ones, shape [batch, sum(branch sizes)].
[MI]  com.unity.ml-agents/Runtime/Inference/SentisModelInfo.cs: ``version_number`` and
      ``memory_size`` are read as ``(int)((Tensor<float>)t)[0]`` (so they must be float);
      ``continuous_action_output_shape`` read as ``(Tensor<float>)[0]``; the discrete
      output size is the sum over ``discrete_action_output_shape`` read as
      ``Tensor<float>``; ``CheckExpectedTensors`` requires ``version_number``,
      ``memory_size`` and one action output; the action output used is
      ``continuous_actions``/``discrete_actions`` unless "Deterministic Inference" is
      ticked, then the ``deterministic_*`` one.
[PL]  com.unity.ml-agents/Runtime/Inference/SentisModelParamLoader.cs ``ModelApiVersion``:
      ``MLAgents2_0 = 3`` ("All observations are treated the same and named obs_{i} with i
      being the sensor index"), MaxSupportedVersion = 3; ``CheckInputTensorPresence``
      wants ``obs_{sensorIndex}`` for every sensor and ``action_masks`` when the model has
      discrete outputs; ``CheckInputTensorShape`` warns about any other input
      ("Model contains an unexpected input named"), and ``CheckRankOneObsShape``
      compares a rank-1 sensor's size with the input's last dimension.
[AP]  com.unity.ml-agents/Runtime/Inference/ApplierImpl.cs: ``ContinuousActionOutputApplier``
      copies ``data[agent, j]`` straight into ContinuousActions (no clipping or scaling on
      the Unity side); ``DiscreteActionOutputApplier`` copies ``(int)data[agent, j]``
      (already-sampled branch indices, shape (batch, num_branches)).
[VS]  SentisModelParamLoader.cs (develop before 4.0, commit e12369b) ``CheckVisualObsShape``: a rank-3
      sensor's spec is (channels, height, width) (``ObservationSpec.Visual(channels, height, width)``) and
      is compared with ``TensorProxy.Channels/Height/Width``, dims [1], [2], [3] of the input: the input
      is ``(batch, C, H, W)``, and ``ObservationWriter`` writes ``[batch, channel, h, w]``.
      ``CheckRankTwoObsShape``: a buffer sensor ``(max entities, entity size)`` is the input's dims [1],
      [2]. model_serialization.py (Sentis era): ``_get_onnx_shape`` keeps a CHW spec shape (the Barracuda
      era turned HWC into NCHW): visual inputs are NCHW in both.
[RM]  GeneratorImpl.cs ``RecurrentInputGenerator`` writes ``recurrent_in[agent, 0, j]`` (rank 3, width
      ``memory_size``) and ApplierImpl.cs ``MemoryOutputApplier`` reads ``recurrent_out[agent, 0, j]``;
      model_serialization.py's dummy memory is ``zeros([1, 1, memory_size])``; layers.py ``LSTM``: the
      first half of the memory is the hidden state, the second the cell state; ``memory_size`` is read
      as a float output (SentisModelInfo.cs), and must be even (settings.py).
Opset: the trainer exports opset 9 [ST]; Unity Sentis 2.1 "supports ... ONNX ... with an
opset version between 7 and 15" (docs.unity3d.com/Packages/com.unity.sentis@latest) and
Inference Engine 2.6 up to 25, so opset 15 is fine. ``Multinomial`` and
``RandomNormalLike`` (what the sampling exports to, as in the official models) exist
since opset 7 / 1.

Differences from a model trained by ML-Agents, on purpose:
- Continuous actions are clipped to the behaviour's action Box (what sparring's
  ``BehaviourPolicy.env_actions`` does during training), not ``clamp(-3, 3) / 3``: that
  rescaling is part of how ML-Agents *trains* (its env actions were the same
  ``clamp / 3``), while a sparring policy's mean is already in the Box's units. For the
  usual Box(-1, 1) this is exactly ML-Agents' [-1, 1] range; for other bounds the game
  receives actions in the Box's own units (the units the game declared), and nothing
  is rescaled.
- Each observation component is one ``obs_i``: a rank-3 component (an image or grid, channels last in
  sparring) as ``(batch, C, H, W)`` [VS], a rank-2 one (a buffer sensor's entities) as ``(batch,
  entities, size)`` [VS], any other flattened to (batch, size) like a VectorSensor of that size;
  ``obs_i`` is the spec's i-th component. Unity feeds
  ``obs_i`` from the agent's i-th sensor after ``SensorUtils.SortSensors`` (a culture-aware
  comparison of sensor names: "ammo" before "Zone", "Æble" before "Apple"). A behaviour
  trained on a Unity build keeps its components in the order Unity sent its sensors,
  which is that order; a behaviour declared elsewhere (the bridge, PettingZoo) must
  declare its components in it for its export to read the right sensors.
- A memoryless policy has no ``recurrent_in`` (memory_size = 0; torch drops unused inputs, as it does
  for the official non-recurrent models). A policy with memory has ``recurrent_in`` and ``recurrent_out``
  [RM], with ML-Agents' layout (hidden state, then cell state).
- The ``deterministic_*`` outputs get a dynamic batch axis too (the official exporter
  only marks the sampled ones dynamic).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from sparring.export.exporter import ExportGraph, _policy_input, actor_heads, continuous_action
from sparring.spec import BehaviourSpec

MODEL_EXPORT_VERSION = 3  # [NW] SimpleActor.MODEL_EXPORT_VERSION; [PL] ModelApiVersion.MLAgents2_0
MASK_INPUT = "action_masks"  # [TN]
BLOCKED_LOGIT = 1e8  # [DI] _mask_branch subtracts 1e8 from masked logits

VERSION_NUMBER = "version_number"
MEMORY_SIZE = "memory_size"
CONTINUOUS_ACTIONS = "continuous_actions"
CONTINUOUS_SHAPE = "continuous_action_output_shape"
DETERMINISTIC_CONTINUOUS = "deterministic_continuous_actions"
DISCRETE_ACTIONS = "discrete_actions"
DISCRETE_SHAPE = "discrete_action_output_shape"
DETERMINISTIC_DISCRETE = "deterministic_discrete_actions"
RECURRENT_IN = "recurrent_in"  # [TN] RecurrentInPlaceholder
RECURRENT_OUT = "recurrent_out"  # [TN] RecurrentOutput


def observation_name(index: int) -> str:
    """``obs_{index}`` ([TN] GetObservationName)."""
    return f"obs_{index}"


def mlagents_support_problem(spec: BehaviourSpec) -> str | None:
    """Why ``spec`` cannot be represented as an ML-Agents model, or None.

    Any Box / Dict-of-Box observation fits (each component becomes one ``obs_i``), and so do Discrete, MultiDiscrete, Box and hybrid actions (Box actions
    are flattened and clipped to the Box, see the module docstring). What does not fit is
    an empty component or an empty action vector: Unity treats a zero
    ``continuous_action_output_shape`` as "no action output" ([MI]).
    """
    for key, box in spec.observation_components.items():
        if int(np.prod(box.shape)) == 0:
            return f"observation component {key!r} has no elements (shape {box.shape}); ML-Agents sensors cannot be empty"
    box = spec.continuous_space
    if box is not None:
        if int(np.prod(box.shape)) == 0:
            return f"the action Box has no elements (shape {box.shape})"
        if np.any(np.asarray(box.low) > np.asarray(box.high)):
            return "the action Box has a lower bound above its upper bound"
    if any(n < 1 for n in spec.action_branches):
        return f"a discrete action branch has no actions (branches {spec.action_branches})"
    return None


def unity_layout(batch: np.ndarray) -> np.ndarray:
    """One component's batch as Unity's loader expects its ``obs_i`` ([VS]): an image or grid
    ``(batch, channels, height, width)`` from sparring's channels-last ``(batch, height, width, channels)``,
    an entity list ``(batch, entities, features)`` as it is, anything else flattened to ``(batch, size)``."""
    if batch.ndim == 4:
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    return batch if batch.ndim == 3 else batch.reshape(len(batch), -1)


def spec_layout(t: torch.Tensor) -> torch.Tensor:
    """An ``obs_i`` input in Unity's layout -> sparring's (the inverse of :func:`unity_layout` up to flattening)."""
    return t.permute(0, 2, 3, 1) if t.dim() == 4 else t


class MLAgentsGraph(ExportGraph):
    """A PPO :class:`~sparring.agents.policy.BehaviourPolicy` or a :class:`~sparring.agents.sac.SACActor` with
    ML-Agents' inputs, outputs and constants.

    ``forward(obs_0, ..., obs_{k-1}[, action_masks][, recurrent_in])``: one float32 tensor per
    observation component in the spec's order, in Unity's layout (:func:`unity_layout`), with
    discrete actions a float32 ``(batch, sum(branches))`` mask, 1 = allowed, 0 = masked, and with
    memory the float32 ``(batch, 1, memory_size)`` state. Returns, in this order ([MS], [NW]; a
    hybrid behaviour has both trios):

    - ``version_number``: float32 ``(1,)`` = 3; ``memory_size``: float32 ``(1,)``, 0 without memory;
    - continuous: ``continuous_actions`` float32 ``(batch, n)`` sampled
      ``mean + randn * std``; ``continuous_action_output_shape`` float32 ``(1,)`` = n;
      ``deterministic_continuous_actions`` float32 ``(batch, n)`` = the mean; both
      clipped to the action Box (a SAC actor squashes both with tanh into the Box first);
    - discrete: ``discrete_actions`` int64 ``(batch, branches)`` sampled per branch with
      ``torch.multinomial`` (ONNX ``Multinomial``); ``discrete_action_output_shape``
      float32 ``(1, branches)`` = the branch sizes; ``deterministic_discrete_actions``
      int64 ``(batch, branches)`` = argmax per branch;
    - with memory: ``recurrent_out`` float32 ``(batch, 1, memory_size)``.

    The sampled outputs draw fresh randomness on every run (ONNX ``RandomNormalLike`` /
    ``Multinomial`` without a seed, as in the official models) and cannot be compared
    with torch value by value; ``random_outputs`` names them, ``static_outputs`` names
    the constants (no batch axis).
    """

    def __init__(self, policy) -> None:
        super().__init__()
        self.policy = policy
        spec = policy.spec
        self.components = list(spec.observation_components)
        self.register_buffer("version_number", torch.tensor([float(MODEL_EXPORT_VERSION)]))
        self.register_buffer("memory_size", torch.tensor([float(policy.memory_size)]))
        random_outputs, static_outputs = [], [VERSION_NUMBER, MEMORY_SIZE]
        if policy.continuous_size:
            box = spec.continuous_space
            low = np.asarray(np.broadcast_to(box.low, box.shape), np.float64).reshape(-1)
            high = np.asarray(np.broadcast_to(box.high, box.shape), np.float64).reshape(-1)
            self.register_buffer("continuous_shape", torch.tensor([float(low.size)]))
            # Clip only where a bound is finite: an all-infinite side exports no op.
            self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
            self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))
            self._clip_low = bool(np.isfinite(low).any())
            self._clip_high = bool(np.isfinite(high).any())
            random_outputs.append(CONTINUOUS_ACTIONS)
            static_outputs.append(CONTINUOUS_SHAPE)
        if policy.branches:
            # [NW] torch.Tensor([discrete_branches]): shape (1, num_branches)
            self.register_buffer("discrete_shape", torch.tensor([[float(n) for n in policy.branches]]))
            random_outputs.append(DISCRETE_ACTIONS)
            static_outputs.append(DISCRETE_SHAPE)
        self.random_outputs, self.static_outputs = tuple(random_outputs), tuple(static_outputs)

    def input_names(self) -> list[str]:
        """[MS] ModelSerializer: obs_0..obs_{k-1}, then action_masks when there are discrete actions, then
        recurrent_in with memory."""
        names = [observation_name(i) for i in range(len(self.components))]
        return names + ([MASK_INPUT] if self.policy.branches else []) + ([RECURRENT_IN] if self.policy.memory_size else [])

    def output_names(self) -> list[str]:
        """[MS] ModelSerializer: version and memory, then the continuous trio and/or the discrete trio."""
        names = [VERSION_NUMBER, MEMORY_SIZE]
        if self.policy.continuous_size:
            names += [CONTINUOUS_ACTIONS, CONTINUOUS_SHAPE, DETERMINISTIC_CONTINUOUS]
        if self.policy.branches:
            names += [DISCRETE_ACTIONS, DISCRETE_SHAPE, DETERMINISTIC_DISCRETE]
        return names + ([RECURRENT_OUT] if self.policy.memory_size else [])

    def feeds(self, obs: Mapping[str, np.ndarray], mask: np.ndarray | None,
              memory: np.ndarray | None = None) -> dict[str, np.ndarray]:
        out = {observation_name(i): unity_layout(obs[key]) for i, key in enumerate(self.components)}
        if mask is not None:
            out[MASK_INPUT] = mask.astype(np.float32)  # [GI] 1.0 allowed, 0.0 masked
        if memory is not None:
            out[RECURRENT_IN] = memory[:, None, :]  # [RM] (batch, 1, memory_size)
        return out

    def _policy_input(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The policy's normalised input from ``obs_i`` tensors in Unity's layout."""
        components = {key: spec_layout(t) for key, t in zip(self.components, inputs)}
        return _policy_input(self.policy, components)

    def actor_output(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The actor's Gaussian means (for SAC, before the squash), then its logits, for observation inputs
        (a recurrent policy's from zero memory)."""
        x = self._policy_input(inputs)
        h, _ = self.policy.core(x, self.policy.initial_state(len(x)) if self.policy.memory_size else None)
        mean, _, logits = actor_heads(self.policy, h)
        parts = [part for part in (mean, logits) if part is not None]
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)

    def _clip(self, a: torch.Tensor) -> torch.Tensor:
        if self._clip_high:
            a = torch.minimum(a, self.high)
        if self._clip_low:
            a = torch.maximum(a, self.low)
        return a

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        policy = self.policy
        x = self._policy_input(inputs[: len(self.components)])
        h, memory = policy.core(x, inputs[-1][:, 0, :] if policy.memory_size else None)
        # [DI] GaussianDistribution.forward: log_sigma = mu * 0 + log_sigma (no runtime broadcast), see actor_heads
        mean, log_std, all_logits = actor_heads(policy, h)
        outputs = [self.version_number, self.memory_size]
        if mean is not None:
            sample = mean + torch.randn_like(mean) * torch.exp(log_std)
            outputs += [self._clip(continuous_action(policy, sample)), self.continuous_shape,
                        self._clip(continuous_action(policy, mean))]
        if all_logits is not None:
            mask = inputs[len(self.components)]
            sampled, greedy = [], []
            start = 0
            for size in policy.branches:
                logits = all_logits[:, start : start + size]
                allow = mask[:, start : start + size]
                start += size
                # [DI] MultiCategoricalDistribution._mask_branch, written the same Sentis-friendly way
                block = -1.0 * allow + 1.0
                probs = torch.softmax(logits * allow - BLOCKED_LOGIT * block, dim=-1)
                sampled.append(torch.multinomial(probs, 1))
                greedy.append(torch.argmax(probs, dim=1, keepdim=True))
            joined = len(sampled) > 1
            outputs += [torch.cat(sampled, dim=1) if joined else sampled[0], self.discrete_shape,
                        torch.cat(greedy, dim=1) if joined else greedy[0]]
        if memory is not None:
            outputs.append(memory.unsqueeze(1))  # [RM] recurrent_out (batch, 1, memory_size)
        return tuple(outputs)
