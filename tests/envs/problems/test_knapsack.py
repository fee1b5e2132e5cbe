"""Knapsack-v0: the exact DP and the checker against brute force on random small instances."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_trainer.core.records import FrozenDict
from llm_trainer.envs.problems import ProblemSpec
from llm_trainer.envs.problems.knapsack import solve_knapsack
from llm_trainer.envs.tools.calculator import evaluate as calculate
from tests.envs.problems.helpers import draw, evaluate

instances = st.integers(1, 9).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 20), min_size=n, max_size=n).map(tuple),
        st.lists(st.integers(1, 50), min_size=n, max_size=n).map(tuple),
        st.integers(1, 60),
    )
)


def _subsets(n: int) -> list[tuple[int, ...]]:
    return [s for k in range(n + 1) for s in itertools.combinations(range(n), k)]


def _brute_force(weights: tuple[int, ...], values: tuple[int, ...], capacity: int) -> int:
    return max(
        sum(values[i] for i in s)
        for s in _subsets(len(weights))
        if sum(weights[i] for i in s) <= capacity
    )


def _spec(weights: tuple[int, ...], values: tuple[int, ...], capacity: int) -> ProblemSpec:
    optimum, chosen = solve_knapsack(weights, values, capacity)
    return ProblemSpec(
        domain="optimization/knapsack",
        statement="",
        answer=", ".join(str(i + 1) for i in chosen) or "none",
        difficulty=1,
        optimum=float(optimum),
        data=FrozenDict({"weights": weights, "values": values, "capacity": capacity}),
    )


def _ids(subset: tuple[int, ...]) -> str:
    return ", ".join(str(i + 1) for i in subset) or "none"


@given(instances)
def test_the_dp_optimum_equals_brute_force_and_its_selection_reaches_it(
    instance: tuple[tuple[int, ...], tuple[int, ...], int],
) -> None:
    weights, values, capacity = instance
    optimum, chosen = solve_knapsack(weights, values, capacity)
    assert optimum == _brute_force(weights, values, capacity)
    assert sum(weights[i] for i in chosen) <= capacity
    assert sum(values[i] for i in chosen) == optimum


@given(instances.filter(lambda i: min(i[0]) <= i[2]), st.data())
def test_every_selection_scores_its_exact_ratio_or_zero_naming_the_capacity(
    instance: tuple[tuple[int, ...], tuple[int, ...], int], data: st.DataObject
) -> None:
    weights, values, capacity = instance
    spec = _spec(weights, values, capacity)
    optimum = _brute_force(weights, values, capacity)
    subset = data.draw(st.sampled_from(_subsets(len(weights))))
    weight, value = sum(weights[i] for i in subset), sum(values[i] for i in subset)
    evaluation = evaluate("knapsack", spec, _ids(subset))
    if weight > capacity:
        assert evaluation.score == 0.0
        assert evaluation.failures == (f"infeasible: total weight {weight} > capacity {capacity}",)
        assert evaluation.criteria["capacity"] == 0.0
        assert not evaluation.success
    else:
        assert evaluation.score == value / optimum
        assert evaluation.failures == ()
        assert evaluation.success == (value / optimum >= 0.95)
    assert evaluation.correct == (weight <= capacity and value == optimum)
    assert evaluate("knapsack", spec, spec.answer).score == 1.0


def test_unreadable_unknown_and_repeated_items_score_zero_with_the_reason() -> None:
    spec = _spec((5, 4, 6, 3), (10, 40, 30, 50), 10)
    for answer, reason in (
        ("2 and 4", None),
        ("#2, #4.", None),
        ("2 4", None),
        ('"2; 4"', None),
        ("none", None),
        ("", None),
        ("2, 9", "invalid: no item 9 (items are 1-4)"),
        ("0", "invalid: no item 0 (items are 1-4)"),
        ("2, 2", "invalid: item 2 chosen more than once"),
        ("two and four", "unreadable: 'two' is not an item id"),
        ("9" * 5000, "unreadable: '99999999999999999..."),
        ("1, 2, 3", "infeasible: total weight 15 > capacity 10"),
    ):
        evaluation = evaluate("knapsack", spec, answer)
        if reason is None:
            assert evaluation.failures == (), answer
        else:
            assert evaluation.score == 0.0
            assert evaluation.failures[0].startswith(reason), (answer, evaluation.failures)
    assert evaluate("knapsack", spec, "2 and 4").correct
    assert evaluate("knapsack", spec, "none").score == 0.0


@given(st.integers(0, 2**63 - 1), st.sampled_from([1, 2, 3]))
def test_generated_instances_are_solved_exactly_and_their_plan_sums_the_weights(
    seed: int, difficulty: int
) -> None:
    spec = draw("knapsack", seed, difficulty)
    weights, values, capacity = (spec.data[k] for k in ("weights", "values", "capacity"))
    assert len(weights) == (5, 8, 12)[difficulty - 1]
    assert spec.optimum == _brute_force(weights, values, capacity) > 0
    assert max(weights) <= capacity < sum(weights)
    chosen = [int(i) - 1 for i in spec.answer.split(", ")]
    assert calculate(spec.plan[0].arguments["expression"]) == sum(weights[i] for i in chosen)
    assert evaluate("knapsack", spec, spec.answer).score == 1.0
    assert f"capacity {capacity}" in spec.statement


def test_the_item_counts_come_from_the_config() -> None:
    spec = draw("knapsack", 0, 2, config={"items": [3, 4, 6]})
    assert len(spec.data["weights"]) == 4


@pytest.mark.parametrize(
    "config",
    [{"items": [5, 8]}, {"items": [1, 2, 3]}, {"max_weight": 0}, {"capacity_fraction": [0.7, 0.2]}],
)
def test_bad_difficulty_parameters_are_config_errors(config: dict[str, object]) -> None:
    from llm_trainer.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^LLMTrainer/Knapsack-v0: config\."):
        draw("knapsack", 0, 1, config=config)
