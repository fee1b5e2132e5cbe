"""Code-v0: the templates' ground truth against independent implementations, the oracle
scoring 1.0, and the judge scoring wrong, partial and hostile programs exactly, in the sandbox.

Every test that judges code runs the real sandbox (about 30-60 ms a run); the counts are kept
small on purpose (a few dozen runs per test at most).
"""

from __future__ import annotations

import bisect
import collections
import functools
import itertools
import json
import math
import pickle
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llm_trainer
from llm_trainer.agents import OracleAgent
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import to_plain
from llm_trainer.envs.problems import ProblemSpec
from llm_trainer.envs.problems.code import (
    TEMPLATES,
    CodeConfig,
    CodeEnv,
    CodeFamily,
    extract_code,
    parse_error,
)
from llm_trainer.sandbox import SandboxUnavailable

ENV_ID = "LLMTrainer/Code-v0"


def _family(**config: Any) -> CodeFamily:
    return CodeFamily(CodeConfig(**config))


def _draw(family: CodeFamily, seed: int, difficulty: int) -> ProblemSpec:
    return family.generate(np.random.default_rng(seed), difficulty)


def _draw_template(family: CodeFamily, template: str, start: int = 0) -> ProblemSpec:
    """The first spec of ``template`` over seeds ``start``, ``start + 1``..."""
    difficulty = TEMPLATES[template].difficulty
    for seed in itertools.count(start):
        spec = _draw(family, seed, difficulty)
        if spec.data["template"] == template:
            return spec
    raise AssertionError("unreachable")


def _fenced(code: str) -> str:
    return f"```python\n{code}\n```"


# -- the ground truth, worked out another way --------------------------------------------------


def _balanced(pairs: tuple[str, ...], text: str) -> bool:
    """Brackets of ``pairs`` balanced: delete adjacent matching pairs until none is left."""
    kept = "".join(c for c in text if any(c in p for p in pairs))
    while True:
        shorter = kept
        for p in pairs:
            shorter = shorter.replace(p, "")
        if shorter == kept:
            return not kept
        kept = shorter


def _merge(adjacent: bool, intervals: list[list[int]]) -> list[list[int]]:
    """The description, literally: merge any two intervals that overlap or touch (or are
    adjacent) until no two do, then sort."""
    gap = 1 if adjacent else 0
    groups = [list(interval) for interval in intervals]
    merged = True
    while merged:
        merged = False
        for i, j in itertools.combinations(range(len(groups)), 2):
            a, b = groups[i], groups[j]
            if a[0] <= b[1] + gap and b[0] <= a[1] + gap:
                groups[i] = [min(a[0], b[0]), max(a[1], b[1])]
                del groups[j]
                merged = True
                break
    return sorted(groups)


def _to_base(base: int, n: int) -> str:
    digits = np.base_repr(abs(n), base)
    return ("-" if n < 0 else "") + digits


def _count_ways(steps: tuple[int, ...], n: int) -> int:
    if n < 0:
        return 0

    @functools.cache
    def ways(k: int) -> int:
        return 1 if k == 0 else sum(ways(k - s) for s in steps if s <= k)

    return ways(n)


def _min_coins(coins: tuple[int, ...], amount: int) -> int:
    """Breadth-first search over amounts reached with 0, 1, 2... coins."""
    frontier, seen, count = {0}, {0}, 0
    while frontier:
        if amount in frontier:
            return count
        frontier = {a + c for a in frontier for c in coins if a + c <= amount} - seen
        seen |= frontier
        count += 1
    return -1


def _longest(order: str, nums: list[int]) -> int:
    """Patience sorting (bisect) on the sequence transformed to a strictly increasing one."""
    if order == "strictly decreasing":
        nums = [-x for x in nums]
    tails: list[float] = []
    for i, x in enumerate(nums):
        key: float = x + i / 100 if order == "non-decreasing" else x  # equal values rise
        position = bisect.bisect_left(tails, key)
        tails[position : position + 1] = [key]
    return len(tails)


def _edit(change: int, replace: int, a: str, b: str) -> int:
    @functools.cache
    def cost(i: int, j: int) -> int:
        if i == len(a) or j == len(b):
            return change * (len(a) - i + len(b) - j)
        swap = 0 if a[i] == b[j] else replace
        return min(swap + cost(i + 1, j + 1), change + cost(i + 1, j), change + cost(i, j + 1))

    return cost(0, 0)


def _paths(diagonal: bool, grid: list[str]) -> int:
    """Depth-first enumeration of every path."""
    rows, cols = len(grid), len(grid[0])
    moves = ((0, 1), (1, 0), (1, 1)) if diagonal else ((0, 1), (1, 0))

    def walk(r: int, c: int) -> int:
        if r >= rows or c >= cols or grid[r][c] == "#":
            return 0
        if (r, c) == (rows - 1, cols - 1):
            return 1
        return sum(walk(r + dr, c + dc) for dr, dc in moves)

    return walk(0, 0)


_OPS: dict[str, Callable[[int, int], bool]] = {
    ">": lambda x, t: x > t,
    "<": lambda x, t: x < t,
    ">=": lambda x, t: x >= t,
    "<=": lambda x, t: x <= t,
}
_KEEP: dict[str, Callable[[int], bool]] = {
    "even": lambda x: x % 2 == 0,
    "odd": lambda x: x % 2 != 0,
    "positive": lambda x: x > 0,
    "negative": lambda x: x < 0,
    "not zero": lambda x: x != 0,
}


def _independent(template: str, p: dict[str, Any], args: list[Any]) -> Any:
    """What ``template`` with parameters ``p`` must return for ``args``, computed another way
    than its reference."""
    x = args[0]
    if template == "count_values":
        return len([v for v in x if _OPS[p["comparison"]](v, p["threshold"])])
    if template == "transform":
        return [p["a"] * v + p["b"] for v in x if _KEEP[p["keep"]](v)]
    if template == "shift_letters":
        letters = "abcdefghijklmnopqrstuvwxyz"
        k = p["shift"]
        return x.translate(str.maketrans(letters, letters[k:] + letters[:k]))
    if template == "sum_multiples":  # inclusion-exclusion over arithmetic series
        a, b = p["divisors"]

        def series(m: int) -> int:
            count = max(0, x) // m
            return m * count * (count + 1) // 2

        return series(a) + series(b) - series(a * b // math.gcd(a, b))
    if template == "long_words":
        return [w for w in x.split() if len(w) >= p["min_length"]]
    if template == "rotate":
        d = collections.deque(x)
        d.rotate(-args[1] if p["direction"] == "left" else args[1])
        return list(d)
    if template == "compress":
        return "".join(
            c + (str(n) if n > 1 or p["count_single"] else "")
            for c, n in ((c, len(list(g))) for c, g in itertools.groupby(x))
        )
    if template in ("second_largest", "third_largest", "kth_largest"):
        values = sorted(set(x))
        return values[-p["k"]] if len(values) >= p["k"] else None
    if template == "balanced":
        return _balanced(p["pairs"], x)
    if template == "merge_intervals":
        return _merge(p["adjacent"], x)
    if template == "to_base":
        return _to_base(p["base"], x)
    if template == "count_ways":
        return _count_ways(p["steps"], x)
    if template == "min_coins":
        return _min_coins(p["coins"], x)
    if template == "longest_subsequence":
        return _longest(p["order"], x)
    if template == "edit_cost":
        return _edit(p["insert_delete"], p["replace"], x, args[1])
    if template == "label":
        word = "".join(w for k, w in p["rules"] if x % k == 0)
        digit, w = p["digit"]
        word += w if str(digit) in str(x) else ""
        return word or str(x)
    if template == "grid_paths":
        return _paths(p["diagonal"], x)
    raise AssertionError(f"no independent implementation of {template}")


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_every_template_expects_what_an_independent_implementation_computes(
    template: str,
) -> None:
    family = _family(examples=3)
    checked = 0
    for seed in range(400):
        spec = _draw(family, seed, TEMPLATES[template].difficulty)
        if spec.data["template"] != template:
            continue
        parameters = to_plain(spec.data["parameters"])
        for args, expected in zip(spec.data["inputs"], spec.data["expected"], strict=True):
            got = _independent(template, parameters, to_plain(args))
            assert json.dumps(got) == json.dumps(to_plain(expected)), (parameters, args)
            checked += 1
        assert spec.statement.count(f"    {spec.data['function']}(") == 3  # the examples
    assert checked >= 100


def test_hand_worked_values_of_the_trickier_rules() -> None:
    assert _merge(False, [[1, 3], [3, 5], [7, 8]]) == [[1, 5], [7, 8]]
    assert _merge(True, [[1, 3], [4, 6], [8, 8]]) == [[1, 6], [8, 8]]
    assert _merge(True, [[3, 3], [3, 3]]) == [[3, 3]]
    assert _longest("non-decreasing", [3, 3, 1, 3]) == 3
    assert _longest("strictly increasing", [3, 3, 1, 3]) == 2  # 1, 3
    assert _longest("strictly increasing", [1, 3, 2, 4]) == 3
    assert _min_coins((4, 3, 1), 6) == 2  # greedy would take 4 + 1 + 1
    assert _min_coins((5, 7), 3) == -1
    assert _count_ways((1, 2), 5) == 8
    assert _edit(1, 1, "kitten", "sitting") == 3
    assert _edit(1, 2, "ab", "ba") == 2
    assert _balanced(("()", "[]"), "([)]") is False
    assert _balanced(("()", "[]"), "{(}]") is False
    assert _paths(False, ["...", ".#.", "..."]) == 2
    assert _paths(True, ["..", ".."]) == 3


def test_generated_problems_have_distinct_inputs_the_configured_counts_and_half_edges() -> None:
    family = _family(tests=(5, 7, 9), examples=1)
    for difficulty in (1, 2, 3):
        for seed in range(60):
            spec = _draw(family, seed, difficulty)
            inputs = [json.dumps(to_plain(a)) for a in spec.data["inputs"]]
            assert len(inputs) == len(set(inputs)) == (5, 7, 9)[difficulty - 1]
            assert len(spec.data["expected"]) == len(inputs)
            assert spec.difficulty == difficulty == TEMPLATES[spec.data["template"]].difficulty
            assert spec.answer.startswith("```python\ndef ")
            assert "Examples:\n" in spec.statement
            assert f"{len(inputs)} hidden tests" in spec.statement


# -- the oracle --------------------------------------------------------------------------------


def test_the_oracle_scores_one_on_every_template_and_difficulty() -> None:
    env = llm_trainer.make(ENV_ID)
    oracle = OracleAgent(env)
    seen: collections.Counter[str] = collections.Counter()
    for difficulty in (1, 2, 3):
        for seed in range(200):
            obs, info = env.reset(seed=seed, options={"difficulty": difficulty})
            template = env.unwrapped.task.data["template"]
            if seen[template] >= 2:
                continue
            seen[template] += 1
            obs, reward, terminated, truncated, info = env.step(oracle.act(obs, info))
            assert (reward, terminated, truncated) == (1.0, True, False), (template, obs)
            assert info["answer_correct"]
            assert info["success"]
            assert info["criteria"] == {"compiles": 1.0, "tests": 1.0}
            assert info["failing_tests"] == ()
            assert info["compile_error"] is None
            assert info["isolation_level"] == "L3"
            assert obs.startswith("Score 1.00: every constraint met; passed ")
    assert set(seen) == set(TEMPLATES)
    assert all(count == 2 for count in seen.values())
    env.close()


# -- partial, wrong and hostile programs --------------------------------------------------------


def _wrong_on(spec: ProblemSpec, broken: set[int], wrong: str = "'#wrong#'") -> str:
    """The reference, except that it returns ``wrong`` on the inputs of tests ``broken``."""
    name = spec.data["function"]
    bad = [to_plain(spec.data["inputs"][i]) for i in sorted(broken)]
    reference = extract_code(spec.answer).replace(f"def {name}(", f"def _reference_{name}(", 1)
    return _fenced(
        f"{reference}\n"
        f"def {name}(*args):\n"
        f"    if list(args) in {bad!r}:\n"
        f"        return {wrong}\n"
        f"    return _reference_{name}(*args)\n"
    )


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_a_partly_wrong_program_scores_the_exact_fraction_and_names_its_failing_tests(
    difficulty: int,
) -> None:
    env = CodeEnv(difficulty)
    env.reset(seed=difficulty)
    spec = env.task
    n = len(spec.data["inputs"])
    rng = np.random.default_rng(difficulty)
    broken = {int(i) for i in rng.choice(n, size=difficulty + 1, replace=False)}
    evaluation = env.evaluate(spec, _wrong_on(spec, broken))
    assert evaluation.score == (n - len(broken)) / n
    assert evaluation.criteria == {"compiles": 1.0, "tests": (n - len(broken)) / n}
    names = tuple(f"test_{i + 1}" for i in sorted(broken))
    assert evaluation.failing_tests == names
    first = min(broken)
    expected = repr(to_plain(spec.data["expected"][first]))
    assert evaluation.failures[0].startswith(f"{names[0]}: {spec.data['function']}(")
    if len(expected) < 60:
        assert evaluation.failures[0].endswith(f": expected {expected}, got '#wrong#'")
    assert len(evaluation.failures) == min(len(broken), 4)  # 3 shown, then "N more"
    assert evaluation.details == f"passed {n - len(broken)} of {n} hidden tests"
    assert evaluation.isolation_level == "L3"
    env.close()


def _spec(template: str = "rotate", **config: Any) -> tuple[CodeFamily, ProblemSpec]:
    family = _family(**config)
    return family, _draw_template(family, template)


def test_syntax_errors_and_missing_functions_fail_without_a_sandbox_run() -> None:
    family, spec = _spec(min_level="L4")  # no sandbox can be made here: none is needed
    for answer, error in (
        ("def rotate(nums, k):\n    return nums[k:", "SyntaxError: '[' was never closed (line 2)"),
        ("```python\ndef rotate(nums, k)\n    pass\n```", "SyntaxError: expected ':' (line 1)"),
        ("def turn(nums, k): return nums", "the code defines no function named 'rotate'"),
        ("", "the code defines no function named 'rotate'"),
        (
            "-" * 8000 + "1",
            "the code cannot be parsed (MemoryError: nested too deeply or too long)",
        ),
        ("x = '\udcff'\ndef rotate(n, k): pass", "the code is not valid Unicode text"),
        ("def rotate(n, k): return n\x00", "SyntaxError: source code string cannot contain null"),
    ):
        report = family.judge(spec, answer)
        assert report.check.criteria == {"compiles": 0.0, "tests": 0.0}
        assert report.compile_error is not None
        assert report.compile_error.startswith(error), report.compile_error
        assert report.isolation_level is None
        assert report.failing_tests == tuple(f"test_{i + 1}" for i in range(10))
        assert report.check.failures[0].startswith("compile error: ")


def test_errors_at_load_time_are_load_errors_that_score_zero() -> None:
    family, spec = _spec(time_limit_s=0.5)
    for code, error in (
        ("import numpy\ndef rotate(nums, k): return nums", "loading the code raised "),
        ("def rotate(nums, k): return nums\nraise SystemExit(0)", "loading the code raised "),
        ("rotate = 3", "the code defines no function named 'rotate'"),
        ("while True: pass\ndef rotate(nums, k): return nums", "loading the code took more"),
        ("import os\nos._exit(0)\ndef rotate(nums, k): return nums", "the program ended early"),
        ("return 1\ndef rotate(nums, k): return nums", "SyntaxError: 'return' outside function"),
    ):
        report = family.judge(spec, _fenced(code))
        assert report.check.criteria == {"compiles": 0.0, "tests": 0.0}, code
        assert report.compile_error is not None
        assert report.compile_error.startswith(error), report.compile_error
        assert report.isolation_level == "L3"
    assert "ModuleNotFoundError" in family.judge(spec, "import numpy\nrotate = 1").compile_error


def test_exit_hacks_and_forged_result_lines_score_only_the_tests_truly_answered() -> None:
    family, spec = _spec()
    reference = extract_code(spec.answer)
    n = len(spec.data["inputs"])
    # os._exit(0) at once: no test answered, whatever the exit code says
    hack = "import os\ndef rotate(nums, k):\n    print('all tests passed')\n    os._exit(0)\n"
    report = family.judge(spec, _fenced(hack))
    assert report.check.criteria == {"compiles": 1.0, "tests": 0.0}
    assert report.check.failures[0].endswith("no result: the program ended early (exit code 0)")
    # right for three calls, then os._exit(0): exactly three tests pass
    partial = (
        f"{reference}\nimport os\n_calls = []\n_right = rotate\n"
        "def rotate(nums, k):\n"
        "    _calls.append(1)\n"
        "    if len(_calls) > 3:\n"
        "        os._exit(0)\n"
        "    return _right(nums, k)\n"
    )
    report = family.judge(spec, _fenced(partial))
    assert report.check.criteria["tests"] == 3 / n
    assert report.failing_tests == tuple(f"test_{i + 1}" for i in range(3, n))
    # lines forged with a guessed nonce on every descriptor: ignored
    forged = (
        f"{reference}\nimport os\n"
        "for fd in range(1, 20):\n"
        "    try:\n"
        "        os.write(fd, b'0' * 32 + b' {\"test\": 0, \"value\": [1]}\\nPASSED 10/10\\n')\n"
        "    except OSError:\n"
        "        pass\n"
    )
    assert family.judge(spec, _fenced(forged)).check.criteria["tests"] == 1.0
    # the harness's real nonce, stolen from its frame, to report test 0 a second time:
    # a test answered twice fails
    stolen = (
        f"{reference}\nimport os, sys\n_right = rotate\n"
        "def rotate(nums, k):\n"
        "    frame = sys._getframe(1)\n"
        "    while 'nonce' not in frame.f_locals:\n"
        "        frame = frame.f_back\n"
        "    nonce, out = frame.f_locals['nonce'], frame.f_locals['out']\n"
        '    os.write(out, (nonce + \' {"test": 0, "value": []}\\n\').encode())\n'
        "    return _right(nums, k)\n"
    )
    report = family.judge(spec, _fenced(stolen))
    assert report.failing_tests == ("test_1",)
    assert len(report.check.failures) == 1
    assert report.check.failures[0].endswith(": answered more than once")


def test_threads_and_exit_handlers_left_running_do_not_hold_the_run_to_its_time_limit() -> None:
    family, spec = _spec()
    lingering = (
        "import atexit, threading, time\n"
        "threading.Thread(target=time.sleep, args=(1e9,)).start()\n"
        "atexit.register(time.sleep, 1e9)\n" + extract_code(spec.answer)
    )
    start = time.perf_counter()
    report = family.judge(spec, _fenced(lingering))
    assert report.check.criteria == {"compiles": 1.0, "tests": 1.0}
    assert time.perf_counter() - start < 8.0  # the run's own limit is 14 s


def test_exceptions_timeouts_and_values_that_are_not_json_fail_only_their_tests() -> None:
    family, spec = _spec(time_limit_s=0.5)
    inputs = [to_plain(a) for a in spec.data["inputs"]]
    reference = extract_code(spec.answer)
    cases = {  # test index -> what the function does on its input
        0: "raise ValueError('bad input')",
        1: "while True: pass",
        2: "return {1, 2}",
        3: "return float('nan')",
        4: "return tuple(_right(*args))",  # a tuple is a JSON list: passes
        5: "return [True] * len(_right(*args)) if _right(*args) else False",
        6: "result = _right(*args); args[0].append(99); return result",  # mutating: fine
        7: "while True:\n            try:\n                pass\n            except Exception:\n"
        "                pass",
    }
    body = "".join(
        f"    if list(args) == {inputs[i]!r}:\n        {action}\n" for i, action in cases.items()
    )
    code = f"{reference}\n_right = rotate\ndef rotate(*args):\n{body}    return _right(*args)\n"
    report = family.judge(spec, _fenced(code))
    failing = set(report.failing_tests)
    assert failing == {"test_1", "test_2", "test_3", "test_4", "test_6", "test_8"}
    evaluation = CodeEnv(config={"time_limit_s": 0.5}).evaluate(spec, _fenced(code))
    assert evaluation.failures[:3] == (
        f"test_1: rotate({inputs[0][0]!r}, {inputs[0][1]!r}): raised ValueError: bad input",
        f"test_2: rotate({inputs[1][0]!r}, {inputs[1][1]!r}): took more than 0.5 s",
        f"test_3: rotate({inputs[2][0]!r}, {inputs[2][1]!r}): returned a value that is not "
        "JSON (TypeError: Object of type set is not JSON serializable)",
    )


def test_a_swallowed_alarm_ends_at_the_sandbox_time_limit_with_the_earlier_tests_kept() -> None:
    family, spec = _spec(time_limit_s=0.5, tests=(2, 2, 2))
    reference = extract_code(spec.answer)
    code = (
        f"{reference}\n_right, _calls = rotate, []\n"
        "def rotate(nums, k):\n"
        "    _calls.append(1)\n"
        "    while len(_calls) == 2:\n"
        "        try:\n"
        "            while True:\n"
        "                pass\n"
        "        except BaseException:\n"
        "            pass\n"
        "    return _right(nums, k)\n"
    )
    report = family.judge(spec, _fenced(code))
    assert report.failing_tests == ("test_2",)
    assert report.check.failures[0].endswith(
        "no result: the program was killed at the sandbox's time limit"
    )


def test_huge_outputs_are_discarded_or_scored_never_raised() -> None:
    family, spec = _spec(tests=(4, 4, 4))
    reference = extract_code(spec.answer)
    # the program's own prints go nowhere: the tests pass
    chatty = f"{reference}\n_right = rotate\ndef rotate(nums, k):\n    print('x' * 10**7)\n"
    chatty += "    return _right(nums, k)\n"
    assert family.judge(spec, _fenced(chatty)).check.criteria["tests"] == 1.0
    # a huge return value is an error of that test
    big = "def rotate(nums, k):\n    return list(range(10**6))\n"
    report = family.judge(spec, _fenced(big))
    assert report.check.criteria["tests"] == 0.0
    size = len(json.dumps(list(range(10**6))))
    assert report.check.failures[0].endswith(f"returned {size} characters of JSON")
    # writing past the output cap on the harness's own descriptor gets the run killed
    flood = (
        f"{reference}\nimport os, sys\n_right = rotate\n"
        "def rotate(nums, k):\n"
        "    frame = sys._getframe(1)\n"
        "    while 'out' not in frame.f_locals:\n"
        "        frame = frame.f_back\n"
        "    os.write(frame.f_locals['out'], b'y' * 3_000_000)\n"
        "    return _right(nums, k)\n"
    )
    report = family.judge(spec, _fenced(flood))
    assert report.check.criteria["tests"] == 0.0
    assert report.check.failures[0].endswith("killed at the sandbox's output limit")


def test_a_memory_bomb_fails_its_tests_and_the_env_goes_on() -> None:
    env = CodeEnv(2, config={"memory_mb": 64})
    env.reset(seed=0)
    name = env.task.data["function"]
    bomb = f"def {name}(*args):\n    return len(bytearray(10**9))\n"
    _, reward, terminated, _, info = env.step(f"<answer>{_fenced(bomb)}</answer>")
    assert reward == 0.0
    assert not terminated
    assert info["criteria"]["tests"] == 0.0
    assert "MemoryError" in info["failures"][0] or "memory limit" in info["failures"][0]
    _, reward, terminated, _, info = env.step(f"<answer>{env.task.answer}</answer>")
    assert (reward, terminated) == (1.0, True)


def test_returned_values_are_compared_as_json_types() -> None:
    family, spec = _spec("count_values")
    right = extract_code(spec.answer)
    as_bool = f"{right}\n_right = count_values\ndef count_values(nums):\n"
    as_bool += "    return [False, True][_right(nums)] if _right(nums) < 2 else _right(nums)\n"
    as_float = f"{right}\n_right = count_values\ndef count_values(nums):\n"
    as_float += "    return float(_right(nums))\n"
    n = len(spec.data["inputs"])
    small = sum(1 for e in spec.data["expected"] if e < 2)
    assert family.judge(spec, as_bool).check.criteria["tests"] == (n - small) / n
    assert family.judge(spec, as_float).check.criteria["tests"] == 0.0


# -- the env ----------------------------------------------------------------------------------


def test_the_registered_entry_uses_the_default_config() -> None:
    spec = llm_trainer.spec(ENV_ID)
    assert spec.entry_point == "llm_trainer.envs.problems.code.env:CodeEnv"
    config = CodeConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in spec.kwargs["config"].items()}
    )
    assert config == CodeConfig()
    assert spec.capabilities.difficulties == (1, 2, 3)
    assert llm_trainer.make(ENV_ID).unwrapped.family.config == CodeConfig()


def test_info_carries_compile_error_failing_tests_and_isolation_level() -> None:
    env = llm_trainer.make(ENV_ID, difficulty=3)
    _, info = env.reset(seed=2)
    assert (info["compile_error"], info["failing_tests"], info["isolation_level"]) == (
        None,
        (),
        None,
    )
    obs, reward, terminated, _, info = env.step("<answer>def f(:</answer>")
    assert info["compile_error"] == "SyntaxError: invalid syntax (line 1)"
    assert obs.startswith(
        "Score 0.00: compile error: SyntaxError: invalid syntax (line 1); passed 0 of 12"
    )
    assert len(info["failing_tests"]) == 12
    assert info["revisions_left"] == 2
    # repeating the answer keeps it, and its details
    obs, reward, terminated, _, info = env.step("<answer>def f(:</answer>")
    assert (reward, terminated) == (0.0, True)
    assert info["compile_error"] == "SyntaxError: invalid syntax (line 1)"


def test_same_seed_same_problem_and_same_judgement_in_two_instances() -> None:
    a, b = CodeEnv(2), CodeEnv(2)
    for seed in (0, 7):
        assert a.reset(seed=seed)[0] == b.reset(seed=seed)[0]
        assert a.task == b.task
        answer = _wrong_on(a.task, {1, 4})
        assert a.evaluate(a.task, answer) == b.evaluate(b.task, answer)
    assert a.reset(seed=1)[0] != a.reset(seed=2)[0]


def test_pickling_and_closing_drop_the_sandbox_and_judging_makes_a_new_one() -> None:
    env = llm_trainer.make(ENV_ID)
    env.reset(seed=3)
    env.step("<answer>def f(): pass</answer>")  # a revision pending; no run needed
    env.unwrapped.evaluate(env.unwrapped.task, env.unwrapped.task.answer)
    assert env.unwrapped.family._sandbox is not None
    clone = pickle.loads(pickle.dumps(env))
    assert clone.unwrapped.family._sandbox is None
    env.close()
    assert env.unwrapped.family._sandbox is None
    for e in (env, clone):
        _, reward, terminated, _, info = e.step(f"<answer>{e.unwrapped.task.answer}</answer>")
        assert (reward, terminated, info["isolation_level"]) == (1.0, True, "L3")


def test_a_machine_below_min_level_refuses_to_judge_but_the_env_is_still_made() -> None:
    env = llm_trainer.make(ENV_ID, config={"min_level": "L4"})
    env.reset(seed=0)
    with pytest.raises(SandboxUnavailable, match="needs isolation level L4"):
        env.step(f"<answer>{env.unwrapped.task.answer}</answer>")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"templates": ["rotate", "label"]}, "config.templates has none of difficulty 1"),
        ({"templates": ["rotat"]}, "config.templates must be distinct names among"),
        ({"tests": [8, 10]}, "config.tests must be three ints in [1, 50]"),
        ({"examples": 9}, "config.examples must be an int in [0, 5]"),
        ({"time_limit_s": 0}, "config.time_limit_s must be a number in (0, 10]"),
        ({"memory_mb": 1}, "config.memory_mb must be an int in [32, 8192]"),
        ({"min_level": "L9"}, "config.min_level must be one of L0, L1, L2, L3, L4"),
        ({"time_limt_s": 1}, "config: unknown key 'time_limt_s' (did you mean 'time_limit_s'?)"),
    ],
)
def test_bad_config_values_are_config_errors_naming_the_env(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        llm_trainer.make(ENV_ID, config=config)
    assert str(caught.value).startswith(f"{ENV_ID}: {message}")


def test_extract_code_takes_the_first_python_block_or_the_whole_answer() -> None:
    assert extract_code("```py\nx = 1\n```\n```python\ny = 2\n```") == "x = 1\n"
    assert extract_code("Sure:\n```Python\nx = 1") == "x = 1"  # unclosed: to the end
    assert extract_code("```\nx = 1\n```") == "x = 1\n"
    assert extract_code("```js\nx = 1\n```") == "```js\nx = 1\n```"  # another language
    assert parse_error("from m import f as rotate", "rotate") is None
    assert parse_error("class rotate: pass", "rotate") is None
    assert parse_error("def outer():\n    def rotate(): pass", "rotate") is None


_FRAGMENTS = st.sampled_from(
    (
        "def NAME(*args):\n",
        "    return args[0]\n",
        "    return args[0][1:]\n",
        "    return None\n",
        "    while True: pass\n",
        "    raise ValueError('x')\n",
        "import os\n",
        "    os._exit(0)\n",
        "print('PASSED')\n",
        "```python\n",
        "```\n",
        "    return 1e999\n",
        "    return '" + "٣" * 50 + "'\n",
        "    return " + "9" * 5000 + "\n",
        "(" * 300,
        "\udcff",
    )
)
_CODE_LIKE = st.lists(_FRAGMENTS | st.text(max_size=40), max_size=6).map("".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_CODE_LIKE | st.text(max_size=300), seed=st.integers(0, 2**32 - 1))
def test_any_answer_text_is_judged_never_raised(text: str, seed: int) -> None:
    env = _fuzz_env()
    env.reset(seed=seed, options={"difficulty": 2})
    text = text.replace("NAME", env.unwrapped.task.data["function"])
    obs, reward, terminated, truncated, info = env.step(f"<answer>{text}</answer>")
    assert env.observation_space.contains(obs)
    assert not truncated
    if info["invalid_action"]:  # the text held a tag, or was too long
        assert reward == pytest.approx(-0.1)
        return
    assert 0.0 <= info["score"] <= 1.0
    assert info["criteria"]["compiles"] in (0.0, 1.0)
    assert (info["compile_error"] is None) == (info["criteria"]["compiles"] == 1.0)
    assert reward == (info["score"] if terminated else 0.0)


@functools.cache
def _fuzz_env() -> gym.Env[str, str]:
    return llm_trainer.make(ENV_ID, config={"time_limit_s": 0.2})


def test_the_code_suites_are_locked_and_the_oracle_scores_one_on_the_smoke_suite(
    tmp_path: Any,
) -> None:
    from llm_trainer.benchmarks.runner import BenchConfig, run_bench
    from llm_trainer.benchmarks.suites import locked_hashes, suite_spec

    full, smoke = suite_spec("code-v0"), suite_spec("code-smoke-v0")
    assert full.envs == smoke.envs == (ENV_ID,)
    assert full.difficulties == smoke.difficulties == (1, 2, 3)
    assert locked_hashes()["code-v0"] == full.hash
    assert locked_hashes()["code-smoke-v0"] == smoke.hash
    run = run_bench(BenchConfig("code-smoke-v0", "oracle", out=tmp_path / "r.json", workers=1))
    metrics = run.result.summary["metrics"]
    assert run.result.summary["episodes"] == 18
    assert metrics["reward"]["mean"] == pytest.approx(1.0)
    assert metrics["success"]["mean"] == pytest.approx(1.0)
