"""Targeted negatives and diversity sampling (``data/negatives.py``): every perturbation of
real oracle positives, replayed through the real envs, fails there for the reason it targets;
perturbations that do not apply say so; draws are deterministic from the seed; and
``diverse_sample`` honours quotas, covers the failure modes and spreads over clusters."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_trainer.agents import ReplayPolicy
from llm_trainer.algorithms.rollout import oracle_trajectories, replay_scripts
from llm_trainer.analysis.failure_modes import classify
from llm_trainer.core.records import ToolCall
from llm_trainer.core.trajectory import Step, Trajectory
from llm_trainer.data.negatives import (
    PERTURBATIONS,
    _ReadAnswer,
    diverse_sample,
    negative_source,
    replay_perturbations,
    targeted_negatives,
)
from llm_trainer.envs.tools import AnswerAction, InvalidAction, parse_action

ENVS = ("Calculator-v0", "Weather-v0", "Search-v0", "MultiTool-v0")
SINGLE_TOOL = ("Calculator-v0", "Weather-v0", "Search-v0")
OK = {"format_ok": True, "tool_correct": True, "exec_ok": True}


@pytest.fixture(scope="module")
def positives() -> dict[str, list[Trajectory]]:
    """Oracle episodes of each env, difficulties 1-3, six seeds each."""
    return {
        env: [
            t
            for d in (1, 2, 3)
            for t in oracle_trajectories(f"LLMTrainer/{env}", range(6), difficulty=d)
        ]
        for env in ENVS
    }


def _calls(t: Trajectory) -> list[ToolCall]:
    return [p for s in t.steps if isinstance(p := parse_action(s.action), ToolCall)]


def _answer(t: Trajectory) -> str | None:
    parsed = parse_action(t.steps[-1].action)
    return parsed.text if isinstance(parsed, AnswerAction) else None


# -- each perturbation, replayed in the real envs --------------------------------------------------


def _check_wrong_tool(n: Trajectory, p: Trajectory) -> None:
    offered = {spec["function"]["name"] for spec in p.tools}
    assert n.metrics["tool_correct"] is False
    before, after = _calls(p), _calls(n)
    assert len(before) == len(after)
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a.name != b.name]
    assert changed
    assert {b.name for _, b in changed} <= offered
    assert len({a.name for a, _ in changed}) == 1  # one tool, redirected wherever it was called


def _check_corrupted_argument(n: Trajectory, p: Trajectory) -> None:
    before, after = _calls(p), _calls(n)
    assert [c.name for c in before] == [c.name for c in after]
    assert before[:-1] == after[:-1]
    old, new = dict(before[-1].arguments), dict(after[-1].arguments)
    assert old.keys() == new.keys()
    assert sum(old[k] != new[k] for k in old) == 1
    result = n.steps[len(after) - 1].observation
    assert result != p.steps[len(before) - 1].observation  # the change mattered
    if classify(n) == "bad_arguments":
        assert result.startswith("error:")
    else:
        assert n.metrics == {**OK, "answer_correct": False, "success": False}
        if n.env_id.endswith("Calculator-v0"):
            assert _answer(n) == result  # answered what the calculator said


def _check_dropped_tool_result(n: Trajectory, p: Trajectory) -> None:
    before, after = _calls(p), _calls(n)
    assert after == before[:-1]
    assert _answer(n) != _answer(p)
    if classify(n) == "wrong_tool":
        assert n.metrics["tool_correct"] is False


def _check_wrong_final_answer(n: Trajectory, p: Trajectory) -> None:
    assert [s.action for s in n.steps[:-1]] == [s.action for s in p.steps[:-1]]
    assert [s.observation for s in n.steps[:-1]] == [s.observation for s in p.steps[:-1]]
    assert _answer(n) not in (None, _answer(p))
    assert n.metrics == {**OK, "answer_correct": False, "success": False}


def _check_malformed_action(n: Trajectory, p: Trajectory) -> None:
    broken = [s for s in n.steps if isinstance(parse_action(s.action), InvalidAction)]
    assert broken
    assert all(s.info.get("invalid_reason") for s in broken)
    assert n.metrics["format_ok"] is False
    if _answer(n) is None:  # the answer was broken: sent again until the step limit
        assert n.steps[-1].truncated
        assert len({s.action for s in broken}) == 1


CHECKS = {
    "wrong_tool": _check_wrong_tool,
    "corrupted_argument": _check_corrupted_argument,
    "dropped_tool_result": _check_dropped_tool_result,
    "wrong_final_answer": _check_wrong_final_answer,
    "malformed_action": _check_malformed_action,
}


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("mode", list(PERTURBATIONS))
def test_each_perturbation_fails_in_the_env_for_the_reason_it_targets(
    env: str, mode: str, positives: dict[str, list[Trajectory]]
) -> None:
    ps = positives[env]
    made = replay_perturbations(ps, [mode], seed=0)
    stats = made.report.stats[mode]
    if mode == "wrong_tool" and env in SINGLE_TOOL:
        assert made.negatives == ()
        assert stats.not_applicable == len(ps)
        return
    assert len(made.negatives) >= 3
    by_task = {(p.seed, p.difficulty): p for p in ps}
    for n in made.negatives:
        p = by_task[(n.seed, n.difficulty)]
        assert (n.env_id, n.prompt, n.tools) == (p.env_id, p.prompt, p.tools)
        assert n.error is None
        assert not n.success
        observed = classify(n)
        assert observed in PERTURBATIONS[mode].expects
        assert n.source == f"negative:{mode}:{observed}"
        assert negative_source(n) == (mode, observed)
        CHECKS[mode](n, p)
    for r in made.rejected:  # failed, but not as intended: counted and left out
        assert classify(r) not in PERTURBATIONS[mode].expects
    assert stats.total_kept == len(made.negatives)
    assert stats.total_mismatched == len(made.rejected)


def test_the_modes_the_envs_observe_are_the_ones_the_table_promises(
    positives: dict[str, list[Trajectory]],
) -> None:
    everything = [t for ps in positives.values() for t in ps]
    made = replay_perturbations(everything, seed=0)
    observed = Counter(negative_source(n) for n in made.negatives)
    expected = {(name, mode) for name, p in PERTURBATIONS.items() for mode in p.expects}
    assert set(observed) == expected  # every promised (perturbation, mode) pair happens
    # nearly every script the perturbations make is a negative the env confirms
    stats = made.report.stats.values()
    assert sum(s.total_kept for s in stats) >= 0.8 * sum(s.replayed for s in stats)


@settings(max_examples=15)
@given(
    env=st.sampled_from(ENVS),
    difficulty=st.integers(1, 3),
    task_seed=st.integers(0, 10_000),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_kept_negative_is_a_real_failure_of_an_expected_mode(
    env: str, difficulty: int, task_seed: int, seed: int
) -> None:
    ps = oracle_trajectories(f"LLMTrainer/{env}", [task_seed], difficulty=difficulty)
    made = replay_perturbations(ps, seed=seed, per_positive=2)
    for n in made.negatives:
        assert n.error is None
        assert not n.success
        name, observed = negative_source(n) or ("", "")
        assert observed == classify(n)
        assert observed in PERTURBATIONS[name].expects
    for s in made.report.stats.values():
        assert s.replayed == (
            s.total_kept + s.total_mismatched + s.not_failures + s.errors + s.unreplayable
        )
        assert s.errors == s.unreplayable == 0


# -- what does not apply ---------------------------------------------------------------------------


def test_perturbations_that_do_not_apply_return_none(
    positives: dict[str, list[Trajectory]],
) -> None:
    rng = np.random.default_rng(0)
    for env in SINGLE_TOOL:  # one tool offered: nothing to call instead
        assert all(PERTURBATIONS["wrong_tool"].apply(p, rng) is None for p in positives[env])
    [p] = oracle_trajectories("LLMTrainer/Calculator-v0", [0])
    no_answer = dataclasses.replace(p, steps=p.steps[:-1])
    for perturbation in PERTURBATIONS.values():
        assert perturbation.apply(no_answer, rng) is None
    answer_only = dataclasses.replace(p, steps=p.steps[-1:])  # answered without any call
    for name in ("wrong_tool", "corrupted_argument", "dropped_tool_result"):
        assert PERTURBATIONS[name].apply(answer_only, rng) is None
    # a broken answer is sent until the step limit: an env without one gives nothing to break
    broken = PERTURBATIONS["malformed_action"].apply(answer_only, rng)
    assert broken is not None
    assert len(broken) == 6  # Calculator-v0's max_episode_steps
    unlimited = dataclasses.replace(answer_only, env_id="my-own-env")
    assert PERTURBATIONS["malformed_action"].apply(unlimited, rng) is None
    # a call whose arguments hold nothing to change
    call = ToolCall("calculator", {"expression": "+"}).to_text()
    bare = dataclasses.replace(p, steps=(dataclasses.replace(p.steps[0], action=call), p.steps[1]))
    assert PERTURBATIONS["corrupted_argument"].apply(bare, rng) is None


def test_failed_positives_and_other_tasks_are_not_perturbed(
    positives: dict[str, list[Trajectory]],
) -> None:
    ps = positives["Calculator-v0"][:4]
    failed = dataclasses.replace(ps[0], steps=ps[0].steps[:-1])  # no answer: not a success
    other_task = dataclasses.replace(ps[1], prompt="What is 1 + 1?")  # reset gives another task
    made = replay_perturbations([failed, other_task, *ps[2:]], ["wrong_final_answer"], seed=0)
    assert made.report.positives == 3
    assert made.report.skipped == 1
    stats = made.report.stats["wrong_final_answer"]
    assert stats.unreplayable == 1
    assert {n.seed for n in made.negatives} == {ps[2].seed, ps[3].seed}


# -- determinism -----------------------------------------------------------------------------------


def test_targeted_negatives_are_deterministic_from_the_seed(
    positives: dict[str, list[Trajectory]],
) -> None:
    ps = positives["MultiTool-v0"]

    def actions(negatives: list[Trajectory]) -> list[tuple[str, ...]]:
        return [(n.source, *(s.action for s in n.steps)) for n in negatives]

    first = targeted_negatives(ps, seed=3, per_positive=2)
    assert actions(first) == actions(targeted_negatives(ps, seed=3, per_positive=2))
    assert actions(first) != actions(targeted_negatives(ps, seed=4, per_positive=2))
    # each (positive, perturbation) draws from its own generator: asking for fewer
    # perturbations, or fewer positives, changes none of the others
    alone = targeted_negatives(ps[::2], ["corrupted_argument"], seed=3, per_positive=2)
    picked = [n for n in first if n.source.startswith("negative:corrupted_argument")]
    assert set(actions(alone)) <= set(actions(picked))
    assert alone


def test_unknown_perturbations_and_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown perturbation"):
        targeted_negatives([], ["wrong_tools"], seed=0)
    with pytest.raises(ValueError, match="per_positive"):
        targeted_negatives([], seed=0, per_positive=0)
    assert targeted_negatives([], seed=0) == []


# -- answers read from the corrupted result --------------------------------------------------------


def test_the_answer_after_a_corrupted_call_follows_the_result() -> None:
    weather = '{"city": "Oslo", "temperature_c": 4, "condition": "snow"}'
    read = _ReadAnswer(weather, "4", "7", whole=False, key="temperature_c")
    assert read(weather) == "<answer>4</answer>"  # nothing changed: the old answer
    assert read('{"city": "Oslo", "temperature_c": 9}') == "<answer>9</answer>"
    assert read("error: unknown city 'Olso'") == "<answer>7</answer>"  # rejected: a guess
    assert read('{"city": "Oslo"}') == "<answer>7</answer>"
    calculator = _ReadAnswer("22", "22", "19", whole=True, key=None)
    assert calculator("27") == "<answer>27</answer>"
    assert calculator("<answer>") == "<answer>19</answer>"  # cannot be an answer's text
    passage = _ReadAnswer("1. X was born in Oslo.", "Oslo", "Olso", whole=False, key=None)
    assert passage("1. Y was born in Rome.") == "<answer>Olso</answer>"


def test_replayed_scripts_come_back_in_order_and_may_read_the_observation() -> None:
    calc = oracle_trajectories("LLMTrainer/Calculator-v0", [0, 1])
    weather = oracle_trajectories("LLMTrainer/Weather-v0", [0])
    echo = [calc[0].steps[0].action, lambda result: f"<answer>{result}</answer>"]
    scripts = [
        (calc[1], [s.action for s in calc[1].steps]),
        (weather[0], [s.action for s in weather[0].steps]),
        (calc[0], echo),
        (calc[0], ["<answer>1</answer>", "never sent"]),
        (calc[0], []),  # runs out at once: the episode records the error
    ]
    played = replay_scripts(scripts, source="replay")
    assert [(t.env_id, t.seed) for t in played] == [(p.env_id, p.seed) for p, _ in scripts]
    assert [t.success for t in played[:4]] == [True, True, True, False]
    assert played[2].steps[-1].action == f"<answer>{calc[0].steps[0].observation}</answer>"
    assert len(played[3].steps) == 1
    assert played[4].error is not None
    assert "ran out of actions" in played[4].error
    assert {t.source for t in played} == {"replay"}
    with pytest.raises(ValueError, match="names no script"):
        ReplayPolicy([]).reset(seed=0)


# -- diversity sampling ----------------------------------------------------------------------------

_MODES = ("malformed_action", "wrong_tool", "bad_arguments", "tool_error", "wrong_answer")


def _negative(mode: str, word: str) -> Trajectory:
    """A failure that :func:`classify` puts in ``mode``, its actions about ``word``."""
    call = ToolCall("calculator", {"expression": word}).to_text()
    answer = f"<answer>{word}</answer>"
    steps: tuple[Step, ...]
    if mode == "malformed_action":
        steps = (Step(word, "Invalid", "user", -0.1, False, True, info={"invalid_reason": "x"}),)
    elif mode == "wrong_tool":
        steps = (Step(answer, "", "user", 0.0, True, False, {**OK, "tool_correct": False}),)
    else:
        result = {
            "bad_arguments": "error: unknown city 'x'",
            "tool_error": "error: division by zero",
            "wrong_answer": "3",
        }[mode]
        steps = (
            Step(call, result, "tool", 0.0, False, False, OK),
            Step(answer, "", "user", 0.0, True, False, {**OK, "exec_ok": mode == "wrong_answer"}),
        )
    t = Trajectory("LLMTrainer/Calculator-v0", 0, 1, "", (), "task", steps)
    assert classify(t) == mode
    return t


def _pool(sizes: Mapping[str, int]) -> list[Trajectory]:
    return [_negative(mode, f"w{mode[:3]}{i}") for mode, n in sizes.items() for i in range(n)]


@given(
    sizes=st.fixed_dictionaries({m: st.integers(0, 6) for m in _MODES}),
    count=st.integers(0, 30),
    quota_modes=st.sets(st.sampled_from(_MODES), max_size=3),
    shares=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_diverse_sample_honours_quotas_and_spreads_the_rest_evenly(
    sizes: dict[str, int], count: int, quota_modes: set[str], shares: bool, seed: int
) -> None:
    pool = _pool(sizes)
    each = count // (2 * len(quota_modes)) if quota_modes else 0
    quota: float | int = each / count if shares and count else each
    quotas: dict[str, float | int] = dict.fromkeys(sorted(quota_modes), quota)
    picked = diverse_sample(pool, count, quotas=quotas or None, seed=seed)
    assert picked == diverse_sample(pool, count, quotas=quotas or None, seed=seed)
    assert len({id(t) for t in picked}) == len(picked) <= count
    got = Counter(classify(t) for t in picked)
    for mode in quota_modes:
        assert got[mode] == min(each, sizes[mode])
    free = [m for m in _MODES if m not in quota_modes]
    for a in free:  # even: one mode has fewer than another only when it ran out
        for b in free:
            assert got[a] >= got[b] - 1 or got[a] == sizes[a]
    if not quotas:
        assert len(picked) == min(count, len(pool))
        if count >= len(_MODES):
            assert {m for m in _MODES if sizes[m]} <= set(got)  # every mode is covered


def test_diverse_sample_spreads_over_clusters_within_a_mode() -> None:
    clusters = ("paris weather tomorrow", "tokyo currency yen", "sqrt of 1764")
    pool = [
        dataclasses.replace(_negative("wrong_answer", f"{text} v{i}"), seed=10 * k + i)
        for k, text in enumerate(clusters)
        for i in range(4)
    ]
    for seed in range(5):
        three = diverse_sample(pool, 3, seed=seed)
        assert sorted(t.seed // 10 for t in three) == [0, 1, 2]  # one of each cluster
    # an exact copy is as close as it gets: it comes after everything else
    copies = [*pool, *(dataclasses.replace(t, seed=100 + t.seed) for t in pool[:2])]
    for seed in range(5):
        order = diverse_sample(copies, len(copies), seed=seed)
        firsts = order[: len(pool)]
        assert len({tuple(s.action for s in t.steps) for t in firsts}) == len(pool)


def test_diverse_sample_covers_the_modes_of_real_negatives(
    positives: dict[str, list[Trajectory]],
) -> None:
    negatives = targeted_negatives(positives["MultiTool-v0"], seed=0, per_positive=2)
    modes = Counter(classify(n) for n in negatives)
    picked = diverse_sample(negatives, 2 * len(modes), seed=0)
    assert Counter(classify(n) for n in picked) == dict.fromkeys(modes, 2)
    half = diverse_sample(negatives, 10, quotas={"wrong_answer": 0.5}, seed=0)
    assert Counter(classify(n) for n in half)["wrong_answer"] == 5


def test_diverse_sample_refuses_bad_quotas() -> None:
    pool = _pool({"wrong_answer": 3})
    with pytest.raises(ValueError, match="not a failure mode"):
        diverse_sample(pool, 2, quotas={"wrong_answers": 1}, seed=0)
    with pytest.raises(ValueError, match=r"share must be in \[0, 1\]"):
        diverse_sample(pool, 2, quotas={"wrong_answer": 1.5}, seed=0)
    with pytest.raises(ValueError, match="more than the 2 to sample"):
        diverse_sample(pool, 2, quotas={"wrong_answer": 2, "wrong_tool": 1}, seed=0)
    with pytest.raises(ValueError, match="count must be >= 0"):
        diverse_sample(pool, -1, seed=0)
    assert diverse_sample(pool, 5, quotas={"wrong_answer": 0}, seed=0) == []
