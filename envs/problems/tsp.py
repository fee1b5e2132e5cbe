"""``LLMTrainer/TSP-v0``: small travelling-salesman instances, scored by optimum / tour length.

Answer format: the tour as city numbers separated by spaces, ``0 3 1 2 0`` (a closed tour) or
``0 3 1 2`` (a permutation; the return to the start is implied); commas and arrows are read as
separators too, and any starting city is fine. A tour that misses a city, repeats one or names an
unknown one scores 0, and the feedback says which; a valid tour scores the optimal length
(Held-Karp dynamic programming, exact) divided by its length.
"""

from __future__ import annotations

import functools
import itertools
import math
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

_FORMAT = "the city numbers in visiting order separated by spaces, e.g. 0 2 1 3 0"
_SEPARATOR = re.compile(r"(?:\s|,|;|->|→|-)+")
_MAX_CITY_DIGITS = 6
#: Held-Karp needs O(2^n * n^2) time: instances stay small enough to solve at every reset.
MAX_CITIES = 11


@dataclass(frozen=True, slots=True)
class TSPConfig:
    """Difficulty parameters of ``TSP-v0`` (the env's ``config``)."""

    cities: tuple[int, int, int] = (5, 7, 9)
    """Number of cities at difficulties 1, 2, 3 (at most 11: Held-Karp runs at every reset)."""
    grid: int = 100
    """Cities are points with integer coordinates in [0, grid); distances are Euclidean,
    rounded to integers (at least 1)."""

    def __post_init__(self) -> None:
        check_per_difficulty("cities", self.cities, 3, MAX_CITIES)
        if isinstance(self.grid, bool) or not isinstance(self.grid, int) or self.grid < 10:
            raise ConfigError(f"config.grid must be an int >= 10, got {self.grid!r}")


@functools.cache
def _subsets_by_size(m: int) -> tuple[np.ndarray, ...]:
    """The bit masks over ``m`` bits, grouped by how many bits they set (0..m)."""
    masks = np.arange(1 << m)
    sizes = np.array([x.bit_count() for x in range(1 << m)])
    return tuple(masks[sizes == k] for k in range(m + 1))


def held_karp(distances: np.ndarray) -> tuple[int, tuple[int, ...]]:
    """The length of a shortest closed tour and one such tour starting at city 0 (without
    the return), by Held-Karp dynamic programming over subsets, vectorised per subset size.

    >>> d = np.array([[0, 1, 9, 1], [1, 0, 1, 9], [9, 1, 0, 1], [1, 9, 1, 0]])
    >>> held_karp(d)
    (4, (0, 3, 2, 1))
    """
    n = len(distances)
    if n <= 2:
        return int(distances[0].sum() * 2 if n == 2 else 0), tuple(range(n))
    m = n - 1  # cities 1..n-1 are bits 0..m-1; the tour starts and ends at city 0
    inner = distances[1:, 1:].astype(np.float64)
    inf = np.inf
    cost = np.full((1 << m, m), inf)
    parent = np.full((1 << m, m), -1, dtype=np.int64)
    for j in range(m):
        cost[1 << j, j] = distances[0, j + 1]
    for of_size in _subsets_by_size(m)[2:]:
        for j in range(m):
            with_j = of_size[(of_size >> j) & 1 == 1]
            previous = with_j ^ (1 << j)
            options = cost[previous] + inner[:, j]  # (subsets, last city before j)
            best = options.argmin(axis=1)
            cost[with_j, j] = options[np.arange(len(with_j)), best]
            parent[with_j, j] = best
    full = (1 << m) - 1
    closing = cost[full] + distances[1:, 0]
    last = int(closing.argmin())
    tour, mask = [], full
    while last != -1:
        tour.append(last + 1)
        mask, last = mask ^ (1 << last), int(parent[mask, last])
    return round(float(closing.min())), (0, *reversed(tour))


def tour_length(distances: np.ndarray, tour: tuple[int, ...]) -> int:
    """Length of the closed tour through ``tour`` (returning to its first city)."""
    return int(sum(distances[a, b] for a, b in itertools.pairwise((*tour, tour[0]))))


class TSPFamily(ProblemFamily[TSPConfig]):
    """Travelling salesman: the shortest round trip through every city.

    Criteria: ``valid_tour`` (gate: every city exactly once), ``length`` (optimal length /
    tour length; 0 when the gate fails). Success: score >= 0.95 (within about 5% of the
    optimum).
    """

    name = "tsp"
    config_class = TSPConfig
    metrics = EvaluationMetrics(
        {"length": 1.0}, gates=frozenset({"valid_tour"}), success_threshold=0.95
    )

    def generate(self, rng: np.random.Generator, difficulty: int) -> ProblemSpec:
        n = self.config.cities[difficulty - 1]
        grid = self.config.grid
        d = Draws(rng, block=2 * n)
        points: list[tuple[int, int]] = []
        while len(points) < n:  # distinct points (a repeated one is redrawn)
            point = (d.integer(0, grid), d.integer(0, grid))
            if point not in points:
                points.append(point)
        distances = np.zeros((n, n), dtype=np.int64)
        for (a, pa), (b, pb) in itertools.combinations(enumerate(points), 2):
            distances[a, b] = distances[b, a] = max(1, round(math.dist(pa, pb)))
        optimum, tour = held_karp(distances)
        pairs = ", ".join(
            f"{a}-{b}: {distances[a, b]}" for a, b in itertools.combinations(range(n), 2)
        )
        statement = (
            f"Cities 0-{n - 1}; distances {pairs}. Find the shortest round trip that visits "
            f"every city once and returns to the start. Answer with {_FORMAT}."
        )
        legs = " + ".join(str(distances[a, b]) for a, b in itertools.pairwise((*tour, 0)))
        return ProblemSpec(
            domain="optimization/tsp",
            statement=statement,
            answer=" ".join(map(str, (*tour, 0))),
            difficulty=difficulty,
            constraints=("visit every city exactly once", "return to the start"),
            objectives=("minimise the total distance",),
            answer_format=_FORMAT,
            optimum=float(optimum),
            data=FrozenDict({"distances": tuple(tuple(int(x) for x in row) for row in distances)}),
            plan=(ToolCall("calculator", {"expression": legs}),),
        )

    def check(self, spec: ProblemSpec, answer: str) -> Check:
        rows: tuple[tuple[int, ...], ...] = spec.data["distances"]
        n = len(rows)
        zero = {"valid_tour": 0.0, "length": 0.0}
        tokens = [t for t in _SEPARATOR.split(normalise_answer(answer)) if t]
        cities: list[int] = []
        for token in tokens:
            if not token.isdecimal() or len(token) > _MAX_CITY_DIGITS:
                shown = token if len(token) <= 20 else f"{token[:17]}..."
                return Check(zero, (f"unreadable: {shown!r} is not a city; answer with {_FORMAT}",))
            cities.append(int(token))
        if len(cities) == n + 1 and cities[0] == cities[-1]:
            cities.pop()  # the closing return to the start
        unknown = [c for c in cities if c >= n]
        if unknown:
            return Check(zero, (f"invalid tour: no city {unknown[0]} (cities are 0-{n - 1})",))
        seen: set[int] = set()
        for city in cities:
            if city in seen:
                return Check(zero, (f"invalid tour: city {city} is visited more than once",))
            seen.add(city)
        missing = [c for c in range(n) if c not in seen]
        if missing:
            return Check(zero, (f"invalid tour: city {missing[0]} is not visited",))
        length = sum(rows[a][b] for a, b in itertools.pairwise((*cities, cities[0])))
        optimum = spec.optimum or 0.0
        return Check({"valid_tour": 1.0, "length": optimum / length}, (), f"tour length {length}")
