"""TSP-v0: Held-Karp and the tour checker against brute force on random small instances."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import FrozenDict
from llm_trainer.envs.problems import ProblemSpec
from llm_trainer.envs.problems.tsp import held_karp, tour_length
from llm_trainer.envs.tools.calculator import evaluate as calculate
from tests.envs.problems.helpers import draw, evaluate


@st.composite
def matrices(draw_: st.DrawFn, max_cities: int = 7) -> np.ndarray:
    """Symmetric integer distances (not necessarily metric) between 3..max_cities cities."""
    n = draw_(st.integers(3, max_cities))
    upper = draw_(
        st.lists(st.integers(1, 100), min_size=n * (n - 1) // 2, max_size=n * (n - 1) // 2)
    )
    d = np.zeros((n, n), dtype=np.int64)
    for (a, b), x in zip(itertools.combinations(range(n), 2), upper, strict=True):
        d[a, b] = d[b, a] = x
    return d


def _brute_force(d: np.ndarray) -> int:
    n = len(d)
    return min(tour_length(d, (0, *p)) for p in itertools.permutations(range(1, n)))


def _spec(d: np.ndarray) -> ProblemSpec:
    optimum, tour = held_karp(d)
    return ProblemSpec(
        domain="optimization/tsp",
        statement="",
        answer=" ".join(map(str, (*tour, 0))),
        difficulty=1,
        optimum=float(optimum),
        data=FrozenDict({"distances": tuple(tuple(int(x) for x in row) for row in d)}),
    )


@given(matrices())
def test_held_karp_finds_the_brute_force_optimum_and_a_tour_of_that_length(d: np.ndarray) -> None:
    optimum, tour = held_karp(d)
    assert optimum == _brute_force(d)
    assert sorted(tour) == list(range(len(d)))
    assert tour[0] == 0
    assert tour_length(d, tour) == optimum


@given(matrices(), st.data())
def test_every_tour_scores_optimum_over_its_length_from_any_start_and_direction(
    d: np.ndarray, data: st.DataObject
) -> None:
    n = len(d)
    spec = _spec(d)
    tour = data.draw(st.permutations(range(n)))
    length = tour_length(d, tuple(tour))
    closed = data.draw(st.booleans())
    text = " ".join(map(str, [*tour, tour[0]] if closed else tour))
    evaluation = evaluate("tsp", spec, text)
    assert evaluation.score == _brute_force(d) / length
    assert evaluation.failures == ()
    assert evaluation.details == f"tour length {length}"
    assert evaluation.correct == (length == _brute_force(d))
    reverse = " -> ".join(map(str, reversed(tour)))
    assert evaluate("tsp", spec, reverse).score == evaluation.score
    assert evaluate("tsp", spec, spec.answer).score == 1.0


@given(matrices(), st.data())
def test_invalid_tours_score_zero_and_name_the_city(d: np.ndarray, data: st.DataObject) -> None:
    n = len(d)
    spec = _spec(d)
    tour = list(data.draw(st.permutations(range(n))))
    missing = tour.pop(data.draw(st.integers(0, n - 1)))
    evaluation = evaluate("tsp", spec, " ".join(map(str, tour)))
    assert evaluation.score == 0.0
    assert evaluation.failures == (f"invalid tour: city {missing} is not visited",)
    repeated = [*tour, tour[0], tour[1]]
    evaluation = evaluate("tsp", spec, " ".join(map(str, repeated)))
    assert evaluation.failures == (f"invalid tour: city {tour[0]} is visited more than once",)
    evaluation = evaluate("tsp", spec, " ".join(map(str, [*tour, missing, n + 3])))
    assert evaluation.failures == (f"invalid tour: no city {n + 3} (cities are 0-{n - 1})",)
    assert evaluate("tsp", spec, "start at zero").failures[0].startswith("unreadable: 'start'")
    assert evaluate("tsp", spec, "").failures == ("invalid tour: city 0 is not visited",)


@given(st.integers(0, 2**63 - 1), st.sampled_from([1, 2, 3]))
def test_generated_instances_are_solved_exactly_and_their_plan_sums_the_legs(
    seed: int, difficulty: int
) -> None:
    spec = draw("tsp", seed, difficulty)
    d = np.array(spec.data["distances"])
    assert len(d) == (5, 7, 9)[difficulty - 1]
    assert (d == d.T).all()
    assert (d[~np.eye(len(d), dtype=bool)] >= 1).all()
    if len(d) <= 7:
        assert spec.optimum == _brute_force(d)
    assert calculate(spec.plan[0].arguments["expression"]) == spec.optimum
    assert evaluate("tsp", spec, spec.answer).score == 1.0


def test_the_city_counts_come_from_the_config_and_stay_small() -> None:
    assert len(draw("tsp", 0, 3, config={"cities": [3, 4, 10]}).data["distances"]) == 10
    with pytest.raises(ConfigError, match=r"^LLMTrainer/TSP-v0: config\.cities must be"):
        draw("tsp", 0, 1, config={"cities": [5, 7, 20]})
