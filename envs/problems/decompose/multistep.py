"""The ``multistep`` family: word problems whose solution is a DAG of sub-problems.

Each problem is a story with several quantities to work out (shopping totals and change,
distances and an average speed, savings shared after a gift), generated together with its
reference decomposition: one :class:`~llm_trainer.envs.problems.spec.SubProblem` per
quantity, each one operation over numbers of the story and earlier sub-problems. Sub-problems
that do not depend on each other come side by side (Ava's pens and Ava's notebooks), and at
difficulty 3 one quantity feeds two others (a price that two buyers pay; the length of a leg
that is also part of the total time), so the decomposition is a DAG, not a chain.

| kind     | 1                        | 2                     | 3                               |
|----------|--------------------------|-----------------------|---------------------------------|
| shopping | one buyer, two products: | and the change from a | a price derived from another,   |
|          | the total (3 nodes)      | bill (4)              | two buyers, the difference (6)  |
| travel   | two legs: the distance   | the average speed (5) | a third leg as long as the      |
|          | (3)                      |                       | first two; average speed (7)    |
| savings  | two savers: the total    | a gift, the rest      | a third saver, the rest shared  |
|          | (3)                      | shared by two (5)     | by three (7)                    |

Every number is an integer and every division exact. The answer is one number, judged as in
the tool-use envs (``answer_matches``). ``spec.data["subanswers"]`` holds the value of each
reference sub-problem; ``spec.plan`` holds one calculator call per sub-problem.

>>> import numpy as np
>>> spec = MultiStepFamily(MultiStepConfig(kinds=("shopping",))).generate(
...     np.random.default_rng(0), 1)
>>> [(node.id, node.depends_on) for node in spec.subproblems]
[('s1', ()), ('s2', ()), ('s3', ('s1', 's2'))]
>>> spec.answer == spec.data["subanswers"]["s3"]
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from llm_trainer.core.records import FrozenDict, ToolCall
from llm_trainer.envs.problems.spec import (
    Check,
    EvaluationMetrics,
    ProblemFamily,
    ProblemSpec,
    SubProblem,
    check_choices,
)
from llm_trainer.envs.tooluse.base import Draws, answer_matches

KINDS = ("shopping", "travel", "savings")

_PEOPLE = (
    ("Ava", "She"), ("Ben", "He"), ("Cleo", "She"), ("Dev", "He"), ("Ella", "She"),
    ("Finn", "He"), ("Gia", "She"), ("Hugo", "He"), ("Iris", "She"), ("Jack", "He"),
    ("Kira", "She"), ("Leo", "He"), ("Maya", "She"), ("Noah", "He"), ("Omar", "He"),
    ("Pia", "She"), ("Quinn", "He"), ("Rosa", "She"), ("Sam", "He"), ("Tara", "She"),
)  # fmt: skip
_PRODUCTS = (
    ("pen", "pens"), ("notebook", "notebooks"), ("mug", "mugs"), ("scarf", "scarves"),
    ("candle", "candles"), ("ticket", "tickets"), ("plant", "plants"), ("book", "books"),
    ("kite", "kites"), ("lamp", "lamps"),
)  # fmt: skip
_BILLS = (20, 50, 100, 200, 500, 1000)
_WRONG = "wrong: not the right number (answer with one number)"


@dataclass(frozen=True, slots=True)
class MultiStepConfig:
    """Settings of the ``multistep`` family (the ``config`` of ``Decompose-v0``)."""

    kinds: tuple[str, ...] = KINDS
    """Kinds of stories drawn, uniformly, at every difficulty."""

    def __post_init__(self) -> None:
        check_choices("kinds", self.kinds, KINDS)


class _Story:
    """A problem built one sub-problem at a time: each is one operation (``+`` over any
    number of arguments, ``-``, ``*``, exact ``/``) over numbers of the story (ints) and
    earlier sub-problems (their ids)."""

    def __init__(self) -> None:
        self.sentences: list[str] = []
        self.nodes: list[SubProblem] = []
        self.values: dict[str, int] = {}
        self.expressions: dict[str, str] = {}
        self.calls: list[ToolCall] = []
        self.working: list[str] = []

    def add(self, question: str, op: str, *args: int | str) -> str:
        values = [self.values[a] if isinstance(a, str) else a for a in args]
        if op == "+":
            value = sum(values)
        elif op == "-":
            value = values[0] - values[1]
        elif op == "*":
            value = values[0] * values[1]
        else:
            assert op == "/", op
            assert values[0] % values[1] == 0, values
            value = values[0] // values[1]
        node_id = f"s{len(self.nodes) + 1}"
        depends = tuple(dict.fromkeys(a for a in args if isinstance(a, str)))
        over_numbers = f" {op} ".join(map(str, values))
        self.nodes.append(SubProblem(node_id, question, depends))
        self.values[node_id] = value
        self.expressions[node_id] = f" {op} ".join(
            str(a) if isinstance(a, int) else f"({self.expressions[a]})" for a in args
        )
        self.calls.append(ToolCall("calculator", {"expression": over_numbers}))
        self.working.append(f"{node_id}: {question} {over_numbers} = {value}.")
        return node_id

    def spec(self, kind: str, difficulty: int, question: str) -> ProblemSpec:
        root = self.nodes[-1].id
        answer = str(self.values[root])
        return ProblemSpec(
            domain=f"multistep/{kind}",
            statement=" ".join([*self.sentences, question, "Answer with a number."]),
            answer=answer,
            difficulty=difficulty,
            answer_format="a number",
            answer_kind="number",
            unique=True,
            solution=" ".join([*self.working, f"Answer: {answer}."]),
            subproblems=tuple(self.nodes),
            data=FrozenDict(
                {
                    "kind": kind,
                    "expression": self.expressions[root],
                    "subanswers": FrozenDict({k: str(v) for k, v in self.values.items()}),
                }
            ),
            plan=tuple(self.calls),
        )


def _hours(n: int) -> str:
    return f"{n} hour" if n == 1 else f"{n} hours"


def _two_people(d: Draws) -> tuple[tuple[str, str], tuple[str, str]]:
    first = d.pick(_PEOPLE)
    return first, d.pick([p for p in _PEOPLE if p != first])


def _shopping(d: Draws, difficulty: int) -> ProblemSpec:
    s = _Story()
    x, xs = d.pick(_PRODUCTS)
    y, ys = d.pick([product for product in _PRODUCTS if product[0] != x])
    (buyer, pronoun), (other, _) = _two_people(d)
    p = d.integer(2, 13)
    if difficulty < 3:
        q, a, b = d.integer(2, 16), d.integer(2, 10), d.integer(2, 10)
        s.sentences += [
            f"At a market, a {x} costs ${p} and a {y} costs ${q}.",
            f"{buyer} buys {a} {xs} and {b} {ys}.",
        ]
        first = s.add(f"How much does {buyer} pay for the {xs}?", "*", a, p)
        second = s.add(f"How much does {buyer} pay for the {ys}?", "*", b, q)
        total = s.add(f"How much does {buyer} pay in all?", "+", first, second)
        if difficulty == 1:
            return s.spec("shopping", difficulty, f"How much does {buyer} pay in all, in dollars?")
        bill = next(v for v in _BILLS if v > s.values[total])
        s.sentences.append(f"{pronoun} pays with a ${bill} bill.")
        s.add(f"How much change does {buyer} get?", "-", bill, total)
        return s.spec("shopping", difficulty, f"How much change does {buyer} get, in dollars?")
    k, a, b, c = d.integer(1, 10), d.integer(2, 8), d.integer(2, 8), d.integer(2, 10)
    if c * (p + k) == a * p + b * (p + k):  # no difference to ask about
        c += 1
    s.sentences += [
        f"At a market, a {x} costs ${p} and a {y} costs ${k} more than a {x}.",
        f"{buyer} buys {a} {xs} and {b} {ys}. {other} buys {c} {ys}.",
    ]
    price = s.add(f"How much does a {y} cost?", "+", p, k)  # feeds both buyers' sub-problems
    first = s.add(f"How much does {buyer} pay for the {xs}?", "*", a, p)
    second = s.add(f"How much does {buyer} pay for the {ys}?", "*", b, price)
    total = s.add(f"How much does {buyer} pay in all?", "+", first, second)
    others = s.add(f"How much does {other} pay for the {ys}?", "*", c, price)
    (more, more_id), (less, less_id) = sorted(
        ((buyer, total), (other, others)), key=lambda who: -s.values[who[1]]
    )
    question = f"How much more does {more} pay than {less}"
    s.add(f"{question}?", "-", more_id, less_id)
    return s.spec("shopping", difficulty, f"{question}, in dollars?")


def _travel(d: Draws, difficulty: int) -> ProblemSpec:
    s = _Story()
    driver, _ = d.pick(_PEOPLE)
    t1, t2, v1 = d.integer(1, 6), d.integer(1, 6), d.integer(30, 91)
    if difficulty == 1:
        v2 = d.integer(30, 91)
    else:  # t1 * v1 + t2 * v2 divisible by t1 + t2: v2 - v1 a multiple of this step
        step = (t1 + t2) // math.gcd(t1, t1 + t2)
        v2 = d.pick([v for v in range(30, 91) if (v - v1) % step == 0 and v != v1])
    s.sentences.append(
        f"{driver} drives for {_hours(t1)} at {v1} km/h, then for {_hours(t2)} at {v2} km/h."
    )
    first = s.add(f"How far does {driver} drive in the first part, in km?", "*", t1, v1)
    second = s.add(f"How far does {driver} drive in the second part, in km?", "*", t2, v2)
    if difficulty == 1:
        s.add(f"How far does {driver} drive in all, in km?", "+", first, second)
        return s.spec("travel", difficulty, f"How many kilometres does {driver} drive in all?")
    if difficulty == 2:
        distance = s.add(f"How far does {driver} drive in all, in km?", "+", first, second)
        time = s.add(f"How many hours does {driver} drive in all?", "+", t1, t2)
    else:
        # (t1 v1 + t2 v2) / (t1 + t2) = r; the total is (t1 + t2) (r + v3) over 2 (t1 + t2)
        # hours: exact when v3 has the parity of r
        r = (t1 * v1 + t2 * v2) // (t1 + t2)
        v3 = d.pick([v for v in range(30, 91) if (v - r) % 2 == 0])
        s.sentences.append(f"The third part takes as long as the first two together, at {v3} km/h.")
        third_time = s.add("How many hours does the third part take?", "+", t1, t2)
        third = s.add(f"How far does {driver} drive in the third part, in km?", "*", third_time, v3)
        distance = s.add(f"How far does {driver} drive in all, in km?", "+", first, second, third)
        time = s.add(f"How many hours does {driver} drive in all?", "+", t1, t2, third_time)
    question = f"What is {driver}'s average speed over the whole trip, in km/h?"
    s.add(question, "/", distance, time)
    return s.spec("travel", difficulty, question)


def _savings(d: Draws, difficulty: int) -> ProblemSpec:
    s = _Story()
    (first, _), (second, _) = _two_people(d)
    a, b, weeks = d.integer(3, 21), d.integer(3, 21), d.integer(2, 9)
    s.sentences.append(
        f"{first} saves ${a} each week and {second} saves ${b} each week, both for {weeks} weeks."
    )
    one = s.add(f"How much does {first} save?", "*", a, weeks)
    two = s.add(f"How much does {second} save?", "*", b, weeks)
    both = s.add(f"How much do {first} and {second} save together?", "+", one, two)
    if difficulty == 1:
        return s.spec(
            "savings", difficulty, f"How much do {first} and {second} save together, in dollars?"
        )
    if difficulty == 2:
        each = d.integer(1, s.values[both] // 2)
        gift = s.values[both] - 2 * each
        s.sentences.append(f"They buy a gift for ${gift} and share the rest equally.")
        left = s.add("How much is left after the gift?", "-", both, gift)
        s.add("How much does each of them get?", "/", left, 2)
        return s.spec("savings", difficulty, "How much does each of them get, in dollars?")
    third = d.pick([p for p, _ in _PEOPLE if p not in (first, second)])
    each = d.integer(1, s.values[both])
    gift = 3 * (s.values[both] - each)
    s.sentences += [
        f"{third} saves twice as much as {first} and {second} together.",
        f"The three buy a gift for ${gift} and share the rest equally.",
    ]
    three = s.add(f"How much does {third} save?", "*", both, 2)
    everyone = s.add("How much do the three save together?", "+", both, three)
    left = s.add("How much is left after the gift?", "-", everyone, gift)
    s.add("How much does each of the three get?", "/", left, 3)
    return s.spec("savings", difficulty, "How much does each of the three get, in dollars?")


_KIND_GENERATORS = {"shopping": _shopping, "travel": _travel, "savings": _savings}


class MultiStepFamily(ProblemFamily[MultiStepConfig]):
    """Word problems of 3-7 sub-problems that form a DAG; one exact number each.

    Criterion: ``correct`` (1 or 0). Success: score 1 (threshold 1.0).
    """

    name: ClassVar[str] = "multistep"
    config_class = MultiStepConfig
    metrics = EvaluationMetrics({"correct": 1.0}, success_threshold=1.0)

    def generate(self, rng: np.random.Generator, difficulty: int) -> ProblemSpec:
        d = Draws(rng, block=16)
        kind = d.pick(self.config.kinds)
        return _KIND_GENERATORS[kind](d, difficulty)

    def check(self, spec: ProblemSpec, answer: str) -> Check:
        if answer_matches(answer, spec.answer, "number"):
            return Check({"correct": 1.0})
        return Check({"correct": 0.0}, (_WRONG,))
