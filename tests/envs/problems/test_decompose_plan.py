"""The <plan> action: the grammar, its bounds, and that no text makes the parser raise or take
more than linear time."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_trainer.core.records import ToolCall
from llm_trainer.envs.problems import SubProblem
from llm_trainer.envs.problems.decompose import PlanAction, format_plan, parse_decompose_action
from llm_trainer.envs.problems.decompose.plan import MAX_PLAN_LENGTH
from llm_trainer.envs.tools import AnswerAction, InvalidAction
from tests.envs.problems.decompose_helpers import dags

PLAN = (
    '[{"id": "s1", "statement": "Ava pays?"}, '
    '{"id": "s2", "statement": "Change?", "depends_on": ["s1"]}]'
)
NODES = (SubProblem("s1", "Ava pays?"), SubProblem("s2", "Change?", ("s1",)))


@given(nodes=dags())
def test_plans_round_trip_through_format_and_parse(nodes: list[SubProblem]) -> None:
    try:
        text = format_plan(nodes)
    except ValueError:  # a statement with a protocol tag cannot be sent
        return
    assert parse_decompose_action(text) == PlanAction(tuple(nodes))
    assert parse_decompose_action(f"<think>first the parts</think>\n {text}\n") == PlanAction(
        tuple(nodes)
    )


def test_the_grammar_reads_plans_tool_calls_and_answers() -> None:
    assert parse_decompose_action(f"<plan>{PLAN}</plan>") == PlanAction(NODES)
    assert parse_decompose_action(f"  <plan>\n{PLAN}\n</plan>  ") == PlanAction(NODES)
    assert parse_decompose_action("<answer> 42 </answer>") == AnswerAction("42")
    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "1+1"}}</tool_call>'
    assert parse_decompose_action(call) == ToolCall("calculator", {"expression": "1+1"})
    assert parse_decompose_action('<plan>[{"id": "a", "statement": "x", "depends_on": []}]</plan>')
    with pytest.raises(ValueError, match="must not contain the tags"):
        format_plan([SubProblem("s1", "say <answer>1</answer>")])


KEYS = "keys must be 'id', 'statement' and 'depends_on'"
IDS = "'depends_on' must be a list of sub-problem ids"
THIRTEEN = ", ".join(['{"id": "a", "statement": "x"}'] * 13)
MALFORMED = [
    ("<plan>{}</plan>", "a plan must be a JSON array of sub-problems"),
    ("<plan>[1]</plan>", "sub-problem 1 must be a JSON object"),
    ('<plan>[{"id": "a"}]</plan>', f"sub-problem 1 {KEYS}: missing ['statement']"),
    ('<plan>[{"id": "a", "statement": "x", "y": 1}]</plan>', f"sub-problem 1 {KEYS}: 1 unexpected"),
    ('<plan>[{"id": 1, "statement": "x"}]</plan>', "sub-problem 1: 'id' must be a string"),
    ('<plan>[{"id": "a", "statement": [""]}]</plan>', "sub-problem 1: 'statement' must be a"),
    ('<plan>[{"id": "a", "statement": "x", "depends_on": "b"}]</plan>', f"sub-problem 1: {IDS}"),
    ('<plan>[{"id": "a", "statement": "x", "depends_on": [1]}]</plan>', f"sub-problem 1: {IDS}"),
    ("<plan>[oops</plan>", "plan is not valid JSON: Expecting value"),
    ("<plan>" + "[" * 5000 + "]" * 5000 + "</plan>", "plan longer than 8192 characters"),
    ("<plan>" + "[" * 4000 + "]" * 4000 + "</plan>", "plan is not valid JSON: nested too deeply"),
    (f"<plan>{PLAN}</plan><plan>[]</plan>", "more than one <plan> block: send one plan"),
    (f"<plan>{PLAN}</plan><answer>1</answer>", "a plan and a tool call or an answer in one turn"),
    (f"<plan>{PLAN}", "unclosed tag: missing </plan>"),
    (f"{PLAN}</plan>", "</plan> without <plan>"),
    (f"Here: <plan>{PLAN}</plan>", "text outside the <plan> block"),
    (f"<plan><think>x</think>{PLAN}</plan>", "a <think> block may only come first"),
    (f"<plan>[{THIRTEEN}]</plan>", "a plan has at most 12 sub-problems"),
]


@pytest.mark.parametrize(("action", "reason"), MALFORMED)
def test_malformed_plans_are_invalid_with_the_rule_they_broke(action: str, reason: str) -> None:
    parsed = parse_decompose_action(action)
    assert isinstance(parsed, InvalidAction)
    assert parsed.reason.startswith(reason), parsed.reason
    assert "\n" not in parsed.reason


def test_json_numbers_of_any_length_are_refused_without_conversion() -> None:
    for number in ("7" * 5000, "-" + "9" * 5000, "1." + "3" * 5000, "1e999999", "NaN", "-Infinity"):
        for body in (
            f'[{{"id": {number}, "statement": "x"}}]',
            f'[{{"id": "a", "statement": "x", "depends_on": [{number}]}}]',
            f"[{number}]",
        ):
            parsed = parse_decompose_action(f"<plan>{body}</plan>")
            assert isinstance(parsed, InvalidAction), body[:40]


plan_items = st.one_of(
    st.fixed_dictionaries(
        {"id": st.text(max_size=10), "statement": st.text(max_size=20)},
        optional={"depends_on": st.lists(st.text(max_size=5), max_size=3), "x": st.none()},
    ),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=5), children, max_size=3)
        ),
        max_leaves=8,
    ),
)
plan_bodies = st.one_of(
    st.lists(plan_items, max_size=14).map(json.dumps),
    st.text(max_size=200),
)
tags = st.sampled_from(
    ("<plan>", "</plan>", "<answer>", "</answer>", "<think>", "</think>", "<tool_call>", "")
)


@given(
    before=st.text(max_size=20) | tags,
    body=plan_bodies,
    middle=tags,
    after=st.text(max_size=20) | tags,
)
def test_any_text_with_plan_tags_is_a_plan_or_an_invalid_action_never_raised(
    before: str, body: str, middle: str, after: str
) -> None:
    for text in (f"{before}<plan>{body}{middle}</plan>{after}", f"<plan>{body}</plan>"):
        parsed = parse_decompose_action(text)
        assert isinstance(parsed, PlanAction | InvalidAction | AnswerAction | ToolCall)
        if isinstance(parsed, InvalidAction):
            assert parsed.reason
            assert "\n" not in parsed.reason
        if isinstance(parsed, PlanAction):
            assert len(parsed.subproblems) <= 12
            assert all(isinstance(n.id, str) for n in parsed.subproblems)


def test_hundred_thousand_character_plans_are_parsed_in_linear_time() -> None:
    n = 100_000
    actions = {
        "long body": "<plan>[" + '"x", ' * (n // 5) + '"x"]</plan>',
        "closing tags": "<plan>" + "</plan> " * (n // 8) + "x",
        "open tags": "<plan>" * (n // 6),
        "think then plan tags": "<think>" + "</think>" * (n // 8) + "<plan>[]</plan>",
        "deep": "<plan>" + "[" * n + "</plan>",
        "spaces": "<plan>" + " " * n + "[]</plan>x",
    }
    for name, action in actions.items():
        start = time.perf_counter()
        parsed = parse_decompose_action(action)
        assert time.perf_counter() - start < 1.0, name
        assert isinstance(parsed, InvalidAction), name
    assert MAX_PLAN_LENGTH == 8192
