"""Parse a model's raw completion into a tool call, a final answer, or an invalid action.

The grammar (exact; anything else is malformed)::

    action      := ws* [think ws*] (tool_call | answer) ws*
    think       := "<think>" any-text "</think>"        (Qwen3-style reasoning, ignored)
    tool_call   := "<tool_call>" ws* json-object ws* "</tool_call>"
    answer      := "<answer>" text-without-tags "</answer>"
    json-object := {"name": <non-empty str>, "arguments": <object>}   (no other keys)

One tool call per action: several ``<tool_call>`` blocks, a tool call mixed with an answer,
text outside the blocks, unclosed or nested tags, invalid JSON, or missing/extra keys are all
malformed, and :func:`parse_action` returns an :class:`InvalidAction` saying which rule broke.
This is the format Qwen/Hermes-style open models emit, so their completions parse unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from llm_trainer.core.records import ToolCall

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_TAGS = (TOOL_CALL_OPEN, TOOL_CALL_CLOSE, ANSWER_OPEN, ANSWER_CLOSE, "<think>", "</think>")

_ANY_TAG = re.compile("|".join(re.escape(tag) for tag in _TAGS))
_THINK = re.compile(r"\s*<think>.*?</think>", re.DOTALL)
_TOOL_CALL = re.compile(r"\s*<tool_call>(.*?)</tool_call>\s*", re.DOTALL)
_ANSWER = re.compile(r"\s*<answer>(.*?)</answer>\s*", re.DOTALL)


@dataclass(frozen=True, slots=True)
class AnswerAction:
    """A final answer; ``text`` is the content between the tags, stripped of whitespace."""

    text: str


@dataclass(frozen=True, slots=True)
class InvalidAction:
    """A malformed action; ``reason`` says which rule of the grammar it broke."""

    reason: str


Action = ToolCall | AnswerAction | InvalidAction


def parse_action(text: str) -> Action:
    """Parse one completion.

    >>> parse_action('<tool_call>{"name": "calculator", "arguments": {"expression": "1+1"}}'
    ...              '</tool_call>')
    ToolCall(name='calculator', arguments=FrozenDict({'expression': '1+1'}))
    >>> parse_action("  <answer> 42 </answer>\\n")
    AnswerAction(text='42')
    >>> parse_action("42")
    InvalidAction(reason='expected <tool_call>...</tool_call> or <answer>...</answer>')
    """
    start = 0
    think = _THINK.match(text)
    if think is not None:
        start = think.end()
    match = _TOOL_CALL.fullmatch(text, start) or _ANSWER.fullmatch(text, start)
    if match is None or _ANY_TAG.search(match.group(1)) is not None:
        return InvalidAction(_diagnose(text[start:]))
    if match.re is _ANSWER:
        return AnswerAction(match.group(1).strip())
    return _parse_tool_call(match.group(1))


def _parse_tool_call(body: str) -> Action:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        return InvalidAction(f"tool call is not valid JSON: {msg}")
    if not isinstance(payload, dict):
        return InvalidAction("tool call must be a JSON object")
    keys = set(payload)
    if keys != {"name", "arguments"}:
        missing = sorted({"name", "arguments"} - keys)
        extra = sorted(keys - {"name", "arguments"})
        parts = [f"missing {missing}"] if missing else []
        parts += [f"unexpected {extra}"] if extra else []
        return InvalidAction(f"tool call keys must be 'name' and 'arguments': {', '.join(parts)}")
    name, arguments = payload["name"], payload["arguments"]
    if not isinstance(name, str) or not name.strip():
        return InvalidAction("tool call 'name' must be a non-empty string")
    if not isinstance(arguments, dict):
        return InvalidAction("tool call 'arguments' must be a JSON object")
    return ToolCall(name.strip(), arguments)


def _diagnose(text: str) -> str:
    """Name the first rule a non-matching completion breaks."""
    n_calls, n_answers = text.count(TOOL_CALL_OPEN), text.count(ANSWER_OPEN)
    if n_calls + n_answers == 0:
        return "expected <tool_call>...</tool_call> or <answer>...</answer>"
    if n_calls and n_answers:
        return "a tool call and an answer in one turn: send one of them"
    if n_calls > 1 or n_answers > 1:
        return "more than one block: use one <tool_call> or one <answer> per turn"
    close = TOOL_CALL_CLOSE if n_calls else ANSWER_CLOSE
    if close not in text:
        return f"unclosed tag: missing {close}"
    if "<think>" in text or "</think>" in text:
        return "a <think> block may only come first"
    return "text outside the <tool_call>/<answer> block"


def format_answer(text: str) -> str:
    """Render a final answer; the inverse of :func:`parse_action` for answers.

    Raises:
        ValueError: if ``text`` contains one of the protocol's tags (it could not round-trip).
    """
    if _ANY_TAG.search(text) is not None:
        raise ValueError(f"answer text must not contain the tags {_TAGS}: {text!r}")
    return f"{ANSWER_OPEN}{text}{ANSWER_CLOSE}"
