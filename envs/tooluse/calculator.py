"""``LLMTrainer/Calculator-v0``: arithmetic questions, solved by calling the calculator."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import ToolCall
from llm_trainer.envs.spaces import MAX_TEXT_LENGTH
from llm_trainer.envs.tools import ToolRegistry, calculator_tool
from llm_trainer.envs.tools.calculator import format_number
from llm_trainer.envs.tooluse.base import Draws, Task, ToolUseEnv

_ONES = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_to_words(n: int) -> str:
    """English words for an integer with ``abs(n) < 10**6``.

    >>> number_to_words(312), number_to_words(-45), number_to_words(20_017)
    ('three hundred twelve', 'minus forty-five', 'twenty thousand seventeen')
    """
    if n < 0:
        return f"minus {number_to_words(-n)}"
    if n >= 10**6:
        raise ValueError(f"number_to_words supports |n| < 10**6, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else "")
    if n < 1000:
        rest = f" {number_to_words(n % 100)}" if n % 100 else ""
        return f"{_ONES[n // 100]} hundred{rest}"
    rest = f" {number_to_words(n % 1000)}" if n % 1000 else ""
    return f"{number_to_words(n // 1000)} thousand{rest}"


# Difficulty 1: two operands, + - *, in symbols or with the operator in words.
_D1_SYMBOLS = (
    "What is {a} {op} {b}?",
    "Compute {a} {op} {b}.",
    "Calculate {a} {op} {b}.",
    "{a} {op} {b} = ?",
)
_D1_WORDS = {
    "+": ("What is {a} plus {b}?", "Add {a} and {b}.", "What is the sum of {a} and {b}?"),
    "-": ("What is {a} minus {b}?", "Subtract {b} from {a}.", "What is {a} take away {b}?"),
    "*": ("What is {a} times {b}?", "Multiply {a} by {b}.", "What is the product of {a} and {b}?"),
}
# Difficulty 2: three operands with / (always exact) and brackets; symbols, or a sequence of
# operations with the numbers in words.
_CALCULATOR = frozenset({"calculator"})
_STEP_WORDS = {"+": "add {x}", "-": "subtract {x}", "*": "multiply by {x}", "/": "divide by {x}"}


# A generator returns (prompt, expression, exact value). It computes the value itself rather
# than asking the calculator, so the answers are an independent check on the tool.
Generated = tuple[str, str, Fraction]
#: The phrasings of difficulties 1 and 2 (``CalculatorEnv(form=...)``).
FORMS = ("symbols", "words")


def _symbols(d: Draws, form: str | None) -> bool:
    """Whether a task is phrased in symbols: a fair coin, drawn even when ``form`` decides, so
    that one seed gives the same numbers in every form."""
    coin = d.uniform() < 0.5
    return coin if form is None else form == "symbols"


def _d1(d: Draws, form: str | None = None) -> Generated:
    op = d.pick(("+", "-", "*"))
    if op == "*":
        a, b = d.integer(2, 100), d.integer(2, 13)
        if d.uniform() < 0.5:
            a, b = b, a
    else:
        a, b = d.integer(0, 100), d.integer(0, 100)
    value = a + b if op == "+" else a - b if op == "-" else a * b
    if _symbols(d, form):
        prompt = d.pick(_D1_SYMBOLS).format(a=a, b=b, op=op)
    else:
        prompt = d.pick(_D1_WORDS[op]).format(a=a, b=b)
    return prompt, f"{a} {op} {b}", Fraction(value)


def _d2(d: Draws, form: str | None = None) -> Generated:
    a = value = d.integer(2, 1000)
    steps: list[tuple[str, int]] = []
    for _ in range(2):
        op = d.pick(("+", "-", "*", "/"))
        divisors = [k for k in range(2, 13) if value % k == 0]
        if op == "/" and not divisors:  # keep division exact: fall back to addition
            op = "+"
        if op == "/":
            x = d.pick(divisors)
            value //= x
        elif op == "*":
            x = d.integer(2, 13)
            value *= x
        else:
            x = d.integer(2, 1000)
            value = value + x if op == "+" else value - x
        steps.append((op, x))
    (op1, b), (op2, c) = steps
    expression = f"({a} {op1} {b}) {op2} {c}"
    if _symbols(d, form):
        template = d.pick(("What is {e}?", "Compute {e}.", "Evaluate {e}."))
        return template.format(e=expression), expression, Fraction(value)
    first, second = (_STEP_WORDS[op].format(x=number_to_words(x)) for op, x in steps)
    prompt = f"Start with {number_to_words(a)}, {first}, then {second}. What is the result?"
    return prompt, expression, Fraction(value)


def _d3(d: Draws, form: str | None = None) -> Generated:
    kind = d.integer(0, 6)
    if kind == 0:
        price = Fraction(d.integer(500, 20000), 100)
        pct = d.pick((5, 10, 15, 20, 25, 30, 40))
        p = format_number(price)
        prompt = (
            f"A jacket costs {p} dollars and is discounted by {pct}%. What is the new "
            "price in dollars?"
        )
        return prompt, f"{p} * (100 - {pct}) / 100", price * (100 - pct) / 100
    if kind == 1:
        pct, base = d.integer(1, 100), d.integer(20, 5000)
        return f"What is {pct}% of {base}?", f"{base} * {pct} / 100", Fraction(base * pct, 100)
    if kind == 2:
        root = d.integer(11, 200)
        square = root * root
        return f"What is the square root of {square}?", f"sqrt({square})", Fraction(root)
    if kind == 3:
        base, exp = d.integer(2, 13), d.integer(3, 9)
        return f"What is {base} to the power of {exp}?", f"{base} ** {exp}", Fraction(base**exp)
    if kind == 4:
        a, b = d.integer(100, 10000), d.integer(3, 97)
        return f"What is the remainder when {a} is divided by {b}?", f"{a} % {b}", Fraction(a % b)
    w, h = Fraction(d.integer(10, 400), 10), Fraction(d.integer(10, 400), 10)
    n = d.integer(2, 10)
    ws, hs = format_number(w), format_number(h)
    prompt = (
        f"A field is {ws} m wide and {hs} m long. What is the total area of {n} such "
        "fields in square metres?"
    )
    return prompt, f"{n} * {ws} * {hs}", n * w * h


_GENERATORS = {1: _d1, 2: _d2, 3: _d3}


def check_form(form: object, difficulty: int, env_name: str) -> str | None:
    """``form`` as one of :data:`FORMS` (or ``None``: both), for a difficulty that has it.

    Raises:
        ConfigError: in one line naming the env, the value and what is allowed.
    """
    if form is None:
        return None
    if form not in FORMS:
        raise ConfigError(f"{env_name}: form must be one of {list(FORMS)} or None, got {form!r}")
    if difficulty not in (1, 2):
        raise ConfigError(
            f"{env_name}: form={form!r} applies to difficulties 1 and 2 (difficulty 3 is word "
            f"problems only), got difficulty {difficulty}"
        )
    return str(form)


def sample_calculator_task(
    rng: np.random.Generator, difficulty: int, form: str | None = None
) -> Task:
    """Draw a calculator task (also used by ``MultiTool-v0``); ``form`` fixes the phrasing of
    difficulties 1 and 2 (see :class:`CalculatorEnv`)."""
    prompt, expression, value = _GENERATORS[difficulty](Draws(rng), form)
    return Task(
        prompt=prompt,
        answer=format_number(value),
        answer_kind="number",
        plan=(ToolCall("calculator", {"expression": expression}),),
        required_tools=_CALCULATOR,
        allowed_tools=_CALCULATOR,
    )


class CalculatorEnv(ToolUseEnv):
    """Arithmetic questions in words and symbols; the agent calls the calculator, then answers.

    ## Description
    Each episode asks one arithmetic question. The agent should call the ``calculator`` tool
    with the expression, read the result and reply ``<answer>RESULT</answer>``. The calculator
    is exact and never uses ``eval`` (see :mod:`llm_trainer.envs.tools.calculator`).

    ## Difficulty
    | level | tasks                                                                         |
    |-------|-------------------------------------------------------------------------------|
    | 1     | ``a op b`` with ``op`` in + - * and operands < 100, in symbols or words        |
    |       | ("What is 12 plus 7?")                                                        |
    | 2     | ``(a op b) op c`` with + - * / (division always exact), in symbols or as a      |
    |       | sequence of steps with the numbers spelled out                                |
    | 3     | word problems: discounts, percentages, square roots, powers, remainders, areas |
    |       | with decimals                                                                 |

    ## Action Space, Observation Space, Rewards, Episode End, Info
    As in :class:`~llm_trainer.envs.tooluse.base.ToolUseEnv`: the completion as text; the
    prompt, then tool results; +1.0 for a correct answer after a successful calculator call,
    -0.1 per invalid action; ends on the answer or at ``max_episode_steps`` (6).

    ## Starting State
    A question drawn from ``self.np_random`` at the episode's difficulty.

    ## Arguments
    ``difficulty`` (1-3, default 1; also ``reset(options={"difficulty": d})``), ``form``
    (``None``, the default: either phrasing with probability 1/2; ``"symbols"`` or ``"words"``:
    that phrasing only, at difficulties 1 and 2; a seed draws the same numbers in either),
    ``render_mode`` (``None`` or ``"ansi"``), ``max_text_length`` (default 8192 characters).

    ## Version History
    * v0: initial version; later, the ``form`` argument (its default draws every task exactly
      as before).

    ## Example
    >>> import gymnasium as gym, llm_trainer
    >>> env = gym.make("LLMTrainer/Calculator-v0")
    >>> prompt, info = env.reset(seed=0)
    >>> expression = env.unwrapped.task.plan[0].arguments["expression"]
    >>> call = '<tool_call>{"name": "calculator", "arguments": {"expression": "%s"}}</tool_call>'
    >>> result, reward, terminated, truncated, info = env.step(call % expression)
    >>> _, reward, terminated, _, info = env.step(f"<answer>{result}</answer>")
    >>> reward, terminated, info["success"]
    (1.0, True, True)
    """

    def __init__(
        self,
        difficulty: int = 1,
        *,
        form: str | None = None,
        render_mode: str | None = None,
        max_text_length: int = MAX_TEXT_LENGTH,
    ) -> None:
        super().__init__(
            ToolRegistry([calculator_tool()]),
            difficulty,
            render_mode=render_mode,
            max_text_length=max_text_length,
        )
        self.form = check_form(form, self.difficulty, self.env_name)

    def _sample_task(self, rng: np.random.Generator, difficulty: int) -> Task:
        # a reset option may change the difficulty: the form must still apply to it
        return sample_calculator_task(
            rng, difficulty, check_form(self.form, difficulty, self.env_name)
        )
