"""Decompose-v0: the plan path and the direct path, credit per sub-problem, invalid plans as
invalid actions, revisions, snapshots mid-plan, the multistep family's ground truth, and the
oracle through the episode engine."""

from __future__ import annotations

import json
import pickle
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import llm_trainer
from llm_trainer.agents import OracleAgent
from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.problems import ProblemSpec
from llm_trainer.envs.problems.decompose import (
    MultiStepConfig,
    MultiStepFamily,
    ScriptedDecomposer,
    format_plan,
    to_graph,
)
from llm_trainer.envs.tools.calculator import calculator, evaluate

ENV_ID = "LLMTrainer/Decompose-v0"


def _make(**kwargs: Any) -> gym.Env[str, str]:
    return llm_trainer.make(ENV_ID, **kwargs)


def _plan(nodes: list[tuple[str, str, list[str]]]) -> str:
    items = [{"id": i, "statement": s, "depends_on": d} for i, s, d in nodes]
    return f"<plan>{json.dumps(items)}</plan>"


def _play_oracle_plan(env: gym.Env[str, str]) -> tuple[float, dict[str, Any]]:
    """Plan with the spec's own decomposition, answer every sub-problem, then the problem."""
    task: ProblemSpec = env.unwrapped.task
    total = 0.0
    _, reward, terminated, _, info = env.step(format_plan(ScriptedDecomposer().plan(task)))
    total += float(reward)
    assert info["decomposition_valid"]
    assert not terminated
    while info["subproblem"] is not None:
        node = info["subproblem"]
        _, reward, terminated, _, info = env.step(
            f"<answer>{task.data['subanswers'][node]}</answer>"
        )
        total += float(reward)
        assert not terminated
    _, reward, terminated, _, info = env.step(f"<answer>{task.answer}</answer>")
    assert terminated
    return total + float(reward), info


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_the_reference_plan_earns_full_credit_per_subproblem_and_the_reward_one(
    difficulty: int,
) -> None:
    env = _make(difficulty=difficulty)
    for seed in range(10):
        env.reset(seed=seed)
        n = len(env.unwrapped.task.subproblems)
        total, info = _play_oracle_plan(env)
        assert total == 1.0
        assert info["success"]
        assert info["answer_correct"]
        assert dict(info["subproblem_scores"]) == {f"s{i}": 1.0 for i in range(1, n + 1)}
        assert info["plan"] == tuple(f"s{i}" for i in range(1, n + 1))


def test_the_direct_path_scores_the_same_without_a_plan() -> None:
    env = _make(difficulty=2)
    env.reset(seed=3)
    _, reward, terminated, _, info = env.step(f"<answer>{env.unwrapped.task.answer}</answer>")
    assert (reward, terminated, info["success"]) == (1.0, True, True)
    assert info["decomposition_valid"] is False
    assert info["plan"] == ()
    assert dict(info["subproblem_scores"]) == {}


def test_a_wrong_subanswer_earns_no_credit_and_a_value_matched_once_counts_once() -> None:
    env = _make(difficulty=1, config={"kinds": ["savings"]})
    env.reset(seed=0)
    task = env.unwrapped.task
    values = task.data["subanswers"]
    env.step(format_plan(ScriptedDecomposer().plan(task)))
    # s1 answered with s2's value (a value of the reference: credit), s2 with the same value
    # again (already claimed: none), s3 with a number that is no sub-problem's value
    env.step(f"<answer>{values['s2']}</answer>")
    env.step(f"<answer>{values['s2']}</answer>")
    obs, _, _, _, info = env.step("<answer>-1</answer>")
    assert dict(info["subproblem_scores"]) == {"s1": 1.0, "s2": 0.0, "s3": 0.0}
    assert "Every sub-problem is answered" in obs
    _, reward, terminated, _, info = env.step(f"<answer>{task.answer}</answer>")
    assert (reward, terminated, info["success"]) == (1.0, True, True)


def test_observations_quote_the_answers_a_subproblem_depends_on() -> None:
    env = _make(difficulty=1, config={"kinds": ["shopping"]})
    env.reset(seed=1)
    obs, *_ = env.step(_plan([("a", "Pens?", []), ("b", "Mugs?", []), ("t", "Total?", ["a", "b"])]))
    assert obs.startswith("Plan accepted: 3 sub-problems, in this order: a, b, t.")
    assert "Sub-problem a (1 of 3): Pens?" in obs
    env.step("<answer>12</answer>")
    obs, _, _, _, info = env.step("<answer>30 dollars</answer>")
    assert obs.startswith("Sub-problem t (3 of 3): Total? Known: a = 12; b = 30 dollars.")
    assert info["subproblem"] == "t"


@pytest.mark.parametrize(
    ("plan", "reason"),
    [
        (
            _plan([("a", "x", ["b"]), ("b", "y", ["a"])]),
            "invalid plan: the plan has a cycle: a -> b -> a",
        ),
        (_plan([("a", "x", ["zz"])]), "invalid plan: sub-problem 'a' depends on unknown 'zz'"),
        (_plan([("a", "x", []), ("a", "y", [])]), "invalid plan: duplicate sub-problem id 'a'"),
        (_plan([("a", "x", ["a"])]), "invalid plan: the plan has a cycle: a -> a"),
        ("<plan>[]</plan>", "invalid plan: a plan needs at least one sub-problem"),
    ],
)
def test_a_plan_that_is_no_dag_is_an_invalid_action_naming_the_rule(plan: str, reason: str) -> None:
    env = _make()
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(plan)
    assert (reward, terminated, truncated) == (-0.1, False, False)
    assert info["invalid_action"]
    assert info["invalid_reason"] == reason
    assert reason in obs
    assert not info["decomposition_valid"]
    # the episode goes on: the direct path still scores (less the penalty)
    _, reward, terminated, _, info = env.step(f"<answer>{env.unwrapped.task.answer}</answer>")
    assert (reward, terminated, info["format_ok"]) == (1.0, True, False)


def test_more_subproblems_than_the_bound_is_invalid() -> None:
    env = _make(max_subproblems=2)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(_plan([(f"s{i}", "x", []) for i in range(3)]))
    assert reward == -0.1
    assert info["invalid_reason"] == "a plan has at most 2 sub-problems"


def test_a_second_plan_or_a_plan_after_an_answer_is_invalid() -> None:
    env = _make(difficulty=2)
    env.reset(seed=0)
    one = _plan([("a", "x", [])])
    env.step(one)
    _, reward, _, _, info = env.step(one)
    assert reward == -0.1
    assert info["invalid_reason"].startswith("a plan was already accepted")
    env.reset(seed=0)
    env.step("<answer>0</answer>")  # a wrong final answer: a revision is allowed
    _, reward, _, _, info = env.step(one)
    assert reward == -0.1
    assert info["invalid_reason"] == "a plan must come before the first answer"


def test_a_wrong_final_answer_gets_feedback_and_revisions_as_in_problem_envs() -> None:
    env = _make(difficulty=1, max_revisions=1)
    env.reset(seed=2)
    obs, reward, terminated, _, info = env.step("<answer>0</answer>")
    assert (reward, terminated, info["revisions_left"]) == (0.0, False, 1)
    assert "wrong" in obs
    assert "Revise your answer (1 revision left)" in obs
    _, reward, terminated, _, info = env.step("<answer>1</answer>")
    assert (reward, terminated, info["success"]) == (0.0, True, False)


def test_the_calculator_works_between_subproblems() -> None:
    env = _make(difficulty=1)
    env.reset(seed=0)
    env.step(_plan([("a", "x", [])]))
    obs, reward, _, _, info = env.step(
        '<tool_call>{"name": "calculator", "arguments": {"expression": "6 * 7"}}</tool_call>'
    )
    assert (obs, reward, info["role"], info["subproblem"]) == ("42", 0.0, "tool", "a")


def test_a_snapshot_mid_plan_continues_identically() -> None:
    env = _make(difficulty=3)
    env.reset(seed=5)
    task = env.unwrapped.task
    env.step(format_plan(ScriptedDecomposer().plan(task)))
    env.step(f"<answer>{task.data['subanswers']['s1']}</answer>")
    state = env.unwrapped.get_state()
    assert pickle.loads(pickle.dumps(state)) == state
    first = _play_oracle_rest(env)
    env.reset(seed=99)  # another episode, then back
    env.unwrapped.set_state(state)
    assert _play_oracle_rest(env) == first
    with pytest.raises(TypeError, match="DecomposeEpisode"):
        env.unwrapped.set_state("not a state")  # type: ignore[arg-type]


def _play_oracle_rest(env: gym.Env[str, str]) -> list[Any]:
    task = env.unwrapped.task
    out = []
    info = env.unwrapped._decompose_info(env.unwrapped.get_state(), "user", None)
    while info["subproblem"] is not None:
        step = env.step(f"<answer>{task.data['subanswers'][info['subproblem']]}</answer>")
        info = step[4]
        out.append((step[0], step[1], dict(info["subproblem_scores"])))
    out.append(env.step(f"<answer>{task.answer}</answer>")[:3])
    return out


@pytest.mark.parametrize("kind", ["shopping", "travel", "savings"])
@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_every_subanswer_is_its_calculator_call_and_the_last_is_the_answer(
    kind: str, difficulty: int
) -> None:
    family = MultiStepFamily(MultiStepConfig(kinds=(kind,)))
    sizes = {1: 3, 2: {"shopping": 4}.get(kind, 5), 3: {"shopping": 6}.get(kind, 7)}
    for seed in range(40):
        spec = family.generate(np.random.default_rng(seed), difficulty)
        values = spec.data["subanswers"]
        assert len(spec.subproblems) == len(spec.plan) == sizes[difficulty]
        for node, call in zip(spec.subproblems, spec.plan, strict=True):
            assert calculator(call.arguments) == values[node.id]
            assert evaluate(call.arguments["expression"]) == int(values[node.id])
        assert spec.answer == values[spec.subproblems[-1].id]
        assert spec.statement.endswith("Answer with a number.")
        assert all(v.lstrip("-").isdigit() for v in values.values())
        graph = to_graph(spec.subproblems)
        # every node feeds the answer: the decomposition has no dead ends
        assert all(node == spec.subproblems[-1].id or graph.out_degree(node) > 0 for node in graph)
        if difficulty == 3:  # one quantity feeds two others: a DAG, not a tree
            assert max(d for _, d in graph.out_degree()) >= 2


def test_bad_arguments_are_config_errors_naming_the_env() -> None:
    for kwargs, match in [
        ({"max_subproblems": 0}, "max_subproblems must be an int in \\[1, 32\\]"),
        ({"max_revisions": 11}, "max_revisions must be an int in \\[0, 10\\]"),
        ({"config": {"kinds": ["cooking"]}}, "cooking"),
        ({"difficulty": 4}, "difficulty"),
    ]:
        with pytest.raises(ConfigError, match=match) as info:
            _make(**kwargs)
        assert "Decompose-v0" in str(info.value)


def test_the_oracle_agent_plans_and_scores_one_through_the_episode_engine() -> None:
    from llm_trainer.algorithms.rollout import collect

    for difficulty in (1, 2, 3):
        trajectories = collect(ENV_ID, OracleAgent, range(12), num_envs=4, difficulty=difficulty)
        assert all(t.metrics["success"] and t.total_reward == 1.0 for t in trajectories)
        assert all(t.steps[0].action.startswith("<plan>") for t in trajectories)
        # the plan, one answer per sub-problem, the final answer
        env = _make(difficulty=difficulty)
        for t in trajectories:
            env.reset(seed=t.seed)
            assert len(t.steps) == len(env.unwrapped.task.subproblems) + 2
