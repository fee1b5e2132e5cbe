"""``LLMTrainer/Knapsack-v0``: 0/1 knapsack instances, scored by value / optimum (exact DP).

Answer format: the chosen item ids separated by commas (``1, 4, 5``; spaces, semicolons,
``and`` and a ``#`` before an id are read too; ``none`` for no item).
An infeasible or unreadable selection scores 0 and the feedback names the violated constraint
(``infeasible: total weight 23 > capacity 20``); a feasible one scores its total value divided
by the optimum, which a dynamic programme over capacities computes exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import FrozenDict, ToolCall
from llm_trainer.envs.problems.spec import (
    Check,
    EvaluationMetrics,
    ProblemFamily,
    ProblemSpec,
    check_per_difficulty,
    normalise_answer,
)
from llm_trainer.envs.tooluse.base import Draws

_FORMAT = "the item ids separated by commas, e.g. 1, 4 (or none)"
_SEPARATOR = re.compile(r"[\s,;]+|\band\b")
_MAX_ID_DIGITS = 6  # longer "ids" are unreadable, never int()-ed (no int-string limit to hit)


@dataclass(frozen=True, slots=True)
class KnapsackConfig:
    """Templates and difficulty parameters of ``Knapsack-v0`` (the env's ``config``)."""

    items: tuple[int, int, int] = (5, 8, 12)
    """Number of items at difficulties 1, 2, 3."""
    max_weight: int = 20
    """Weights are drawn from 1..max_weight."""
    max_value: int = 50
    """Values are drawn from 1..max_value."""
    capacity_fraction: tuple[float, float] = (0.35, 0.6)
    """The capacity is this fraction (drawn uniformly) of the total weight."""

    def __post_init__(self) -> None:
        check_per_difficulty("items", self.items, 2, 30)
        for name, value in (("max_weight", self.max_weight), ("max_value", self.max_value)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
                raise ConfigError(f"config.{name} must be an int in [1, 1000], got {value!r}")
        low, high = self.capacity_fraction if len(self.capacity_fraction) == 2 else (0, -1)
        if not (isinstance(low, int | float) and isinstance(high, int | float)) or not (
            0 < low <= high <= 1
        ):
            raise ConfigError(
                "config.capacity_fraction must be two numbers 0 < low <= high <= 1, "
                f"got {self.capacity_fraction!r}"
            )


def solve_knapsack(
    weights: tuple[int, ...], values: tuple[int, ...], capacity: int
) -> tuple[int, tuple[int, ...]]:
    """The optimal total value and one optimal selection (0-based indices, ascending), by
    dynamic programming over capacities 0..capacity.

    >>> solve_knapsack((5, 4, 6, 3), (10, 40, 30, 50), 10)
    (90, (1, 3))
    """
    best = np.zeros(capacity + 1, dtype=np.int64)
    taken = np.zeros((len(weights), capacity + 1), dtype=bool)
    for i, (w, v) in enumerate(zip(weights, values, strict=True)):
        if w > capacity:
            continue
        candidate = best[:-w] + v if w else best + v
        better = candidate > best[w:]
        taken[i, w:] = better
        best[w:] = np.where(better, candidate, best[w:])
    chosen, room = [], capacity
    for i in range(len(weights) - 1, -1, -1):
        if taken[i, room]:
            chosen.append(i)
            room -= weights[i]
    return int(best[capacity]), tuple(sorted(chosen))


class KnapsackFamily(ProblemFamily[KnapsackConfig]):
    """0/1 knapsack: pick items within the capacity to maximise their total value.

    Criteria: ``valid`` (gate: the answer names existing items, each once), ``capacity``
    (gate: total weight <= capacity), ``value`` (total value / optimum; 0 when a gate fails).
    Success: score >= 0.95 (within 5% of the optimum).
    """

    name = "knapsack"
    config_class = KnapsackConfig
    metrics = EvaluationMetrics(
        {"value": 1.0}, gates=frozenset({"valid", "capacity"}), success_threshold=0.95
    )

    def generate(self, rng: np.random.Generator, difficulty: int) -> ProblemSpec:
        c = self.config
        n = c.items[difficulty - 1]
        d = Draws(rng, block=2 * n + 1)
        weights = tuple(d.integer(1, c.max_weight + 1) for _ in range(n))
        values = tuple(d.integer(1, c.max_value + 1) for _ in range(n))
        low, high = c.capacity_fraction
        fraction = low + (high - low) * d.uniform()
        capacity = max(max(weights), round(sum(weights) * fraction))
        optimum, chosen = solve_knapsack(weights, values, capacity)
        answer = ", ".join(str(i + 1) for i in chosen)
        items = ", ".join(
            f"#{i + 1} ({w}, {v})" for i, (w, v) in enumerate(zip(weights, values, strict=True))
        )
        statement = (
            f"Knapsack of capacity {capacity}. Items #id (weight, value): {items}. Choose items "
            f"with total weight at most {capacity} and the largest total value. Answer with "
            f"{_FORMAT}."
        )
        expression = " + ".join(str(weights[i]) for i in chosen)
        return ProblemSpec(
            domain="optimization/knapsack",
            statement=statement,
            answer=answer,
            difficulty=difficulty,
            constraints=(f"total weight <= {capacity}", "each item at most once"),
            objectives=("maximise the total value",),
            answer_format=_FORMAT,
            optimum=float(optimum),
            data=FrozenDict({"weights": weights, "values": values, "capacity": capacity}),
            plan=(ToolCall("calculator", {"expression": expression}),),
        )

    def check(self, spec: ProblemSpec, answer: str) -> Check:
        weights: tuple[int, ...] = spec.data["weights"]
        values: tuple[int, ...] = spec.data["values"]
        capacity: int = spec.data["capacity"]
        zero = {"valid": 0.0, "capacity": 0.0, "value": 0.0}
        tokens = [t for t in _SEPARATOR.split(normalise_answer(answer)) if t]
        if tokens == ["none"]:
            tokens = []
        ids: list[int] = []
        for token in (t.removeprefix("#").strip() for t in tokens):
            if not token.isdecimal() or len(token) > _MAX_ID_DIGITS:
                shown = token if len(token) <= 20 else f"{token[:17]}..."
                return Check(
                    zero, (f"unreadable: {shown!r} is not an item id; answer with {_FORMAT}",)
                )
            ids.append(int(token))
        unknown = sorted({i for i in ids if not 1 <= i <= len(weights)})
        if unknown:
            return Check(zero, (f"invalid: no item {unknown[0]} (items are 1-{len(weights)})",))
        seen: set[int] = set()
        for i in ids:
            if i in seen:
                return Check(zero, (f"invalid: item {i} chosen more than once",))
            seen.add(i)
        weight = sum(weights[i - 1] for i in ids)
        value = sum(values[i - 1] for i in ids)
        details = f"total weight {weight}, total value {value}"
        if weight > capacity:
            return Check(
                {"valid": 1.0, "capacity": 0.0, "value": 0.0},
                (f"infeasible: total weight {weight} > capacity {capacity}",),
                details,
            )
        optimum = spec.optimum or 0.0
        return Check({"valid": 1.0, "capacity": 1.0, "value": value / optimum}, (), details)
