"""ProblemSpec, EvaluationMetrics and Evaluation: plain frozen data and exact scoring rules."""

from __future__ import annotations

import dataclasses
import math
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.problems import Check, EvaluationMetrics, ProblemSpec, SubProblem
from llm_trainer.envs.problems.spec import normalise_answer, split_items

names = st.sampled_from(["a", "b", "c", "d"])
scores = st.floats(0.0, 1.0)
weights = st.floats(0.01, 100.0)


@given(st.dictionaries(names, weights, min_size=1), st.dictionaries(names, scores), st.data())
def test_the_score_is_the_weighted_mean_of_the_weighted_criteria_present(
    weighting: dict[str, float], criteria: dict[str, float], data: st.DataObject
) -> None:
    metrics = EvaluationMetrics(weighting)
    present = [k for k in criteria if k in weighting]
    score = metrics.score(criteria)
    if not present:
        assert score == 0.0
    else:
        total = sum(weighting[k] for k in present)
        expected = sum(weighting[k] * criteria[k] for k in present) / total
        assert score == pytest.approx(expected, abs=1e-12)
        assert 0.0 <= score <= 1.0
        if len(present) == 1:
            assert score == criteria[present[0]]  # exactly, not through weight / weight
    assert metrics.score(dict.fromkeys(weighting, 1.0)) == 1.0


@given(st.dictionaries(names, scores, min_size=1), st.floats(0.0, 0.999))
def test_a_gate_below_one_scores_zero_whatever_the_rest(
    criteria: dict[str, float], gate: float
) -> None:
    metrics = EvaluationMetrics(dict.fromkeys(criteria, 1.0), gates=frozenset({"feasible"}))
    evaluation = metrics.evaluate(Check({"feasible": gate, **criteria}, ("infeasible: why",)))
    assert evaluation.score == 0.0
    assert not evaluation.success
    assert evaluation.feedback() == "Score 0.00: infeasible: why."
    passed = metrics.evaluate(Check({"feasible": 1.0, **criteria}))
    assert passed.score == metrics.score(criteria)


def test_success_is_the_score_reaching_the_threshold() -> None:
    metrics = EvaluationMetrics({"value": 1.0}, success_threshold=0.95)
    assert metrics.evaluate(Check({"value": 0.95})).success
    assert not metrics.evaluate(Check({"value": 0.9499})).success
    assert not metrics.evaluate(Check({"value": 0.96})).correct
    assert metrics.evaluate(Check({"value": 1.0}, (), "value 40")).feedback() == (
        "Score 1.00: every constraint met; value 40."
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": {}}, "at least one criterion"),
        ({"weights": {"a": 0}}, r"weights\['a'\] must be a positive number"),
        ({"weights": {"a": math.nan}}, "must be a positive number"),
        ({"weights": {"a": True}}, "must be a positive number"),
        ({"weights": {"a": 1}, "success_threshold": 0}, r"success_threshold must be a number in"),
        ({"weights": {"a": 1}, "success_threshold": "high"}, "success_threshold"),
    ],
)
def test_bad_weights_and_thresholds_are_config_errors(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        EvaluationMetrics(**kwargs)  # type: ignore[arg-type]


def test_overrides_replace_known_weights_only() -> None:
    metrics = EvaluationMetrics({"value": 1.0, "style": 1.0}, gates=frozenset({"ok"}))
    heavier = metrics.with_overrides({"style": 3.0}, 0.5)
    assert heavier.weights == {"value": 1.0, "style": 3.0}
    assert heavier.gates == metrics.gates
    assert heavier.success_threshold == 0.5
    with pytest.raises(ConfigError, match=r"unknown criterion 'styel' \(did you mean 'style'"):
        metrics.with_overrides({"styel": 2.0})


def test_a_problem_spec_is_frozen_picklable_data_with_a_plain_sub_problem_dag() -> None:
    spec = ProblemSpec(
        domain="reasoning/arithmetic",
        statement="Mia has 3 apples. She buys 2 more. She doubles them. How many?",
        answer="10",
        difficulty=2,
        answer_kind="number",
        unique=True,
        subproblems=(
            SubProblem("s1", "After buying?"),
            SubProblem("s2", "After doubling?", ("s1",)),
        ),
        data={"kind": "arithmetic", "steps": [1, 2]},
    )
    assert spec.ground_truth == "10"
    assert spec.data["steps"] == (1, 2)  # frozen too
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert hash(spec) == hash(pickle.loads(pickle.dumps(spec)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.answer = "11"  # type: ignore[misc]
    edges = [(d, node.id) for node in spec.subproblems for d in node.depends_on]
    assert edges == [("s1", "s2")]  # what a graph view (networkx) is built from
    for bad in (
        (SubProblem("s1", "x", ("s2",)), SubProblem("s2", "y")),  # depends on a later node
        (SubProblem("s1", "x"), SubProblem("s1", "y")),  # duplicate id
        (SubProblem("s1", "x", ("s1",)),),  # a cycle of one
    ):
        with pytest.raises(ValueError, match="unique ids and depend on earlier ones"):
            dataclasses.replace(spec, subproblems=bad)
    optimisation = dataclasses.replace(spec, unique=False, optimum=42.0)
    assert optimisation.ground_truth is None


@given(st.text(max_size=200))
def test_answer_normalisation_never_raises_and_is_idempotent(text: str) -> None:
    once = normalise_answer(text)
    assert normalise_answer(once) == once
    assert all(item == normalise_answer(item) for item in split_items(text))
