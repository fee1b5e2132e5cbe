"""Parse a model's raw completion into a tool call, a final answer, or an invalid action.

The grammar (exact; anything else is malformed)::

    action      := ws* [think ws*] (tool_call | answer) ws*
    think       := "<think>" any-text "</think>"        (Qwen3-style reasoning, ignored)
    tool_call   := "<tool_call>" ws* json-object ws* "</tool_call>"
    answer      := "<answer>" text-without-tags "</answer>"
    json-object := {"name": <non-empty str>, "arguments": <object>}   (no other keys)

JSON integers have at most :data:`MAX_JSON_INT_DIGITS` digits and containers nest at most
:data:`MAX_JSON_DEPTH` levels (so that no argument is too big to print or to copy).

One tool call per action: several ``<tool_call>`` blocks, a tool call mixed with an answer,
text outside the blocks, unclosed or nested tags, invalid JSON (or over those bounds), or
missing/extra keys are all malformed, and :func:`parse_action` returns an
:class:`InvalidAction` saying which rule broke; it never raises, whatever the text.
This is the format Qwen/Hermes-style open models emit, so their completions parse unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from llm_trainer.core.records import ToolCall

#: Longest JSON integer accepted (sign excluded). ``int()`` refuses more than
#: ``sys.get_int_max_str_digits()`` digits (4,300 by default, never under 640), and json.loads
#: raised that ``ValueError`` out of :func:`parse_action`; no tool takes such a number.
MAX_JSON_INT_DIGITS = 600
#: Deepest nesting of JSON objects and arrays accepted (the tools take flat arguments; without
#: a bound, a few hundred levels made ``ToolCall`` overflow the Python stack).
MAX_JSON_DEPTH = 32

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


class _IntegerTooLongError(ValueError):
    """A JSON integer of more than :data:`MAX_JSON_INT_DIGITS` digits."""


def _bounded_int(text: str) -> int:
    if len(text) - text.startswith("-") > MAX_JSON_INT_DIGITS:
        raise _IntegerTooLongError
    return int(text)


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests objects/arrays more than :data:`MAX_JSON_DEPTH` levels deep
    (iteratively: the check itself must not overflow the stack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item if type(item) is list else ()
        for child in children:
            if type(child) is dict or type(child) is list:
                if depth >= MAX_JSON_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def _parse_tool_call(body: str) -> Action:
    try:
        payload = json.loads(body, parse_int=_bounded_int)
    except _IntegerTooLongError:
        return InvalidAction(
            f"tool call has a JSON integer of more than {MAX_JSON_INT_DIGITS} digits"
        )
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
    if _too_deep(arguments):
        return InvalidAction(
            f"tool call 'arguments' nest more than {MAX_JSON_DEPTH} levels of objects/arrays"
        )
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
