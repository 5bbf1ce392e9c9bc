"""Environment parameters over a run: fixed values, samplers and curricula, and when a curriculum's lesson ends.

A run config's ``environment_parameters`` names, per parameter the game reads, a number, a
sampler, or a curriculum: lessons, each with a value (number or sampler) and the criteria
that end it, as ML-Agents' ``environment_parameters`` do::

    environment_parameters:
      gravity: 9.81
      mass: {sampler_type: uniform, min_value: 0.5, max_value: 10}
      wall_height:
        curriculum:
          - name: Low
            value: 1.5
            completion_criteria: {behavior: SmallWallJump, measure: reward, threshold: 0.8, min_lesson_length: 100}
          - name: High
            value: {sampler_type: uniform, min_value: 4, max_value: 8}

:class:`Curriculum` follows them through training as ML-Agents' ``EnvironmentParameterManager``
and ``CompletionCriteriaSettings`` do (a number or sampler is a curriculum of one lesson):

- **reward**: the mean return of the last episodes of ``behavior`` (its policy group: ``"Striker"``
  covers ``"Striker?team=1"``), the returns the run logs as ``Environment/Cumulative Reward``. The
  lesson ends when it is above ``threshold``. With ``signal_smoothing`` the measure is
  ``0.25 * previous + 0.75 * mean``, the previous value kept per parameter from check to check.
- **progress**: the run's decisions over ``trainer.max_steps``; the lesson ends when it is above
  ``threshold``. (ML-Agents divides the behaviour's own steps by its own max_steps; the same
  wherever behaviours share max_steps and decide equally often.)
- **min_lesson_length**: episodes of ``behavior`` that must end first, counted from the last time
  any lesson changed (every change starts the count again, for every behaviour). Each behaviour
  keeps the returns of its last ``max(min_lesson_length)`` episodes (over the criteria naming it);
  those are what the reward measure averages.
- **require_reset**: the env is reset when the lesson ends (:meth:`Checkpointed.restart_episodes`:
  episodes in progress are given up); otherwise the game takes the new values when it next reads
  them (most games: when an episode begins).

Lessons are checked after every update the trainer reports (ML-Agents: after every env step),
so with PPO a lesson ends between rollouts and the smoothing runs once per rollout. At the start
and after every change, every parameter's current value goes to ``env.set_parameters``; samplers
travel as samplers, and one whose ``seed`` is -1 is seeded ``run seed + k``, ``k`` counting in order the
lessons (of every parameter) whose value has seed -1, numbers included, as ML-Agents numbers them.
TensorBoard shows each parameter's lesson as ``Environment/Lesson Number/<parameter>``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from sparring.agents.episodes import UpdateReport
from sparring.envs.base import MultiAgentEnv
from sparring.envs.parameters import GaussianSampler, MultiRangeUniformSampler, ParameterValue, Sampler, UniformSampler
from sparring.spec import group_of

if TYPE_CHECKING:
    from sparring.agents.checkpoint import Checkpointed

NUMBER, SAMPLER, CURRICULUM = "(number)", "(sampler)", "(curriculum)"
"""How an environment parameter's kinds are told apart (pydantic puts these tags in error locations)."""

SAMPLER_TYPES = {cls.model_fields["sampler_type"].default: cls
                 for cls in (UniformSampler, GaussianSampler, MultiRangeUniformSampler)}
"""``sampler_type`` -> its sampler."""

SMOOTHING = 0.25
"""The previous measure's weight in a smoothed reward measure (ML-Agents' ``need_increment``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _kind(value: Any) -> str | None:
    """Which kind of environment parameter ``value`` is written as (None: none, an error naming the choices)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return NUMBER
    if isinstance(value, CurriculumSettings) or (isinstance(value, Mapping) and "curriculum" in value):
        return CURRICULUM
    if isinstance(value, BaseModel) or (isinstance(value, Mapping) and "sampler_type" in value):
        return SAMPLER
    return None


def _value_kind(value: Any) -> str | None:
    """Which kind of lesson value ``value`` is written as (a curriculum is none)."""
    kind = _kind(value)
    return None if kind == CURRICULUM else kind


_SAMPLERS = "a sampler (sampler_type: uniform, gaussian or multirangeuniform)"

LessonValue = Annotated[
    Union[Annotated[float, Tag(NUMBER)], Annotated[Sampler, Tag(SAMPLER)]],
    Discriminator(_value_kind, custom_error_type="lesson_value",
                  custom_error_message=f"expected a number or {_SAMPLERS}"),
]


class CompletionCriteria(_Strict):
    """When a lesson ends (ML-Agents' ``completion_criteria``; see the module docstring)."""

    behavior: str = Field(description="The behaviour (policy group) whose training is measured.")
    measure: Literal["reward", "progress"] = Field("reward", description="Mean episode return, or run progress.")
    threshold: float = Field(0.0, description="The lesson ends once the measure is above this.")
    min_lesson_length: int = Field(0, ge=0, description="Episodes of `behavior` that must end first.")
    signal_smoothing: bool = Field(True, description="Reward measure: 0.25 * previous + 0.75 * mean.")
    require_reset: bool = Field(False, description="Reset the env when the lesson ends.")

    @model_validator(mode="after")
    def _progress_is_a_fraction(self) -> CompletionCriteria:
        if self.measure == "progress" and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold: with measure progress it is a fraction of the run, from 0 to 1 "
                             f"(got {self.threshold})")
        return self


class Lesson(_Strict):
    """One lesson of a curriculum: the parameter's value while it lasts, and what ends it."""

    name: str
    value: LessonValue
    completion_criteria: CompletionCriteria | None = Field(None, description="None only for the last lesson.")


class CurriculumSettings(_Strict):
    """A parameter's lessons, in order: every lesson but the last ends by its criteria."""

    curriculum: list[Lesson] = Field(min_length=1)

    @model_validator(mode="after")
    def _criteria_end_every_lesson_but_the_last(self) -> CurriculumSettings:
        *earlier, last = self.curriculum
        for i, lesson in enumerate(earlier):
            if lesson.completion_criteria is None:
                raise ValueError(f"curriculum.{i}.completion_criteria: lesson {lesson.name!r} needs one (only the "
                                 "last lesson has none)")
        if last.completion_criteria is not None:
            raise ValueError(f"curriculum.{len(earlier)}.completion_criteria: lesson {last.name!r} is the last "
                             "and has no lesson to advance to; remove its completion_criteria")
        return self


EnvironmentParameter = Annotated[
    Union[Annotated[float, Tag(NUMBER)], Annotated[Sampler, Tag(SAMPLER)],
          Annotated[CurriculumSettings, Tag(CURRICULUM)]],
    Discriminator(_kind, custom_error_type="environment_parameter",
                  custom_error_message=f"expected a number, {_SAMPLERS} or a curriculum (a list of lessons)"),
]


class Curriculum:
    """Every environment parameter of a run, through training (see the module docstring).

    Use it as ``learn``'s callback, after :meth:`start`; :meth:`state_dict` is what a resumed
    run needs to continue each curriculum where it was.

    Args:
        parameters: the run config's ``environment_parameters``.
        seed: the run's seed, which seeds the samplers whose seed is -1.
    """

    def __init__(self, parameters: Mapping[str, EnvironmentParameter], seed: int) -> None:
        self.lessons = _seeded({name: _lessons_of(name, value) for name, value in parameters.items()}, seed)
        self.lesson_numbers = {name: 0 for name in self.lessons}
        self._smoothed = {name: 0.0 for name in self.lessons}
        kept: dict[str, int] = {}  # behaviour -> how many of its latest returns the reward measure averages
        for criteria in self._criteria():
            kept[criteria.behavior] = max(kept.get(criteria.behavior, 1), criteria.min_lesson_length)
        self._returns = {behaviour: deque(maxlen=n) for behaviour, n in kept.items()}

    def _criteria(self) -> list[CompletionCriteria]:
        return [lesson.completion_criteria for lessons in self.lessons.values() for lesson in lessons
                if lesson.completion_criteria is not None]

    def values(self) -> dict[str, ParameterValue]:
        """Each parameter's value in its current lesson (a number or a seeded sampler)."""
        return {name: lessons[self.lesson_numbers[name]].value for name, lessons in self.lessons.items()}

    def lesson_metrics(self) -> dict[str, float]:
        """Each parameter's lesson number under ML-Agents' TensorBoard name."""
        return {f"Environment/Lesson Number/{name}": float(number) for name, number in self.lesson_numbers.items()}

    def describe(self, name: str) -> str:
        """Parameter ``name``'s current lesson, for the console."""
        number, lessons = self.lesson_numbers[name], self.lessons[name]
        lesson = lessons[number]
        return (f"environment parameter {name!r} is in lesson {lesson.name!r} ({number + 1} of {len(lessons)}), "
                f"value {_describe_value(lesson.value)}")

    def start(self, env: MultiAgentEnv) -> None:
        """Check that the criteria name behaviours of ``env`` and send it the current values.

        Raises ``ValueError`` naming the parameter when a criterion names no behaviour of the env,
        or when the env cannot take environment parameters.
        """
        groups = sorted({group_of(name) for name in env.specs})
        for name, lessons in self.lessons.items():
            for lesson in lessons:
                criteria = lesson.completion_criteria
                if criteria is not None and criteria.behavior not in groups:
                    raise ValueError(f"environment_parameters.{name}: lesson {lesson.name!r} is measured on behavior "
                                     f"{criteria.behavior!r}, which the env does not have (it has {', '.join(groups)})")
        if not self.lessons:
            return
        try:
            env.set_parameters(self.values())
        except NotImplementedError as exc:
            raise ValueError(f"environment_parameters: {', '.join(self.lessons)}: {exc}; train them in a source that "
                             "reads environment parameters (a Unity build, a bridge engine), or remove them") from None

    def __call__(self, model: Checkpointed, report: UpdateReport) -> list[str]:
        """After an update: advance the lessons whose criteria are met, send the new values (resetting the env
        where a finished lesson asks for it), and return the names of the parameters that advanced."""
        advanced, reset = self.advance(report, report.step / model.total_steps)
        if advanced:
            model.env.set_parameters(self.values())
        if reset:
            model.restart_episodes()
        return advanced

    def advance(self, report: UpdateReport, progress: float) -> tuple[list[str], bool]:
        """Record the returns of the episodes ``report`` ended, then move every parameter whose lesson's criteria
        are met (at ``progress``, the run's fraction done) to its next lesson.

        Returns the parameters that advanced, and whether one of the lessons they finished requires a reset.
        """
        for name, behaviour in report.behaviours.items():
            returns = self._returns.get(group_of(name))
            if returns is not None:
                returns.extend(behaviour.episode_returns.tolist())
        advanced, reset = [], False
        for name, lessons in self.lessons.items():
            criteria = lessons[self.lesson_numbers[name]].completion_criteria
            if criteria is not None and self._met(name, criteria, progress):
                self.lesson_numbers[name] += 1
                advanced.append(name)
                reset = reset or criteria.require_reset
        if advanced:  # every lesson counts its episodes afresh
            for returns in self._returns.values():
                returns.clear()
        return advanced, reset

    def _met(self, name: str, criteria: CompletionCriteria, progress: float) -> bool:
        returns = self._returns[criteria.behavior]
        if len(returns) < criteria.min_lesson_length:
            return False
        if criteria.measure == "progress":
            return progress > criteria.threshold
        if not returns:
            return False
        measure = float(np.mean(returns))
        if criteria.signal_smoothing:
            measure = self._smoothed[name] = SMOOTHING * self._smoothed[name] + (1 - SMOOTHING) * measure
        return measure > criteria.threshold

    def state_dict(self) -> dict[str, Any]:
        """Where every curriculum stands (JSON-ready)."""
        return {"lesson_numbers": dict(self.lesson_numbers), "smoothed": dict(self._smoothed),
                "returns": {behaviour: list(returns) for behaviour, returns in self._returns.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``; parameters and behaviours the config no longer has are left out, new ones
        start at their first lesson. Raises ``ValueError`` for a lesson the config's curriculum does not have."""
        for name, number in state["lesson_numbers"].items():
            if name in self.lessons:
                if not 0 <= number < len(self.lessons[name]):
                    raise ValueError(f"environment_parameters.{name}: the run was in lesson {number + 1}, and the "
                                     f"config's curriculum has {len(self.lessons[name])}")
                self.lesson_numbers[name] = number
                self._smoothed[name] = float(state["smoothed"][name])
        for behaviour, returns in state["returns"].items():
            if behaviour in self._returns:
                self._returns[behaviour].extend(returns)


def _lessons_of(name: str, parameter: EnvironmentParameter) -> list[Lesson]:
    """A parameter's lessons: a number or sampler is one lesson named after the parameter, as in ML-Agents."""
    if isinstance(parameter, CurriculumSettings):
        return list(parameter.curriculum)
    return [Lesson(name=name, value=parameter)]


def _seeded(lessons: dict[str, list[Lesson]], seed: int) -> dict[str, list[Lesson]]:
    """``lessons`` with every sampler of seed -1 seeded ``seed + k``, ``k`` counting the lessons of seed -1 in
    order, numbers included (ML-Agents' ``_set_sampler_seeds``: its constants are samplers of seed -1 too)."""
    k = 0
    seeded: dict[str, list[Lesson]] = {}
    for name, parameter_lessons in lessons.items():
        seeded[name] = []
        for lesson in parameter_lessons:
            value = lesson.value
            if isinstance(value, float) or value.seed == -1:
                if not isinstance(value, float):
                    lesson = lesson.model_copy(update={"value": value.model_copy(update={"seed": seed + k})})
                k += 1
            seeded[name].append(lesson)
    return seeded


def _describe_value(value: ParameterValue) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    fields = value.model_dump(exclude={"sampler_type", "seed"})
    return f"{value.sampler_type}({', '.join(f'{key}={v}' for key, v in fields.items())})"
