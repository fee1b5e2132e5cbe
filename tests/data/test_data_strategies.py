"""The three data strategies (templates, teacher mode, ToolBench) produce valid trajectories.

Valid means what the env checks: every action parses as a tool call or an answer, tool calls
execute and reproduce their recorded results, the final answer is right, and (where the task is
known) a replay through the real env gives the same observations and metrics.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import ToolCall
from llm_trainer.core.trajectory import Trajectory
from llm_trainer.data import (
    CANONICAL,
    EXAMPLE_PATH,
    TOOL_ENV_IDS,
    DataFormatError,
    Example,
    PlainExample,
    TeacherConfig,
    TemplateConfig,
    ToolBenchConfig,
    convert_toolbench,
    load_toolbench,
    paraphrase,
    plain_examples,
    propose_calls,
    read_toolbench,
    teacher_filter,
    template_examples,
    template_trajectories,
    to_toolbench,
    validate_trajectory,
)
from llm_trainer.data.base import EnvPool, replay_task, single_call_task
from llm_trainer.data.base import solution_actions as solve
from llm_trainer.data.teacher import render_plain
from llm_trainer.envs.tools import AnswerAction, parse_action
from llm_trainer.envs.tooluse.base import system_prompt

TOOLS = ("calculator", "weather", "search")


def assert_valid(examples: list[Example]) -> None:
    for ex in examples:
        t = ex.trajectory
        assert validate_trajectory(t, ex.task) == [], t.to_json()
        assert validate_trajectory(t) == [], t.to_json()  # without the task: tools re-executed
        assert Trajectory.from_json(t.to_json()) == t


# -- templates -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_has_at_least_50_distinct_canonical_examples(tool: str) -> None:
    canonicals = CANONICAL[tool]  # type: ignore[index]
    assert len(canonicals) >= 50
    assert len({c.id for c in canonicals}) == len(canonicals)
    assert len({c.question for c in canonicals}) == len(canonicals)
    assert all(c.tool == tool for c in canonicals)


@pytest.mark.parametrize("tool", TOOLS)
def test_every_canonical_example_solves_its_task_in_the_real_env(tool: str) -> None:
    env_id = TOOL_ENV_IDS[tool]
    env = EnvPool()[env_id]
    examples = []
    for c in CANONICAL[tool]:  # type: ignore[index]
        for seed in range(3):
            inst = c.instantiate(np.random.default_rng(seed), seed)
            task = single_call_task(inst.question, inst.answer, inst.answer_kind, inst.call, seed)
            t = replay_task(env, task, solve(task), env_id=env_id, seed=seed, source="template")
            examples.append(Example(task, t))
            # The answer comes from the tool's real output, not only from the generator.
            assert validate_trajectory(t, grounded=True) == [], (c.id, t.to_json())
    assert_valid(examples)


@pytest.mark.parametrize("tool", TOOLS)
def test_template_trajectories_are_valid_and_shaped_like_the_envs(tool: str) -> None:
    examples = template_examples(tool, 60, seed=7)  # type: ignore[arg-type]
    assert_valid(examples)
    env = EnvPool()[TOOL_ENV_IDS[tool]]
    _, info = env.reset(seed=0)
    for ex in examples:
        t = ex.trajectory
        assert (t.env_id, t.source, t.difficulty) == (TOOL_ENV_IDS[tool], "template", 0)
        assert t.system_prompt == info["system_prompt"] == system_prompt([tool])
        assert list(t.tools) == list(info["tools"])
        assert [type(parse_action(s.action)) for s in t.steps] == [ToolCall, AnswerAction]
        assert t.success
        assert t.total_reward == 1.0


def test_same_seed_gives_the_same_data_and_another_seed_other_data() -> None:
    for tool in TOOLS:
        a = template_trajectories(tool, 20, seed=1)  # type: ignore[arg-type]
        b = template_trajectories(tool, 20, seed=1)  # type: ignore[arg-type]
        c = template_trajectories(tool, 20, seed=2)  # type: ignore[arg-type]
        assert [t.to_json() for t in a] == [t.to_json() for t in b]
        assert len({t.prompt for t in a} & {t.prompt for t in c}) < 5


def test_template_generation_leaves_the_global_rngs_alone() -> None:
    py_state, np_state = random.getstate(), np.random.get_state()
    template_trajectories("weather", 10, seed=0)
    assert random.getstate() == py_state
    assert all(np.array_equal(x, y) for x, y in zip(np.random.get_state(), np_state, strict=True))


def test_paraphrases_vary_the_wording_and_keep_the_facts() -> None:
    config = TemplateConfig(paraphrase_prob=1.0, paraphrase_strength=0.7)
    for tool in TOOLS:
        canonical = {c.question for c in CANONICAL[tool]}  # type: ignore[index]
        changed = 0
        for ex in template_examples(tool, 60, seed=3, config=config):  # type: ignore[arg-type]
            template = re.sub(r"\{\w+\}", "", ex.task.prompt)
            changed += not any(re.sub(r"\{\w+\}", "", q) == template for q in canonical)
            # The entity that the call needs is still in the question.
            arguments = ex.task.plan[0].arguments
            for key in ("city", "query"):
                assert str(arguments.get(key, "")) in ex.task.prompt
        assert changed >= 40, tool
    question = "What is the temperature in Paris on 2026-03-02?"
    wordings = {paraphrase(question, np.random.default_rng(s), ["Paris"]) for s in range(40)}
    assert len(wordings) >= 10
    assert all("Paris" in w and "2026-03-02" in w for w in wordings)


@given(text=st.text(max_size=200), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_paraphrase_never_crashes_and_keeps_numbers_and_entities(
    text: str, seed: int, data: st.DataObject
) -> None:
    start = data.draw(st.integers(0, len(text)))
    entity = text[start : start + data.draw(st.integers(0, 12))]
    strength = data.draw(st.floats(0, 1))
    out = paraphrase(text, np.random.default_rng(seed), [entity], strength=strength)
    assert isinstance(out, str)
    assert sorted(re.findall(r"\d+", out)) == sorted(re.findall(r"\d+", text))
    assert out.count(entity) >= text.count(entity) if entity else True


@given(tool=st.sampled_from(TOOLS), index=st.integers(0, 49), seed=st.integers(0, 2**31 - 1))
def test_paraphrased_canonical_questions_keep_their_slot_values(
    tool: str, index: int, seed: int
) -> None:
    inst = CANONICAL[tool][index].instantiate(np.random.default_rng(seed), seed)  # type: ignore[index]
    out = paraphrase(inst.question, np.random.default_rng(seed), inst.entities, strength=1.0)
    for entity in inst.entities:
        assert inst.question.count(entity) <= out.count(entity)


def test_validation_catches_wrong_answers_tampered_results_and_bad_actions() -> None:
    ex = template_examples("weather", 1, seed=0)[0]
    call, answer = ex.trajectory.steps
    wrong = replace(ex.trajectory, steps=(call, replace(answer, action="<answer>999</answer>")))
    assert any("does not match" in p for p in validate_trajectory(wrong, ex.task))
    tampered = replace(ex.trajectory, steps=(replace(call, observation="{}"), answer))
    assert any("observation differs" in p for p in validate_trajectory(tampered))
    garbage = replace(ex.trajectory, steps=(replace(call, action="weather(Paris)"), answer))
    assert any("invalid action" in p for p in validate_trajectory(garbage))
    assert validate_trajectory(replace(ex.trajectory, steps=())) == ["no steps"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"paraphrase_prob": 1.5}, "paraphrase_prob"), ({"corpus_seed": "0"}, "corpus_seed")],
)
def test_template_config_errors_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        TemplateConfig(**kwargs)


# -- teacher mode --------------------------------------------------------------------------------


def _questions() -> list[PlainExample]:
    return [ex for tool in TOOLS for ex in plain_examples(tool, 6, seed=5)]  # type: ignore[arg-type]


def _length_scorer(pairs: Any) -> list[float]:
    """A stand-in model: any deterministic loss."""
    return [1.0 + (len(context) % 97) / 50 for context, _ in pairs]


def _copying_scorer(pairs: Any) -> list[float]:
    """A stand-in model that can copy: the answer is easy iff the tool result shows it."""
    losses = []
    for context, answer in pairs:
        _, found, tool_turn = context.rpartition("\nTool: ")
        result = tool_turn.partition("\nAssistant: ")[0]
        losses.append(0.5 if found and answer in result else 3.0)
    return losses


def test_threshold_inf_keeps_nothing_and_minus_inf_keeps_every_executed_call() -> None:
    questions = _questions()
    none = teacher_filter(questions, _length_scorer, TeacherConfig(threshold=math.inf))
    assert none.trajectories == ()
    assert none.stats.kept == 0
    assert none.stats.executed > 0
    config = TeacherConfig(threshold=-math.inf, max_kept_per_question=None)
    every = teacher_filter(questions, _length_scorer, config)
    assert every.stats.kept == every.stats.executed == sum(c.executed for c in every.candidates)
    assert len(every.trajectories) == every.stats.kept
    assert every.stats.candidates > every.stats.executed  # some sampled calls fail to run
    assert_valid(list(every.examples))


def test_filter_keeps_the_calls_that_lower_the_loss_and_rejects_the_rest() -> None:
    questions = _questions()
    config = TeacherConfig(threshold=1.0, n_candidates=6, max_kept_per_question=None)
    result = teacher_filter(questions, _copying_scorer, config, render=render_plain)
    for c in result.candidates:
        if c.executed:
            shows_answer = questions[c.question_index].answer in c.result
            assert c.kept == shows_answer, c
            assert c.reduction == pytest.approx(2.5 if shows_answer else 0.0)
    assert result.stats.kept > len(questions) / 2
    assert {t.env_id for t in result.trajectories} == set(TOOL_ENV_IDS.values())
    assert all(t.source == "teacher" for t in result.trajectories)
    assert_valid(list(result.examples))
    # At most one call per question by default: the best one.
    capped = teacher_filter(questions, _copying_scorer, TeacherConfig(threshold=1.0,
                            n_candidates=6), render=render_plain)  # fmt: skip
    per_question = Counter(c.question_index for c in capped.candidates if c.kept)
    assert max(per_question.values()) == 1
    assert set(per_question) == {c.question_index for c in result.candidates if c.kept}


def test_candidate_calls_come_from_the_question() -> None:
    rng = np.random.default_rng(0)
    calls = propose_calls("What is 37 * 12?", rng, 50)
    assert ToolCall("calculator", {"expression": "37 * 12"}) in calls
    assert all(c.name == "calculator" for c in calls)
    calls = propose_calls("What is the temperature in Paris on 2026-01-03?", rng, 50)
    assert ToolCall("weather", {"city": "Paris", "date": "2026-01-03"}) in calls
    calls = propose_calls("Who founded Thiper Dynamics?", rng, 50, tools=["search"])
    assert ToolCall("search", {"query": "Thiper Dynamics"}) in calls
    assert propose_calls("hello there", rng, 5) == []
    first = propose_calls("What is 3 plus 4 plus 5?", np.random.default_rng(1), 3)
    assert first == propose_calls("What is 3 plus 4 plus 5?", np.random.default_rng(1), 3)


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    pytest.importorskip("transformers")
    from llm_trainer.agents.tinylm import TinyLMConfig, build_model, build_tokenizer

    tokenizer = build_tokenizer()
    config = TinyLMConfig(n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64)
    return build_model(config, seed=0, vocab_size=len(tokenizer)), tokenizer


def test_teacher_mode_on_the_tiny_model(tiny: tuple[Any, Any]) -> None:
    import torch

    from llm_trainer.data import teacher_trajectories

    model, tokenizer = tiny
    questions = [q for tool in TOOLS for q in plain_examples(tool, 2, seed=11)]  # type: ignore[arg-type]
    rng_state = torch.random.get_rng_state()
    model.train()
    # Short sequences keep the test fast (contexts are cut from the left).
    short = {"max_length": 320, "max_kept_per_question": None}
    config = TeacherConfig(threshold=-math.inf, batch_size=8, **short)  # type: ignore[arg-type]
    every = teacher_trajectories(model, tokenizer, questions, config)
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # the global RNG is untouched
    assert model.training  # the mode is restored
    executed = [c for c in every.candidates if c.executed]
    assert executed
    assert every.stats.kept == len(executed)
    for c in executed:
        losses = (c.loss_no_call, c.loss_empty_result, c.loss_with_result)
        assert all(math.isfinite(x) and x > 0 for x in losses)
        assert c.reduction == pytest.approx(
            min(c.loss_no_call, c.loss_empty_result) - c.loss_with_result
        )
    # A real threshold splits the candidates exactly by their measured loss reduction.
    median = float(np.median([c.reduction for c in executed]))
    config = TeacherConfig(threshold=median, batch_size=3, **short)  # type: ignore[arg-type]
    split = teacher_trajectories(model, tokenizer, questions, config)
    kept = {(c.question_index, c.call) for c in split.candidates if c.kept}
    assert kept == {(c.question_index, c.call) for c in executed if c.reduction >= median}
    assert 0 < len(kept) < len(executed)
    # Deterministic, and batching does not change the losses.
    again = {(c.question_index, c.call): c.reduction for c in split.candidates if c.executed}
    for c in executed:
        assert again[(c.question_index, c.call)] == pytest.approx(c.reduction, abs=1e-4)
    assert_valid(list(split.examples))
    assert split.stats.as_dict()["teacher/kept"] == len(kept)


def test_teacher_mode_loads_a_model_directory(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    import torch

    from llm_trainer.agents.tinylm import TinyLMConfig, create_tiny_model
    from llm_trainer.data import teacher_trajectories

    config = TinyLMConfig(n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64)
    path = create_tiny_model(tmp_path / "tiny", config, seed=1)
    rng_state = torch.random.get_rng_state()
    result = teacher_trajectories(
        str(path), None, plain_examples("calculator", 2, seed=0), TeacherConfig(threshold=-1e9)
    )
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    assert result.stats.kept == 2  # one per question
    assert_valid(list(result.examples))
    with pytest.raises(ValueError, match="tokenizer"):
        teacher_trajectories(object(), None, [])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_candidates": 0}, "n_candidates"),
        ({"tools": ("calculator", "shell")}, "tools"),
        ({"loss_without": "max"}, "loss_without"),
        ({"max_kept_per_question": 0}, "max_kept_per_question"),
        ({"threshold": math.nan}, "threshold"),
    ],
)
def test_teacher_config_errors_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        TeacherConfig(**kwargs)


def test_plain_examples_are_checked() -> None:
    with pytest.raises(DataFormatError, match="answer"):
        PlainExample("What is 2 + 2?", " ")
    with pytest.raises(DataFormatError, match="answer"):
        PlainExample("What is 2 + 2?", "<answer>4</answer>")


# -- ToolBench -----------------------------------------------------------------------------------

EXPECTED = [  # (env id, [(tool, arguments)], answer) for the complete records of the example file
    ("LLMTrainer/Calculator-v0", [("calculator", {"expression": "37 * 12"})], "444"),
    ("LLMTrainer/Calculator-v0", [("calculator", {"expression": "240 * (100 - 15) / 100"})], "204"),
    ("LLMTrainer/Calculator-v0", [("calculator", {"expression": "3 * 60 * 60"})], "10800"),
    ("LLMTrainer/Weather-v0", [("weather", {"city": "Paris", "date": "2026-01-03"})], "2"),
    ("LLMTrainer/Weather-v0", [("weather", {"city": "Oslo", "date": "2026-01-05"})], "20"),
    ("LLMTrainer/Search-v0", [("search", {"query": "Thiper Dynamics"})], "Lydra Aestia"),
    (
        "LLMTrainer/Search-v0",
        [("search", {"query": "Thiper Dynamics"}), ("search", {"query": "Lydra Aestia"})],
        "Warsaw",
    ),
    (
        "LLMTrainer/MultiTool-v0",
        [
            ("weather", {"city": "Cairo", "date": "2026-01-02"}),
            ("weather", {"city": "Oslo", "date": "2026-01-02"}),
            ("calculator", {"expression": "12 - (-2)"}),
        ],
        "14",
    ),
    (
        "toolbench",
        [("latest_rate_for_currency_exchange", {"amount": 100, "from": "USD", "to": "EUR"})],
        "100 US dollars are 92.4 euros.",
    ),
    ("LLMTrainer/Calculator-v0", [("calculator", {"expression": "sqrt(1764)"})], "42"),
]


def test_the_example_file_loads_into_the_expected_trajectories() -> None:
    result = read_toolbench(EXAMPLE_PATH)
    assert result.records == 12
    assert result.errors == ()
    assert dict(result.skipped) == {"incomplete": 1, "gave_up": 1}
    assert len(result.trajectories) == len(EXPECTED)
    for t, (env_id, calls, answer) in zip(result.trajectories, EXPECTED, strict=True):
        actions = [parse_action(s.action) for s in t.steps]
        assert (t.env_id, t.source) == (env_id, "toolbench")
        assert [(a.name, a.arguments_dict()) for a in actions[:-1]] == calls  # type: ignore[union-attr]
        assert actions[-1] == AnswerAction(answer)
        assert t.success
        # Ours are checked against the real tools, the answer found in their results.
        assert validate_trajectory(t, grounded=env_id != "toolbench") == [], t.to_json()
    foreign = result.trajectories[8]
    assert foreign.tools[0]["function"]["name"] == "latest_rate_for_currency_exchange"
    assert "92.4" in foreign.steps[0].observation


def test_a_malformed_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[{"conversations": [}]')
    with pytest.raises(DataFormatError, match=r"not valid JSON.*line 1"):
        load_toolbench(path)
    path.write_text("42")
    with pytest.raises(DataFormatError, match="expected a JSON list"):
        load_toolbench(path)
    records = json.loads(EXAMPLE_PATH.read_text())[:3]
    assistant = records[1]["conversations"][2]
    assistant["value"] = assistant["value"].replace("Action Input: {", "Action Input: {oops")
    path.write_text(json.dumps(records))
    with pytest.raises(DataFormatError, match=r"record 1: .*Action Input.*not valid JSON"):
        load_toolbench(path, ToolBenchConfig(on_error="raise"))
    result = read_toolbench(path)  # the default skips it and goes on
    assert [e.index for e in result.errors] == [1]
    assert len(result.trajectories) == 2
    assert result.skipped == {"malformed": 1}


def test_a_directory_of_raw_answer_files_loads_file_by_file(tmp_path: Path) -> None:
    records = json.loads(EXAMPLE_PATH.read_text())
    (tmp_path / "1_a.json").write_text(json.dumps(records[:3]))
    (tmp_path / "2_raw.json").write_text(json.dumps(records[-1]))  # one raw answer record
    (tmp_path / "3_broken.json").write_text("{")
    result = read_toolbench(tmp_path)
    assert len(result.trajectories) == 4
    assert [e.where for e in result.errors] == [str(tmp_path / "3_broken.json")]
    with pytest.raises(DataFormatError, match=r"3_broken\.json is not valid JSON"):
        read_toolbench(tmp_path, ToolBenchConfig(on_error="raise"))


def test_no_file_gives_synthetic_data_with_a_notice(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        trajectories = load_toolbench(None, ToolBenchConfig(synthetic_episodes=12, seed=3))
    assert "synthetic" in caplog.text
    assert len(trajectories) == 12
    assert {t.source for t in trajectories} == {"toolbench:synthetic"}
    assert len({t.env_id for t in trajectories}) == 4
    assert any(len(t.steps) > 2 for t in trajectories)  # multi-call chains
    for t in trajectories:  # real episodes: validated by replaying them from the reset
        assert validate_trajectory(t) == []


def test_trajectories_round_trip_through_the_toolbench_format() -> None:
    original = template_trajectories("calculator", 5, seed=0) + template_trajectories(
        "search", 5, seed=0
    )
    records = json.loads(json.dumps(to_toolbench(original)))
    loaded = convert_toolbench(records).trajectories
    assert [t.to_json() for t in loaded] == [
        Trajectory(**{**_fields(t), "source": "toolbench", "seed": 0}).to_json() for t in original
    ]


def _fields(t: Trajectory) -> dict[str, Any]:
    return {name: getattr(t, name) for name in Trajectory.__dataclass_fields__}


def test_thoughts_and_aliases() -> None:
    records = json.loads(EXAMPLE_PATH.read_text())
    thoughts = convert_toolbench(records, ToolBenchConfig(keep_thoughts=True)).trajectories
    assert thoughts[0].steps[0].action.startswith("<think>The user wants a product")
    assert all(validate_trajectory(t) == [] for t in thoughts)
    record = json.loads(json.dumps(records[0]).replace("calculator", "calc_v2"))
    generic = convert_toolbench([record]).trajectories[0]
    assert generic.env_id == "toolbench"
    mapped = convert_toolbench([record], ToolBenchConfig(tool_aliases={"calc_v2": "calculator"}))
    assert mapped.trajectories[0].env_id == "LLMTrainer/Calculator-v0"
    with pytest.raises(ConfigError, match="tool_aliases"):
        ToolBenchConfig(tool_aliases={"calc_v2": "shell"})
    with pytest.raises(ConfigError, match="on_error"):
        ToolBenchConfig(on_error="ignore")  # type: ignore[arg-type]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_TURN = st.fixed_dictionaries(
    {
        "from": st.sampled_from(["system", "user", "assistant", "function", "gpt", "x"]) | _JSON,
        "value": st.sampled_from(
            [
                '\nThought: hm\nAction: calculator\nAction Input: {"expression": "1+1"}',
                '\nAction: Finish\nAction Input: {"return_type": "give_answer", "final_answer": '
                '"2"}',
                "Action: search\nAction Input: []",
                "Specifically, you have access to the following APIs: [{'name': 'search'}]",
                '{"error": "", "response": "2"}',
                "Action Input: {}",
                "What is 1+1?",
            ]
        )
        | _JSON,
    }
)


@given(
    data=_JSON
    | st.lists(st.fixed_dictionaries({"conversations": st.lists(_TURN, max_size=6)}), max_size=3)
    | st.lists(st.fixed_dictionaries({"answer_generation": _JSON}), max_size=2)
)
def test_the_loader_never_crashes_on_junk(data: Any) -> None:
    if not isinstance(data, list | dict):  # only a top level that is no list or record is fatal
        with pytest.raises(DataFormatError, match="expected a JSON list"):
            convert_toolbench(data)
        return
    result = convert_toolbench(data)
    for t in result.trajectories:
        assert all(isinstance(parse_action(s.action), ToolCall | AnswerAction) for s in t.steps)
        assert Trajectory.from_json(t.to_json()) == t
    assert len(result.trajectories) + sum(result.skipped.values()) == result.records


def test_importing_the_data_strategies_does_not_import_torch() -> None:
    code = "import sys, llm_trainer.data; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
