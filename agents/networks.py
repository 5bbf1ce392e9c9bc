"""What a policy sees and remembers before its trunk: encoders chosen by each observation component's shape,
and an LSTM memory.

A behaviour's observation reaches a network as one flat float32 row (the rollout and
replay buffers store rows). :class:`ObservationEncoder` cuts the row back into its
components and encodes each by its shape, as Unity ML-Agents does:

- vectors (rank 0 or 1, and any rank above 3) go to the trunk as they are;
- images and grids (rank 3, height x width x channels, channels last as Gymnasium,
  ``mlagents_envs`` and the bridge deliver them) go through a CNN, one of ML-Agents'
  ``vis_encode_type`` choices, scaled into [0, 1] by their Box bounds first;
- entity lists (rank 2, entities x features, as ML-Agents' buffer sensor) go through
  an attention encoder; a row whose squares sum below 0.01 (the zeros a buffer sensor pads
  with) is a missing entity, masked out.

Each image and entity list is encoded to ``hidden_sizes[0]`` features (ML-Agents' ``h_size``),
concatenated after the vector columns.

The flat row puts the vector columns first, so observation normalisation (which, as
in ML-Agents, applies to vectors only) is one slice. Every layer is a torch module
differentiated by autograd; the exporter traces the same modules. :class:`Memory` is the
LSTM a policy with ``memory`` puts between its encoder and its trunk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from gymnasium import spaces
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

VisEncodeType = Literal["auto", "simple", "nature_cnn", "resnet", "match3", "fully_connected"]
MIN_RESOLUTION = {"match3": 5, "simple": 20, "nature_cnn": 36, "resnet": 15, "fully_connected": 1}
"""The smallest height and width each CNN takes (ML-Agents' ``MIN_RESOLUTION_FOR_ENCODER``)."""
ATTENTION_HEADS = 4  # as ML-Agents' ResidualSelfAttention
PADDING_LOGIT = -1e9  # finite: a row whose every entity is padding stays NaN-free
PADDING_THRESHOLD = 0.01  # an entity whose features' squares sum below this is padding (ML-Agents' get_zero_entities_mask)


swish = nn.functional.silu  # x * sigmoid(x), one kernel

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "swish": swish}
"""Trunk activations by name (ML-Agents' networks use swish)."""


class MemorySettings(BaseModel):
    """An LSTM memory, as ML-Agents' ``network_settings.memory``."""

    model_config = ConfigDict(extra="forbid")

    memory_size: int = Field(128, ge=2, multiple_of=2,
                             description="Floats of recurrent state per agent: the LSTM's hidden and cell state, half each.")
    sequence_length: int = Field(64, ge=1, description="Decisions per training sequence (backpropagation through time).")


class NetworkSettings(BaseModel):
    """Network settings every trainer shares (its hyperparameter section is validated against a subclass)."""

    model_config = ConfigDict(extra="forbid")

    memory: MemorySettings | None = Field(
        None, description="Give the policy an LSTM memory (for what it must remember: partial observability)."
    )

    vis_encode_type: VisEncodeType = Field(
        "auto",
        description=(
            "CNN for image and grid observations (ML-Agents' choices); 'auto': 'simple' for images of at least 20x20, "
            "smaller ones flattened into the vector."
        ),
    )


@dataclass(frozen=True)
class Component:
    """Where one observation component sits in the flat row, and how it is encoded."""

    key: str
    kind: Literal["vector", "image", "entities"]
    start: int
    stop: int
    shape: tuple[int, ...]


def observation_layout(components: Mapping[str, spaces.Box], vis_encode_type: VisEncodeType = "auto") -> list[Component]:
    """The flat row's components, vectors first, each group in sorted key order.

    ``"auto"`` sends an image through ML-Agents' ``simple`` CNN when it is at least that
    encoder's 20x20, and flattens a smaller one into the vector (a board game's 3x3 planes);
    a named ``vis_encode_type`` is applied to every image, and one too small for it is an error.
    """
    kinds = {}
    for key, box in components.items():
        rank = len(box.shape)
        if rank == 2:
            kinds[key] = "entities"
        elif rank == 3:
            height, width = box.shape[:2]
            if vis_encode_type == "auto":
                kinds[key] = "image" if min(height, width) >= MIN_RESOLUTION["simple"] else "vector"
            else:
                needed = MIN_RESOLUTION[vis_encode_type]
                if min(height, width) < needed:
                    fits = [name for name, size in MIN_RESOLUTION.items() if min(height, width) >= size]
                    raise ValueError(
                        f"observation {key!r} is {height}x{width}; vis_encode_type {vis_encode_type!r} needs at least "
                        f"{needed}x{needed} (for this size: {', '.join(fits)})"
                    )
                kinds[key] = "image"
        else:
            kinds[key] = "vector"
    order = sorted(components, key=lambda k: (kinds[k] != "vector", k))
    layout, start = [], 0
    for key in order:
        shape = tuple(int(d) for d in components[key].shape)
        size = int(np.prod(shape))
        layout.append(Component(key, kinds[key], start, start + size, shape))
        start += size
    return layout


# -- images -------------------------------------------------------------------------


def _conv_out(size: tuple[int, int], kernel: int, stride: int = 1) -> tuple[int, int]:
    return tuple((d - kernel) // stride + 1 for d in size)


def _dense(in_size: int, out_size: int) -> nn.Linear:
    """A dense layer after a CNN, Kaiming-normal initialised with ReLU's gain as ML-Agents' ``linear_layer``."""
    layer = nn.Linear(in_size, out_size)
    nn.init.kaiming_normal_(layer.weight, nonlinearity="linear")
    layer.weight.data.mul_(1.41)
    nn.init.zeros_(layer.bias)
    return layer


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(swish(self.conv1(swish(x))))


def _cnn(kind: str, channels: int, size: tuple[int, int]) -> tuple[nn.Module, int, nn.Module]:
    """ML-Agents' visual encoders (``encoders.py``): the convolutions, their flattened size, the dense activation."""
    leaky = nn.LeakyReLU()
    if kind == "fully_connected":
        return nn.Identity(), channels * size[0] * size[1], leaky
    if kind == "resnet":
        layers: list[nn.Module] = []
        last = channels
        for width in (16, 32, 32):
            layers += [nn.Conv2d(last, width, 3, padding=1), nn.MaxPool2d(3, 2), _ResidualBlock(width),
                       _ResidualBlock(width)]
            size = _conv_out(size, 3, 2)
            last = width
        layers.append(nn.SiLU())
        return nn.Sequential(*layers), last * size[0] * size[1], nn.ReLU()
    convs = {  # (out channels, kernel, stride)
        "simple": ((16, 8, 4), (32, 4, 2)),
        "nature_cnn": ((32, 8, 4), (64, 4, 2), (64, 3, 1)),
        "match3": ((35, 3, 1), (144, 3, 1)),
    }[kind]
    layers, last = [], channels
    for width, kernel, stride in convs:
        layers += [nn.Conv2d(last, width, kernel, stride), nn.LeakyReLU()]
        size = _conv_out(size, kernel, stride)
        last = width
    return nn.Sequential(*layers), last * size[0] * size[1], leaky


class ImageEncoder(nn.Module):
    """A rank-3 observation (height, width, channels) -> ``out_size`` features through one of ML-Agents' CNNs.

    The image is scaled into [0, 1] by its Box bounds where they are finite (a uint8 frame's
    0..255, a camera's 0..1 unchanged), then laid out channels first for the convolutions.
    """

    def __init__(self, box: spaces.Box, kind: str, out_size: int) -> None:
        super().__init__()
        height, width, channels = (int(d) for d in box.shape)
        self.shape = (height, width, channels)
        low = np.where(np.isfinite(box.low), box.low, 0.0).astype(np.float64)
        high = np.where(np.isfinite(box.high), box.high, 1.0).astype(np.float64)
        span = np.where(high > low, high - low, 1.0)
        uniform = np.ptp(low) == 0 and np.ptp(span) == 0  # one offset and scale: no per-pixel tensors
        self.register_buffer("offset", torch.tensor(low.flat[0] if uniform else low, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(1 / span.flat[0] if uniform else 1 / span, dtype=torch.float32))
        self.convs, flat, self.activation = _cnn(kind, channels, (height, width))
        self.flat_size = flat
        self.dense = _dense(flat, out_size)
        self.out_size = out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = (x.reshape(-1, *self.shape) - self.offset) * self.scale
        hidden = self.convs(image.permute(0, 3, 1, 2))
        return self.activation(self.dense(hidden.reshape(-1, self.flat_size)))


# -- entity lists ---------------------------------------------------------------------


class ResidualSelfAttention(nn.Module):
    """Embedded entities ``(n, count, size)`` -> ``(n, size)``: multi-head self-attention over the present ones,
    a residual connection and layer norm, then the mean over the present ones (ML-Agents' ``ResidualSelfAttention``).

    ``present`` (``(n, count)``, 1 or 0) says which entities exist; absent ones are neither attended to
    nor averaged, and a row with none encodes to zeros.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.heads = ATTENTION_HEADS if size % ATTENTION_HEADS == 0 else 1
        self.qkv = nn.Linear(size, 3 * size)
        self.out = nn.Linear(size, size)
        self.norm = nn.LayerNorm(size)

    def forward(self, h: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        count, head_size = h.shape[1], self.size // self.heads
        qkv = self.qkv(h).reshape(-1, count, 3, self.heads, head_size).permute(2, 0, 3, 1, 4)
        scores = qkv[0] @ qkv[1].transpose(-1, -2) * (1 / math.sqrt(head_size))  # (n, heads, entities, entities)
        scores = scores + (1 - present[:, None, None, :]) * PADDING_LOGIT
        attended = (torch.softmax(scores, -1) @ qkv[2]).transpose(1, 2).reshape(-1, count, self.size)
        h = self.norm(h + self.out(attended))
        weights = present / present.sum(-1, keepdim=True).clamp_min(1)
        return (h * weights.unsqueeze(-1)).sum(1)


class EntityEncoder(nn.Module):
    """A variable number of entities (rank 2: max entities x features) -> ``size`` features.

    ML-Agents' buffer-sensor encoding: each entity, with the agent's own vector observation
    beside it (so "how far is it from me" can be learned), embedded by a linear layer, then
    :class:`ResidualSelfAttention` over the present entities. An entity whose features' squares
    sum below 0.01 is padding (ML-Agents' rule; a buffer sensor pads with zeros).
    """

    def __init__(self, shape: tuple[int, int], size: int, self_size: int = 0) -> None:
        super().__init__()
        self.shape = shape
        self.out_size = size
        self.self_size = self_size
        self.embed = nn.Linear(shape[1] + self_size, size)
        self.attention = ResidualSelfAttention(size)

    def forward(self, x: torch.Tensor, own: torch.Tensor | None = None) -> torch.Tensor:
        entities = x.reshape(-1, *self.shape)
        present = (entities.square().sum(-1) >= PADDING_THRESHOLD).float()  # (n, entities)
        if self.self_size:
            entities = torch.cat([entities, own.unsqueeze(1).expand(-1, self.shape[0], -1)], -1)
        return self.attention(swish(self.embed(entities)), present)


class ObservationEncoder(nn.Module):
    """Flat observation rows (vector columns first, see :func:`observation_layout`) -> features for the trunk.

    With vectors only this is the identity and costs nothing.
    """

    def __init__(self, layout: Sequence[Component], components: Mapping[str, spaces.Box], vis_encode_type: str,
                 out_size: int) -> None:
        super().__init__()
        self.vector_size = sum(c.stop - c.start for c in layout if c.kind == "vector")
        self.slices = [(c.start, c.stop) for c in layout if c.kind != "vector"]
        kind = "simple" if vis_encode_type == "auto" else vis_encode_type
        self.encoders = nn.ModuleList(
            ImageEncoder(components[c.key], kind, out_size) if c.kind == "image"
            else EntityEncoder(c.shape, out_size, self.vector_size)
            for c in layout if c.kind != "vector"
        )
        self.out_size = self.vector_size + sum(e.out_size for e in self.encoders)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.slices:
            return x
        vector = x[:, : self.vector_size]
        parts = [vector] if self.vector_size else []
        for encoder, (start, stop) in zip(self.encoders, self.slices):
            part = x[:, start:stop]
            parts.append(encoder(part, vector) if isinstance(encoder, EntityEncoder) else encoder(part))
        return torch.cat(parts, 1) if len(parts) > 1 else parts[0]


class Memory(nn.Module):
    """An LSTM between the encoder and the trunk (ML-Agents' ``memory``).

    The state of one agent is one row of ``memory_size`` floats: the LSTM's hidden state, then its
    cell state (ML-Agents' layout, what a game stores between decisions). Zeros start an episode.
    """

    def __init__(self, in_size: int, memory_size: int) -> None:
        super().__init__()
        self.size = memory_size
        self.out_size = memory_size // 2
        self.lstm = nn.LSTM(in_size, self.out_size, batch_first=True)
        for name, param in self.lstm.named_parameters():  # the forget gate starts open, as ML-Agents' lstm_layer
            if name.startswith("bias"):
                nn.init.zeros_(param)
                if name == "bias_ih_l0":
                    param.data[self.out_size : 2 * self.out_size] = 1.0

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequences ``x`` (batch, steps, features) from ``state`` (batch, memory_size) -> (outputs, final state)."""
        half = self.out_size
        initial = (state[:, :half].unsqueeze(0).contiguous(), state[:, half:].unsqueeze(0).contiguous())
        out, (h, c) = self.lstm(x, initial)
        return out, torch.cat([h[0], c[0]], 1)


class ObservationReader(nn.Module):
    """How a network reads what agents see: an observation encoder and, with ``memory``, the LSTM after it.

    :meth:`core` reads one decision per row and returns the memory's next state; :meth:`core_sequences`
    reads sequences of decisions. Policies and SAC's critics are readers with their own heads.
    """

    def __init__(self, encoder: ObservationEncoder, memory: MemorySettings | None) -> None:
        super().__init__()
        self.encoder = encoder
        self.memory = None if memory is None else Memory(encoder.out_size, memory.memory_size)
        self.memory_size = 0 if memory is None else memory.memory_size
        self.features_size = encoder.out_size if self.memory is None else self.memory.out_size

    def core(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features of normalised ``x``, one decision per row, through the memory from ``state`` if there is
        one; and the memory's next state (None without memory)."""
        h = self.encoder(x) if self.encoder.slices else x  # vectors only: no module call on the hot path
        if self.memory is None:
            return h, None
        out, state = self.memory(h.unsqueeze(1), state)
        return out[:, 0], state

    def core_sequences(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Sequences of normalised rows ``x`` (batch, steps, obs_size), each from its row of ``state`` -> the
        memory's output at every step (batch, steps, features)."""
        h = self.encoder(x.reshape(-1, x.shape[-1]))
        out, _ = self.memory(h.reshape(x.shape[0], x.shape[1], -1), state)
        return out

    def initial_state(self, n: int) -> torch.Tensor | None:
        """The memory of ``n`` agents starting an episode (None without memory)."""
        return None if self.memory is None else torch.zeros(n, self.memory_size)
