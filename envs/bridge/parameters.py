"""The environment parameters one engine holds: numbers as the trainer set them, samplers drawn afresh for its episodes.

A bridge engine only ever holds numbers. The trainer keeps, per engine, what each parameter is
(a number or a sampler, :mod:`sparring.envs.parameters`) and what the engine was last sent; a
Reset carries every value, and an Actions message carries only the values that changed since
(``Actions.environment_parameters``). The engine reads the values it holds whenever an episode
starts; so once episodes have started with a draw (after a Reset, and whenever one of the
engine's episodes ended, as the next one starts in the same step), every sampler is drawn again
and the next Actions takes the new value to the engine, for the episodes that start next. Draws
are reproducible: each parameter has its own random stream, seeded by the engine's Reset seed,
the parameter's name and the sampler's own ``seed``.
"""

from __future__ import annotations

import math
import numbers
import zlib
from collections.abc import Mapping

import numpy as np

from sparring.envs.parameters import GaussianSampler, MultiRangeUniformSampler, ParameterValue, UniformSampler, draw

_SAMPLERS = (UniformSampler, GaussianSampler, MultiRangeUniformSampler)


def checked_parameters(parameters: Mapping[str, ParameterValue]) -> dict[str, ParameterValue]:
    """``parameters`` as a dict, or ``ValueError`` naming the first one the protocol cannot carry."""
    for name, value in parameters.items():
        if not isinstance(name, str):
            raise ValueError(f"environment parameter names are strings, got {name!r}")
        if isinstance(value, _SAMPLERS):
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"environment parameter {name!r}: a number or a sampler "
                             f"(UniformSampler, GaussianSampler, MultiRangeUniformSampler), got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"environment parameter {name!r}: {value} is not finite")
    return dict(parameters)


class EngineParameters:
    """What one engine's environment parameters are, and what it must be sent (see the module docstring)."""

    def __init__(self, parameters: Mapping[str, ParameterValue] | None = None) -> None:
        self._values: dict[str, ParameterValue] = checked_parameters(parameters or {})
        self._seed = 0  # the last Reset's; every value is drawn again at each Reset
        self._streams: dict[str, np.random.Generator] = {}
        self._held: dict[str, float] = {}  # what the engine was sent
        self._due: dict[str, float] = {}  # values for the next message

    def set(self, parameters: Mapping[str, ParameterValue]) -> None:
        """New values (numbers or samplers), for the engine's episodes that start after the next message."""
        parameters = checked_parameters(parameters)
        self._values.update(parameters)
        self._due.update({name: self._draw(name, value) for name, value in parameters.items()})

    def at_reset(self, seed: int) -> dict[str, float]:
        """Every value, samplers drawn from streams seeded anew by ``seed``: what a Reset carries."""
        self._seed = seed % 2**64
        self._streams.clear()
        self._held = {name: self._draw(name, value) for name, value in self._values.items()}
        self._due.clear()
        return dict(self._held)

    def episodes_started(self) -> None:
        """Episodes started with the values the engine holds: draw every sampler again for the ones that start next."""
        self._due.update({name: self._draw(name, value) for name, value in self._values.items()
                          if isinstance(value, _SAMPLERS)})

    def changes(self) -> dict[str, float]:
        """The values the next Actions carries: those that differ from what the engine holds (then it holds them)."""
        changed = {name: value for name, value in self._due.items() if self._held.get(name) != value}
        self._held.update(changed)
        self._due.clear()
        return changed

    def _draw(self, name: str, value: ParameterValue) -> float:
        if not isinstance(value, _SAMPLERS):
            return float(value)
        stream = self._streams.get(name)
        if stream is None:
            entropy = [self._seed, zlib.crc32(name.encode()), value.seed + 1]  # seed -1: derived from the Reset's
            stream = self._streams[name] = np.random.default_rng(entropy)
        return draw(value, stream)
