"""The ``code`` family: function synthesis with hidden tests, judged in the sandbox.

A problem asks for one Python function (signature, description, one or two examples) drawn
from a template of :mod:`.tasks` at the episode's difficulty, with hidden tests: inputs drawn
from the same generator (edge cases among them) whose expected outputs the template's
reference implementation computes here, in the judge's process.

**Judging an answer.** The code is the first ```` ```python ```` block of the answer (or the
whole answer when it has none). It is parsed here first: a syntax error, or code that never
binds the function's name, fails without a sandbox run. Otherwise one sandbox run
(:mod:`llm_trainer.sandbox`, at least isolation level ``config.min_level``) executes the
harness (:mod:`.harness`) with the code and the tests' *inputs*; the harness calls the function
on every input within a per-test time limit and prints each result as JSON on a line tagged
with a fresh nonce. Here, each reported value is compared with the expected output (as JSON:
``True`` is not ``1``, ``2.0`` is not ``2``, a tuple is a list). The exit code and anything
else the program prints are ignored: a test without exactly one result line fails, so a
program that calls ``os._exit(0)`` or prints "all tests passed" scores 0 on every test it did
not answer, and the expected outputs never enter the sandbox.

Criteria: ``compiles`` (gate: the code parses, loads and defines the function) and ``tests``
(the fraction of hidden tests passed: the score). The failures name each failing test
(``test_3: rotate([1, 2, 3], 4): expected [2, 3, 1], got [3, 1, 2]``) or the compile error;
:meth:`CodeFamily.judge` also returns the failing tests' names and the isolation level.
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import FrozenDict, to_plain
from llm_trainer.envs.problems.code.tasks import TEMPLATES, Args, FunctionTask
from llm_trainer.envs.problems.spec import (
    Check,
    EvaluationMetrics,
    ProblemFamily,
    ProblemSpec,
    check_choices,
    check_per_difficulty,
)
from llm_trainer.envs.tooluse.base import Draws
from llm_trainer.sandbox.config import LEVELS, Level

if TYPE_CHECKING:
    from llm_trainer.sandbox import Sandbox, SandboxResult

#: Failing tests described one by one in the feedback (the rest are counted).
MAX_SHOWN_FAILURES = 3
#: Characters of a value (or a call) shown in the feedback, and of an error message.
_SHOWN = 80
_SHOWN_ERROR = 200
#: Seconds a run may take beyond its tests' time limits (interpreter start, harness, I/O).
_STARTUP_S = 3.0
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\r?\n(.*?)(?:```|\Z)", re.DOTALL | re.I)
_FORMAT = "the code in a ```python block"
#: What ``ast.parse`` raises on hostile text besides SyntaxError: nesting too deep for the
#: parser (RecursionError, or MemoryError for a few thousand unary minus signs).
_PARSE_ERRORS = (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError)


@dataclass(frozen=True, slots=True)
class CodeConfig:
    """Templates, difficulty parameters and sandbox limits of ``Code-v0`` (the env's
    ``config``)."""

    templates: tuple[str, ...] = tuple(TEMPLATES)
    """Templates drawn from, uniformly among those of the episode's difficulty (each
    difficulty needs at least one; :data:`~.tasks.TEMPLATES` lists them)."""
    tests: tuple[int, int, int] = (8, 10, 12)
    """Hidden tests per problem at difficulties 1, 2, 3 (up to half of them edge cases)."""
    examples: int = 2
    """Examples shown in the statement (drawn apart from the hidden tests)."""
    time_limit_s: float = 1.0
    """Wall-clock limit of one test (and of loading the code), in seconds."""
    memory_mb: int = 256
    """Memory cap of a run (the sandbox's memory cgroup)."""
    min_level: Level = "L3"
    """The weakest sandbox isolation level accepted (``L0``-``L4``; see ../shared/SANDBOX.md).
    Below it, judging raises :class:`~llm_trainer.sandbox.SandboxUnavailable`."""

    def __post_init__(self) -> None:
        check_choices("templates", self.templates, tuple(TEMPLATES))
        missing = [
            d for d in (1, 2, 3) if not any(TEMPLATES[t].difficulty == d for t in self.templates)
        ]
        if missing:
            raise ConfigError(
                f"config.templates has none of difficulty {missing[0]} (every difficulty needs "
                f"one; those of {missing[0]}: "
                f"{', '.join(n for n, t in TEMPLATES.items() if t.difficulty == missing[0])})"
            )
        check_per_difficulty("tests", self.tests, 1, 50)
        if (
            isinstance(self.examples, bool)
            or not isinstance(self.examples, int)
            or not (0 <= self.examples <= 5)
        ):
            raise ConfigError(f"config.examples must be an int in [0, 5], got {self.examples!r}")
        limit = self.time_limit_s
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 < limit <= 10:
            raise ConfigError(f"config.time_limit_s must be a number in (0, 10], got {limit!r}")
        memory = self.memory_mb
        if isinstance(memory, bool) or not isinstance(memory, int) or not 32 <= memory <= 8192:
            raise ConfigError(f"config.memory_mb must be an int in [32, 8192], got {memory!r}")
        if self.min_level not in LEVELS:
            raise ConfigError(
                f"config.min_level must be one of {', '.join(LEVELS)}, got {self.min_level!r}"
            )


class CodeReport(NamedTuple):
    """What judging an answer found: the criteria and reasons, and the details the env puts
    in ``info``."""

    check: Check
    compile_error: str | None
    """Why the code could not be run at all (syntax, no such function, an error while
    loading), or ``None``."""
    failing_tests: tuple[str, ...]
    """Names of the failing hidden tests (``test_3``), in order."""
    isolation_level: str | None
    """The sandbox level the code ran at (``None``: it did not run)."""


def extract_code(answer: str) -> str:
    """The code of an answer: its first ```` ```python ```` (or ```` ```py ````, or bare
    ```` ``` ````) block, to the closing fence or the end; the whole answer without one.

    >>> extract_code("Here:\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
    'def f():\\n    return 1\\n'
    >>> extract_code("def f(): return 1")
    'def f(): return 1'
    """
    match = _FENCE.search(answer)
    return match.group(1) if match else answer


def parse_error(code: str, function: str) -> str | None:
    """Why ``code`` cannot define ``function``, found by parsing it (never running it): a
    syntax error, or no binding of the name anywhere (``def``, ``class``, assignment, import);
    ``None`` if it may. Saves a sandbox run for most malformed answers.

    >>> parse_error("def f(:", "f"), parse_error("def g(): pass", "f"), parse_error("f = len", "f")
    ('SyntaxError: invalid syntax (line 1)', "the code defines no function named 'f'", None)
    """
    try:
        code.encode("utf-8")  # lone surrogates cannot be written into the sandbox either
        tree = ast.parse(code)
    except UnicodeError:
        return "the code is not valid Unicode text"
    except SyntaxError as exc:
        line = f" (line {exc.lineno})" if exc.lineno else ""
        return f"{type(exc).__name__}: {exc.msg}{line}"
    except _PARSE_ERRORS as exc:
        return f"the code cannot be parsed ({type(exc).__name__}: nested too deeply or too long)"
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound = node.name
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound = node.id
        elif isinstance(node, ast.alias):
            bound = node.asname or node.name
        else:
            continue
        if bound == function:
            return None
    return f"the code defines no function named {function!r}"


@functools.cache
def _reference(source: str, function: str) -> Callable[..., Any]:
    """The reference implementation a template wrote (our code: run here, never the agent's)."""
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<reference {function}>", "exec"), namespace)
    reference: Callable[..., Any] = namespace[function]
    return reference


@functools.cache
def harness_source() -> str:
    """The harness program (:mod:`.harness`) as the sandbox receives it."""
    return (Path(__file__).parent / "harness.py").read_text(encoding="utf-8")


def _canonical(value: Any) -> str:
    """A value as canonical JSON: how returned and expected values are compared."""
    return json.dumps(to_plain(value), sort_keys=True)


def _cut(text: str, limit: int = _SHOWN) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    text = " ".join(text[: 4 * limit].split())
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _call(function: str, args: Args) -> str:
    """``rotate([1, 2, 3], 4)``: a test's call, as the statement and the feedback write it."""
    return f"{function}({', '.join(repr(to_plain(a)) for a in args)})"


class CodeFamily(ProblemFamily[CodeConfig]):
    """Function synthesis: write the function the statement describes; scored by the fraction
    of hidden tests it passes when run in the sandbox (see the module docstring).

    The sandbox is made on the first answer that needs a run, so building the family (and the
    env) costs nothing; :meth:`close` releases it and a pickled family leaves it behind.
    """

    name = "code"
    config_class = CodeConfig
    metrics = EvaluationMetrics({"tests": 1.0}, gates=frozenset({"compiles"}))

    def __init__(self, config: CodeConfig) -> None:
        super().__init__(config)
        self._templates = {
            d: tuple(t for t in config.templates if TEMPLATES[t].difficulty == d) for d in (1, 2, 3)
        }
        self._sandbox: Sandbox | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "_templates": self._templates, "_sandbox": None}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.__dict__.update(state)

    # -- problems ------------------------------------------------------------------------------

    def generate(self, rng: np.random.Generator, difficulty: int) -> ProblemSpec:
        c = self.config
        d = Draws(rng, block=64)
        template = d.pick(self._templates[difficulty])
        task = TEMPLATES[template].draw(d)
        n = c.tests[difficulty - 1]
        inputs = _draw_inputs(d, task, n)
        examples = _draw_examples(d, task, c.examples, inputs)
        reference = _reference(task.reference, task.function)
        expected = [to_plain(reference(*copy.deepcopy(args))) for args in inputs]
        shown = [
            f"    {_call(task.function, args)} == {to_plain(reference(*copy.deepcopy(args)))!r}"
            for args in examples
        ]
        statement = (
            f"Write a Python function:\n\n    def {task.signature}\n\n{task.description}\n\n"
            + ("Examples:\n" + "\n".join(shown) + "\n\n" if shown else "")
            + f"Your code runs in a sandbox on {n} hidden tests, each within {c.time_limit_s:g} "
            "s; the score is the fraction of tests it passes. Use the standard library only. "
            f"Answer with {_FORMAT} inside <answer>...</answer>."
        )
        return ProblemSpec(
            domain=f"code/{template}",
            statement=statement,
            answer=f"```python\n{task.reference}```",
            difficulty=difficulty,
            constraints=(
                f"define def {task.signature}",
                f"each test within {c.time_limit_s:g} s",
                "standard library only",
            ),
            objectives=("pass every hidden test",),
            answer_format=_FORMAT,
            data=FrozenDict(
                {
                    "template": template,
                    "function": task.function,
                    "signature": task.signature,
                    "parameters": task.parameters,
                    "inputs": [list(args) for args in inputs],
                    "expected": expected,
                }
            ),
        )

    # -- judging -------------------------------------------------------------------------------

    def check(self, spec: ProblemSpec, answer: str) -> Check:
        return self.judge(spec, answer).check

    def judge(self, spec: ProblemSpec, answer: str) -> CodeReport:
        """Run ``answer``'s code on ``spec``'s hidden tests and compare the results.

        Never raises because of the answer, whatever its text or behaviour.

        Raises:
            SandboxUnavailable: when this machine cannot isolate at ``config.min_level``
                (a rollout failure: the answer is not at fault).
        """
        function: str = spec.data["function"]
        inputs: tuple[Any, ...] = spec.data["inputs"]
        code = extract_code(answer)
        error = parse_error(code, function)
        if error is not None:
            return _not_run("compile error", error, len(inputs), None)
        from llm_trainer.sandbox import new_nonce, tagged_lines

        nonce = new_nonce()
        limit = self.config.time_limit_s
        tests = {"function": function, "time_limit_s": limit, "inputs": to_plain(inputs)}
        result = self.sandbox().run(
            files={
                "harness.py": harness_source(),
                "solution.py": code,
                "tests.json": json.dumps(tests),
            },
            # -S: no site-packages (the code may use the standard library only), which halves
            # the interpreter's start-up
            argv=("-S", "harness.py"),
            stdin=f"{nonce}\n",
            wall_s=(len(inputs) + 1) * limit + _STARTUP_S,
        )
        return _score(spec, _parse_records(tagged_lines(result.stdout, nonce)), result)

    def sandbox(self) -> Sandbox:
        """This family's sandbox, made on first use.

        Raises:
            SandboxUnavailable: below ``config.min_level``.
        """
        if self._sandbox is None:
            from llm_trainer.sandbox import Sandbox, SandboxConfig

            c = self.config
            wall = (max(c.tests) + 1) * c.time_limit_s + _STARTUP_S
            self._sandbox = Sandbox(
                SandboxConfig(
                    min_level=c.min_level,
                    wall_s=wall,
                    cpu_s=wall,
                    memory_mb=c.memory_mb,
                    pids=16,
                    work_mb=16,
                )
            )
        return self._sandbox

    def close(self) -> None:
        """Drop the sandbox (a later answer makes a new one). It holds no process, file or
        cgroup between runs (each run removes its own), only its config and the isolation
        report."""
        self._sandbox = None


def _draw_inputs(d: Draws, task: FunctionTask, n: int) -> list[Args]:
    """``n`` distinct inputs where possible: up to half of them edge cases, the rest random,
    in a drawn order."""
    edges = list({_canonical(args): args for args in task.edge_cases}.values())
    k = min(len(edges), n // 2)
    for i in range(k):  # a partial Fisher-Yates shuffle picks k edge cases
        j = d.integer(i, len(edges))
        edges[i], edges[j] = edges[j], edges[i]
    inputs = edges[:k]
    seen = {_canonical(args) for args in inputs}
    for _ in range(20 * n):
        if len(inputs) == n:
            break
        args = task.random_args(d)
        if _canonical(args) not in seen:
            seen.add(_canonical(args))
            inputs.append(args)
    while len(inputs) < n:  # a tiny input space: repeat rather than fail
        inputs.append(task.random_args(d))
    for i in range(n - 1, 0, -1):
        j = d.integer(0, i + 1)
        inputs[i], inputs[j] = inputs[j], inputs[i]
    return inputs


def _draw_examples(d: Draws, task: FunctionTask, k: int, tests: list[Args]) -> list[Args]:
    """``k`` random inputs for the statement, other than the hidden tests where possible."""
    hidden = {_canonical(args) for args in tests}
    examples: list[Args] = []
    for _ in range(20 * k):
        if len(examples) == k:
            break
        args = task.random_args(d)
        if _canonical(args) not in hidden:
            hidden.add(_canonical(args))
            examples.append(args)
    return examples


class _Answer(NamedTuple):
    """One result line of a test: the value as canonical JSON and as shown, or an error."""

    canonical: str | None
    shown: str
    error: str | None


class _Records(NamedTuple):
    """The harness's result lines, parsed."""

    compile_error: str | None
    load_error: str | None
    loaded: bool
    tests: Mapping[int, list[_Answer]]


def _parse_records(lines: list[str]) -> _Records:
    """The harness's records among the tagged lines; malformed ones are ignored (the agent's
    code can write lines with the nonce too, but only to its own loss: see :func:`_score`)."""
    compile_error = load_error = None
    loaded = False
    tests: dict[int, list[_Answer]] = {}
    for line in lines:
        try:  # a line's JSON may nest deeply: parsing or writing it back may recurse too far
            record = json.loads(line)
            if not isinstance(record, dict):
                continue
            test, error = record.get("test"), record.get("error")
            if type(test) is int and "value" in record:
                value = record["value"]
                answer = _Answer(json.dumps(value, sort_keys=True), _cut(repr(value)), None)
            elif type(test) is int and isinstance(error, str):
                answer = _Answer(None, "", _cut(error, _SHOWN_ERROR))
            else:
                if isinstance(record.get("compile_error"), str) and compile_error is None:
                    compile_error = _cut(record["compile_error"], _SHOWN_ERROR)
                elif isinstance(record.get("load_error"), str) and load_error is None:
                    load_error = _cut(record["load_error"], _SHOWN_ERROR)
                elif record.get("loaded") is True:
                    loaded = True
                continue
        except (ValueError, RecursionError):
            continue
        tests.setdefault(test, []).append(answer)
    return _Records(compile_error, load_error, loaded, tests)


def _not_run(kind: str, error: str, n: int, level: str | None) -> CodeReport:
    """The report of code that never reached the tests (``kind``: what went wrong)."""
    return CodeReport(
        Check(
            {"compiles": 0.0, "tests": 0.0},
            (f"{kind}: {error}",),
            f"passed 0 of {n} hidden tests",
        ),
        error,
        tuple(f"test_{i + 1}" for i in range(n)),
        level,
    )


_LIMITS = {"timeout": "time", "cpu": "CPU time", "pids": "process"}


def _ended(result: SandboxResult) -> str:
    """Why a run stopped before the harness finished, in words."""
    if result.killed is not None:
        limit = _LIMITS.get(result.killed, result.killed)
        return f"the program was killed at the sandbox's {limit} limit"
    return f"the program ended early (exit code {result.returncode})"


def _score(spec: ProblemSpec, records: _Records, result: SandboxResult) -> CodeReport:
    function: str = spec.data["function"]
    inputs: tuple[Any, ...] = spec.data["inputs"]
    expected: tuple[Any, ...] = spec.data["expected"]
    n = len(inputs)
    if records.compile_error is not None:
        return _not_run("compile error", records.compile_error, n, result.level)
    if records.load_error is not None:
        return _not_run("load error", records.load_error, n, result.level)
    if not records.loaded:
        return _not_run("load error", f"{_ended(result)} while loading the code", n, result.level)
    failures: list[str] = []
    failing: list[str] = []
    for i in range(n):
        answers = records.tests.get(i, [])
        if len(answers) != 1:
            why = "answered more than once" if answers else f"no result: {_ended(result)}"
        elif answers[0].error is not None:
            why = answers[0].error
        elif answers[0].canonical != _canonical(expected[i]):
            why = f"expected {_cut(repr(to_plain(expected[i])))}, got {answers[0].shown}"
        else:
            continue
        failing.append(f"test_{i + 1}")
        failures.append(f"test_{i + 1}: {_cut(_call(function, inputs[i]))}: {why}")
    passed = n - len(failing)
    if len(failures) > MAX_SHOWN_FAILURES:
        more = len(failures) - MAX_SHOWN_FAILURES
        plural = "s" if more > 1 else ""
        failures = [*failures[:MAX_SHOWN_FAILURES], f"{more} more failing test{plural}"]
    return CodeReport(
        Check(
            {"compiles": 1.0, "tests": passed / n},
            tuple(failures),
            f"passed {passed} of {n} hidden tests",
        ),
        None,
        tuple(failing),
        result.level,
    )
