"""The ``tune:`` section of a run config: what ``sparring tune`` searches, and how its trials are compared.

Example::

    tune:
      search_space:                      # dotted config key -> one distribution
        trainer.hyperparameters.learning_rate: {loguniform: [1.0e-4, 3.0e-3]}
        trainer.hyperparameters.gamma: {uniform: [0.95, 0.995]}
        trainer.hyperparameters.batch_size: {choice: [128, 256, 512]}
      scheduler: pbt                     # pbt | asha | fifo
      perturbation_interval: 20000       # pbt: agent steps between exploit/explore
      num_samples: 4
      metric: Environment/Cumulative Reward
      mode: max

Kept apart from :mod:`sparring.tune`, which runs the search on Ray Tune: reading a config never needs Ray.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from sparring.env_config import _Strict

KINDS = ("loguniform", "uniform", "choice", "grid")


class Distribution(_Strict):
    """Where one setting's values come from: exactly one of its keys."""

    loguniform: tuple[float, float] | None = Field(
        None, description="[low, high] with 0 < low: even in log space, for scales such as learning rates.")
    uniform: tuple[float, float] | None = Field(None, description="[low, high]: even between the two.")
    choice: list[Any] | None = Field(None, min_length=1, description="One of these values, picked at random.")
    grid: list[Any] | None = Field(None, min_length=1, description="Every one of these values (num_samples trials each).")

    @model_validator(mode="before")
    @classmethod
    def _a_mapping(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise _one_of()
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        if sum(getattr(self, kind) is not None for kind in KINDS) != 1:
            raise _one_of()
        if self.bounds is not None:
            low, high = self.bounds
            if not low < high or (self.loguniform is not None and low <= 0):
                positive = " and 0 < low" if self.loguniform is not None else ""
                raise PydanticCustomError("distribution", "{kind}: [low, high] needs low < high{positive}",
                                          {"kind": self.kind, "positive": positive})
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in KINDS if getattr(self, kind) is not None)

    @property
    def bounds(self) -> tuple[float, float] | None:
        """[low, high] of a continuous distribution (None for choice and grid)."""
        return self.loguniform or self.uniform

    @property
    def extremes(self) -> list[Any]:
        """The values that show whether every value fits the config: both bounds, or every listed value."""
        return list(self.bounds or self.choice or self.grid or [])


def _one_of() -> PydanticCustomError:
    return PydanticCustomError("distribution", "expected one of loguniform: [low, high], uniform: [low, high], "
                                               "choice: [values] or grid: [values]")


class TuneConfig(_Strict):
    """How ``sparring tune`` searches: the space, the scheduler, and the metric trials are compared by."""

    search_space: dict[str, Distribution] = Field(
        min_length=1, description="Dotted config key (trainer.hyperparameters.learning_rate) -> its distribution; "
        "population-based training mutates the same keys within the same bounds.")
    metric: str = Field("Environment/Cumulative Reward",
                        description="The summary metric trials are compared by (any key of metrics.jsonl).")
    behaviour: str | None = Field(None, description="Whose metric counts (default: the mean over the behaviours).")
    mode: Literal["max", "min"] = Field("max", description="Whether a larger or a smaller metric is better.")
    num_samples: int = Field(4, ge=1, description="Trials (with grid: trials for each grid value).")
    scheduler: Literal["pbt", "asha", "fifo"] = Field(
        "pbt", description="pbt: population-based training (the worse trials continue from the better ones' "
        "checkpoints with mutated settings); asha: stop the worse trials early; fifo: train every trial to the end.")
    perturbation_interval: int = Field(50_000, ge=1, description="pbt: agent steps between a trial's exploit/explore.")
    grace_period: int | None = Field(
        None, ge=1, description="asha: agent steps every trial trains before it may be stopped (default: "
        "trainer.summary_freq, its first summary).")
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="Trials running at once (default: as many as the cluster's resources hold).")
    resources_per_trial: dict[str, float] = Field(
        default_factory=lambda: {"cpu": 1.0},
        description="Ray resources each trial holds: cpu (also its torch threads), gpu, or the cluster's own.")

    @model_validator(mode="after")
    def _positive_resources(self) -> TuneConfig:
        for name, amount in self.resources_per_trial.items():
            if amount <= 0:
                raise ValueError(f"resources_per_trial.{name}: must be more than 0 (got {amount})")
        return self
