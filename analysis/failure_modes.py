"""Failure-mode mining: why episodes failed, how often, where, and how that changes over time.

:func:`diagnose` (and :func:`classify`, its mode alone) gives every episode exactly one
primary :class:`FailureMode`, read from what the env itself reported: the metrics and the
part of ``info`` each :class:`~llm_trainer.core.trajectory.Step` keeps (``invalid_reason``,
a problem's ``failures`` and ``score``, MALT's per-role credit: see
:data:`~llm_trainer.core.trajectory.STEP_INFO_KEYS`), the tool results the env returned
(``"error: ..."``), and the actions. :func:`mine` counts the modes of many episodes into a
:class:`FailureReport` (rates, examples, per-env and per-difficulty breakdowns, a trend over
episode order), whose :meth:`~FailureReport.table` is text and
:meth:`~FailureReport.to_dict` JSON; :func:`plot_failure_modes` draws one or several reports
side by side. ``llm-trainer analyze`` runs all of it on a run directory or benchmark results.

An episode can go wrong in several ways at once (a malformed action, then a loop, then the
step limit); the primary mode is the first match in this table, which follows an episode's
pipeline (the format, the tool choice, the tool's run, the answer), so the mode names the
earliest thing that went wrong:

==  ========================  ==============================================================
#   mode                      when (first match wins)
==  ========================  ==============================================================
0   ``success``               the episode succeeded (``metrics["success"]``)
1   ``episode_error``         the policy or the env raised (``trajectory.error``)
2   MALT-v0's modes           a MALT trajectory (its info has ``refiner_correct``): see below
3   ``malformed_action``      an action broke the format (``info["invalid_reason"]``, or the
                              final ``format_ok`` is false)
4   ``wrong_tool``            a call of an unknown tool, or the final ``tool_correct`` is
                              false (a required tool never called, or one outside the allowed)
5   ``bad_arguments``         a tool call failed on its arguments (a missing or mistyped
                              argument, an expression that does not parse, an unknown city)
6   ``tool_error``            a tool call failed to run (division by zero, a timeout, a result
                              too large), or the final ``exec_ok`` is false
7   ``lost_game``             a game (Kuhn poker: ``info["chips"]``) ended behind
8   ``repeated_actions``      one action sent :data:`LOOP_REPEATS` or more times: a loop
9   ``step_limit``            no final answer: the time limit (or the caller's turn limit)
                              cut the episode, or it stopped, before any answer
10  ``unreadable_answer``     the answer could not be read (problem envs: ``unreadable: ...``)
11  ``infeasible_solution``   the answer breaks a hard constraint (``infeasible: ...``, e.g. a
                              knapsack over capacity; ``invalid: ...``, e.g. a city twice)
12  ``wrong_answer``          the answer is wrong (tool-use envs; problem envs: ``wrong: ...``)
13  ``constraint_violated``   the answer misses one of the task's constraints (any other
                              failure reason, e.g. a poem with the wrong number of lines)
14  ``suboptimal``            a scored answer with no failure reason (feasible) below the
                              success threshold (a knapsack of too little value, a tour too
                              long)
15  ``unsolved``              it failed, and nothing recorded says why
==  ========================  ==============================================================

MALT-v0 (one trajectory per role; each role's trajectory carries the team's outcome):

==  ==========================  ============================================================
#   mode                        when (first match wins)
==  ==========================  ============================================================
a   ``refiner_invalid``         the refiner's trajectory: its last action held no valid
                                ``<answer>`` block (its own ``invalid_reason``)
b   ``malformed_action``        this role's own action was invalid (e.g. an empty text)
c   ``refiner_invalid``         no scored final answer (how the other roles see a)
d   ``refiner_broke_correct``   the generator's answer was right, the refiner's final one not
e   ``not_repaired``            the generator's answer was wrong, and the verifier and the
                                refiner did not repair it
f   ``unsolved``                anything else
==  ==========================  ============================================================

Episodes recorded before steps kept ``info`` still classify: the invalid actions are found by
parsing the actions again, and the answer modes fall back to the metrics (``wrong_answer``).
Benchmark results store each failed episode's mode (``failure_mode``); older result files are
classified from their metrics with :func:`classify_metrics`.

>>> from llm_trainer.core.trajectory import Step, Trajectory
>>> def episode(*steps):
...     return Trajectory("LLMTrainer/Calculator-v0", 0, 1, "", (), "What is 6 * 7?", steps)
>>> ok = {"format_ok": True, "tool_correct": True, "exec_ok": True}
>>> call = '<tool_call>{"name": "calculator", "arguments": {"expression": "6 / 0"}}</tool_call>'
>>> diagnose(episode(Step(call, "error: division by zero", "tool", 0.0, False, False, ok)))
Diagnosis(mode='tool_error', detail='error: division by zero', step=0)
>>> classify(episode(Step("42", "Invalid action: ...", "user", -0.1, False, True,
...                       info={"invalid_reason": "expected <tool_call>...</tool_call>"})))
'malformed_action'
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from llm_trainer.core.trajectory import Step, Trajectory
from llm_trainer.envs.tools.parser import AnswerAction, InvalidAction, parse_action


class FailureMode(StrEnum):
    """The primary failure modes, in the order tables and charts show them (see the module
    docstring for when each applies and which wins)."""

    SUCCESS = "success"
    EPISODE_ERROR = "episode_error"
    MALFORMED_ACTION = "malformed_action"
    WRONG_TOOL = "wrong_tool"
    BAD_ARGUMENTS = "bad_arguments"
    TOOL_ERROR = "tool_error"
    REPEATED_ACTIONS = "repeated_actions"
    STEP_LIMIT = "step_limit"
    UNREADABLE_ANSWER = "unreadable_answer"
    INFEASIBLE_SOLUTION = "infeasible_solution"
    WRONG_ANSWER = "wrong_answer"
    CONSTRAINT_VIOLATED = "constraint_violated"
    SUBOPTIMAL = "suboptimal"
    REFINER_INVALID = "refiner_invalid"
    REFINER_BROKE_CORRECT = "refiner_broke_correct"
    NOT_REPAIRED = "not_repaired"
    LOST_GAME = "lost_game"
    UNSOLVED = "unsolved"

    @property
    def description(self) -> str:
        """What the mode means, in one line."""
        return DESCRIPTIONS[self]


DESCRIPTIONS: Mapping[FailureMode, str] = {
    FailureMode.SUCCESS: "the episode succeeded",
    FailureMode.EPISODE_ERROR: "the policy or the env raised during the episode",
    FailureMode.MALFORMED_ACTION: "an action broke the format (no valid tool call or answer)",
    FailureMode.WRONG_TOOL: "the tools called were not the right ones (or none was called)",
    FailureMode.BAD_ARGUMENTS: "a tool call failed on its arguments",
    FailureMode.TOOL_ERROR: "a tool call failed to run (e.g. division by zero, a timeout)",
    FailureMode.REPEATED_ACTIONS: "the agent looped: one action sent again and again",
    FailureMode.STEP_LIMIT: "gave up or hit the step limit: no final answer",
    FailureMode.UNREADABLE_ANSWER: "the answer could not be read as a solution",
    FailureMode.INFEASIBLE_SOLUTION: "the solution breaks a hard constraint (infeasible)",
    FailureMode.WRONG_ANSWER: "the final answer was wrong",
    FailureMode.CONSTRAINT_VIOLATED: "the answer violated one of the task's constraints",
    FailureMode.SUBOPTIMAL: "a feasible answer below the success threshold",
    FailureMode.REFINER_INVALID: "MALT: the refiner gave no valid final answer",
    FailureMode.REFINER_BROKE_CORRECT: "MALT: the refiner changed a correct solution",
    FailureMode.NOT_REPAIRED: "MALT: a wrong solution was not repaired",
    FailureMode.LOST_GAME: "the game ended with the agent behind",
    FailureMode.UNSOLVED: "the episode failed, and nothing recorded says why",
}

#: The same (normalised) action sent this many times in one episode is a loop.
LOOP_REPEATS = 3
#: Longest evidence text a diagnosis or an example keeps.
MAX_DETAIL = 160
#: Name of the JSON report ``llm-trainer analyze`` writes (``failure_modes.json``, or
#: ``<result>.failure_modes.json`` beside a single result file); the leaderboard skips them.
REPORT_SUFFIX = "failure_modes.json"
#: The JSON report's schema name and version.
SCHEMA = "llm-trainer/failure-modes"
SCHEMA_VERSION = 1

_ORDER = {mode.value: i for i, mode in enumerate(FailureMode)}
_UNKNOWN_TOOL = "error: unknown tool"
# The bundled tools' messages for arguments they cannot use (envs/tools/: calculator, weather,
# search); any other "error: ..." of a tool is a failure to run (tool_error).
_ARGUMENT_ERROR = re.compile(
    r"missing required|must be|invalid (?:expression|character)|unsupported|"
    r"unknown (?:name|function|city|argument|parameter)|only plain calls|empty expression|"
    r"too long|takes \d+ argument|not supported|out of range|nested too deeply|"
    r"no forecast for|unexpected (?:argument|keyword)",
    re.IGNORECASE,
)
# Problem families' failure reasons (envs/problems/: knapsack, tsp, reasoning), by prefix.
_FAILURE_PREFIXES: tuple[tuple[str, FailureMode], ...] = (
    ("unreadable", FailureMode.UNREADABLE_ANSWER),
    ("infeasible", FailureMode.INFEASIBLE_SOLUTION),
    ("invalid", FailureMode.INFEASIBLE_SOLUTION),
    ("wrong", FailureMode.WRONG_ANSWER),
)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Why an episode failed.

    Attributes:
        mode: The primary :class:`FailureMode` (its value).
        detail: The evidence, cut to :data:`MAX_DETAIL` characters: the invalid reason, the
            tool's error, the checker's failure reason, the repeated action...
        step: The index of the step that shows it (``None`` when no single step does).
    """

    mode: str
    detail: str = ""
    step: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", str(self.mode))  # a FailureMode's value, plain


def classify(trajectory: Trajectory) -> str:
    """The primary failure mode of ``trajectory`` (``"success"`` for a success); never raises.

    See the module docstring for the modes and their precedence.
    """
    return diagnose(trajectory).mode


def diagnose(trajectory: Trajectory) -> Diagnosis:
    """The primary failure mode of ``trajectory`` with its evidence; never raises."""
    t = trajectory
    if t.error is not None:
        return Diagnosis(FailureMode.EPISODE_ERROR, _cut(t.error))
    if t.success:
        return Diagnosis(FailureMode.SUCCESS)
    if not t.steps:
        return Diagnosis(FailureMode.STEP_LIMIT, "no action was taken")
    steps = t.steps
    last = steps[-1]
    if "refiner_correct" in last.info:
        return _diagnose_malt(t)
    invalid = _first_invalid(steps)
    if invalid is not None:
        return invalid
    calls = [(i, s) for i, s in enumerate(steps) if s.role == "tool"]
    failed = [(i, s.observation) for i, s in calls if s.observation.startswith("error:")]
    for i, text in failed:
        if text.startswith(_UNKNOWN_TOOL):
            return Diagnosis(FailureMode.WRONG_TOOL, _cut(text), i)
    if last.metrics.get("tool_correct") is False:
        names = sorted({n for _, s in calls if (n := _tool_name(s.action))})
        detail = f"called {', '.join(names)}" if names else "no tool was called"
        return Diagnosis(FailureMode.WRONG_TOOL, detail)
    for i, text in failed:
        if _ARGUMENT_ERROR.search(text):
            return Diagnosis(FailureMode.BAD_ARGUMENTS, _cut(text), i)
    if failed:
        i, text = failed[0]
        return Diagnosis(FailureMode.TOOL_ERROR, _cut(text), i)
    if last.metrics.get("exec_ok") is False:
        return Diagnosis(FailureMode.TOOL_ERROR, "a tool call failed")
    chips = last.info.get("chips")
    if isinstance(chips, int | float) and not isinstance(chips, bool) and chips <= 0:
        return Diagnosis(FailureMode.LOST_GAME, f"chips {chips:g}", len(steps) - 1)
    loop = _loop(steps)
    if loop is not None:
        return loop
    answers = [i for i, s in enumerate(steps) if isinstance(parse_action(s.action), AnswerAction)]
    if not last.terminated and not answers:
        ended = "the step limit cut it" if last.truncated else "it stopped"
        return Diagnosis(FailureMode.STEP_LIMIT, f"no answer in {len(steps)} steps: {ended}")
    return _diagnose_answer(last, answers[-1] if answers else len(steps) - 1, steps)


def _diagnose_answer(last: Step, at: int, steps: Sequence[Step]) -> Diagnosis:
    """The answer modes: from the checker's failure reasons and score, or the metrics."""
    failures = [str(f) for f in _texts(last.info.get("failures"))]
    for prefix, mode in _FAILURE_PREFIXES:
        for reason in failures:
            if reason.casefold().startswith(prefix):
                return Diagnosis(mode, _cut(reason), at)
    if failures:
        return Diagnosis(FailureMode.CONSTRAINT_VIOLATED, _cut("; ".join(failures)), at)
    score = last.info.get("score")
    if isinstance(score, int | float) and not isinstance(score, bool):  # scored, no failure
        return Diagnosis(FailureMode.SUBOPTIMAL, f"score {score:.2f}", at)
    if not last.metrics.get("answer_correct"):
        parsed = parse_action(steps[at].action)
        given = f"answered {parsed.text!r}" if isinstance(parsed, AnswerAction) else ""
        return Diagnosis(FailureMode.WRONG_ANSWER, _cut(given), at)
    return Diagnosis(FailureMode.UNSOLVED)


def _diagnose_malt(t: Trajectory) -> Diagnosis:
    """MALT-v0's modes (see the module docstring's second table)."""
    steps = t.steps
    last = steps[-1]
    info = last.info
    agent = str(info.get("agent") or t.source.removeprefix("policy:"))
    reason = info.get("invalid_reason")
    if agent == "refiner" and reason:
        return Diagnosis(FailureMode.REFINER_INVALID, _cut(str(reason)), len(steps) - 1)
    own = next((i for i, s in enumerate(steps) if s.info.get("invalid_reason")), None)
    if own is not None or last.metrics.get("format_ok") is False:
        detail = str(steps[own].info["invalid_reason"]) if own is not None else ""
        return Diagnosis(FailureMode.MALFORMED_ACTION, _cut(detail), own)
    failures = [str(f) for f in _texts(info.get("failures"))]
    score = info.get("score")
    refiner_correct = bool(info.get("refiner_correct"))
    if not refiner_correct and not failures and score in (0, 0.0, None):
        return Diagnosis(FailureMode.REFINER_INVALID, "no scored final answer")
    detail = _cut(failures[0]) if failures else ""
    if info.get("generator_correct") and not refiner_correct:
        return Diagnosis(FailureMode.REFINER_BROKE_CORRECT, detail)
    if not refiner_correct:
        return Diagnosis(FailureMode.NOT_REPAIRED, detail)
    return Diagnosis(FailureMode.UNSOLVED)


def _first_invalid(steps: Sequence[Step]) -> Diagnosis | None:
    """The first invalid action: from ``info["invalid_reason"]``; for steps recorded without
    info whose final ``format_ok`` is false, by parsing the actions again."""
    for i, s in enumerate(steps):
        reason = s.info.get("invalid_reason")
        if reason:
            return Diagnosis(FailureMode.MALFORMED_ACTION, _cut(str(reason)), i)
    if steps[-1].metrics.get("format_ok") is not False:
        return None
    for i, s in enumerate(steps):
        parsed = parse_action(s.action)
        if isinstance(parsed, InvalidAction):
            return Diagnosis(FailureMode.MALFORMED_ACTION, _cut(parsed.reason), i)
    return Diagnosis(FailureMode.MALFORMED_ACTION)


def _loop(steps: Sequence[Step]) -> Diagnosis | None:
    """The most repeated action, when it was sent :data:`LOOP_REPEATS` times or more."""
    counts = Counter(" ".join(s.action.split()) for s in steps)
    if not counts:
        return None
    action, n = counts.most_common(1)[0]
    if n < LOOP_REPEATS:
        return None
    first = next(i for i, s in enumerate(steps) if " ".join(s.action.split()) == action)
    return Diagnosis(FailureMode.REPEATED_ACTIONS, _cut(f"{n}x {action}"), first)


def _tool_name(action: str) -> str:
    parsed = parse_action(action)
    return getattr(parsed, "name", "") if not isinstance(parsed, AnswerAction) else ""


def _texts(value: Any) -> tuple[Any, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, list | tuple) else ()


def _cut(text: str, limit: int = MAX_DETAIL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


_METRIC_MODES = (
    ("format_ok", FailureMode.MALFORMED_ACTION),
    ("tool_correct", FailureMode.WRONG_TOOL),
    ("exec_ok", FailureMode.TOOL_ERROR),
    ("answer_correct", FailureMode.WRONG_ANSWER),
)


def classify_metrics(metrics: Mapping[str, bool], error: str | None = None) -> str:
    """A coarse mode from the five metrics alone (for benchmark results written before they
    stored ``failure_mode``): an error, then the first false metric of format, tool choice,
    tool execution and answer.

    >>> classify_metrics({"success": False, "format_ok": True, "tool_correct": False})
    'wrong_tool'
    """
    if error is not None:
        return FailureMode.EPISODE_ERROR.value
    if metrics.get("success"):
        return FailureMode.SUCCESS.value
    for metric, mode in _METRIC_MODES:
        if not metrics.get(metric, False):
            return mode.value
    return FailureMode.UNSOLVED.value


# -- mining -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """One classified episode, what a :class:`FailureReport` counts.

    Attributes:
        mode: Its primary mode.
        env_id: The env it was played in.
        difficulty: Its difficulty.
        seed: Its reset seed.
        detail: The evidence (:attr:`Diagnosis.detail`).
        action: The action that shows it (or the last one), cut.
    """

    mode: str
    env_id: str
    difficulty: int
    seed: int
    detail: str = ""
    action: str = ""

    @classmethod
    def of(cls, trajectory: Trajectory) -> Case:
        """Diagnose ``trajectory``."""
        d = diagnose(trajectory)
        steps = trajectory.steps
        step = steps[d.step] if d.step is not None else (steps[-1] if steps else None)
        action = _cut(step.action, 120) if step is not None else ""
        return cls(d.mode, trajectory.env_id, trajectory.difficulty, trajectory.seed, d.detail,
                   action)  # fmt: skip

    def example(self) -> dict[str, Any]:
        """The case as a JSON-ready example."""
        out: dict[str, Any] = {
            "env_id": self.env_id,
            "difficulty": self.difficulty,
            "seed": self.seed,
            "detail": self.detail,
        }
        if self.action:
            out["action"] = self.action
        return out


def _sorted_modes(modes: Iterable[str]) -> list[str]:
    return sorted(set(modes), key=lambda m: (_ORDER.get(m, len(_ORDER)), m))


def _ordered(counter: Counter[str]) -> dict[str, int]:
    return {m: counter[m] for m in _sorted_modes(counter) if counter[m]}


@dataclass(frozen=True, slots=True)
class FailureReport:
    """The failure modes of a set of episodes (build one with :func:`mine` or
    :func:`report_of`).

    Attributes:
        name: What it describes (an agent, a run, a dataset).
        episodes: Episodes counted.
        counts: Episodes per mode (``success`` included), in :class:`FailureMode` order.
        by_env: ``counts`` per env id.
        by_difficulty: ``counts`` per difficulty.
        window: Episodes per window of :attr:`trend`.
        trend: ``counts`` per window of consecutive episodes, in the order given (a training
            run's collected data shows whether a mode fades as it learns).
        examples: Up to ``k`` examples per failure mode (:meth:`Case.example`), first first.
    """

    name: str
    episodes: int
    counts: Mapping[str, int]
    by_env: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    by_difficulty: Mapping[int, Mapping[str, int]] = field(default_factory=dict)
    window: int = 1
    trend: tuple[Mapping[str, int], ...] = ()
    examples: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        """Episodes that did not succeed."""
        return self.episodes - self.counts.get(FailureMode.SUCCESS.value, 0)

    @property
    def failure_counts(self) -> dict[str, int]:
        """``counts`` without ``success``."""
        return {m: n for m, n in self.counts.items() if m != FailureMode.SUCCESS.value}

    def rate(self, mode: str) -> float:
        """The share of all episodes whose primary mode is ``mode``."""
        return self.counts.get(mode, 0) / self.episodes if self.episodes else 0.0

    def table(self) -> str:
        """The report as plain text: the modes (count, share of episodes and of failures, an
        example), then, when some episode failed, per env, per difficulty and the trend."""
        lines = [
            f"failure modes of {self.name}: {self.episodes} episodes, {self.failures} failed "
            f"({_pct(self.failures, self.episodes)})",
            "",
        ]
        rows = [["mode", "count", "episodes", "failures", "example"]]
        for mode, n in self.counts.items():
            share = "-" if mode == FailureMode.SUCCESS.value else _pct(n, self.failures)
            shown = _example_text(self.examples.get(mode, ()))
            rows.append([mode, str(n), _pct(n, self.episodes), share, shown])
        lines += _columns(rows, right={1, 2, 3})
        if not self.failures:
            return "\n".join(lines)
        for title, groups in (("env", self.by_env), ("difficulty", self.by_difficulty)):
            if len(groups) < 2:
                continue
            lines += ["", *_group_rows(title, {str(k): v for k, v in groups.items()})]
        if len(self.trend) > 1:
            windows: dict[str, Mapping[str, int]] = {}
            for i, counts in enumerate(self.trend):
                first = i * self.window + 1
                windows[f"{first}-{first + sum(counts.values()) - 1}"] = counts
            lines += ["", f"trend over episode order (windows of {self.window}):"]
            lines += _group_rows("window", windows)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (rates rounded to 4 places)."""

        def block(counts: Mapping[str, int]) -> dict[str, Any]:
            total = sum(counts.values())
            failed = total - counts.get(FailureMode.SUCCESS.value, 0)
            return {"episodes": total, "failures": failed, "counts": dict(counts)}

        modes = {}
        for mode, n in self.counts.items():
            known = mode in _ORDER
            modes[mode] = {
                "count": n,
                "rate": round(n / self.episodes, 4) if self.episodes else 0.0,
                "share_of_failures": (
                    round(n / self.failures, 4)
                    if self.failures and mode != FailureMode.SUCCESS.value
                    else None
                ),
                "description": FailureMode(mode).description if known else "",
            }
        windows = []
        for i, counts in enumerate(self.trend):
            first = i * self.window + 1  # 1-based episode numbers, as the table shows them
            last = first + sum(counts.values()) - 1
            windows.append({"first": first, "last": last, **block(counts)})
        return {
            "name": self.name,
            "episodes": self.episodes,
            "failures": self.failures,
            "modes": modes,
            "by_env": {env: block(c) for env, c in self.by_env.items()},
            "by_difficulty": {str(d): block(c) for d, c in self.by_difficulty.items()},
            "trend": {"window": self.window, "windows": windows},
            "examples": {m: [dict(e) for e in ex] for m, ex in self.examples.items()},
        }


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def _example_text(examples: Sequence[Mapping[str, Any]]) -> str:
    if not examples:
        return ""
    e = examples[0]
    env = str(e.get("env_id", "")).removeprefix("LLMTrainer/")
    where = f"{env} d{e.get('difficulty')} seed {e.get('seed')}"
    detail = e.get("detail") or e.get("action") or ""
    return _cut(f"{where}: {detail}" if detail else where, 70)


def _columns(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [
            cell.rjust(w) if c in right else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return out


def _group_rows(title: str, groups: Mapping[str, Mapping[str, int]]) -> list[str]:
    rows = [[title, "episodes", "failed", "top failure modes"]]
    for key, counts in groups.items():
        total = sum(counts.values())
        failed = {m: n for m, n in counts.items() if m != FailureMode.SUCCESS.value}
        top = sorted(failed.items(), key=lambda item: (-item[1], _ORDER.get(item[0], 99)))[:3]
        rows.append(
            [
                key,
                str(total),
                _pct(sum(failed.values()), total),
                ", ".join(f"{m} {n}" for m, n in top),
            ]
        )
    return _columns(rows, right={1, 2})


def report_of(
    cases: Iterable[Case], *, name: str = "episodes", examples: int = 3, windows: int = 5
) -> FailureReport:
    """Count classified episodes (in the order given) into a :class:`FailureReport`.

    Args:
        cases: The episodes, in episode order (the trend's order).
        name: What the report describes.
        examples: Examples kept per failure mode.
        windows: How many windows of consecutive episodes the trend has (fewer when there
            are fewer episodes).
    """
    if examples < 0:
        raise ValueError(f"examples must be >= 0, got {examples}")
    if windows < 1:
        raise ValueError(f"windows must be >= 1, got {windows}")
    cases = list(cases)
    counts: Counter[str] = Counter(c.mode for c in cases)
    by_env: dict[str, Counter[str]] = {}
    by_difficulty: dict[int, Counter[str]] = {}
    kept: dict[str, list[Mapping[str, Any]]] = {}
    for c in cases:
        by_env.setdefault(c.env_id, Counter())[c.mode] += 1
        by_difficulty.setdefault(c.difficulty, Counter())[c.mode] += 1
        bucket = kept.setdefault(c.mode, [])
        if c.mode != FailureMode.SUCCESS.value and len(bucket) < examples:
            bucket.append(c.example())
    window = max(1, math.ceil(len(cases) / windows))
    trend = tuple(
        _ordered(Counter(c.mode for c in cases[i : i + window]))
        for i in range(0, len(cases), window)
    )
    return FailureReport(
        name=name,
        episodes=len(cases),
        counts=_ordered(counts),
        by_env={env: _ordered(by_env[env]) for env in sorted(by_env)},
        by_difficulty={d: _ordered(by_difficulty[d]) for d in sorted(by_difficulty)},
        window=window,
        trend=trend,
        examples={m: tuple(kept[m]) for m in _sorted_modes(kept) if kept[m]},
    )


def mine(
    trajectories: Iterable[Trajectory],
    *,
    name: str = "episodes",
    examples: int = 3,
    windows: int = 5,
) -> FailureReport:
    """Classify every trajectory (:func:`diagnose`) and count them into a
    :class:`FailureReport` (arguments as in :func:`report_of`).

    >>> from llm_trainer.core.trajectory import Step, Trajectory
    >>> wrong = Step("<answer>41</answer>", "", "user", 0.0, True, False,
    ...              {"format_ok": True, "tool_correct": True, "exec_ok": True})
    >>> report = mine([Trajectory("LLMTrainer/Calculator-v0", 0, 1, "", (), "6 * 7?", (wrong,))])
    >>> dict(report.counts), report.examples["wrong_answer"][0]["detail"]
    ({'wrong_answer': 1}, "answered '41'")
    """
    return report_of(
        (Case.of(t) for t in trajectories), name=name, examples=examples, windows=windows
    )


def comparison_table(reports: Sequence[FailureReport]) -> str:
    """Several reports side by side: one column per report, the share of its episodes in
    each mode (every mode any of them has)."""
    modes = _sorted_modes(m for r in reports for m in r.counts)
    rows = [["mode", *(r.name for r in reports)]]
    for mode in modes:
        rows.append([mode, *(_pct(r.counts[mode], r.episodes) if r.counts.get(mode) else "-"
                             for r in reports)])  # fmt: skip
    rows.append(["episodes", *(str(r.episodes) for r in reports)])
    rows.append(["failed", *(_pct(r.failures, r.episodes) for r in reports)])
    lines = [f"failure modes by {'agent' if len(reports) > 1 else 'run'} (share of episodes)", ""]
    return "\n".join(lines + _columns(rows, right=set(range(1, len(reports) + 1))))


def reports_to_json(reports: Sequence[FailureReport]) -> dict[str, Any]:
    """Reports as one JSON document (what ``llm-trainer analyze`` writes)."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "reports": [r.to_dict() for r in reports],
    }


# -- the chart ----------------------------------------------------------------------------------


def plot_failure_modes(reports: FailureReport | Sequence[FailureReport], path: str | Path) -> Path:
    """Draw the error-analysis chart as a PNG at ``path`` (written atomically).

    Left: each failure mode's share of the episodes, one bar per report (several agents or
    runs side by side). Right: the trend: each report's failure rate per window of episodes,
    and, for a single report, its three largest modes' rates too.

    Returns:
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from llm_trainer.core.rundir import atomic_write

    items = [reports] if isinstance(reports, FailureReport) else list(reports)
    if not items:
        raise ValueError("plot_failure_modes needs at least one report")
    modes = _sorted_modes(m for r in items for m in r.failure_counts) or ["(no failures)"]
    height = max(3.5, 1.2 + 0.32 * len(modes) * max(1, min(len(items), 4)) ** 0.5)
    fig = Figure(figsize=(13, height))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    fig.subplots_adjust(left=0.17, right=0.98, top=1 - 0.75 / height, bottom=0.55 / height)
    fig.subplots_adjust(wspace=0.25)
    width = 0.8 / len(items)
    for k, r in enumerate(items):
        y = [len(modes) - 1 - i + (len(items) - 1 - 2 * k) * width / 2 for i in range(len(modes))]
        rates = [100 * r.rate(m) for m in modes]
        label = f"{r.name} ({r.episodes} episodes, {_pct(r.failures, r.episodes)} failed)"
        left.barh(y, rates, width, label=label, color=f"C{k % 10}")
        for yi, rate in zip(y, rates, strict=True):
            if rate > 0:
                left.annotate(f"{rate:.0f}%", (rate, yi), xytext=(3, -3),
                              textcoords="offset points", fontsize="x-small")  # fmt: skip
    left.set_yticks(range(len(modes))[::-1], modes)
    left.set_xlabel("share of episodes (%)")
    left.set_xlim(0, max(10.0, *(100 * r.rate(m) for r in items for m in modes)) * 1.15)
    left.set_title("primary failure mode")
    left.grid(axis="x", alpha=0.3)
    left.legend(fontsize="small", loc="lower right")
    for k, r in enumerate(items):
        x = [i * r.window + sum(c.values()) / 2 for i, c in enumerate(r.trend)]
        failed = [100 * (1 - c.get("success", 0) / max(1, sum(c.values()))) for c in r.trend]
        right.plot(x, failed, marker="o", color=f"C{k % 10}", label=f"{r.name}: failed")
        if len(items) == 1:
            for j, (mode, _) in enumerate(sorted(r.failure_counts.items(),
                                                 key=lambda item: -item[1])[:3]):  # fmt: skip
                share = [100 * c.get(mode, 0) / max(1, sum(c.values())) for c in r.trend]
                right.plot(x, share, linestyle="--", marker=".", color=f"C{j + 1}", label=mode)
    right.set_ylim(0, 105)
    right.set_xlabel("episode (window centre)")
    right.set_ylabel("% of the window's episodes")
    right.set_title("trend over episode order")
    right.grid(alpha=0.3)
    right.legend(fontsize="small")
    names = ", ".join(r.name for r in items)
    fig.suptitle(f"Failure modes: {_cut(names, 100)}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())
    return path
