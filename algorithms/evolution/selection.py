"""Parent selection: tournament, roulette, rank, and GEPA's per-instance Pareto.

Every strategy reads a score matrix, one row per individual and one column per instance (the
fitness seeds: parents and children are scored on the same ones), and draws parents with a
seeded :class:`numpy.random.Generator`. Fitness is the row mean. Each strategy states its exact
distribution (:meth:`SelectionStrategy.probabilities`), which the tests compare with its draws:

* :class:`TournamentSelection`: ``size`` individuals drawn uniformly with replacement, the
  fittest wins. With the individuals ordered best first (ties: the lower index first), the one
  at position ``r`` (1-based) wins with ``((N - r + 1)^t - (N - r)^t) / N^t``.
* :class:`RouletteSelection`: fitness-proportionate; negative fitness (an invalid-action
  penalty) is shifted so that the least fit has weight 0; all equal: uniform.
* :class:`RankSelection`: linear ranking (Baker 1985): the ``i``-th worst of ``N`` (``i`` from
  1) gets ``(2 - s + 2 (s - 1)(i - 1)/(N - 1)) / N`` for selection pressure ``s`` in [1, 2];
  tied individuals share their ranks' mean.
* :class:`ParetoSelection` (GEPA, Agrawal et al. 2025, arXiv 2507.19457): for each instance,
  the individuals with its best score; individuals on no front are never drawn; then, least
  fit first, an individual is dropped while every front it is on holds another remaining one
  (it is dominated); each remaining one is drawn in proportion to the fronts it is on. An
  individual that is best on one hard instance survives however low its mean.

>>> scores = np.array([[1.0, 0.0], [0.0, 1.0], [0.4, 0.4]])
>>> ParetoSelection().probabilities(scores).tolist()
[0.5, 0.5, 0.0]
>>> RouletteSelection().probabilities(scores).round(3).tolist()
[0.357, 0.357, 0.286]
>>> TournamentSelection(2).probabilities(np.array([[3.0], [1.0], [2.0]])).round(3).tolist()
[0.556, 0.111, 0.333]
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float64]


def as_scores(scores: npt.ArrayLike) -> Scores:
    """A score matrix (individuals x instances) as floats; a vector is one instance each.

    Raises:
        ValueError: for an empty or non-finite matrix.
    """
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"scores must be individuals x instances, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("scores must be finite")
    return matrix


def best_first(fitness: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """Indices ordered by fitness, highest first; ties keep the lower index first."""
    return np.asarray(np.lexsort((np.arange(len(fitness)), -fitness)), dtype=np.intp)


@runtime_checkable
class SelectionStrategy(Protocol):
    """Chooses parents from a scored population."""

    name: str

    def probabilities(self, scores: npt.ArrayLike) -> Scores:
        """The chance that one draw picks each individual (sums to 1)."""
        ...

    def select(self, scores: npt.ArrayLike, k: int, rng: np.random.Generator) -> list[int]:
        """``k`` parents' indices, drawn independently."""
        ...


class _ByProbability:
    """Draws from :meth:`probabilities` (all strategies but the tournament)."""

    name = ""

    def probabilities(self, scores: npt.ArrayLike) -> Scores:
        raise NotImplementedError

    def select(self, scores: npt.ArrayLike, k: int, rng: np.random.Generator) -> list[int]:
        p = self.probabilities(scores)
        return [int(i) for i in rng.choice(len(p), size=k, p=p)]


class TournamentSelection:
    """The fittest of ``size`` individuals drawn uniformly with replacement."""

    name = "tournament"

    def __init__(self, size: int = 3) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"tournament size must be an int >= 1, got {size!r}")
        self.size = size

    def probabilities(self, scores: npt.ArrayLike) -> Scores:
        fitness = as_scores(scores).mean(axis=1)
        n = len(fitness)
        p = np.empty(n)
        for position, i in enumerate(best_first(fitness)):
            worse = n - position - 1  # individuals this one beats
            p[i] = ((worse + 1) ** self.size - worse**self.size) / n**self.size
        return p

    def select(self, scores: npt.ArrayLike, k: int, rng: np.random.Generator) -> list[int]:
        fitness = as_scores(scores).mean(axis=1)
        position = np.empty(len(fitness), dtype=np.intp)
        position[best_first(fitness)] = np.arange(len(fitness))
        entrants = rng.integers(0, len(fitness), size=(k, self.size))
        winners = entrants[np.arange(k), position[entrants].argmin(axis=1)]
        return [int(i) for i in winners]


class RouletteSelection(_ByProbability):
    """Fitness-proportionate selection (shifted so that the least fit has weight 0 when some
    fitness is negative)."""

    name = "roulette"

    def probabilities(self, scores: npt.ArrayLike) -> Scores:
        fitness = as_scores(scores).mean(axis=1)
        weights = fitness - fitness.min() if fitness.min() < 0 else fitness
        total = weights.sum()
        if total <= 0:
            return np.full(len(fitness), 1.0 / len(fitness))
        return np.asarray(weights / total, dtype=np.float64)


class RankSelection(_ByProbability):
    """Linear ranking with selection pressure ``pressure`` in [1, 2] (1: uniform; 2: the worst
    is never drawn)."""

    name = "rank"

    def __init__(self, pressure: float = 1.5) -> None:
        if not 1.0 <= pressure <= 2.0:
            raise ValueError(f"rank selection pressure must be in [1, 2], got {pressure!r}")
        self.pressure = pressure

    def probabilities(self, scores: npt.ArrayLike) -> Scores:
        fitness = as_scores(scores).mean(axis=1)
        n = len(fitness)
        if n == 1:
            return np.ones(1)
        s = self.pressure
        by_rank = (2 - s + 2 * (s - 1) * np.arange(n) / (n - 1)) / n  # worst first
        order = best_first(fitness)[::-1]
        p = np.empty(n)
        p[order] = by_rank
        for value in np.unique(fitness):  # ties share the mean of their ranks' probabilities
            tied = fitness == value
            p[tied] = p[tied].mean()
        return p


class ParetoSelection(_ByProbability):
    """GEPA's per-instance Pareto selection (see the module docstring)."""

    name = "pareto"

    def fronts(self, scores: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """``fronts[i, j]``: individual ``i`` has the best score on instance ``j``."""
        matrix = as_scores(scores)
        return np.asarray(matrix >= matrix.max(axis=0, keepdims=True), dtype=np.bool_)

    def survivors(self, scores: npt.ArrayLike) -> list[int]:
        """The individuals left on the fronts once dominated ones are dropped (ascending)."""
        matrix = as_scores(scores)
        fronts = self.fronts(matrix)
        fitness = matrix.mean(axis=1)
        remaining = set(np.flatnonzero(fronts.any(axis=1)).tolist())
        # least fit first (ties: the higher index first), as GEPA drops dominated programs
        for i in np.lexsort((-np.arange(len(fitness)), fitness)):
            i = int(i)
            if i not in remaining:
                continue
            others = sorted(remaining - {i})
            if others and all(fronts[others, j].any() for j in np.flatnonzero(fronts[i])):
                remaining.discard(i)
        return sorted(remaining)

    def probabilities(self, scores: npt.ArrayLike) -> Scores:
        fronts = self.fronts(scores)
        p = np.zeros(fronts.shape[0])
        kept = self.survivors(scores)
        p[kept] = fronts[kept].sum(axis=1)
        return np.asarray(p / p.sum(), dtype=np.float64)


SELECTIONS: tuple[str, ...] = ("tournament", "roulette", "rank", "pareto")


def make_selection(
    name: str, *, tournament_size: int = 3, rank_pressure: float = 1.5
) -> SelectionStrategy:
    """The strategy called ``name`` (one of :data:`SELECTIONS`)."""
    if name == "tournament":
        return TournamentSelection(tournament_size)
    if name == "rank":
        return RankSelection(rank_pressure)
    strategies: dict[str, SelectionStrategy] = {
        "roulette": RouletteSelection(),
        "pareto": ParetoSelection(),
    }
    if name not in strategies:
        raise ValueError(f"unknown selection {name!r}; choose from {list(SELECTIONS)}")
    return strategies[name]
