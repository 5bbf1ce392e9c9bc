"""Environment parameters a game reads at its episodes' start: fixed values, or samplers drawn per read.

ML-Agents' ``environment_parameters`` name either a number or a sampler (``uniform``,
``gaussian``, ``multirangeuniform``). A Unity build draws from a sampler itself each
time the game reads the parameter (its ``EnvironmentParametersChannel``); sources that
only carry numbers get a fresh draw from :func:`draw` whenever one of their episodes
ends, which is when a game reads its parameters again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Sampler(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(-1, description="The sampler's own seed; -1: derived from the run's seed.")


class UniformSampler(_Sampler):
    """A value drawn uniformly from ``[min_value, max_value)``."""

    sampler_type: Literal["uniform"] = "uniform"
    min_value: float
    max_value: float

    @model_validator(mode="after")
    def _ordered(self) -> UniformSampler:
        if self.min_value > self.max_value:
            raise ValueError(f"min_value {self.min_value} is above max_value {self.max_value}")
        return self


class GaussianSampler(_Sampler):
    """A value drawn from a normal distribution."""

    sampler_type: Literal["gaussian"] = "gaussian"
    mean: float
    st_dev: float = Field(ge=0)


class MultiRangeUniformSampler(_Sampler):
    """A value drawn uniformly from one of several intervals, each chosen in proportion to its length."""

    sampler_type: Literal["multirangeuniform"] = "multirangeuniform"
    intervals: list[tuple[float, float]] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> MultiRangeUniformSampler:
        for low, high in self.intervals:
            if low > high:
                raise ValueError(f"interval [{low}, {high}] has its lower end above its upper end")
        return self


Sampler = Annotated[Union[UniformSampler, GaussianSampler, MultiRangeUniformSampler], Field(discriminator="sampler_type")]
ParameterValue = Union[float, UniformSampler, GaussianSampler, MultiRangeUniformSampler]


def draw(value: ParameterValue, rng: np.random.Generator) -> float:
    """One value of ``value``: itself if it is a number, else a draw from the sampler."""
    if isinstance(value, UniformSampler):
        return float(rng.uniform(value.min_value, value.max_value))
    if isinstance(value, GaussianSampler):
        return float(rng.normal(value.mean, value.st_dev))
    if isinstance(value, MultiRangeUniformSampler):
        lengths = np.array([high - low for low, high in value.intervals], np.float64)
        pick = rng.choice(len(lengths), p=lengths / lengths.sum()) if lengths.sum() > 0 else rng.integers(len(lengths))
        low, high = value.intervals[pick]
        return float(rng.uniform(low, high))
    return float(value)


def draw_all(parameters: Mapping[str, ParameterValue], rng: np.random.Generator) -> dict[str, float]:
    """Every parameter as a number, samplers drawn once each."""
    return {name: draw(value, rng) for name, value in parameters.items()}
