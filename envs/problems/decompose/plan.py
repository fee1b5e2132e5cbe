"""The plan action of ``LLMTrainer/Decompose-v0``: sub-problems as a JSON array in ``<plan>``.

The grammar (exact; anything else is malformed)::

    action     := ws* [think ws*] plan ws*            (or a tool call or an answer, as usual)
    think      := "<think>" any-text "</think>"
    plan       := "<plan>" ws* json-array ws* "</plan>"
    json-array := [{"id": str, "statement": str, "depends_on": [str, ...]}, ...]

``depends_on`` may be left out (no dependencies); other keys are malformed. The JSON between
the tags has at most :data:`MAX_PLAN_LENGTH` characters and holds no numbers (none fits the
schema: they are refused without being converted, so no digit string is too long); nesting
too deep for the JSON parser is malformed too. What the array means (ids, dependencies,
cycles, how many sub-problems) is checked by :func:`~.graph.to_graph`.

:func:`parse_decompose_action` reads any completion: a ``<plan>`` here, anything else through
:func:`~llm_trainer.envs.tools.parser.parse_action`. It never raises, whatever the text, and
takes time linear in its length.

>>> action = parse_decompose_action(
...     '<plan>[{"id": "s1", "statement": "Ava pays?"},'
...     ' {"id": "s2", "statement": "Change?", "depends_on": ["s1"]}]</plan>')
>>> [(node.id, node.depends_on) for node in action.subproblems]
[('s1', ()), ('s2', ('s1',))]
>>> parse_decompose_action('<plan>[{"id": 1, "statement": "x"}]</plan>')
InvalidAction(reason="sub-problem 1: 'id' must be a string")
>>> parse_decompose_action("<answer>42</answer>")
AnswerAction(text='42')
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from llm_trainer.core.records import ToolCall
from llm_trainer.envs.problems.decompose.graph import MAX_SUBPROBLEMS
from llm_trainer.envs.problems.spec import SubProblem
from llm_trainer.envs.tools import AnswerAction, InvalidAction, parse_action

PLAN_OPEN, PLAN_CLOSE = "<plan>", "</plan>"
#: Longest JSON text inside ``<plan>...</plan>``, in characters.
MAX_PLAN_LENGTH = 8192
_KEYS = ("id", "statement", "depends_on")
_REQUIRED = {"id", "statement"}
_TAGS = (
    PLAN_OPEN, PLAN_CLOSE, "<tool_call>", "</tool_call>", "<answer>", "</answer>", "<think>",
    "</think>",
)  # fmt: skip

_ANY_TAG = re.compile("|".join(re.escape(tag) for tag in _TAGS))
_THINK = re.compile(r"\s*<think>.*?</think>", re.DOTALL)
_PLAN = re.compile(r"\s*<plan>(.*?)</plan>\s*", re.DOTALL)


@dataclass(frozen=True, slots=True)
class PlanAction:
    """A proposed decomposition, as the agent listed it (not yet checked as a graph)."""

    subproblems: tuple[SubProblem, ...]


DecomposeAction = ToolCall | AnswerAction | PlanAction | InvalidAction


class _Number:
    """What a JSON number parses to here: no number fits the plan's schema, and converting a
    number of thousands of digits to ``int`` raises."""

    __slots__ = ()


def _number(_: str) -> _Number:
    return _Number()


def parse_decompose_action(text: str, max_subproblems: int = MAX_SUBPROBLEMS) -> DecomposeAction:
    """Parse one completion of a decomposition env (see the module docstring).

    A plan of more than ``max_subproblems`` entries is refused before any entry is read.
    """
    if PLAN_OPEN not in text and PLAN_CLOSE not in text:
        return parse_action(text)
    start = 0
    think = _THINK.match(text)
    if think is not None:
        start = think.end()
    match = _PLAN.fullmatch(text, start)
    if match is None or _ANY_TAG.search(match.group(1)) is not None:
        return InvalidAction(_diagnose(text[start:]))
    body = match.group(1)
    if len(body) > MAX_PLAN_LENGTH:
        return InvalidAction(f"plan longer than {MAX_PLAN_LENGTH} characters")
    return _parse_plan(body, max_subproblems)


def _parse_plan(body: str, max_subproblems: int) -> PlanAction | InvalidAction:
    try:
        payload = json.loads(body, parse_int=_number, parse_float=_number, parse_constant=_number)
    except json.JSONDecodeError as exc:
        return InvalidAction(f"plan is not valid JSON: {exc.msg}")
    except RecursionError:
        return InvalidAction("plan is not valid JSON: nested too deeply")
    if type(payload) is not list:
        return InvalidAction("a plan must be a JSON array of sub-problems")
    if len(payload) > max_subproblems:
        return InvalidAction(f"a plan has at most {max_subproblems} sub-problems")
    nodes = []
    for position, item in enumerate(payload, 1):
        node = _subproblem(item, position)
        if isinstance(node, InvalidAction):
            return node
        nodes.append(node)
    return PlanAction(tuple(nodes))


def _subproblem(item: Any, position: int) -> SubProblem | InvalidAction:
    where = f"sub-problem {position}"
    if type(item) is not dict:
        return InvalidAction(f"{where} must be a JSON object")
    keys = set(item)
    if not _REQUIRED <= keys <= set(_KEYS):
        missing = sorted(_REQUIRED - keys)
        extra = len(keys - set(_KEYS))
        parts = [f"missing {missing}"] if missing else []
        parts += [f"{extra} unexpected key{'s' if extra > 1 else ''}"] if extra else []
        return InvalidAction(
            f"{where} keys must be 'id', 'statement' and 'depends_on': {', '.join(parts)}"
        )
    identifier, statement = item["id"], item["statement"]
    depends_on = item.get("depends_on", [])
    if type(identifier) is not str:
        return InvalidAction(f"{where}: 'id' must be a string")
    if type(statement) is not str:
        return InvalidAction(f"{where}: 'statement' must be a string")
    if type(depends_on) is not list or not all(type(d) is str for d in depends_on):
        return InvalidAction(f"{where}: 'depends_on' must be a list of sub-problem ids")
    return SubProblem(identifier, statement, tuple(depends_on))


def _diagnose(text: str) -> str:
    """Name the first rule a completion with a plan tag breaks."""
    n_plans = text.count(PLAN_OPEN)
    if text.count("<tool_call>") or text.count("<answer>"):
        return "a plan and a tool call or an answer in one turn: send one of them"
    if n_plans > 1 or text.count(PLAN_CLOSE) > 1:
        return "more than one <plan> block: send one plan"
    if PLAN_CLOSE not in text:
        return f"unclosed tag: missing {PLAN_CLOSE}"
    if PLAN_OPEN not in text:
        return f"{PLAN_CLOSE} without {PLAN_OPEN}"
    if "<think>" in text or "</think>" in text:
        return "a <think> block may only come first"
    return "text outside the <plan> block"


def format_plan(subproblems: Iterable[SubProblem]) -> str:
    """Render a decomposition as a plan action; the inverse of :func:`parse_decompose_action`.

    >>> format_plan([SubProblem("s1", "Ava pays?")])
    '<plan>[{"id": "s1", "statement": "Ava pays?", "depends_on": []}]</plan>'

    Raises:
        ValueError: if a statement or id contains one of the protocol's tags.
    """
    items = [
        {"id": node.id, "statement": node.statement, "depends_on": list(node.depends_on)}
        for node in subproblems
    ]
    body = json.dumps(items, ensure_ascii=False)
    if _ANY_TAG.search(body) is not None:
        raise ValueError(f"a plan must not contain the tags {_TAGS}")
    return f"{PLAN_OPEN}{body}{PLAN_CLOSE}"
