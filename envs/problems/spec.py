"""Problems as data: :class:`ProblemSpec`, how an answer scores (:class:`EvaluationMetrics`,
:class:`Evaluation`), and what a family of problems implements (:class:`ProblemFamily`).

A family (reasoning, knapsack, TSP, constrained writing: one per file beside this one) draws
specs from a random generator and checks answers against them. Its checker returns named
criterion scores in [0, 1] and a reason for every failed constraint; an
:class:`EvaluationMetrics` combines the scores with configurable weights: *gates* (hard
constraints such as feasibility) set the score to 0 when any of them is not met, and the
weighted mean of the other criteria is the score.

>>> metrics = EvaluationMetrics({"value": 1.0}, gates=frozenset({"capacity"}))
>>> metrics.evaluate(Check({"capacity": 1.0, "value": 0.75})).score
0.75
>>> ev = metrics.evaluate(Check({"capacity": 0.0, "value": 0.0}, ("total weight 23 > 20",)))
>>> ev.score, ev.feedback()
(0.0, 'Score 0.00: total weight 23 > 20.')
"""

from __future__ import annotations

import abc
import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, NamedTuple, TypeVar

import numpy as np

from llm_trainer.core.errors import ConfigError, suggest
from llm_trainer.core.records import FrozenDict, ToolCall, freeze
from llm_trainer.envs.common import short_repr

AnswerKind = Literal["number", "text"]
ConfigT = TypeVar("ConfigT")

#: The criteria of an episode before any answer.
NO_CRITERIA: Mapping[str, float] = FrozenDict({})


class SubProblem(NamedTuple):
    """One node of a problem's decomposition: plain data, so a graph view can be derived
    (``networkx.DiGraph`` edges ``depends_on -> id``) without this module depending on it."""

    id: str
    statement: str
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProblemSpec:
    """One problem, as frozen data.

    >>> spec = ProblemSpec(domain="reasoning/arithmetic", statement="What is 2 + 3?",
    ...                    answer="5", difficulty=1, answer_kind="number", unique=True)
    >>> spec.ground_truth, spec.optimum
    ('5', None)
    """

    domain: str
    """``family/kind``: ``reasoning/arithmetic``, ``optimization/knapsack``..."""
    statement: str
    """What the agent is asked (the first observation)."""
    answer: str
    """A reference answer that scores 1.0: the ground truth where the answer is unique
    (:attr:`unique`), an optimal solution of an optimisation problem, a text meeting every
    constraint of a writing task. The oracle answers it."""
    difficulty: int
    """The difficulty the spec was drawn at."""
    constraints: tuple[str, ...] = ()
    """The constraints an answer must meet, in words."""
    objectives: tuple[str, ...] = ()
    """What an answer should optimise, in words (empty for a question with one answer)."""
    answer_format: str = ""
    """How to write the answer (also stated in :attr:`statement`)."""
    answer_kind: AnswerKind = "text"
    """``"number"``: judged numerically, as in the tool-use envs; ``"text"``: by the family."""
    unique: bool = False
    """Whether :attr:`answer` is the only answer that scores 1.0."""
    optimum: float | None = None
    """The optimal objective value (optimisation problems), computed exactly."""
    solution: str = ""
    """A worked solution, where the family writes one (arithmetic word problems)."""
    subproblems: tuple[SubProblem, ...] = ()
    """An optional decomposition: each node depends on earlier ones only (a DAG)."""
    data: Mapping[str, Any] = field(default_factory=FrozenDict)
    """The instance, as the checker reads it (weights and values, distances, parameters)."""
    plan: tuple[ToolCall, ...] = ()
    """Tool calls of the reference solution, in order (what the oracle does before answering)."""
    required_tools: frozenset[str] = frozenset()
    """Tools that must run successfully for ``tool_correct`` (none: tools are optional)."""

    def __post_init__(self) -> None:
        if not isinstance(self.data, FrozenDict):
            object.__setattr__(self, "data", freeze(self.data))
        seen: set[str] = set()
        for node in self.subproblems:
            missing = [d for d in node.depends_on if d not in seen]
            if node.id in seen or missing:
                raise ValueError(
                    f"subproblems must have unique ids and depend on earlier ones only: "
                    f"{node.id!r} (depends on {list(node.depends_on)})"
                )
            seen.add(node.id)

    @property
    def ground_truth(self) -> str | None:
        """The one correct answer, when there is one."""
        return self.answer if self.unique else None


class Check(NamedTuple):
    """What a family's checker found: criterion scores in [0, 1], a reason per failed
    constraint, and a short description of the answer's objective (for the feedback)."""

    criteria: Mapping[str, float]
    failures: tuple[str, ...] = ()
    details: str = ""


@dataclass(frozen=True, slots=True)
class Evaluation:
    """How an answer scored.

    ``score`` is in [0, 1]; ``criteria`` are the named scores it combines; ``failures`` has one
    reason per failed constraint (``"infeasible: total weight 23 > capacity 20"``).
    """

    score: float
    criteria: Mapping[str, float]
    failures: tuple[str, ...] = ()
    details: str = ""
    success: bool = False
    """Whether ``score`` reached the family's success threshold."""

    @property
    def correct(self) -> bool:
        """Whether the answer is perfect (score 1)."""
        return self.score == 1.0

    def feedback(self) -> str:
        """One line for the agent: the score, what failed, and the objective reached."""
        parts = list(self.failures) or ["every constraint met"]
        if self.details:
            parts.append(self.details)
        return f"Score {self.score:.2f}: {'; '.join(parts)}."


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class EvaluationMetrics:
    """Success criteria and scoring: how criterion scores become one score.

    A criterion named in ``gates`` is a hard constraint: if any gate present in the scores is
    below 1, the score is 0. Otherwise the score is the ``weights``-weighted mean of the
    weighted criteria present (a family whose specs differ in their criteria, such as writing,
    scores each spec on its own). ``success`` is ``score >= success_threshold``.
    """

    weights: Mapping[str, float]
    """Weight (> 0) of each scored criterion."""
    gates: frozenset[str] = frozenset()
    """Criteria that must be fully met for any score at all."""
    success_threshold: float = 1.0
    """The score from which an answer counts as a success, in (0, 1]."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", FrozenDict(dict(self.weights)))
        if not self.weights:
            raise ConfigError("weights: at least one criterion needs a weight")
        for name, weight in self.weights.items():
            if not _is_number(weight) or weight <= 0:
                raise ConfigError(
                    f"weights[{name!r}] must be a positive number, got {short_repr(weight)} "
                    "(leave a criterion out of the config to drop it)"
                )
        threshold = self.success_threshold
        if not _is_number(threshold) or not 0 < threshold <= 1:
            raise ConfigError(
                f"success_threshold must be a number in (0, 1], got {short_repr(threshold)}"
            )

    def with_overrides(
        self, weights: Mapping[str, Any] | None = None, success_threshold: Any = None
    ) -> EvaluationMetrics:
        """These metrics with some weights and/or the threshold replaced.

        Raises:
            ConfigError: for an unknown criterion (with a suggestion) or a bad value.
        """
        merged = dict(self.weights)
        for name, weight in (weights or {}).items():
            if name not in merged:
                known = sorted(merged)
                raise ConfigError(
                    f"weights: unknown criterion {short_repr(name)}"
                    f"{suggest(str(name), known)}; known: {', '.join(known)}"
                )
            merged[name] = weight
        threshold = self.success_threshold if success_threshold is None else success_threshold
        return EvaluationMetrics(merged, self.gates, threshold)

    def score(self, criteria: Mapping[str, float]) -> float:
        """Combine criterion scores (see the class docstring) into a score in [0, 1]."""
        total = weighted = 0.0
        scored: list[float] = []
        for name, value in criteria.items():
            if name in self.gates and value < 1.0:
                return 0.0
            weight = self.weights.get(name)
            if weight is not None:
                total += weight
                weighted += weight * value
                scored.append(value)
        if not scored:
            return 0.0
        if len(scored) == 1 or all(v == scored[0] for v in scored):
            score = scored[0]  # exactly the value: no rounding through weight * value / weight
        else:
            score = weighted / total
        return min(1.0, max(0.0, score))

    def evaluate(self, check: Check) -> Evaluation:
        """The :class:`Evaluation` of a checker's result."""
        score = self.score(check.criteria)
        return Evaluation(
            score=score,
            criteria=FrozenDict(check.criteria),
            failures=check.failures,
            details=check.details,
            success=score >= self.success_threshold,
        )


class ProblemFamily(abc.ABC, Generic[ConfigT]):
    """A family of problems: a generator of :class:`ProblemSpec` and its checker.

    A family is a config dataclass (``config_class``; its fields are the family's templates and
    difficulty parameters, set through the env's ``config`` argument), default metrics, and two
    methods: :meth:`generate` (draws from the given generator only) and :meth:`check` (never
    raises, whatever the answer text).
    """

    #: The family's name: the env's ``family`` argument.
    name: ClassVar[str]
    #: The dataclass of the family's settings.
    config_class: ClassVar[type[Any]]
    #: How criteria combine by default (weights, gates, success threshold).
    metrics: ClassVar[EvaluationMetrics]

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    @abc.abstractmethod
    def generate(self, rng: np.random.Generator, difficulty: int) -> ProblemSpec:
        """Draw a problem of ``difficulty`` using only ``rng``."""

    @abc.abstractmethod
    def check(self, spec: ProblemSpec, answer: str) -> Check:
        """Score ``answer`` (the text inside ``<answer>``) against ``spec``."""

    def default_metrics(self) -> EvaluationMetrics:
        """The metrics of this family as configured (a config may add criteria, e.g. a judge)."""
        return self.metrics


def build_config(config_class: type[ConfigT], values: Mapping[str, Any] | None) -> ConfigT:
    """``config_class(**values)``, strictly: unknown keys are named with a suggestion and lists
    (as YAML writes them) become tuples.

    Raises:
        ConfigError: for an unknown key or a value the class rejects.
    """
    if values is None:
        return config_class()
    if not isinstance(values, Mapping):
        raise ConfigError(f"config must be a mapping, got {short_repr(values)}")
    known = [f.name for f in dataclasses.fields(config_class)]  # type: ignore[arg-type]
    for key in values:
        if key not in known:
            raise ConfigError(
                f"config: unknown key {short_repr(key)}{suggest(str(key), known)}; "
                f"known: {', '.join(known)}"
            )
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return config_class(**converted)
    except TypeError as exc:  # a value of a type the class cannot even hold
        raise ConfigError(f"config: {exc}") from None


def check_per_difficulty(name: str, value: Any, low: int, high: int) -> None:
    """Check a per-difficulty parameter: three ints in [low, high] (difficulties 1, 2, 3).

    Raises:
        ConfigError: naming the field and the allowed range.
    """
    if (
        not isinstance(value, tuple)
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not all(low <= v <= high for v in value)
    ):
        raise ConfigError(
            f"config.{name} must be three ints in [{low}, {high}] (difficulties 1, 2, 3), "
            f"got {short_repr(value)}"
        )


def check_choices(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    """Check a non-empty tuple of distinct names from ``allowed``.

    Raises:
        ConfigError: naming the field and the allowed names.
    """
    if (
        not isinstance(value, tuple)
        or not value
        or len(set(value)) != len(value)
        or not all(isinstance(v, str) and v in allowed for v in value)
    ):
        raise ConfigError(
            f"config.{name} must be distinct names among {', '.join(allowed)}, "
            f"got {short_repr(value)}"
        )


_STRIPPED = "\"'“”‘’`. \t\r\n"  # quotes, periods and whitespace around an answer
_ITEM_SEPARATOR = re.compile(r"\s*(?:,|;|\band\b)\s*")


def normalise_answer(text: str) -> str:
    """``text`` without surrounding whitespace, quotes and a final period, case-folded, with
    runs of whitespace as one space (how agents decorate an answer).

    >>> normalise_answer(' "Ava, BEN." '), normalise_answer('"Ava".')
    ('ava, ben', 'ava')
    """
    return " ".join(text.split()).strip(_STRIPPED).casefold()


def split_items(text: str) -> list[str]:
    """The items of a list answer (``"a, b and c"``), normalised; ``[]`` for an empty answer.

    >>> split_items("Ava, Ben and  Cole."), split_items('"Ava", "Ben"'), split_items("")
    (['ava', 'ben', 'cole'], ['ava', 'ben'], [])
    """
    items = (normalise_answer(item) for item in _ITEM_SEPARATOR.split(normalise_answer(text)))
    return [item for item in items if item]
