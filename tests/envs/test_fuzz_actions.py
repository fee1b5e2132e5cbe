"""Fuzzing every field of the action format, in every registered env: ``env.step`` never raises.

The parser accepts an ``<answer>`` text, an optional ``<think>`` block, and a tool call's
``name`` and ``arguments``. Each field is drawn here from what broke the envs, or could: numbers
of any length (``int()`` refuses more than 4,300 digits, and an answer of 4,301 digits raised
``ValueError`` in all four envs), signs, decimals, commas, exponents, Unicode digits, NaN and
infinities; unknown and odd tool names; JSON arguments with huge integers, floats, strings
holding huge numbers, lists, null and deep nesting. Whatever the action, a step returns an
observation in the observation space, a finite reward and the five metrics as bools, and an
invalid action is flagged as one, with its reason.

The problem envs (``envs/problems/``) answer a wrong answer with feedback and a revision
instead of ending the episode, and end it with the answer's score rather than 0 or 1:
:func:`_answer_handled` and :func:`_answer_reward` state what an answer may do in any env.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from fractions import Fraction
from typing import Any

import gymnasium as gym
import pytest
from hypothesis import given
from hypothesis import strategies as st

import llm_trainer
from llm_trainer.core.records import METRIC_KEYS, ToolCall
from llm_trainer.envs.problems import ProblemEnv, ProblemSpec
from llm_trainer.envs.tools.calculator import format_number
from llm_trainer.envs.tools.parser import MAX_JSON_DEPTH, MAX_JSON_INT_DIGITS
from llm_trainer.envs.tooluse.base import Task, ToolUseEnv, answer_matches
from tests.conftest import ENV_IDS

# -- what an env must return for any action ---------------------------------------------------

StepResult = tuple[Any, Any, Any, Any, dict[str, Any]]


@functools.cache
def _env(env_id: str) -> gym.Env[str, str]:
    """One env per id for the whole file (every example starts with :func:`_reset`)."""
    return llm_trainer.make(env_id)


def _reset(env_id: str, seed: int) -> gym.Env[str, str]:
    """The env of ``env_id``, reset to ``seed`` at a difficulty the seed picks among all."""
    env = _env(env_id)
    difficulties = llm_trainer.spec(env_id).capabilities.difficulties
    env.reset(seed=seed, options={"difficulty": difficulties[seed % len(difficulties)]})
    return env


def _base(env: gym.Env[str, str]) -> ToolUseEnv | ProblemEnv:
    base = env.unwrapped
    assert isinstance(base, ToolUseEnv | ProblemEnv)
    return base


def _answer_handled(info: dict[str, Any], terminated: bool) -> bool:
    """An answer ends the episode, is invalid, or (problem envs) gets feedback and a revision."""
    revising = info.get("revisions_left", 0) > 0 and info["role"] == "user"
    return terminated or info["invalid_action"] or revising


def _answer_reward(info: dict[str, Any], terminated: bool) -> float:
    """-0.1 for an invalid action; the final answer's score (tool-use envs: 1 or 0) at the end;
    0 for an answer that gets a revision."""
    if info["invalid_action"]:
        return -0.1
    if not terminated:
        return 0.0
    return float(info.get("score", 1.0 if info["success"] else 0.0))


def _check_step(env: gym.Env[str, str], result: StepResult) -> None:
    observation, reward, terminated, truncated, info = result
    assert env.observation_space.contains(observation)
    assert isinstance(reward, int | float)
    assert math.isfinite(reward)
    assert type(terminated) is bool
    assert type(truncated) is bool
    for key in METRIC_KEYS:
        assert type(info[key]) is bool, (key, info[key])
    assert type(info["invalid_action"]) is bool
    if info["invalid_action"]:
        assert reward == pytest.approx(-0.1)
        assert not terminated
        reason = info["invalid_reason"]
        assert isinstance(reason, str)
        assert reason
        assert "\n" not in reason
        assert reason in observation


def _step(env: gym.Env[str, str], action: str) -> StepResult:
    result = env.step(action)
    _check_step(env, result)
    return result


# -- numbers, as an agent might write them ----------------------------------------------------

DIGIT_SETS = (
    "0123456789",
    "٠١٢٣٤٥٦٧٨٩",  # Arabic-Indic
    "۰۱۲۳۴۵۶۷۸۹",  # Extended Arabic-Indic
    "०१२३४५६७८९",  # Devanagari
    "０１２３４５６７８９",  # fullwidth
    "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗",  # mathematical bold (outside the BMP)
)
LOOKALIKES = "²³¹½⅓Ⅻ①⁴₅"  # digits to the eye, not decimal digits to Unicode


@st.composite
def digit_runs(draw: st.DrawFn, ascii_only: bool = False, max_length: int = 8_100) -> str:
    """Digits of one script; lengths around the int-string limit (4,300 digits) and up to
    what fits in an action, built by repetition (drawing 8,000 characters one by one is slow)."""
    digits = "0123456789" if ascii_only else draw(st.sampled_from(DIGIT_SETS))
    chunk = draw(st.text(alphabet=digits, min_size=1, max_size=8))
    length = draw(
        st.one_of(st.integers(1, 30), st.integers(4_290, 4_310), st.integers(1, 8_100))
        if max_length >= 4_310
        else st.integers(1, max_length)
    )
    return (chunk * (length // len(chunk) + 1))[:length]


def _with_commas(digits: str) -> str:
    head = len(digits) % 3 or 3
    return ",".join([digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)])


@st.composite
def numbers(draw: st.DrawFn, max_length: int = 8_100) -> str:
    sign = draw(st.sampled_from(("", "-", "+", "−", "--", "- ")))
    whole = draw(digit_runs(max_length=max_length))
    if draw(st.booleans()):
        whole = _with_commas(whole)
    fraction = draw(
        st.one_of(
            st.just(""), st.just("."), digit_runs(max_length=max_length).map(lambda d: f".{d}")
        )
    )
    exponent = draw(st.sampled_from(("", "e5", "e999999", "E-999999", "e+10", "e", "e1.5")))
    return f"{sign}{whole}{fraction}{exponent}"


special_numbers = st.sampled_from(
    (
        "nan",
        "NaN",
        "-nan",
        "inf",
        "-inf",
        "Infinity",
        "1e999999",
        "-1e-999999",
        "1e" + "9" * 5000,
        "",
        "-",
        ".",
        "1.",
        ".5",
        "0x1F",
        "1_000",
        "1.2.3",
        "١٢,٣٤٥.٦٧",
        "٣.١٤١٥٩",
        "1/3",
        "²",
        LOOKALIKES,
    )
)
answer_bodies = st.one_of(
    numbers(),
    special_numbers,
    st.lists(
        st.one_of(numbers(), special_numbers, st.text(max_size=20)), min_size=1, max_size=4
    ).map(" ".join),
    st.text(max_size=200),
)
thinks = st.one_of(
    st.just(""),
    st.text(max_size=60).map(lambda t: f"<think>{t}</think>"),
    digit_runs().map(lambda d: f"<think>{d}</think>\n"),
    st.just("<think></think><think></think>"),
    st.just("<think>unclosed"),
)
whitespace = st.sampled_from(("", " ", "\n", "\t \n"))
answer_actions = st.builds(
    lambda think, before, body, after: f"{think}{before}<answer>{body}</answer>{after}",
    thinks,
    whitespace,
    answer_bodies,
    whitespace,
)

# -- tool calls with arbitrary JSON -----------------------------------------------------------


class Raw(str):
    """JSON text written as is: numbers that ``json.dumps`` cannot or will not write."""


class Nested:
    """``depth`` levels of arrays or objects around ``leaf``, rendered without recursion."""

    def __init__(self, depth: int, kind: str, leaf: Any) -> None:
        self.depth, self.kind, self.leaf = depth, kind, leaf

    def render(self) -> str:
        opening, closing = ("[", "]") if self.kind == "list" else ('{"a": ', "}")
        return opening * self.depth + _to_json(self.leaf) + closing * self.depth


def _to_json(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Nested):
        return value.render()
    if isinstance(value, dict):
        items = (f"{json.dumps(k)}: {_to_json(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_to_json(v) for v in value) + "]"
    return json.dumps(value)


raw_numbers = st.one_of(
    st.builds(
        lambda sign, digits: Raw(sign + digits), st.sampled_from(("", "-")), digit_runs(True)
    ),
    st.integers(MAX_JSON_INT_DIGITS - 2, MAX_JSON_INT_DIGITS + 2).map(lambda n: Raw("7" * n)),
    st.sampled_from(
        (
            Raw("1e999999"),
            Raw("-1e-999999"),
            Raw("1." + "3" * 5000),
            Raw("NaN"),
            Raw("Infinity"),
            Raw("-Infinity"),
            Raw("-0"),
            Raw("1E400"),
        )
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**40), 10**40),
    st.floats(),  # NaN and infinities included: json.dumps writes them as NaN/Infinity
    st.text(max_size=30),
    numbers(),  # strings holding numbers of any length
    st.sampled_from(("Paris", "paris ", "2026-01-01", "(12 + 7) * 3", "9" * 500, "1e999999")),
    raw_numbers,
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=12,
)
deeply_nested = st.builds(
    Nested,
    st.one_of(st.integers(MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH + 2), st.integers(1, 1_300)),
    st.sampled_from(("list", "dict")),
    scalars,
)
arbitrary_values = st.one_of(json_values, deeply_nested)
#: Every tool name any registered env declares, so that future envs and tools are covered.
TOOL_NAMES = sorted({t for s in llm_trainer.registry().values() for t in s.capabilities.tools})
tool_names = st.one_of(
    st.sampled_from(TOOL_NAMES),
    st.sampled_from(TOOL_NAMES).map(lambda n: f" {n.upper()}\t"),
    st.text(max_size=30),
    st.sampled_from(("", " ", "cálculator", "weather\x00", "\u202esearch", "计算器", "🔧")),
    arbitrary_values,  # not a string at all
)


def _parameter_names(env: gym.Env[str, str]) -> list[str]:
    names = {
        name
        for spec in _base(env).tools.specs
        for name in spec["function"]["parameters"].get("properties", {})
    }
    return sorted(names)


@st.composite
def tool_call_actions(draw: st.DrawFn, keys: list[str]) -> str:
    chosen = draw(st.lists(st.sampled_from(keys) | st.text(max_size=8), max_size=4, unique=True))
    arguments: Any = {key: draw(arbitrary_values) for key in chosen}
    if draw(st.integers(0, 9)) == 0:
        arguments = draw(arbitrary_values)  # not an object
    payload = {"name": draw(tool_names), "arguments": arguments}
    shape = draw(st.integers(0, 9))
    if shape == 0:
        payload["extra"] = draw(scalars)
    elif shape == 1:
        del payload["arguments"]
    think, before, after = draw(thinks), draw(whitespace), draw(whitespace)
    return f"{think}{before}<tool_call>{_to_json(payload)}</tool_call>{after}"


def _planned_call(task: Task | ProblemSpec, data: st.DataObject) -> str:
    plan: tuple[ToolCall, ...] = task.plan
    return data.draw(st.sampled_from(plan)).to_text() if plan else "<answer>0</answer>"


def _right_answers(task: Task | ProblemSpec) -> st.SearchStrategy[str]:
    """The expected answer as an agent might write it: other digits, any length."""
    answer = task.answer
    if isinstance(task, ProblemSpec) and task.domain.startswith("code/"):
        # code is case-sensitive: only what surrounds the fenced block may vary
        return st.sampled_from((answer, f"Here it is:\n{answer}\nDone.", f'"{answer}"'))
    if task.answer_kind != "number":
        return st.sampled_from((answer, f"  {answer.upper()}. ", f'"{answer}"'))
    sign, body = ("-", answer[1:]) if answer.startswith("-") else ("", answer)

    @st.composite
    def variants(draw: st.DrawFn) -> str:
        digits = draw(st.sampled_from(DIGIT_SETS))
        text = body.translate(str.maketrans("0123456789", digits))
        # At most about 8,050 characters in all: the action must fit in the text space.
        zeros = digits[0] * draw(st.one_of(st.integers(0, 3), st.integers(4_290, 6_000)))
        point = "" if "." in text else draw(st.sampled_from(("", ".")))
        trailing = digits[0] * draw(st.integers(0, 2_000)) if point or "." in text else ""
        return f"{sign}{zeros}{text}{point}{trailing} units"

    return variants()


# -- the properties ---------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ENV_IDS)
@given(seed=st.integers(0, 2**32 - 1), action=answer_actions)
def test_any_answer_is_judged_or_invalid_never_raised(env_id: str, seed: int, action: str) -> None:
    env = _reset(env_id, seed)
    _, reward, terminated, _, info = _step(env, action)
    assert _answer_handled(info, terminated)
    if _base(env).task.required_tools:
        assert not info["success"]  # no tool ran
    assert reward == _answer_reward(info, terminated)


@pytest.mark.parametrize("env_id", ENV_IDS)
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_any_tool_call_is_a_result_or_an_invalid_action_never_raised(
    env_id: str, seed: int, data: st.DataObject
) -> None:
    env = _reset(env_id, seed)
    action = data.draw(tool_call_actions(_parameter_names(env)))
    _, reward, terminated, _, info = _step(env, action)
    assert not terminated
    if not info["invalid_action"]:
        assert reward == 0.0
        assert info["role"] == "tool"


@pytest.mark.parametrize("env_id", ENV_IDS)
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_fuzzed_multi_step_episodes_never_raise(
    env_id: str, seed: int, data: st.DataObject
) -> None:
    env = _reset(env_id, seed)
    keys = _parameter_names(env)
    for _ in range(data.draw(st.integers(1, 12), label="steps")):
        task = _base(env).task
        action = data.draw(
            st.one_of(
                st.just(_planned_call(task, data)),  # keeps the real tools in the episode
                tool_call_actions(keys),
                answer_actions,
                _right_answers(task).map(lambda a: f"<answer>{a}</answer>"),
                st.text(max_size=80),
            ),
            label="action",
        )
        _, _, terminated, truncated, _ = _step(env, action)
        if terminated or truncated:
            env.reset()


@pytest.mark.parametrize("env_id", ENV_IDS)
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_the_tools_then_the_expected_answer_in_any_digits_and_length_succeeds(
    env_id: str, seed: int, data: st.DataObject
) -> None:
    env = _reset(env_id, seed)
    task = _base(env).task
    for call in task.plan:
        _step(env, call.to_text())
    answer = data.draw(_right_answers(task))
    _, reward, terminated, _, info = _step(env, f"<answer>{answer}</answer>")
    assert terminated
    assert info["answer_correct"], answer[:80]
    assert info["success"]
    assert reward == 1.0


@pytest.mark.parametrize("env_id", ENV_IDS)
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_the_tools_then_a_fuzzed_answer_ends_the_episode_or_is_invalid(
    env_id: str, seed: int, data: st.DataObject
) -> None:
    env = _reset(env_id, seed)
    for call in _base(env).task.plan:
        _, _, _, _, info = _step(env, call.to_text())
        assert not info["invalid_action"]
    _, reward, terminated, _, info = _step(env, data.draw(answer_actions))
    assert _answer_handled(info, terminated)
    assert reward == _answer_reward(info, terminated)


# The rule before numbers of any length were judged: exact, but only up to 4,300 digits.
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _previous_rule(given: str, expected: str) -> bool:
    numbers = _NUMBER.findall(given.replace(",", ""))
    if len(numbers) != 1:
        return False
    number = numbers[0]
    if "." not in number and "." not in expected:
        return int(number) == int(expected)
    return abs(Fraction(number) - Fraction(expected)) <= Fraction(1, 10**6)


expected_numbers = st.one_of(
    st.integers(-(10**9), 10**9).map(str),
    st.fractions(min_value=-(10**6), max_value=10**6, max_denominator=10**4).map(format_number),
)
short_numbers = st.builds(
    lambda sign, whole, fraction: f"{sign}{whole}{fraction}",
    st.sampled_from(("", "-")),
    st.text(alphabet=st.sampled_from(DIGIT_SETS).flatmap(st.sampled_from), min_size=1, max_size=40),
    st.one_of(st.just(""), st.integers(0, 10**9).map(lambda n: f".{n:07d}")),
)


@given(expected=expected_numbers, data=st.data())
def test_short_numbers_are_judged_as_before(expected: str, data: st.DataObject) -> None:
    value = Fraction(expected)
    near = st.sampled_from(
        (value, value + Fraction(1, 10**6), value - Fraction(1, 10**6), value + Fraction(1, 10**7))
    ).map(format_number)
    # At most 4,000 digits: the previous rule raised beyond 4,300.
    bounded = st.one_of(
        numbers(max_length=1_900),
        special_numbers,
        st.lists(numbers(max_length=400), min_size=1, max_size=4).map(" ".join),
        st.text(max_size=200),
    )
    given_text = data.draw(st.one_of(short_numbers, near, bounded))
    assert answer_matches(given_text, expected, "number") == _previous_rule(given_text, expected)


# -- regressions and bounds -------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_an_answer_with_a_ten_thousand_digit_number_is_judged_not_raised(env_id: str) -> None:
    # Each of these raised "ValueError: Exceeds the limit (4300 digits) for integer string
    # conversion" from env.step in every env before they were judged.
    for body in ("9" * 4_301, "9" * 4_301 + ".5", ",".join(["999"] * 1_500), "1." + "9" * 8_000):
        env = _env(env_id)
        env.reset(seed=0)
        _, reward, terminated, _, info = _step(env, f"<answer>{body}</answer>")
        assert _answer_handled(info, terminated)
        assert not info["invalid_action"]
        assert not info["answer_correct"]
        assert reward == 0.0
    # Ten thousand digits need a longer action than the default 8,192 characters.
    env = llm_trainer.make(env_id, max_text_length=20_000)
    for seed in range(50):
        env.reset(seed=seed)
        _, reward, terminated, _, info = _step(env, f"<answer>{'7' * 10_000}</answer>")
        assert _answer_handled(info, terminated)
        assert not info["invalid_action"]
        assert not info["answer_correct"]
        assert reward == 0.0
        task = _base(env).task
        if task.answer_kind == "number":  # and the right value, written with 10,000 digits
            env.reset(seed=seed)
            for call in task.plan:
                _step(env, call.to_text())
            sign, body = (
                ("-", task.answer[1:]) if task.answer.startswith("-") else ("", task.answer)
            )
            padded = sign + body.rjust(10_000, "0")
            _, reward, terminated, _, info = _step(env, f"<answer>{padded}</answer>")
            assert terminated
            assert info["success"]
            assert reward == 1.0
            break


def _huge_actions(n: int) -> dict[str, str]:
    """Actions of about ``n`` characters, shaped to make a careless parser or judge slow."""
    half = n // 2
    return {
        "digits": f"<answer>{'1' * n}</answer>",
        "one, two, ...": f"<answer>{'1,' * half}</answer>",
        "dotted": f"<answer>{'1.' * half}</answer>",
        "numbers": f"<answer>{'1 ' * half}</answer>",
        "unicode digits": f"<answer>{'٣' * n}</answer>",
        "text": f"<answer>{'a ' * half}</answer>",
        "open thinks": "<think>" * (n // 7) + "<answer>1</answer>",
        "unclosed think": "<think>" + "<" * n + "<answer>1</answer>",
        "closing tags": "<tool_call>" + "</tool_call> " * (n // 13),
        "trailing spaces": "<tool_call></tool_call>" + " " * n + "x",
        "leading spaces": " " * n + "<answer>1</answer>",
        "nested arrays": '<tool_call>{"name": "calculator", "arguments": {"x": '
        + "[" * half
        + "]" * half
        + "}}</tool_call>",
        "json integer": '<tool_call>{"name": "search", "arguments": {"k": '
        + "9" * n
        + "}}</tool_call>",
        "json float": '<tool_call>{"name": "search", "arguments": {"k": 1.'
        + "9" * n
        + "}}</tool_call>",
        "long argument": '<tool_call>{"name": "calculator", "arguments": {"expression": "'
        + "1+" * half
        + '1"}}</tool_call>',
        "long city": '<tool_call>{"name": "weather", "arguments": {"city": "'
        + "Paris" * (n // 5)
        + '", "date": "2026-01-01"}}</tool_call>',
        "long name": '<tool_call>{"name": "' + "x" * n + '", "arguments": {}}</tool_call>',
    }


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_actions_longer_than_the_text_space_are_invalid_with_a_clear_reason(env_id: str) -> None:
    env = _env(env_id)
    env.reset(seed=0)
    for name, action in _huge_actions(100_000).items():
        _, _, _, _, info = _step(env, action)
        assert info["invalid_reason"] == "action longer than 8192 characters", name


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_hundred_thousand_character_actions_take_linear_time(env_id: str) -> None:
    # An env that accepts long actions, so the parser, the judge and the tools see all of it.
    env = llm_trainer.make(env_id, max_text_length=300_000)
    for name, action in _huge_actions(100_000).items():
        env.reset(seed=0)
        start = time.perf_counter()
        _step(env, action)
        elapsed = time.perf_counter() - start
        # Linear work on 100k characters takes milliseconds; quadratic work, minutes.
        assert elapsed < 2.0, (name, elapsed)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_a_json_integer_of_thousands_of_digits_is_an_invalid_action_not_raised(
    env_id: str,
) -> None:
    # json.loads raised the int-string ValueError out of env.step for these.
    env = _env(env_id)
    env.reset(seed=0)
    for number in ("1" * 4_301, "-" + "9" * 8_000, "7" * (MAX_JSON_INT_DIGITS + 1)):
        for payload in (
            f'{{"name": "search", "arguments": {{"k": {number}}}}}',
            f'{{"name": {number}, "arguments": {{}}}}',
            f'{{"name": "calculator", "arguments": {{}}, "extra": [{number}]}}',
        ):
            _, _, _, _, info = _step(env, f"<tool_call>{payload}</tool_call>")
            assert info["invalid_reason"] == (
                f"tool call has a JSON integer of more than {MAX_JSON_INT_DIGITS} digits"
            )
    # Up to the bound, an integer is an argument like any other: the tool judges it.
    number = "7" * MAX_JSON_INT_DIGITS
    _, _, _, _, info = _step(
        env, f'<tool_call>{{"name": "search", "arguments": {{"k": {number}}}}}</tool_call>'
    )
    assert not info["invalid_action"]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_tool_call_arguments_nested_hundreds_deep_are_an_invalid_action_not_raised(
    env_id: str,
) -> None:
    # From about 450 levels, building the ToolCall overflowed the stack (RecursionError).
    env = _env(env_id)
    env.reset(seed=0)
    for depth in (MAX_JSON_DEPTH, 100, 450, 500, 900, 1_100):
        for kind in ("list", "dict"):
            value = Nested(depth, kind, 1).render()
            action = (
                f'<tool_call>{{"name": "calculator", "arguments": {{"x": {value}}}}}</tool_call>'
            )
            _, _, _, _, info = _step(env, action)
            assert info["invalid_action"], (depth, kind)
            assert "nest" in info["invalid_reason"]
    # The arguments object and MAX_JSON_DEPTH - 1 levels inside it reach the tool.
    value = Nested(MAX_JSON_DEPTH - 1, "list", 1).render()
    _, _, _, _, info = _step(
        env, f'<tool_call>{{"name": "calculator", "arguments": {{"x": {value}}}}}</tool_call>'
    )
    assert not info["invalid_action"]
    assert info["role"] == "tool"
