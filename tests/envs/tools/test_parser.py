"""The tool-call parser: exact grammar, whitespace tolerance, round trips."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_trainer.core.records import ToolCall
from llm_trainer.envs.tools import AnswerAction, InvalidAction, format_answer, parse_action

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
names = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() == s and s.strip())
whitespace = st.text(alphabet=" \n\t\r", max_size=4)


@given(
    names, st.dictionaries(st.text(max_size=10), json_values, max_size=4), whitespace, whitespace
)
def test_tool_call_round_trips(name: str, arguments: dict, before: str, after: str) -> None:
    text = ToolCall(name, arguments).to_text()
    if any(
        tag in text[len("<tool_call>") : -len("</tool_call>")]
        for tag in ("<tool_call>", "</tool_call>", "<answer>", "</answer>", "<think>", "</think>")
    ):
        return  # a tag inside a JSON string is ambiguous and therefore rejected
    parsed = parse_action(before + text + after)
    assert parsed == ToolCall(name, arguments)


@given(st.text(max_size=50), whitespace, whitespace)
def test_answer_round_trips(answer: str, before: str, after: str) -> None:
    try:
        text = format_answer(answer)
    except ValueError:
        return  # contains a tag: rejected on purpose
    assert parse_action(before + text + after) == AnswerAction(answer.strip())


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": "1+1"}}\n</tool_call>',
        '  <tool_call>{"name":"calculator","arguments":{"expression":"1+1"}}</tool_call>  ',
        '<think>I should add.</think>\n<tool_call>{"name": "calculator", "arguments": '
        '{"expression": "1+1"}}</tool_call>',
    ],
)
def test_accepted_tool_call_variants(text: str) -> None:
    assert parse_action(text) == ToolCall("calculator", {"expression": "1+1"})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("42", "expected <tool_call>"),
        ("The answer is <answer>4</answer>", "text outside"),
        ("<answer>4</answer> done", "text outside"),
        ("<answer>4", "unclosed tag"),
        ('<tool_call>{"name": "c", "arguments": {}}', "unclosed tag"),
        ("<answer>1</answer><answer>2</answer>", "more than one block"),
        ('<tool_call>{"name": "c", "arguments": {}}</tool_call><answer>2</answer>', "one turn"),
        (
            '<tool_call>{"name": "c", "arguments": {}}</tool_call>'
            '<tool_call>{"name": "c", "arguments": {}}</tool_call>',
            "more than one block",
        ),
        ("<tool_call>not json</tool_call>", "not valid JSON"),
        ("<tool_call>[1, 2]</tool_call>", "must be a JSON object"),
        ('<tool_call>{"name": "c"}</tool_call>', "missing ['arguments']"),
        ('<tool_call>{"name": "c", "arguments": {}, "id": 1}</tool_call>', "unexpected ['id']"),
        ('<tool_call>{"name": "", "arguments": {}}</tool_call>', "non-empty string"),
        ('<tool_call>{"name": "c", "arguments": "{}"}</tool_call>', "must be a JSON object"),
        ("<answer><answer>1</answer></answer>", "more than one block"),
        ("<tool_call>" + "[" * 100_000 + "</tool_call>", "not valid JSON"),
    ],
)
def test_malformed_actions_name_the_rule_they_break(text: str, reason: str) -> None:
    parsed = parse_action(text)
    assert isinstance(parsed, InvalidAction)
    assert reason in parsed.reason


@given(st.text(max_size=200))
def test_parser_never_raises(text: str) -> None:
    assert isinstance(parse_action(text), ToolCall | AnswerAction | InvalidAction)


def test_format_answer_rejects_tags() -> None:
    with pytest.raises(ValueError, match="must not contain"):
        format_answer("1</answer>")


def test_tool_call_arguments_are_read_only_and_json_ready() -> None:
    call = ToolCall("weather", {"city": "Paris", "nested": {"a": [1, 2]}})
    with pytest.raises(TypeError):
        call.arguments["city"] = "Rome"  # type: ignore[index]
    assert json.loads(call.to_text()[len("<tool_call>") : -len("</tool_call>")]) == {
        "name": "weather",
        "arguments": {"city": "Paris", "nested": {"a": [1, 2]}},
    }
