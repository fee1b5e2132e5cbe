"""The optional LLM judge of ConstrainedWriting-v0, with a real (tiny, untrained) model."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from llm_trainer.envs.problems import ProblemEnv
from llm_trainer.envs.problems.judge import LLMJudge, rating_score


@pytest.fixture(scope="module")
def judge_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from llm_trainer.agents.tinylm import TinyLMConfig, create_tiny_model

    small = TinyLMConfig(n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64)
    return create_tiny_model(tmp_path_factory.mktemp("judge") / "model", small, seed=0)


def test_ratings_are_read_from_the_first_number_out_of_ten() -> None:
    assert [rating_score(r) for r in ("7", " 10/10", "3.5 stars", "none", "", "99")] == [
        0.7,
        1.0,
        0.35,
        0.0,
        0.0,
        1.0,
    ]


@pytest.mark.slow  # loads torch and transformers (about 10 s)
def test_a_judge_adds_a_quality_criterion_weighted_with_the_constraints(
    judge_model_dir: Path,
) -> None:
    env = ProblemEnv("constrained_writing", 3, config={"judge": f"transformers:{judge_model_dir}"})
    env.reset(seed=0)
    task = env.task
    assert task.objectives == ("write well",)
    _, reward, terminated, _, info = env.step(f"<answer>{task.answer}</answer>")
    criteria = info["criteria"]
    assert set(criteria) == {*task.data, "judge"}
    assert 0.0 <= criteria["judge"] <= 1.0
    assert info["score"] == pytest.approx(sum(criteria.values()) / len(criteria))
    assert f"judge {criteria['judge']:.2f}" in env.get_state().evaluation.feedback()  # type: ignore[union-attr]
    # the same text gets the same rating (greedy), also after a pickle round trip
    clone = pickle.loads(pickle.dumps(env))
    assert clone.evaluate(task, task.answer).criteria == criteria
    # a text far longer than the model's context is cut to fit, not an error
    assert 0.0 <= env.evaluate(task, "word " * 1_500).criteria["judge"] <= 1.0
    assert reward == (info["score"] if terminated else 0.0)


def test_a_judge_checks_its_spec_when_built_and_loads_its_model_on_first_use() -> None:
    judge = LLMJudge("transformers:/nonexistent/model")  # nothing is loaded yet
    assert repr(judge) == "LLMJudge('transformers:/nonexistent/model')"
    from llm_trainer.core.errors import ConfigError

    with pytest.raises(ConfigError, match="not found"):
        judge.score("task", "text")
