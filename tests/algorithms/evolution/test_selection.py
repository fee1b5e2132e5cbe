"""Selection strategies draw parents with the distributions they state (issue 16, item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from llm_trainer.algorithms.evolution.selection import (
    ParetoSelection,
    RankSelection,
    RouletteSelection,
    SelectionStrategy,
    TournamentSelection,
    make_selection,
)

DRAWS = 40_000


def frequencies(strategy: SelectionStrategy, scores: np.ndarray, seed: int = 0) -> np.ndarray:
    drawn = strategy.select(scores, DRAWS, np.random.default_rng(seed))
    return np.bincount(drawn, minlength=len(scores)) / DRAWS


def assert_draws_follow(strategy: SelectionStrategy, scores: np.ndarray) -> None:
    """The draws' frequencies match the stated probabilities (a chi-square test at the 1e-4
    level, over the individuals that can be drawn) and impossible ones are never drawn."""
    p = strategy.probabilities(scores)
    assert p.sum() == pytest.approx(1.0)
    counts = frequencies(strategy, scores) * DRAWS
    assert counts[p == 0].sum() == 0
    possible = p > 0
    expected = p[possible] * DRAWS
    chi2 = float((((counts[possible] - expected) ** 2) / expected).sum())
    # chi-square 0.9999 quantile: below 40 for up to 12 degrees of freedom
    assert chi2 < 40.0, (chi2, counts, expected)


def test_tournament_wins_follow_the_order_statistics_formula() -> None:
    fitness = np.array([0.3, 0.9, 0.1, 0.5, 0.7])
    strategy = TournamentSelection(3)
    # best first: 0.9 (i1), 0.7 (i4), 0.5 (i3), 0.3 (i0), 0.1 (i2); position r wins with
    # ((N - r + 1)^3 - (N - r)^3) / N^3
    n = 5
    by_position = [((n - r + 1) ** 3 - (n - r) ** 3) / n**3 for r in range(1, 6)]
    expected = np.zeros(5)
    expected[[1, 4, 3, 0, 2]] = by_position
    np.testing.assert_allclose(strategy.probabilities(fitness), expected)
    assert_draws_follow(strategy, fitness[:, None])
    # ties go to the lower index, so equal fitness is not a coin flip
    tied = TournamentSelection(2).probabilities(np.array([1.0, 1.0]))
    np.testing.assert_allclose(tied, [0.75, 0.25])
    assert TournamentSelection(1).probabilities(fitness).tolist() == [0.2] * 5


def test_roulette_is_fitness_proportionate_and_shifts_negative_fitness() -> None:
    strategy = RouletteSelection()
    np.testing.assert_allclose(
        strategy.probabilities(np.array([1.0, 2.0, 3.0, 4.0])), [0.1, 0.2, 0.3, 0.4]
    )
    assert_draws_follow(strategy, np.array([[1.0], [2.0], [3.0], [4.0]]))
    # an invalid-action penalty makes fitness negative: shifted so the least fit gets 0
    np.testing.assert_allclose(
        strategy.probabilities(np.array([-0.5, 0.0, 0.5])), [0.0, 1 / 3, 2 / 3]
    )
    assert_draws_follow(strategy, np.array([[-0.5], [0.0], [0.5]]))
    np.testing.assert_allclose(strategy.probabilities(np.zeros(4)), [0.25] * 4)
    # fitness is the mean over instances
    np.testing.assert_allclose(
        strategy.probabilities(np.array([[1.0, 3.0], [0.0, 2.0]])), [2 / 3, 1 / 3]
    )


def test_rank_selection_is_linear_in_rank_and_ties_share() -> None:
    fitness = np.array([5.0, -1.0, 2.0, 9.0])  # ranks from the worst: i1, i2, i0, i3
    for pressure in (1.0, 1.5, 2.0):
        p = RankSelection(pressure).probabilities(fitness)
        by_rank = [(2 - pressure + 2 * (pressure - 1) * i / 3) / 4 for i in range(4)]
        np.testing.assert_allclose(p[[1, 2, 0, 3]], by_rank)
    assert RankSelection(2.0).probabilities(fitness)[1] == 0.0  # the worst never breeds at s=2
    assert_draws_follow(RankSelection(1.7), fitness[:, None])
    # s = 2, N = 3: 0, 1/3, 2/3 from the worst; the two tied best share 1/3 and 2/3
    tied = RankSelection(2.0).probabilities(np.array([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(tied, [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="pressure must be in"):
        RankSelection(2.5)


def test_pareto_keeps_the_best_of_every_instance_and_drops_the_dominated() -> None:
    scores = np.array(
        [
            [1.0, 0.0, 0.0, 0.2],  # best on instance 0 alone: kept despite a low mean
            [0.5, 1.0, 1.0, 0.2],  # best on instances 1 and 2 (and tied on 3)
            [0.5, 1.0, 0.0, 0.2],  # fronts 1 and 3, both also held by i1: dominated
            [0.6, 0.6, 0.6, 0.1],  # the second best mean, yet on no front: never drawn
            [0.0, 0.0, 0.0, 0.2],  # front 3 only, shared: dominated
        ]
    )
    strategy = ParetoSelection()
    assert strategy.survivors(scores) == [0, 1]
    # drawn in proportion to the fronts they are on: i0 two (0 and 3), i1 three (1, 2, 3)
    np.testing.assert_allclose(strategy.probabilities(scores), [0.4, 0.6, 0.0, 0.0, 0.0])
    assert_draws_follow(strategy, scores)
    # identical candidates: one of them stands for both
    same = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(strategy.probabilities(same), [0.5, 0.0, 0.5])


def test_strategies_are_built_by_name_and_reject_bad_input() -> None:
    assert [make_selection(n).name for n in ("tournament", "roulette", "rank", "pareto")] == [
        "tournament",
        "roulette",
        "rank",
        "pareto",
    ]
    with pytest.raises(ValueError, match="unknown selection 'best'"):
        make_selection("best")
    with pytest.raises(ValueError, match="finite"):
        RouletteSelection().probabilities(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="individuals x instances"):
        TournamentSelection().probabilities(np.zeros((0, 3)))
    # the same seed draws the same parents
    scores = np.arange(6.0)[:, None]
    for name in ("tournament", "roulette", "rank", "pareto"):
        strategy = make_selection(name)
        a = strategy.select(scores, 50, np.random.default_rng(7))
        b = strategy.select(scores, 50, np.random.default_rng(7))
        assert a == b
