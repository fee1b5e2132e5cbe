"""ProblemEnv: revisions with feedback, the final score as the reward, info, configuration,
snapshots; and the registered families, their suite and the oracle."""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import pytest
from hypothesis import given
from hypothesis import strategies as st

import llm_trainer
from llm_trainer.agents import OracleAgent
from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.problems import FAMILIES, ProblemSpec

IDS = {
    "reasoning": "LLMTrainer/Reasoning-v0",
    "knapsack": "LLMTrainer/Knapsack-v0",
    "tsp": "LLMTrainer/TSP-v0",
    "constrained_writing": "LLMTrainer/ConstrainedWriting-v0",
}
WRONG = "<answer>0</answer>"  # never perfect: no item 0, no tour, no such person, no poem


def _suboptimal_knapsack(env: gym.Env[str, str]) -> tuple[str, float]:
    """A feasible but suboptimal selection of the current knapsack task, and its score."""
    spec: ProblemSpec = env.unwrapped.task
    weights, values, capacity = (spec.data[k] for k in ("weights", "values", "capacity"))
    assert spec.optimum is not None
    for i in sorted(range(len(weights)), key=lambda i: values[i]):
        if weights[i] <= capacity and values[i] < spec.optimum:
            return f"<answer>{i + 1}</answer>", values[i] / spec.optimum
    raise AssertionError("every single item is optimal")


def test_every_family_has_a_registered_id_with_its_difficulty_parameters() -> None:
    assert set(FAMILIES) == set(IDS)
    for family, env_id in IDS.items():
        spec = llm_trainer.spec(env_id)
        assert spec.entry_point == "llm_trainer.envs.problems.env:ProblemEnv"
        assert spec.kwargs["family"] == family
        assert spec.capabilities.tools == ("calculator",)
        env = llm_trainer.make(env_id).unwrapped
        defaults = FAMILIES[family].config_class()
        for key, value in spec.kwargs["config"].items():
            assert tuple(value) if isinstance(value, list) else value == getattr(defaults, key)
        assert env.family.config == defaults


def test_a_wrong_answer_gets_feedback_and_a_revision_then_the_right_one_scores_one() -> None:
    env = llm_trainer.make("LLMTrainer/Knapsack-v0")
    env.reset(seed=4)
    total = 0.0
    everything = ", ".join(str(i + 1) for i in range(len(env.unwrapped.task.data["weights"])))
    obs, reward, terminated, _, info = env.step(f"<answer>{everything}</answer>")
    total += float(reward)
    assert not terminated
    assert reward == 0.0
    assert info["role"] == "user"
    assert info["failures"][0].startswith("infeasible: total weight ")
    assert obs.startswith("Score 0.00: infeasible: total weight ")
    assert obs.endswith("Revise your answer (2 revisions left), or repeat it to keep it.")
    assert info["revisions_left"] == 2
    assert info["criteria"]["capacity"] == 0.0
    assert not info["success"]
    assert info["format_ok"]
    obs, reward, terminated, _, info = env.step(f"<answer>{env.unwrapped.task.answer}</answer>")
    total += float(reward)
    assert terminated
    assert total == reward == info["score"] == 1.0
    assert info["answer_correct"]
    assert info["success"]
    assert obs.startswith("Score 1.00: every constraint met; total weight ")


def test_the_last_revision_ends_the_episode_with_its_own_score() -> None:
    env = llm_trainer.make("LLMTrainer/Knapsack-v0", max_revisions=1)
    env.reset(seed=1)
    answer, ratio = _suboptimal_knapsack(env)
    obs, reward, terminated, _, info = env.step(WRONG)
    assert (reward, terminated, info["revisions_left"]) == (0.0, False, 1)
    assert obs.endswith("Revise your answer (1 revision left), or repeat it to keep it.")
    _, reward, terminated, _, info = env.step(answer)
    assert terminated
    assert reward == info["score"] == ratio
    assert info["revisions_left"] == 0
    assert info["answer_correct"] is False
    assert info["success"] == (ratio >= 0.95)


def test_repeating_an_answer_keeps_it_and_ends_the_episode() -> None:
    env = llm_trainer.make("LLMTrainer/Knapsack-v0", max_revisions=5)
    env.reset(seed=2)
    answer, ratio = _suboptimal_knapsack(env)
    assert env.step(answer)[1:3] == (0.0, False)
    env.step('<tool_call>{"name": "calculator", "arguments": {"expression": "2 + 2"}}</tool_call>')
    _, reward, terminated, _, info = env.step(f"<think>it is the best I have</think>{answer}")
    assert terminated
    assert reward == ratio
    assert info["exec_ok"]
    assert info["tool_correct"]


def test_without_revisions_the_first_answer_ends_the_episode() -> None:
    for env_id in IDS.values():
        env = llm_trainer.make(env_id, max_revisions=0)
        _, info = env.reset(seed=0)
        assert "revise" not in info["system_prompt"]
        _, reward, terminated, _, info = env.step(WRONG)
        assert terminated
        assert reward == info["score"] < 1.0  # the writing task's banned words are avoided
        assert info["failures"]


def test_tool_calls_are_optional_and_judged_like_the_tool_use_envs() -> None:
    env = llm_trainer.make("LLMTrainer/Reasoning-v0")
    env.reset(seed=0)
    obs, reward, _, _, info = env.step(
        '<tool_call>{"name": "calculator", "arguments": {"expression": "6 * 7"}}</tool_call>'
    )
    assert (obs, reward, info["role"]) == ("42", 0.0, "tool")
    assert info["exec_ok"]
    assert info["tool_correct"]
    assert not info["answer_correct"]
    _, _, _, _, info = env.step('<tool_call>{"name": "search", "arguments": {}}</tool_call>')
    assert not info["exec_ok"]  # no such tool here
    assert not info["tool_correct"]


def test_info_reports_score_criteria_and_failures_from_the_start() -> None:
    for env_id in IDS.values():
        _, info = llm_trainer.make(env_id).reset(seed=0)
        assert info["score"] == 0.0
        assert info["criteria"] == {}
        assert info["failures"] == ()
        assert info["revisions_left"] == 2


def test_the_success_threshold_and_weights_are_configurable() -> None:
    env = llm_trainer.make("LLMTrainer/Knapsack-v0", success_threshold=0.01, max_revisions=0)
    env.reset(seed=1)
    answer, ratio = _suboptimal_knapsack(env)
    _, reward, _, _, info = env.step(answer)
    assert info["success"]
    assert not info["answer_correct"]
    assert reward == ratio
    for bad, message in (
        ({"success_threshold": 0.0}, "success_threshold must be a number in"),
        ({"success_threshold": 1.5}, "success_threshold must be a number in"),
        ({"weights": {"valu": 1.0}}, "unknown criterion 'valu' .did you mean 'value'"),
        ({"weights": {"value": -1}}, r"weights\['value'\] must be a positive number"),
        ({"weights": [1]}, "weights must be a mapping"),
        ({"max_revisions": 11}, r"max_revisions must be an int in \[0, 10\]"),
        ({"max_revisions": True}, "max_revisions must be an int"),
        ({"config": {"itemz": [1, 2, 3]}}, "config: unknown key 'itemz' .did you mean 'items'"),
        ({"config": "items"}, "config must be a mapping"),
        ({"family": "sudoku"}, "unknown family 'sudoku'"),
    ):
        with pytest.raises(ConfigError, match=message) as caught:
            llm_trainer.make("LLMTrainer/Knapsack-v0", **bad)
        assert "\n" not in str(caught.value)
        if "family" not in bad:
            assert str(caught.value).startswith("LLMTrainer/Knapsack-v0: ")


def test_a_pickled_env_mid_revision_continues_identically() -> None:
    for env_id in IDS.values():
        env = llm_trainer.make(env_id, difficulty=3, render_mode="ansi")
        env.reset(seed=8)
        env.step(WRONG)
        clone = pickle.loads(pickle.dumps(env))
        assert clone.unwrapped.get_state() == env.unwrapped.get_state()
        answer = f"<answer>{env.unwrapped.task.answer}</answer>"
        assert env.step(answer)[:4] == clone.step(answer)[:4]
        assert env.render().count("[user] Score ") == 2
        assert env.reset()[0] == clone.reset()[0]


def test_snapshots_restore_the_revision_state() -> None:
    env = llm_trainer.make("LLMTrainer/TSP-v0").unwrapped
    env.reset(seed=3)
    env.step(WRONG)
    snapshot = env.get_state()
    assert snapshot.n_answers == 1
    first = env.step(WRONG)
    env.set_state(snapshot)
    assert env.step(WRONG)[:4] == first[:4]
    with pytest.raises(TypeError, match="ProblemEpisode"):
        env.set_state(llm_trainer.make("LLMTrainer/Calculator-v0").unwrapped.reset(seed=0))


@pytest.mark.parametrize("family", sorted(IDS))
@given(seed=st.integers(0, 2**63 - 1), difficulty=st.sampled_from([1, 2, 3]))
def test_any_seed_gives_a_task_the_oracle_solves_through_gym_make(
    family: str, seed: int, difficulty: int
) -> None:
    env = gym.make(IDS[family], difficulty=difficulty)
    obs, info = env.reset(seed=seed)
    assert env.observation_space.contains(obs)
    oracle = OracleAgent(env)
    total, done, steps = 0.0, False, 0
    while not done:
        obs, reward, terminated, truncated, info = env.step(oracle.act(obs, info))
        total, done, steps = total + float(reward), terminated or truncated, steps + 1
    assert total == 1.0
    assert info["success"]
    assert info["answer_correct"]
    assert steps == 1 + len(env.unwrapped.task.plan)


@pytest.mark.parametrize("family", sorted(IDS))
def test_seeds_give_independent_tasks(family: str) -> None:
    """Seed s+1 is not seed s shifted by one task, and tasks rarely repeat."""
    env = gym.make(IDS[family], difficulty=2).unwrapped
    prompts = []
    for seed in range(100):
        env.reset(seed=seed)
        prompts.append([env.task.statement] + [env.reset()[0] for _ in range(3)])
    assert sum(prompts[s][1:] == prompts[s + 1][:3] for s in range(99)) == 0
    assert len({p for episode in prompts for p in episode}) >= 390


def test_the_problems_suites_cover_the_families_and_the_oracle_scores_one(
    tmp_path: Any,
) -> None:
    from llm_trainer.benchmarks.runner import BenchConfig, run_bench
    from llm_trainer.benchmarks.suites import locked_hashes, suite_spec

    v0, v1 = suite_spec("problems-v0"), suite_spec("problems-v1")
    assert v0.envs == tuple(IDS[f] for f in ("reasoning", "knapsack", "tsp", "constrained_writing"))
    assert v1.envs == (*v0.envs, "LLMTrainer/Decompose-v0")
    assert v0.difficulties == v1.difficulties == (1, 2, 3)
    assert locked_hashes()["problems-v0"] == v0.hash
    assert locked_hashes()["problems-v1"] == v1.hash
    run = run_bench(BenchConfig("problems-v1", "oracle", out=tmp_path / "r.json", workers=1))
    metrics = run.result.summary["metrics"]
    assert run.result.summary["episodes"] == 1500
    assert metrics["reward"]["mean"] == pytest.approx(1.0)
    assert metrics["success"]["mean"] == pytest.approx(1.0)
