"""The templates of ``Code-v0``: function-synthesis tasks with a reference implementation.

A template draws its parameters (a threshold, a base, coin values, a rule's wording) from a
:class:`~llm_trainer.envs.tooluse.base.Draws` and returns a :class:`FunctionTask`: the
function's signature, what it must return (the statement's description), the source of a
correct implementation, edge-case inputs and a generator of random inputs. The family
(:mod:`.family`) turns it into a :class:`~llm_trainer.envs.problems.spec.ProblemSpec` with
hidden tests whose expected outputs the reference computes, outside the sandbox.

The reference is written once, as source: it is both the oracle's answer and the ground truth
(executed here, in the judge's process: it is our code, not the agent's), so the two can never
disagree. ``tests/envs/test_code_env.py`` checks each template's reference against values
worked out by hand.

Difficulty 1: list, string and number transforms (``count_values``, ``transform``,
``shift_letters``, ``sum_multiples``, ``long_words``). Difficulty 2: small algorithms with
edge cases (``rotate``, ``compress``, ``kth_largest``, ``balanced``, ``merge_intervals``,
``to_base``). Difficulty 3: multi-condition rules and dynamic programming (``count_ways``,
``min_coins``, ``longest_subsequence``, ``edit_cost``, ``label``, ``grid_paths``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from llm_trainer.envs.tooluse.base import Draws

Args = tuple[Any, ...]
"""The arguments of one call: JSON values only (ints, strings, lists, booleans, None)."""


@dataclass(frozen=True, slots=True)
class FunctionTask:
    """One drawn function-synthesis task, before its tests are drawn."""

    function: str
    """The function's name (what the harness calls)."""
    signature: str
    """``name(arg: type, ...) -> type``: how the statement writes the ``def`` line."""
    description: str
    """What the function must return, in words, with every drawn parameter."""
    reference: str
    """The source of a correct implementation (the oracle's answer, the ground truth)."""
    edge_cases: tuple[Args, ...]
    """Inputs where implementations tend to go wrong (empty lists, zero, negatives...)."""
    random_args: Callable[[Draws], Args]
    """Draws one random input."""
    parameters: Mapping[str, Any]
    """The drawn parameters, by name (recorded in the spec's data: what a test checks the
    reference against, what an analysis groups by)."""


class Template(NamedTuple):
    """A template and the difficulty it belongs to."""

    difficulty: int
    draw: Callable[[Draws], FunctionTask]


def _ints(d: Draws, max_length: int, low: int, high: int, min_length: int = 0) -> list[int]:
    """A list of ``min_length..max_length`` ints in ``[low, high]``."""
    return [d.integer(low, high + 1) for _ in range(d.integer(min_length, max_length + 1))]


def _text(d: Draws, alphabet: str, max_length: int) -> str:
    return "".join(d.pick(alphabet) for _ in range(d.integer(0, max_length + 1)))


def _listing(items: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _distinct(d: Draws, k: int, low: int, high: int) -> list[int]:
    """``k`` distinct ints in ``[low, high]``, ascending."""
    chosen: set[int] = set()
    while len(chosen) < k:
        chosen.add(d.integer(low, high + 1))
    return sorted(chosen)


def _signed(a: int, b: int) -> str:
    """``a * x + b`` written as people write it (``3 * x - 2``)."""
    return f"{a} * x {'+' if b >= 0 else '-'} {abs(b)}"


# -- difficulty 1: transforms -----------------------------------------------------------------

_COMPARISONS = (("greater than", ">"), ("less than", "<"), ("at least", ">="), ("at most", "<="))


def count_values(d: Draws) -> FunctionTask:
    words, op = d.pick(_COMPARISONS)
    t = d.integer(-5, 11)
    return FunctionTask(
        "count_values",
        "count_values(nums: list[int]) -> int",
        f"Return how many numbers in `nums` are {words} {t}.",
        "def count_values(nums: list[int]) -> int:\n"
        f"    return sum(1 for x in nums if x {op} {t})\n",
        (([],), ([t],), ([t - 1, t, t + 1],), ([t] * 4,)),
        lambda d: (_ints(d, 8, t - 10, t + 10),),
        parameters={"comparison": op, "threshold": t},
    )


_PREDICATES = (
    ("even", "x % 2 == 0"),
    ("odd", "x % 2 == 1"),
    ("positive", "x > 0"),
    ("negative", "x < 0"),
    ("not zero", "x != 0"),
)


def transform(d: Draws) -> FunctionTask:
    word, condition = d.pick(_PREDICATES)
    a, b = d.pick((-3, -2, 2, 3, 4, 5)), d.integer(-9, 10)
    formula = _signed(a, b)
    return FunctionTask(
        "transform",
        "transform(nums: list[int]) -> list[int]",
        f"Return a new list holding {formula} for every number x of `nums` that is {word}, "
        "in their order in `nums`.",
        "def transform(nums: list[int]) -> list[int]:\n"
        f"    return [{formula} for x in nums if {condition}]\n",
        (([],), ([0],), ([-3, -2, -1, 0, 1, 2, 3],)),
        lambda d: (_ints(d, 8, -20, 20),),
        parameters={"a": a, "b": b, "keep": word},
    )


def shift_letters(d: Draws) -> FunctionTask:
    k = d.integer(1, 26)
    z = chr((25 + k) % 26 + 97)
    return FunctionTask(
        "shift_letters",
        "shift_letters(text: str) -> str",
        f"Return `text` with every lowercase letter a-z moved {k} places forward in the "
        f"alphabet, wrapping around after z ('z' becomes '{z}'); every other character "
        "stays as it is.",
        "def shift_letters(text: str) -> str:\n"
        "    return ''.join(\n"
        f"        chr((ord(c) - 97 + {k}) % 26 + 97) if 'a' <= c <= 'z' else c for c in text\n"
        "    )\n",
        (("",), ("xyz",), ("Hello, World!",), ("abc XYZ 123",)),
        lambda d: (_text(d, "abcdefghijklmnopqrstuvwxyz  ABYZ.,!09é", 16),),
        parameters={"shift": k},
    )


#: Pairs of divisors where neither divides the other (2 and 4 would make "or by 4" idle).
_DIVISOR_PAIRS = tuple((a, b) for a in range(2, 10) for b in range(a + 1, 10) if b % a)


def sum_multiples(d: Draws) -> FunctionTask:
    a, b = d.pick(_DIVISOR_PAIRS)
    return FunctionTask(
        "sum_multiples",
        "sum_multiples(n: int) -> int",
        f"Return the sum of the integers from 1 to n (inclusive) that are divisible by {a} or "
        f"by {b} (or both); 0 when n < 1.",
        "def sum_multiples(n: int) -> int:\n"
        f"    return sum(i for i in range(1, n + 1) if i % {a} == 0 or i % {b} == 0)\n",
        ((0,), (-5,), (1,), (a,), (a * b,)),
        lambda d: (d.integer(0, 301),),
        parameters={"divisors": (a, b)},
    )


_WORDS = (
    "a", "an", "to", "of", "sun", "tree", "river", "bright", "yes!", "it's", "mountain",
    "ok", "code", "python", "x", "garden", "fox", "jumps", "over", "lazy", "dog.",
)  # fmt: skip


def long_words(d: Draws) -> FunctionTask:
    k = d.integer(3, 7)
    return FunctionTask(
        "long_words",
        "long_words(sentence: str) -> list[str]",
        f"Split `sentence` at whitespace (the pieces `sentence.split()` gives) and return the "
        f"words that have at least {k} characters, in their order in the sentence.",
        "def long_words(sentence: str) -> list[str]:\n"
        f"    return [w for w in sentence.split() if len(w) >= {k}]\n",
        (("",), ("   ",), ("a" * k,), ("b" * (k - 1) + " " + "c" * (k + 1),)),
        lambda d: (
            "".join(d.pick(_WORDS) + d.pick((" ", " ", " ", "  ", "\t")) for _ in range(8)),
        ),
        parameters={"min_length": k},
    )


# -- difficulty 2: small algorithms with edge cases ------------------------------------------


def rotate(d: Draws) -> FunctionTask:
    direction = d.pick(("left", "right"))
    example = (
        "[1, 2, 3] by 1 gives [2, 3, 1]"
        if direction == "left"
        else ("[1, 2, 3] by 1 gives [3, 1, 2]")
    )
    shift = "k % len(nums)" if direction == "left" else "-k % len(nums)"
    return FunctionTask(
        "rotate",
        "rotate(nums: list[int], k: int) -> list[int]",
        f"Return a new list: `nums` rotated {direction} by k positions ({example}). k may be "
        "larger than the length, or negative (rotating the other way); an empty list gives an "
        "empty list.",
        "def rotate(nums: list[int], k: int) -> list[int]:\n"
        "    if not nums:\n"
        "        return []\n"
        f"    k = {shift}\n"
        "    return nums[k:] + nums[:k]\n",
        (([], 3), ([7], 5), ([1, 2, 3], 0), ([1, 2, 3], 3), ([1, 2, 3], -1), ([1, 2, 3, 4], 5)),
        lambda d: (_ints(d, 8, -9, 9, min_length=1), d.integer(-10, 11)),
        parameters={"direction": direction},
    )


def compress(d: Draws) -> FunctionTask:
    bare = d.uniform() < 0.5
    rule = " (a run of length 1 is written without its count)" if bare else ""
    example = "'a3bc2'" if bare else "'a3b1c2'"
    count = "(str(j - i) if j - i > 1 else '')" if bare else "str(j - i)"
    return FunctionTask(
        "compress",
        "compress(text: str) -> str",
        "Return `text` with each maximal run of one repeated character replaced by the "
        f"character followed by the run's length{rule}: 'aaabcc' becomes {example}.",
        "def compress(text: str) -> str:\n"
        "    out, i = [], 0\n"
        "    while i < len(text):\n"
        "        j = i\n"
        "        while j < len(text) and text[j] == text[i]:\n"
        "            j += 1\n"
        f"        out.append(text[i] + {count})\n"
        "        i = j\n"
        "    return ''.join(out)\n",
        (("",), ("a",), ("ab",), ("a" * 12,), ("aabbaa",)),
        lambda d: ("".join(d.pick("abc") * d.integer(1, 5) for _ in range(d.integer(0, 6))),),
        parameters={"count_single": not bare},
    )


def kth_largest(d: Draws) -> FunctionTask:
    k = d.pick((2, 3))
    ordinal = {2: "second", 3: "third"}[k]
    name = f"{ordinal}_largest"
    return FunctionTask(
        name,
        f"{name}(nums: list[int]) -> int | None",
        f"Return the {ordinal} largest distinct value of `nums` (equal values count once: the "
        f"{ordinal} largest of [5, 5, 4, 4, 3] is {6 - k}), or None when `nums` has fewer "
        f"than {k} distinct values.",
        f"def {name}(nums: list[int]) -> int | None:\n"
        "    values = sorted(set(nums), reverse=True)\n"
        f"    return values[{k - 1}] if len(values) >= {k} else None\n",
        (([],), ([5],), ([5, 5, 5],), ([1, 2],), ([-1, -2, -3],), ([4, 4, 3, 3, 2],)),
        lambda d: (_ints(d, 9, -9, 9),),
        parameters={"k": k},
    )


_BRACKETS: tuple[tuple[str, str], ...] = (("(", ")"), ("[", "]"), ("{", "}"), ("<", ">"))


def balanced(d: Draws) -> FunctionTask:
    n = d.pick((2, 3))
    pairs = [p for p in _BRACKETS if d.uniform() < 0.5][:n]
    for p in _BRACKETS:  # top up to n pairs, in a fixed order
        if len(pairs) < n and p not in pairs:
            pairs.append(p)
    opening = "".join(p[0] for p in pairs)
    closing = {p[1]: p[0] for p in pairs}
    listing = _listing([f"{p[0]} {p[1]}" for p in pairs])
    (o, c), (o2, c2) = pairs[0], pairs[1]
    other = next(p for p in _BRACKETS if p not in pairs)

    def random_text(d: Draws) -> tuple[str]:
        stack: list[str] = []
        out: list[str] = []
        for _ in range(d.integer(0, 13)):
            u = d.uniform()
            if u < 0.4:
                pair = d.pick(_BRACKETS)
                stack.append(pair[1])
                out.append(pair[0])
            elif u < 0.8 and stack:
                out.append(stack.pop())
            else:
                out.append(d.pick("ab "))
        if d.uniform() < 0.5:
            out.extend(reversed(stack))  # balanced, unless a mutation below breaks it
        if out and d.uniform() < 0.3:
            del out[d.integer(0, len(out))]
        return ("".join(out),)

    return FunctionTask(
        "balanced",
        "balanced(text: str) -> bool",
        f"Return True when the brackets {listing} in `text` are balanced: every opening "
        "bracket is closed later by its own closing bracket, and brackets nest properly "
        f"('{o}{o2}{c2}{c}' is balanced, '{o}{o2}{c}{c2}' and '{c}{o}' are not). Every other "
        "character is ignored.",
        "def balanced(text: str) -> bool:\n"
        f"    closing = {closing!r}\n"
        "    stack = []\n"
        "    for c in text:\n"
        f"        if c in {opening!r}:\n"
        "            stack.append(c)\n"
        "        elif c in closing:\n"
        "            if not stack or stack.pop() != closing[c]:\n"
        "                return False\n"
        "    return not stack\n",
        (
            ("",),
            (o,),
            (c + o,),
            (o + o2 + c + c2,),
            (f"a{o}b{c}c",),
            (other[0],),
            (other[1] + o + c,),
        ),
        random_text,
        parameters={"pairs": tuple(o + c for o, c in pairs)},
    )


def merge_intervals(d: Draws) -> FunctionTask:
    adjacent = d.uniform() < 0.5
    rule = (
        "overlap, touch or are adjacent (no integer lies between them: [1, 3] and [4, 6] "
        "merge into [1, 6])"
        if adjacent
        else "overlap or touch (share at least one point: [1, 3] and [3, 5] merge into [1, 5], "
        "[1, 3] and [4, 6] do not)"
    )

    def random_intervals(d: Draws) -> tuple[list[list[int]]]:
        out = []
        for _ in range(d.integer(0, 7)):
            start = d.integer(-5, 16)
            out.append([start, start + d.integer(0, 6)])
        return (out,)

    return FunctionTask(
        "merge_intervals",
        "merge_intervals(intervals: list[list[int]]) -> list[list[int]]",
        "`intervals` holds [start, end] pairs of integers with start <= end, in any order. "
        f"Merge, repeatedly, any two intervals that {rule}, and return the merged intervals "
        "as [start, end] lists sorted by start.",
        "def merge_intervals(intervals: list[list[int]]) -> list[list[int]]:\n"
        "    merged: list[list[int]] = []\n"
        "    for start, end in sorted(intervals):\n"
        f"        if merged and start <= merged[-1][1]{' + 1' if adjacent else ''}:\n"
        "            merged[-1][1] = max(merged[-1][1], end)\n"
        "        else:\n"
        "            merged.append([start, end])\n"
        "    return merged\n",
        (
            ([],),
            ([[1, 1]],),
            ([[1, 3], [3, 5]],),
            ([[1, 3], [4, 6]],),
            ([[1, 10], [2, 3]],),
            ([[5, 6], [1, 2], [2, 4]],),
        ),
        random_intervals,
        parameters={"adjacent": adjacent},
    )


def to_base(d: Draws) -> FunctionTask:
    b = d.integer(2, 10)
    return FunctionTask(
        "to_base",
        "to_base(n: int) -> str",
        f"Return the integer n written in base {b} (digits 0-{b - 1}, most significant first, "
        "no leading zeros), with a leading '-' when n is negative; 0 is '0'.",
        "def to_base(n: int) -> str:\n"
        "    if n == 0:\n"
        "        return '0'\n"
        "    digits, m = [], abs(n)\n"
        "    while m:\n"
        f"        m, r = divmod(m, {b})\n"
        "        digits.append(str(r))\n"
        "    return ('-' if n < 0 else '') + ''.join(reversed(digits))\n",
        ((0,), (1,), (-1,), (b,), (-b,), (b**3 - 1,)),
        lambda d: (d.integer(-2000, 2001),),
        parameters={"base": b},
    )


# -- difficulty 3: multi-condition rules and dynamic programming ------------------------------


def count_ways(d: Draws) -> FunctionTask:
    steps = tuple(_distinct(d, d.pick((2, 3)), 1, 5))
    listing = _listing([str(s) for s in steps])
    return FunctionTask(
        "count_ways",
        "count_ways(n: int) -> int",
        f"A staircase has n steps; each move climbs {listing} steps. Return the number of "
        "different sequences of moves that end exactly on step n: 1 when n is 0 (no move), 0 "
        "when n is negative.",
        "def count_ways(n: int) -> int:\n"
        "    if n < 0:\n"
        "        return 0\n"
        "    ways = [1] + [0] * n\n"
        "    for i in range(1, n + 1):\n"
        f"        ways[i] = sum(ways[i - s] for s in {steps!r} if s <= i)\n"
        "    return ways[n]\n",
        ((0,), (-2,), (1,), (steps[0],), (steps[-1] + 1,)),
        lambda d: (d.integer(0, 26),),
        parameters={"steps": steps},
    )


def min_coins(d: Draws) -> FunctionTask:
    coins = tuple(_distinct(d, d.pick((2, 3, 4)), 1 if d.uniform() < 0.3 else 2, 12))
    listing = _listing([str(c) for c in coins])
    impossible = next((a for a in range(1, 12) if all(a % c for c in coins)), 1)
    return FunctionTask(
        "min_coins",
        "min_coins(amount: int) -> int",
        f"Coins come in the values {listing}, as many of each as needed. For an amount >= 0, "
        "return the fewest coins whose values add up to exactly `amount`: 0 when amount is 0, "
        "and -1 when no combination adds up to it.",
        "def min_coins(amount: int) -> int:\n"
        "    best = [0] + [-1] * amount\n"
        "    for a in range(1, amount + 1):\n"
        f"        options = [best[a - c] for c in {coins!r} if c <= a and best[a - c] >= 0]\n"
        "        best[a] = min(options) + 1 if options else -1\n"
        "    return best[amount]\n",
        ((0,), (1,), (coins[0],), (sum(coins),), (impossible,)),
        lambda d: (d.integer(0, 41),),
        parameters={"coins": coins},
    )


_ORDERS = (
    ("strictly increasing", "<"),
    ("non-decreasing", "<="),
    ("strictly decreasing", ">"),
)


def longest_subsequence(d: Draws) -> FunctionTask:
    kind, op = d.pick(_ORDERS)
    return FunctionTask(
        "longest_subsequence",
        "longest_subsequence(nums: list[int]) -> int",
        f"Return the length of the longest {kind} subsequence of `nums` (its elements keep "
        "their order in `nums` but need not be adjacent); 0 for an empty list.",
        "def longest_subsequence(nums: list[int]) -> int:\n"
        "    best: list[int] = []\n"
        "    for i, x in enumerate(nums):\n"
        f"        best.append(1 + max((best[j] for j in range(i) if nums[j] {op} x), default=0))\n"
        "    return max(best, default=0)\n",
        (([],), ([4],), ([2, 2, 2],), ([1, 2, 3, 4],), ([4, 3, 2, 1],)),
        lambda d: (_ints(d, 14, 0, 9),),
        parameters={"order": kind},
    )


def edit_cost(d: Draws) -> FunctionTask:
    change, replace = d.pick(((1, 1), (1, 2), (2, 3), (3, 2)))
    return FunctionTask(
        "edit_cost",
        "edit_cost(a: str, b: str) -> int",
        f"Return the lowest total cost of turning `a` into `b` by edits: inserting one "
        f"character costs {change}, deleting one costs {change}, and replacing one character "
        f"by a different one costs {replace}.",
        "def edit_cost(a: str, b: str) -> int:\n"
        f"    prev = [j * {change} for j in range(len(b) + 1)]\n"
        "    for i in range(1, len(a) + 1):\n"
        f"        cur = [i * {change}]\n"
        "        for j in range(1, len(b) + 1):\n"
        f"            swap = 0 if a[i - 1] == b[j - 1] else {replace}\n"
        f"            cur.append(min(prev[j] + {change}, cur[j - 1] + {change}, "
        "prev[j - 1] + swap))\n"
        "        prev = cur\n"
        "    return prev[-1]\n",
        (("", ""), ("", "ab"), ("abc", ""), ("abc", "abc"), ("ab", "ba")),
        lambda d: (_text(d, "abcd", 7), _text(d, "abcd", 7)),
        parameters={"insert_delete": change, "replace": replace},
    )


_LABELS = ("Fizz", "Buzz", "Bazz", "Pop", "Zap", "Whiz")


def label(d: Draws) -> FunctionTask:
    a, b = _distinct(d, 2, 2, 7)
    if d.uniform() < 0.5:
        a, b = b, a
    wa = d.pick(_LABELS)
    wb = d.pick([w for w in _LABELS if w != wa])
    wc = d.pick([w for w in _LABELS if w not in (wa, wb)])
    c = d.integer(1, 10)
    rules = (
        f"if n is divisible by {a}, append '{wa}'; then if n is divisible by {b}, append "
        f"'{wb}'; then if the decimal digits of n include {c}, append '{wc}'"
    )
    return FunctionTask(
        "label",
        "label(n: int) -> str",
        f"For an integer n >= 1, start from an empty word and apply these rules in order: "
        f"{rules}. Return the word, or str(n) when no rule applied.",
        "def label(n: int) -> str:\n"
        "    word = ''\n"
        f"    if n % {a} == 0:\n"
        f"        word += {wa!r}\n"
        f"    if n % {b} == 0:\n"
        f"        word += {wb!r}\n"
        f"    if '{c}' in str(n):\n"
        f"        word += {wc!r}\n"
        "    return word or str(n)\n",
        ((1,), (a,), (b,), (a * b,), (c,), (10 * c + 1,)),
        lambda d: (d.integer(1, 301),),
        parameters={"rules": ((a, wa), (b, wb)), "digit": (c, wc)},
    )


def grid_paths(d: Draws) -> FunctionTask:
    diagonal = d.uniform() < 0.5
    moves = "right, down or diagonally down-right" if diagonal else "right or down"
    diagonal_line = (
        "            if r > 0 and c > 0:\n                total += paths[r - 1][c - 1]\n"
        if diagonal
        else ""
    )

    def random_grid(d: Draws) -> tuple[list[str]]:
        rows, cols = d.integer(1, 6), d.integer(1, 6)
        return (
            ["".join("#" if d.uniform() < 0.2 else "." for _ in range(cols)) for _ in range(rows)],
        )

    return FunctionTask(
        "grid_paths",
        "grid_paths(grid: list[str]) -> int",
        "`grid` is a list of at least one row, all of the same non-zero length, made of '.' "
        "(open) and '#' (wall). Return the number of paths from the top-left cell to the "
        f"bottom-right cell that move {moves}, one cell at a time, and never enter a wall "
        "(0 when a corner is a wall; 1 for a one-cell open grid).",
        "def grid_paths(grid: list[str]) -> int:\n"
        "    rows, cols = len(grid), len(grid[0])\n"
        "    paths = [[0] * cols for _ in range(rows)]\n"
        "    for r in range(rows):\n"
        "        for c in range(cols):\n"
        "            if grid[r][c] == '#':\n"
        "                continue\n"
        "            if r == 0 and c == 0:\n"
        "                paths[r][c] = 1\n"
        "                continue\n"
        "            total = 0\n"
        "            if r > 0:\n"
        "                total += paths[r - 1][c]\n"
        "            if c > 0:\n"
        "                total += paths[r][c - 1]\n"
        f"{diagonal_line}"
        "            paths[r][c] = total\n"
        "    return paths[-1][-1]\n",
        ((["."],), (["#"],), ([".."],), (["..", ".."],), ([".#", "#."],), (["...", ".#.", "..."],)),
        random_grid,
        parameters={"diagonal": diagonal},
    )


#: Every template by name, with its difficulty.
TEMPLATES: Mapping[str, Template] = {
    draw.__name__: Template(difficulty, draw)
    for difficulty, draws in (
        (1, (count_values, transform, shift_letters, sum_multiples, long_words)),
        (2, (rotate, compress, kth_largest, balanced, merge_intervals, to_base)),
        (3, (count_ways, min_coins, longest_subsequence, edit_cost, label, grid_paths)),
    )
    for draw in draws
}
