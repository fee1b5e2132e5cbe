"""``LLMTrainer/Reasoning-v0``: multi-step arithmetic word problems and logic puzzles with one
exact answer each.

Three kinds, drawn uniformly among ``config.kinds`` at every difficulty:

* ``arithmetic``: a GSM8K-like story of 2-4 steps (buying, giving away, packs, doubling,
  sharing) generated with its ground truth, a worked solution and a sub-problem per step.
  Answer: a number (judged exactly, as in the tool-use envs: ``19``, ``19 apples``).
* ``ordering``: "Ava is taller than Ben..." with a unique answer, checked by brute force over
  every order when the clues are drawn. Difficulty 1 asks for the tallest (answer: a name),
  2 and 3 for the full order (answer: the names separated by commas, tallest first).
* ``knights``: knights always tell the truth, knaves always lie; one statement each, a unique
  solution checked by brute force over every assignment. Answer: the knights' names separated
  by commas in any order, or ``none``.

Names and list answers are compared exactly after case folding, trimming and dropping
surrounding quotes and a final period; ``and`` may stand for a comma.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import FrozenDict, ToolCall
from llm_trainer.envs.problems.spec import (
    Check,
    EvaluationMetrics,
    ProblemFamily,
    ProblemSpec,
    SubProblem,
    check_choices,
    check_per_difficulty,
    split_items,
)
from llm_trainer.envs.tooluse.base import Draws, answer_matches

KINDS = ("arithmetic", "ordering", "knights")
T = TypeVar("T")

_PEOPLE = (
    ("Ava", "She"), ("Ben", "He"), ("Cleo", "She"), ("Dev", "He"), ("Ella", "She"),
    ("Finn", "He"), ("Gia", "She"), ("Hugo", "He"), ("Iris", "She"), ("Jack", "He"),
    ("Kira", "She"), ("Leo", "He"), ("Maya", "She"), ("Noah", "He"), ("Omar", "He"),
    ("Pia", "She"), ("Quinn", "He"), ("Rosa", "She"), ("Sam", "He"), ("Tara", "She"),
    ("Umar", "He"), ("Vera", "She"), ("Wes", "He"), ("Yara", "She"), ("Zane", "He"),
    ("Lena", "She"), ("Ravi", "He"), ("Nina", "She"), ("Theo", "He"), ("Mila", "She"),
)  # fmt: skip
_NAMES = tuple(name for name, _ in _PEOPLE)
_ITEMS = (
    "apples", "marbles", "stickers", "books", "pencils", "cookies", "stamps", "shells",
    "coins", "cards", "beads", "crayons", "eggs", "plums", "buttons", "candles",
)  # fmt: skip
_CONTAINERS = ("bags", "boxes", "packs", "jars", "crates")
#: (comparative, opposite comparative, superlative, opposite superlative)
_RELATIONS = (
    ("taller", "shorter", "tallest", "shortest"),
    ("older", "younger", "oldest", "youngest"),
    ("faster", "slower", "fastest", "slowest"),
    ("heavier", "lighter", "heaviest", "lightest"),
)
_NUMBER_WORDS = ("", "one", "two", "three", "four", "five", "six", "seven", "eight")


@dataclass(frozen=True, slots=True)
class ReasoningConfig:
    """Templates and difficulty parameters of ``Reasoning-v0`` (the env's ``config``)."""

    kinds: tuple[str, ...] = KINDS
    """Kinds of problems drawn, uniformly, at every difficulty."""
    steps: tuple[int, int, int] = (2, 3, 4)
    """Arithmetic: operations in the story at difficulties 1, 2, 3 (difficulty 3 also adds a
    sentence with an irrelevant number)."""
    people: tuple[int, int, int] = (3, 4, 5)
    """Ordering: people to order at difficulties 1, 2, 3."""
    inhabitants: tuple[int, int, int] = (2, 3, 4)
    """Knights and knaves: inhabitants at difficulties 1, 2, 3."""
    max_attempts: int = 20
    """Knights and knaves: random statement sets tried before a construction that is unique
    by design (every draw is checked by brute force either way)."""

    def __post_init__(self) -> None:
        check_choices("kinds", self.kinds, KINDS)
        check_per_difficulty("steps", self.steps, 1, 8)
        check_per_difficulty("people", self.people, 2, 7)
        check_per_difficulty("inhabitants", self.inhabitants, 2, 6)
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigError(f"config.max_attempts must be an int >= 1, got {attempts!r}")


# -- arithmetic word problems -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Step:
    sentence: str
    expression: str
    """The running expression after this step (over the previous one)."""
    working: str
    """The step of the worked solution: ``24 - 5 = 19``."""
    value: int


def _arithmetic_step(
    d: Draws, kinds: tuple[str, ...], value: int, expr: str, p: str, item: str
) -> _Step:
    """One step of the story from ``value`` (whose expression is ``expr``) for pronoun ``p``."""
    kind = d.pick(kinds)
    whose = "her" if p == "She" else "his"
    grouped = expr if expr.isdecimal() else f"({expr})"
    if kind == "share":
        divisors = [k for k in range(2, 7) if value % k == 0]
        if not divisors:
            kind = "buy"
        else:
            k = d.pick(divisors)
            new = value // k
            return _Step(
                f"{p} shares {whose} {item} equally among {k} friends and keeps one share.",
                f"{grouped} / {k}", f"{value} / {k} = {new}.", new,
            )  # fmt: skip
    if kind == "give" and value > 1:
        k = d.integer(1, value)
        return _Step(
            f"{p} gives {k} away.", f"{expr} - {k}", f"{value} - {k} = {value - k}.", value - k
        )
    if kind == "packs":
        g, k = d.integer(2, 6), d.integer(2, 13)
        container = d.pick(_CONTAINERS)
        new = value + g * k
        return _Step(
            f"{p} buys {g} {container} with {k} each.",
            f"{expr} + {g} * {k}", f"{value} + {g} × {k} = {new}.", new,
        )  # fmt: skip
    if kind == "times":
        m = d.integer(2, 4)
        word = "doubles" if m == 2 else "triples"
        return _Step(
            f"{p} then {word} {whose} {item}.", f"{grouped} * {m}", f"{value} × {m} = {value * m}.",
            value * m,
        )  # fmt: skip
    k = d.integer(2, 30)
    return _Step(f"{p} buys {k} more.", f"{expr} + {k}", f"{value} + {k} = {value + k}.", value + k)


_STEP_KINDS = {
    1: ("buy", "give", "packs"),
    2: ("buy", "give", "packs", "times", "share"),
    3: ("buy", "give", "packs", "times", "share"),
}


def _arithmetic(d: Draws, difficulty: int, steps: int) -> ProblemSpec:
    (name, pronoun), item = d.pick(_PEOPLE), d.pick(_ITEMS)
    start = d.integer(3, 10 * difficulty + 20)
    value, expr = start, str(start)
    sentences = [f"{name} has {start} {item}."]
    working = [f"{name} starts with {start}."]
    nodes: list[SubProblem] = []
    for i in range(steps):
        step = _arithmetic_step(d, _STEP_KINDS[difficulty], value, expr, pronoun, item)
        value, expr = step.value, step.expression
        sentences.append(step.sentence)
        working.append(step.working)
        depends = (f"s{i}",) if i else ()
        said = name + step.sentence.removeprefix(pronoun)
        nodes.append(SubProblem(f"s{i + 1}", f"How many {item} after this: {said}", depends))
    if difficulty == 3:  # a distractor: a number the answer does not depend on
        other = d.pick([n for n in _NAMES if n != name])
        at = 1 + d.integer(0, len(sentences))
        sentences.insert(at, f"{other} has {d.integer(2, 40)} {item}.")
        if at + 1 < len(sentences):  # the next step names its subject again: not "He" here
            sentences[at + 1] = name + sentences[at + 1].removeprefix(pronoun)
    question = f"How many {item} does {name} have now? Answer with a number."
    return ProblemSpec(
        domain="reasoning/arithmetic",
        statement=" ".join([*sentences, question]),
        answer=str(value),
        difficulty=difficulty,
        constraints=(),
        objectives=(),
        answer_format="a number",
        answer_kind="number",
        unique=True,
        solution=" ".join([*working, f"Answer: {value}."]),
        subproblems=tuple(nodes),
        data=FrozenDict({"kind": "arithmetic"}),
        plan=(ToolCall("calculator", {"expression": expr}),),
    )


# -- orderings --------------------------------------------------------------------------------


@functools.cache
def _order_sets(n: int) -> tuple[dict[tuple[int, int], int], tuple[int, ...], int]:
    """Brute force over every order of ``n`` people, as bit sets over the n! orders (bit k is
    the k-th permutation of ranks): for each clue ``(a, b)`` the orders in which a ranks before
    b; for each person the orders in which they rank first; and the set of all orders."""
    ranks = list(itertools.permutations(range(n)))  # ranks[k][i]: place of person i
    before = {
        (a, b): sum(1 << k for k, r in enumerate(ranks) if r[a] < r[b])
        for a in range(n)
        for b in range(n)
        if a != b
    }
    first = tuple(sum(1 << k for k, r in enumerate(ranks) if r[p] == 0) for p in range(n))
    return before, first, (1 << len(ranks)) - 1


def _determined(n: int, clues: list[tuple[int, int]], full: bool) -> bool:
    """Whether exactly one order (``full``), or one first person, meets every clue."""
    before, first, orders = _order_sets(n)
    for clue in clues:
        orders &= before[clue]
    if full:
        return orders.bit_count() == 1
    return sum(1 for f in first if orders & f) == 1


def _ordering(d: Draws, difficulty: int, n: int) -> ProblemSpec:
    names = _sample(d, _NAMES, n)
    more, less, most, least = d.pick(_RELATIONS)
    rank = _sample(d, tuple(range(n)), n)  # rank[i]: place of person i (0 = the most)
    full = difficulty > 1
    ask_least = not full and d.uniform() < 0.5
    if ask_least:  # "who is the shortest": the same puzzle with the order reversed
        rank = tuple(n - 1 - r for r in rank)
        more, less, most, least = less, more, least, most
    true_pairs = [(a, b) for a in range(n) for b in range(n) if rank[a] < rank[b]]
    clues: list[tuple[int, int]] = []
    # add random true clues until the question has one answer ...
    for pair in _sample(d, true_pairs, len(true_pairs)):
        clues.append(pair)
        if _determined(n, clues, full):
            break
    for pair in list(clues):  # ... then drop the ones it does not need
        rest = [c for c in clues if c != pair]
        if _determined(n, rest, full):
            clues = rest
    assert _determined(n, clues, full)  # all true pairs determine the order
    sentences = [
        f"{names[a]} is {more} than {names[b]}."
        if d.uniform() < 0.5
        else f"{names[b]} is {less} than {names[a]}."
        for a, b in clues
    ]
    order = sorted(range(n), key=lambda i: rank[i])
    if full:
        answer = ", ".join(names[i] for i in order)
        question = (
            f"List all {_NUMBER_WORDS[n] or n} from {most} to {least}, names separated by commas."
        )
        answer_format = f"the names separated by commas, {most} first"
    else:
        answer = names[order[0]]
        question = f"Who is the {most}? Answer with a name."
        answer_format = "a name"
    return ProblemSpec(
        domain="reasoning/ordering",
        statement=" ".join([*sentences, question]),
        answer=answer,
        difficulty=difficulty,
        constraints=tuple(s.rstrip(".") for s in sentences),
        answer_format=answer_format,
        unique=True,
        data=FrozenDict({"kind": "ordering", "names": names}),
    )


def _sample(d: Draws, options: Sequence[T], k: int) -> tuple[T, ...]:
    """``k`` distinct elements of ``options`` in random order (a partial Fisher-Yates)."""
    pool = list(options)
    for i in range(k):
        j = i + d.integer(0, len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
    return tuple(pool[:k])


# -- knights and knaves -----------------------------------------------------------------------

# A statement: (kind, x, y, positive). kinds: "is" (x is a knight), "both" (x and y are
# knights), "either" (at least one of x, y is a knight), "same" (x and y are the same kind).
# The negative form of each is its negation: "x is a knave", "at least one of x and y is a
# knave", "x and y are both knaves", "x and y are different kinds".
_Statement = tuple[str, int, int, bool]
_TRUTH: dict[str, Callable[[bool, bool], bool]] = {
    "is": lambda x, y: x,
    "both": lambda x, y: x and y,
    "either": lambda x, y: x or y,
    "same": lambda x, y: x == y,
}


def _holds(statement: _Statement, knights: tuple[bool, ...]) -> bool:
    kind, x, y, positive = statement
    return _TRUTH[kind](knights[x], knights[y]) == positive


@functools.cache
def _assignments(n: int) -> tuple[tuple[bool, ...], ...]:
    return tuple(itertools.product((True, False), repeat=n))


def _solutions(statements: list[_Statement]) -> list[tuple[bool, ...]]:
    """Every knight/knave assignment under which each speaker's statement is true exactly when
    the speaker is a knight (speaker i made statements[i])."""
    n = len(statements)
    return [
        a for a in _assignments(n) if all(_holds(s, a) == a[i] for i, s in enumerate(statements))
    ]


def _say(statement: _Statement, speaker: int, names: tuple[str, ...]) -> str:
    kind, x, y, positive = statement

    # x is never the speaker, y may be: "Ben and I", never "I and Ben"
    a, b = names[x], "I" if y == speaker else names[y]
    if kind == "is":
        return f"{a} is a {'knight' if positive else 'knave'}"
    if kind == "both":
        return (
            f"{a} and {b} are both knights"
            if positive
            else f"at least one of {a} and {b} is a knave"
        )
    if kind == "either":
        return (
            f"at least one of {a} and {b} is a knight"
            if positive
            else f"{a} and {b} are both knaves"
        )
    return f"{a} and {b} are the same kind" if positive else f"{a} and {b} are different kinds"


def _knights(d: Draws, difficulty: int, n: int, attempts: int) -> ProblemSpec:
    names = _sample(d, _NAMES, n)
    knights = tuple(d.uniform() < 0.5 for _ in range(n))
    statements: list[_Statement] = []
    for _ in range(attempts):
        statements = []
        for speaker in range(n):
            kind = d.pick(("is", "both", "either", "same"))
            others = [i for i in range(n) if i != speaker]
            x = d.pick(others)
            y = d.pick([i for i in range(n) if i != x])  # may be the speaker
            statement = (kind, x, y, True)
            # a knight's statement is true, a knave's false: negate it when it does not fit
            statements.append(statement if _holds(statement, knights) == knights[speaker]
                              else (kind, x, y, False))  # fmt: skip
        if len(_solutions(statements)) == 1:
            break
    else:
        # Unique by design: "X and I are the same kind" is true for a knight exactly when X is
        # a knight, and false for a knave exactly when X is a knight; so it pins X's type.
        # Each speaker pins the next one, around the circle.
        statements = [("same", (i + 1) % n, i, knights[(i + 1) % n]) for i in range(n)]
    assert _solutions(statements) == [knights]
    said = [_say(s, i, names) for i, s in enumerate(statements)]
    quotes = [f'{names[i]} says: "{text[0].upper()}{text[1:]}."' for i, text in enumerate(said)]
    chosen = [names[i] for i in range(n) if knights[i]]
    return ProblemSpec(
        domain="reasoning/knights-and-knaves",
        statement=(
            "Knights always tell the truth and knaves always lie. "
            + " ".join(quotes)
            + " Who are the knights? Answer with their names separated by commas, or none."
        ),
        answer=", ".join(chosen) if chosen else "none",
        difficulty=difficulty,
        constraints=tuple(quotes),
        answer_format="the knights' names separated by commas (any order), or none",
        unique=True,
        data=FrozenDict({"kind": "knights", "names": names}),
    )


# -- the family -------------------------------------------------------------------------------


class ReasoningFamily(ProblemFamily[ReasoningConfig]):
    """Arithmetic word problems, orderings, knights and knaves: one exact answer each.

    Criterion: ``correct`` (1 or 0). Success: score 1 (threshold 1.0).
    """

    name = "reasoning"
    config_class = ReasoningConfig
    metrics = EvaluationMetrics({"correct": 1.0}, success_threshold=1.0)

    def generate(self, rng: np.random.Generator, difficulty: int) -> ProblemSpec:
        c = self.config
        d = Draws(rng, block=32)
        kind = d.pick(c.kinds)
        if kind == "arithmetic":
            return _arithmetic(d, difficulty, c.steps[difficulty - 1])
        if kind == "ordering":
            return _ordering(d, difficulty, c.people[difficulty - 1])
        return _knights(d, difficulty, c.inhabitants[difficulty - 1], c.max_attempts)

    def check(self, spec: ProblemSpec, answer: str) -> Check:
        kind = spec.data["kind"]
        if kind == "arithmetic":
            correct = answer_matches(answer, spec.answer, "number")
            reason = "wrong: not the right number (answer with one number)"
        elif kind == "knights":
            given = split_items(answer)
            expected = split_items(spec.answer)
            correct = sorted(given) == sorted(expected) and len(set(given)) == len(given)
            reason = "wrong: not the set of knights"
        else:
            correct = split_items(answer) == split_items(spec.answer)
            names = {n.casefold() for n in spec.data["names"]}
            unknown = [n for n in split_items(answer) if n not in names]
            reason = (
                f"wrong: {unknown[0]!r} is not one of the people"
                if unknown and len(unknown[0]) <= 40
                else "wrong: not the right order"
                if "," in spec.answer
                else "wrong: not the right person"
            )
        if correct:
            return Check({"correct": 1.0})
        return Check({"correct": 0.0}, (reason,))
