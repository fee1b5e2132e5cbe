"""Negative samples: targeted failures made from verified positives, and diverse samples of them.

Issue 15, item 2. Negatives come from three places: (a) the policy's own failures
(:func:`~llm_trainer.algorithms.nat.policy_negatives`); (b) **targeted negatives**
(:func:`targeted_negatives`): a verified positive perturbed at a chosen failure mode, then
replayed through the real env with the episode engine, so every observation, reward and metric
is the env's own; and (c) **diversity sampling** (:func:`diverse_sample`), which picks negatives
spread over failure modes and, within a mode, over clusters of similar trajectories.

Each perturbation turns a positive's actions into the actions an agent making that mistake
would send (a *script*); the env then decides. It keeps the calls the mistake does not touch
and, when the mistake costs the agent the result its answer was read from, answers with a guess
(a wrong answer, :func:`wrong_answers`): an agent without the result cannot know it, and
keeping the right answer would turn a negative into a lucky guess. "The result the answer is
read from" is the last tool call's (the calculator after two weather calls, the second of two
searches), so no later call depends on what a perturbation changes.

========================  ====================================================  =================
perturbation              what the agent does instead                           the env observes
========================  ====================================================  =================
``wrong_tool``            calls another tool the env offers wherever it called  ``wrong_tool``
                          one tool (one the positive never used, when there is
                          one), the arguments adapted minimally; answers with
                          a guess when that tool gave the last result. ``None``
                          when the env offers a single tool
``corrupted_argument``    sends the last tool call with one argument value      ``bad_arguments``
                          changed: a number off by a few units (an operand, a   or
                          day of a date), a word of a text misspelt (a city, a  ``wrong_answer``
                          query); then answers from what the tool returned: the
                          new result (read where the positive read its answer:
                          the whole result, or the same field of a JSON one), a
                          guess when the tool rejected the value or the answer
                          cannot be read off, the old answer when the result
                          did not change (the env then scores a success, which
                          is not kept)
``dropped_tool_result``   skips the last tool call, so never gets its result,   ``wrong_tool``
                          and answers with a guess (``wrong_tool`` when that    or
                          was the only call of a required tool, e.g. the one    ``wrong_answer``
                          call of a one-call task; ``wrong_answer`` when the
                          tool ran earlier or was optional, as MultiTool's
                          calculator)
``wrong_final_answer``    every call as in the positive, then a wrong answer    ``wrong_answer``
                          (NAT's ``corrupted`` negatives)
``malformed_action``      breaks the format of one action (an unclosed tag,     ``malformed_action``
                          invalid JSON, no tags, prose around the block): a
                          broken call is never run and the agent answers with a
                          guess; a broken answer is sent again until the env's
                          step limit (``None`` for an answer when the env has
                          none)
========================  ====================================================  =================

A perturbed episode is kept only when the env scores it a failure and
:func:`~llm_trainer.analysis.failure_modes.classify` gives one of the modes its perturbation
expects; its ``source`` records both, ``negative:<perturbation>:<observed mode>``
(:func:`negative_source`). The rest are counted in a :class:`NegativeReport` (and returned, for
inspection, in :attr:`TargetedNegatives.rejected`). Everything is deterministic from the seed:
each (positive, perturbation, copy) draws from its own generator, seeded from the seed, the
positive's task and the perturbation; no global RNG is used.

>>> from llm_trainer.algorithms.rollout import oracle_trajectories
>>> positives = oracle_trajectories("LLMTrainer/Calculator-v0", range(2))
>>> made = replay_perturbations(positives, ["wrong_final_answer", "wrong_tool"], seed=0)
>>> sorted({t.source for t in made.negatives})
['negative:wrong_final_answer:wrong_answer']
>>> made.report.stats["wrong_tool"].not_applicable  # Calculator-v0 offers one tool
2
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, get_args

import numpy as np

from llm_trainer.agents.baselines import ScriptAction
from llm_trainer.algorithms.rollout import replay_scripts
from llm_trainer.analysis.failure_modes import FailureMode, classify
from llm_trainer.core.knowledge.bm25 import BM25Index
from llm_trainer.core.knowledge.text import bm25_tokens
from llm_trainer.core.records import ToolCall, to_plain
from llm_trainer.core.trajectory import Trajectory
from llm_trainer.envs.registration import registry
from llm_trainer.envs.tools import AnswerAction, InvalidAction, format_answer, parse_action

__all__ = [
    "PERTURBATIONS",
    "NegativeReport",
    "Perturbation",
    "PerturbationName",
    "PerturbationStats",
    "Script",
    "TargetedNegatives",
    "corrupted_argument",
    "diverse_sample",
    "dropped_tool_result",
    "guess_answer",
    "malformed_action",
    "negative_source",
    "replay_perturbations",
    "targeted_negatives",
    "wrong_answers",
    "wrong_final_answer",
    "wrong_tool",
]

#: A perturbed episode's actions in order (played by
#: :class:`~llm_trainer.agents.baselines.ReplayPolicy`).
Script = tuple[ScriptAction, ...]
#: The names of :data:`PERTURBATIONS`, as a type (for typed configs).
PerturbationName = Literal[
    "wrong_tool",
    "corrupted_argument",
    "dropped_tool_result",
    "wrong_final_answer",
    "malformed_action",
]
#: The ``source`` prefix of a targeted negative.
SOURCE_PREFIX = "negative:"


# -- wrong answers -----------------------------------------------------------------------------


def wrong_answers(answer: str, rng: np.random.Generator, count: int) -> list[str]:
    """Up to ``count`` different plausible wrong answers to ``answer``: nearby numbers for a
    number (as DPO's corruption: a few units off), altered words otherwise.

    >>> wrong_answers("12", np.random.default_rng(0), 3)
    ['18', '7', '5']
    >>> wrong_answers("Tokyo", np.random.default_rng(0), 2)
    ['oykoT', 'Tokyox']
    """
    try:
        value = float(answer.replace(",", ""))
    except ValueError:
        variants = [answer[::-1], f"{answer}x", f"not {answer}", f"{answer} {answer}"]
        seen = {answer.strip().lower()}
        out = []
        for variant in variants:
            if variant.strip().lower() not in seen:
                seen.add(variant.strip().lower())
                out.append(variant)
        return out[:count]
    offsets = [sign * k for k in range(1, max(10, count + 1)) for sign in (1, -1)]
    picked = rng.choice(len(offsets), size=min(count, len(offsets)), replace=False)
    out = []
    for i in picked:
        wrong = value + offsets[int(i)]
        out.append(str(int(wrong)) if wrong == int(wrong) else f"{wrong:g}")
    return out


def guess_answer(answer: str, rng: np.random.Generator) -> str:
    """One wrong answer to ``answer``, drawn from :func:`wrong_answers`: what an agent that
    lacks the result answers.

    >>> guess_answer("12", np.random.default_rng(0)) != "12"
    True
    """
    options = wrong_answers(answer, rng, 4) or [f"not {answer}"]
    return options[int(rng.integers(len(options)))]


# -- reading a positive ------------------------------------------------------------------------


def _answer_of(positive: Trajectory) -> str | None:
    """The final answer of ``positive`` (``None`` when its last action is not an answer)."""
    if not positive.steps:
        return None
    parsed = parse_action(positive.steps[-1].action)
    return parsed.text if isinstance(parsed, AnswerAction) else None


def _calls(positive: Trajectory) -> list[tuple[int, ToolCall]]:
    """The tool calls before the final answer, with their step indices."""
    out = []
    for i, step in enumerate(positive.steps[:-1]):
        parsed = parse_action(step.action)
        if isinstance(parsed, ToolCall):
            out.append((i, parsed))
    return out


def _actions(positive: Trajectory) -> list[str]:
    return [s.action for s in positive.steps]


def _offered(positive: Trajectory) -> dict[str, Mapping[str, Any]]:
    """The tools the episode offered (name -> JSON-schema parameters), in the env's order."""
    out: dict[str, Mapping[str, Any]] = {}
    for spec in positive.tools:
        function = spec.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            parameters = function.get("parameters")
            out[function["name"]] = parameters if isinstance(parameters, Mapping) else {}
    return out


def _answer(text: str, fallback: str) -> str:
    """``text`` as an answer action (``fallback`` when ``text`` holds one of the tags)."""
    try:
        return format_answer(text)
    except ValueError:
        return format_answer(fallback)


def _pick(options: Sequence[Any], rng: np.random.Generator) -> Any:
    return options[int(rng.integers(len(options)))]


# -- the perturbations -------------------------------------------------------------------------


def wrong_final_answer(positive: Trajectory, rng: np.random.Generator) -> Script | None:
    """Every action of ``positive`` but the answer, then a wrong answer (:func:`guess_answer`);
    ``None`` when ``positive`` does not end in an answer.

    >>> from llm_trainer.core.trajectory import Step
    >>> p = Trajectory("LLMTrainer/Calculator-v0", 0, 1, "", (), "6 * 7?",
    ...                (Step("<answer>42</answer>", "", "user", 1.0, True, False),))
    >>> wrong_final_answer(p, np.random.default_rng(0))
    ('<answer>45</answer>',)
    """
    answer = _answer_of(positive)
    if answer is None:
        return None
    return (*_actions(positive)[:-1], format_answer(guess_answer(answer, rng)))


def dropped_tool_result(positive: Trajectory, rng: np.random.Generator) -> Script | None:
    """``positive`` without its last tool call (the agent never gets the result its answer
    was read from), answered with a guess; ``None`` when it made no call or gave no answer."""
    answer = _answer_of(positive)
    calls = _calls(positive)
    if answer is None or not calls:
        return None
    last = calls[-1][0]
    actions = _actions(positive)[:-1]
    return (*actions[:last], *actions[last + 1 :], format_answer(guess_answer(answer, rng)))


def wrong_tool(positive: Trajectory, rng: np.random.Generator) -> Script | None:
    """``positive`` with every call of one tool it used (drawn) sent to another tool the env
    offers (one the positive never called when there is one, as it is likelier outside the
    task's allowed tools), the arguments adapted (:func:`_adapt_arguments`); answered with a
    guess when that tool gave the last result. ``None`` when the env offers a single tool (or
    the positive made no call)."""
    answer = _answer_of(positive)
    calls = _calls(positive)
    offered = _offered(positive)
    if answer is None or not calls:
        return None
    used = list(dict.fromkeys(call.name for _, call in calls))
    replaced = _pick(used, rng)
    others = [name for name in offered if name != replaced]
    if not others:
        return None
    target = _pick([n for n in others if n not in used] or others, rng)
    actions = _actions(positive)
    for i, call in calls:
        if call.name == replaced:
            arguments = _adapt_arguments(to_plain(call.arguments), offered[target])
            actions[i] = ToolCall(target, arguments).to_text()
    if calls[-1][1].name == replaced:
        actions[-1] = format_answer(guess_answer(answer, rng))
    return tuple(actions)


def _adapt_arguments(arguments: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a call redirected to a tool with ``parameters`` (JSON schema), changed
    as little as possible: the arguments that tool also takes are kept; each required one it
    still lacks gets the call's other values, in order (cycling; ``""`` when there are none).

    >>> params = {"properties": {"city": {}, "date": {}}, "required": ["city", "date"]}
    >>> _adapt_arguments({"query": "Paris"}, params)
    {'city': 'Paris', 'date': 'Paris'}
    >>> _adapt_arguments({"city": "Oslo", "date": "2026-01-01"}, {"required": ["query"]})
    {'query': 'Oslo'}
    """
    properties = parameters.get("properties")
    known = set(properties) if isinstance(properties, Mapping) else set()
    adapted = {k: v for k, v in arguments.items() if k in known}
    values = [v for k, v in arguments.items() if k not in adapted] or list(arguments.values())
    values = values or [""]
    required = parameters.get("required")
    missing = (
        [str(r) for r in required if r not in adapted] if isinstance(required, list | tuple) else []
    )
    for i, name in enumerate(missing):
        adapted[name] = values[i % len(values)]
    return adapted


def corrupted_argument(positive: Trajectory, rng: np.random.Generator) -> Script | None:
    """``positive`` with one argument of its last tool call changed (:func:`_corrupt_value`),
    then an answer read from what the tool returns (:class:`_ReadAnswer`); ``None`` when that
    call has no argument to change (or there is no call or answer)."""
    answer = _answer_of(positive)
    calls = _calls(positive)
    if answer is None or not calls:
        return None
    index, call = calls[-1]
    arguments = to_plain(call.arguments)
    names = [k for k, v in arguments.items() if _corruptible(v)]
    if not names:
        return None
    name = _pick(names, rng)
    arguments[name] = _corrupt_value(arguments[name], rng)
    actions = _actions(positive)
    original = positive.steps[index].observation
    read = _ReadAnswer(
        original, answer, guess_answer(answer, rng), *_answer_source(original, answer)
    )
    return (*actions[:index], ToolCall(call.name, arguments).to_text(), read)


_DIGITS = re.compile(r"\d+")
_LETTERS = re.compile(r"[^\W\d_]{3,}")


def _corruptible(value: Any) -> bool:
    """Whether :func:`_corrupt_value` can change ``value``."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return math.isfinite(value)
    return isinstance(value, str) and bool(_DIGITS.search(value) or _LETTERS.search(value))


def _corrupt_value(value: Any, rng: np.random.Generator) -> Any:
    """``value`` (:func:`_corruptible`) changed as an agent might get it wrong: a number off
    by 1-9 units; in a text, one of its numbers off by 1-9 units (never below 0, zero-padded
    when it was: an operand, a day or month of a date), else one of its words of 3+ letters
    misspelt (two neighbouring letters swapped, one dropped or one doubled).

    >>> rng = np.random.default_rng(1)
    >>> [_corrupt_value(v, rng) for v in (7, "26 - 4", "2026-05-30", "Helsinki")]
    [12, '26 - 5', '2023-05-30', 'Heslinki']
    """
    if isinstance(value, int | float):
        return value + _offset(abs(value), rng, signed=True)
    numbers = list(_DIGITS.finditer(value))
    if numbers:
        match = _pick(numbers, rng)
        digits = match.group()
        shifted = str(int(digits) + _offset(int(digits), rng))
        if digits.startswith("0"):  # a date's "05" stays two digits; "7" in "7 - 2" stays bare
            shifted = shifted.zfill(len(digits))
        return value[: match.start()] + shifted + value[match.end() :]
    match = _pick(list(_LETTERS.finditer(value)), rng)
    word = match.group()
    i = int(rng.integers(len(word) - 1))
    kind = int(rng.integers(3))
    if kind == 0 and word[i].casefold() != word[i + 1].casefold():
        typo = word[:i] + word[i + 1] + word[i] + word[i + 2 :]  # swapped
    elif kind == 2:
        typo = word[: i + 1] + word[i:]  # doubled
    else:
        typo = word[:i] + word[i + 1 :]  # dropped
    return value[: match.start()] + typo + value[match.end() :]


def _offset(value: float, rng: np.random.Generator, *, signed: bool = False) -> int:
    """A shift of 1-9 units, down only when it keeps ``value`` at 0 or more (or ``signed``)."""
    k = int(rng.integers(1, 10))
    down = rng.random() < 0.5
    return -k if down and (signed or value - k >= 0) else k


def _answer_source(observation: str, answer: str) -> tuple[bool, str | None]:
    """Where ``answer`` was read in a tool result: ``(True, None)`` the whole result,
    ``(False, key)`` the field ``key`` of a JSON object, ``(False, None)`` neither."""
    if _same(observation, answer):
        return True, None
    fields = _json_object(observation)
    if fields is not None:
        for key, value in fields.items():
            if _same(str(value), answer):
                return False, key
    return False, None


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True, slots=True)
class _ReadAnswer:
    """The answer after a corrupted call, read from the result the env returned (a script
    action that depends on the observation: see
    :class:`~llm_trainer.agents.baselines.ReplayPolicy`).

    The result unchanged: the positive's answer (the corruption changed nothing). Otherwise
    the new result read where the positive read its answer (``whole`` result, or ``key`` of a
    JSON object), or ``guess`` when the tool rejected the value (``error: ...``) or the answer
    cannot be read off (a search passage, a comparison of two results).
    """

    original: str
    answer: str
    guess: str
    whole: bool
    key: str | None

    def __call__(self, observation: str) -> str:
        if observation == self.original:
            return _answer(self.answer, self.guess)
        read: str | None = None
        if not observation.startswith("error:"):
            if self.whole:
                read = observation.strip()
            elif self.key is not None:
                fields = _json_object(observation)
                if fields is not None and self.key in fields:
                    read = str(fields[self.key])
        return _answer(read, self.guess) if read else format_answer(self.guess)


_BREAKS: tuple[Callable[[str], str], ...] = (
    lambda a: a.rsplit("</", 1)[0],  # an unclosed tag
    lambda a: re.sub(r"</?(?:tool_call|answer)>", "", a),  # no tags at all
    lambda a: f"Here is my next step: {a} Done.",  # prose around the block
    lambda a: a.replace("}</tool_call>", "</tool_call>"),  # invalid JSON (one brace short)
)


def _break(action: str, rng: np.random.Generator) -> str | None:
    """``action`` with its format broken in a drawn way that the parser rejects."""
    for i in rng.permutation(len(_BREAKS)):
        broken = _BREAKS[int(i)](action)
        if broken != action and isinstance(parse_action(broken), InvalidAction):
            return broken
    return None


def _step_limit(env_id: str) -> int | None:
    spec = registry().get(env_id)
    return spec.max_episode_steps if spec is not None else None


def malformed_action(positive: Trajectory, rng: np.random.Generator) -> Script | None:
    """``positive`` with one action (drawn among its calls and its answer) sent in a broken
    format: after a broken call the agent answers with a guess (it never got the result);
    a broken answer is sent again until the env's step limit (it never gets the format
    right). ``None`` when nothing can be broken that way."""
    answer = _answer_of(positive)
    if answer is None:
        return None
    actions = _actions(positive)
    limit = _step_limit(positive.env_id)
    last = len(actions) - 1
    candidates = [i for i, _ in _calls(positive)] + ([last] if limit is not None else [])
    if not candidates:
        return None
    at = int(_pick(candidates, rng))
    broken = _break(actions[at], rng)
    if broken is None:
        return None
    if at == last:
        assert limit is not None
        return (*actions[:at], *[broken] * max(1, limit - at))
    return (*actions[:at], broken, format_answer(guess_answer(answer, rng)))


@dataclass(frozen=True, slots=True)
class Perturbation:
    """A named way of turning a verified positive into a failure.

    Attributes:
        name: Its name (the ``<perturbation>`` of a negative's source).
        apply: ``(positive, rng) -> script``, or ``None`` when it does not apply.
        expects: The failure modes (:func:`~llm_trainer.analysis.failure_modes.classify`) the
            env may observe for it; a replayed episode classified otherwise is not kept.
        description: What the agent does instead, in one line.
    """

    name: str
    apply: Callable[[Trajectory, np.random.Generator], Script | None]
    expects: frozenset[str]
    description: str


def _modes(*modes: FailureMode) -> frozenset[str]:
    return frozenset(m.value for m in modes)


#: The perturbations by name (see the module docstring's table).
PERTURBATIONS: Mapping[str, Perturbation] = MappingProxyType(
    {
        p.name: p
        for p in (
            Perturbation(
                "wrong_tool",
                wrong_tool,
                _modes(FailureMode.WRONG_TOOL),
                "another offered tool called in place of one the task needs",
            ),
            Perturbation(
                "corrupted_argument",
                corrupted_argument,
                _modes(FailureMode.BAD_ARGUMENTS, FailureMode.WRONG_ANSWER),
                "one argument of the last call changed, then an answer from its result",
            ),
            Perturbation(
                "dropped_tool_result",
                dropped_tool_result,
                _modes(FailureMode.WRONG_TOOL, FailureMode.WRONG_ANSWER),
                "the last call skipped, then a guessed answer",
            ),
            Perturbation(
                "wrong_final_answer",
                wrong_final_answer,
                _modes(FailureMode.WRONG_ANSWER),
                "every call made, then a wrong answer",
            ),
            Perturbation(
                "malformed_action",
                malformed_action,
                _modes(FailureMode.MALFORMED_ACTION),
                "one action in a broken format",
            ),
        )
    }
)
assert tuple(PERTURBATIONS) == get_args(PerturbationName)
_RANK = {name: i for i, name in enumerate(PERTURBATIONS)}


def negative_source(trajectory: Trajectory) -> tuple[str, str] | None:
    """``(perturbation, observed mode)`` of a targeted negative, from its ``source``
    (``None`` for any other trajectory).

    >>> t = Trajectory("x", 0, 0, "", (), "", (), source="negative:wrong_tool:wrong_tool")
    >>> negative_source(t)
    ('wrong_tool', 'wrong_tool')
    """
    if not trajectory.source.startswith(SOURCE_PREFIX):
        return None
    perturbation, _, mode = trajectory.source.removeprefix(SOURCE_PREFIX).partition(":")
    return (perturbation, mode) if mode else None


# -- targeted negatives --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PerturbationStats:
    """What became of one perturbation's attempts.

    Attributes:
        not_applicable: Positives it did not apply to (``apply`` gave ``None``).
        duplicates: Scripts identical to one already made for the same task (not replayed).
        replayed: Scripts played through the env.
        unreplayable: Played, but the env's reset gave another task (a positive that is not
            an env rollout, e.g. a data template's: its seed does not reproduce the task).
        errors: Played episodes that raised (recorded on the trajectory).
        not_failures: Episodes the env scored a success (the change did not matter).
        mismatched: Failures of a mode the perturbation does not expect, by observed mode.
        kept: The negatives kept, by observed mode.
    """

    not_applicable: int = 0
    duplicates: int = 0
    replayed: int = 0
    unreplayable: int = 0
    errors: int = 0
    not_failures: int = 0
    mismatched: Mapping[str, int] = field(default_factory=dict)
    kept: Mapping[str, int] = field(default_factory=dict)

    @property
    def total_kept(self) -> int:
        return sum(self.kept.values())

    @property
    def total_mismatched(self) -> int:
        return sum(self.mismatched.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: dict(getattr(self, f.name))
            if isinstance(getattr(self, f.name), Mapping)
            else getattr(self, f.name)
            for f in dataclasses.fields(self)
        }


@dataclass(frozen=True, slots=True)
class NegativeReport:
    """The outcome of :func:`replay_perturbations`.

    Attributes:
        positives: Positives perturbed (successes ending in an answer).
        skipped: Positives left out (failed, raised, or no final answer).
        stats: Per perturbation, in the order asked.
    """

    positives: int
    skipped: int
    stats: Mapping[str, PerturbationStats]

    def summary(self) -> str:
        """One line per perturbation: kept of replayed, and why the others were not."""
        lines = []
        for name, s in self.stats.items():
            why = [f"{s.not_failures} not a failure"] if s.not_failures else []
            why += [f"{n} observed {mode}" for mode, n in s.mismatched.items()]
            why += [f"{s.errors} raised"] if s.errors else []
            why += [f"{s.unreplayable} not replayable"] if s.unreplayable else []
            why += [f"{s.duplicates} repeats not replayed"] if s.duplicates else []
            extra = f" ({', '.join(why)})" if why else ""
            skipped = (
                f"; {s.not_applicable} positives it does not apply to" if s.not_applicable else ""
            )
            lines.append(f"{name}: kept {s.total_kept} of {s.replayed} replayed{extra}{skipped}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "positives": self.positives,
            "skipped": self.skipped,
            "perturbations": {name: s.to_dict() for name, s in self.stats.items()},
        }


@dataclass(frozen=True, slots=True)
class TargetedNegatives:
    """What :func:`replay_perturbations` made.

    Attributes:
        negatives: The kept negatives, source ``negative:<perturbation>:<observed mode>``.
        rejected: Replayed failures of a mode their perturbation does not expect (same source
            format), for inspection.
        report: The counts.
    """

    negatives: tuple[Trajectory, ...]
    rejected: tuple[Trajectory, ...]
    report: NegativeReport


def _check_modes(modes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(modes, str):
        modes = (modes,)
    unknown = [m for m in modes if m not in PERTURBATIONS]
    if unknown:
        raise ValueError(f"unknown perturbation(s) {unknown}; known: {list(PERTURBATIONS)}")
    if not modes:
        raise ValueError(f"no perturbation given; known: {list(PERTURBATIONS)}")
    return tuple(dict.fromkeys(modes))


def _usable(t: Trajectory) -> bool:
    return t.error is None and t.success and _answer_of(t) is not None


def _rng(seed: int, positive: Trajectory, mode: str, copy: int) -> np.random.Generator:
    """The generator of one (positive, perturbation, copy): from the seed, the positive's task
    and the perturbation, so adding positives or perturbations changes no other draw."""
    words = [
        seed % 2**32,
        zlib.crc32(positive.env_id.encode()),
        positive.seed % 2**32,
        positive.difficulty % 2**32,
        _RANK[mode],
        copy,
    ]
    return np.random.default_rng(words)


def replay_perturbations(
    positives: Sequence[Trajectory],
    modes: Sequence[str] = tuple(PERTURBATIONS),
    *,
    seed: int,
    per_positive: int = 1,
) -> TargetedNegatives:
    """Perturb every verified positive with each of ``modes`` (``per_positive`` draws each,
    repeats dropped), replay the scripts through the real envs (the episode engine), and keep
    the episodes the env fails in a mode the perturbation expects.

    Args:
        positives: Env rollouts (their seed and difficulty reproduce the task); those that
            did not succeed or do not end in an answer are skipped.
        modes: Names of :data:`PERTURBATIONS`.
        seed: Seeds every draw (see the module docstring).
        per_positive: Draws per positive and perturbation (fewer scripts when draws repeat).

    Raises:
        ValueError: for an unknown perturbation or ``per_positive < 1``.
    """
    modes = _check_modes(modes)
    if per_positive < 1:
        raise ValueError(f"per_positive must be >= 1, got {per_positive}")
    usable = [t for t in positives if _usable(t)]
    tallies = {m: Counter[str]() for m in modes}
    kept_modes = {m: Counter[str]() for m in modes}
    mismatched = {m: Counter[str]() for m in modes}
    scripts: list[tuple[Trajectory, Script]] = []
    made: list[str] = []
    seen: set[tuple[Any, ...]] = set()
    for positive in usable:
        task = (positive.env_id, positive.seed, positive.difficulty)
        for mode in modes:
            for copy in range(per_positive):
                script = PERTURBATIONS[mode].apply(positive, _rng(seed, positive, mode, copy))
                if script is None:
                    tallies[mode]["not_applicable"] += 1
                    break  # the same positive, the same verdict
                if (*task, script) in seen:
                    tallies[mode]["duplicates"] += 1
                    continue
                seen.add((*task, script))
                scripts.append((positive, script))
                made.append(mode)
    played = replay_scripts(scripts, source=SOURCE_PREFIX.rstrip(":"))
    negatives, rejected = [], []
    for (positive, _), mode, t in zip(scripts, made, played, strict=True):
        tally = tallies[mode]
        tally["replayed"] += 1
        if t.prompt != positive.prompt:
            tally["unreplayable"] += 1
        elif t.error is not None or not t.steps:
            tally["errors"] += 1
        elif t.success:
            tally["not_failures"] += 1
        else:
            observed = classify(t)
            t = dataclasses.replace(t, source=f"{SOURCE_PREFIX}{mode}:{observed}")
            if observed in PERTURBATIONS[mode].expects:
                kept_modes[mode][observed] += 1
                negatives.append(t)
            else:
                mismatched[mode][observed] += 1
                rejected.append(t)
    stats = {
        m: PerturbationStats(
            not_applicable=tallies[m]["not_applicable"],
            duplicates=tallies[m]["duplicates"],
            replayed=tallies[m]["replayed"],
            unreplayable=tallies[m]["unreplayable"],
            errors=tallies[m]["errors"],
            not_failures=tallies[m]["not_failures"],
            mismatched=dict(sorted(mismatched[m].items())),
            kept=dict(sorted(kept_modes[m].items())),
        )
        for m in modes
    }
    report = NegativeReport(len(usable), len(positives) - len(usable), stats)
    return TargetedNegatives(tuple(negatives), tuple(rejected), report)


def targeted_negatives(
    positives: Sequence[Trajectory],
    modes: Sequence[str] = tuple(PERTURBATIONS),
    *,
    seed: int,
    per_positive: int = 1,
) -> list[Trajectory]:
    """The negatives of :func:`replay_perturbations` (same arguments), without the report."""
    made = replay_perturbations(positives, modes, seed=seed, per_positive=per_positive)
    return list(made.negatives)


# -- diversity sampling --------------------------------------------------------------------------

_MODE_ORDER = {mode.value: i for i, mode in enumerate(FailureMode)}


def _action_text(t: Trajectory) -> str:
    return "\n".join(s.action for s in t.steps)


def _spread(group: Sequence[Trajectory], rng: np.random.Generator) -> Iterator[int]:
    """The indices of ``group`` in farthest-first order on BM25 similarity of their actions.

    The first is drawn at random; each next one is the trajectory whose highest similarity to
    those already picked is lowest (ties in a random order), so every cluster of near-identical
    trajectories gives one before any gives a second (the greedy k-centre order). The
    similarity of ``j`` to a picked ``i`` is the BM25 score of ``j``'s actions for ``i``'s
    action words, divided by ``i``'s score for itself (1 for a copy of ``i``).
    """
    n = len(group)
    tokens = [bm25_tokens(_action_text(t)) for t in group]
    index = BM25Index()
    for words in tokens:
        index.add(words)
    rank = np.empty(n, dtype=np.int64)
    rank[rng.permutation(n)] = np.arange(n)
    closeness = np.zeros(n, dtype=np.float64)
    taken = np.zeros(n, dtype=bool)
    for _ in range(n):
        free = np.flatnonzero(~taken)
        best = free[np.lexsort((rank[free], closeness[free]))[0]]
        taken[best] = True
        yield int(best)
        docs, scores = index.scores(tokens[best])
        if not len(docs):
            continue
        own = scores[docs == best]
        scale = float(own[0]) if len(own) and own[0] > 0 else float(scores.max())
        if scale > 0:
            closeness[docs] = np.maximum(closeness[docs], scores / scale)


def _targets(
    quotas: Mapping[str, float | int], count: int, available: Mapping[str, int]
) -> dict[str, int]:
    """How many each mode of ``quotas`` gets: a count as given, a share of ``count`` by the
    largest remainder; at most what it has."""
    for mode, quota in quotas.items():
        if mode not in _MODE_ORDER:
            raise ValueError(f"quotas: {mode!r} is not a failure mode; known: {list(_MODE_ORDER)}")
        if isinstance(quota, bool) or not isinstance(quota, int | float):
            raise ValueError(f"quotas[{mode!r}]: expected a count or a share, got {quota!r}")
        if isinstance(quota, float) and not 0 <= quota <= 1:
            raise ValueError(f"quotas[{mode!r}]: a share must be in [0, 1], got {quota}")
        if quota < 0:
            raise ValueError(f"quotas[{mode!r}]: a count must be >= 0, got {quota}")
    counts = {m: int(q) for m, q in quotas.items() if isinstance(q, int)}
    shares = {m: float(q) for m, q in quotas.items() if isinstance(q, float)}
    from_shares = round(sum(shares.values()) * count)
    if sum(counts.values()) + from_shares > count:
        raise ValueError(
            f"quotas ask for {sum(counts.values()) + from_shares} negatives, more than the "
            f"{count} to sample"
        )
    exact = {m: s * count for m, s in shares.items()}
    targets = {m: math.floor(v) for m, v in exact.items()}
    by_remainder = sorted(exact, key=lambda m: (-(exact[m] - targets[m]), _MODE_ORDER[m]))
    for m in by_remainder[: from_shares - sum(targets.values())]:
        targets[m] += 1
    targets.update(counts)
    return {m: min(n, available.get(m, 0)) for m, n in targets.items()}


def diverse_sample(
    negatives: Sequence[Trajectory],
    count: int,
    *,
    quotas: Mapping[str, float | int] | None = None,
    seed: int,
) -> list[Trajectory]:
    """``count`` of ``negatives`` spread over failure modes and, within a mode, over clusters
    of similar trajectories.

    Each negative's mode is :func:`~llm_trainer.analysis.failure_modes.classify`'s. A mode
    named in ``quotas`` gets exactly its quota (a count, or a float share of ``count``), or
    all it has when that is fewer; the modes not named share the rest evenly, one each in turn
    (in a random order of the modes) until ``count`` is reached or they run out (so with
    quotas, or when every mode runs out, fewer than ``count`` may come back). A mode with
    quota 0 is left out. Within a mode the picks follow a farthest-first order on BM25
    similarity of the action texts (:func:`_spread`). Deterministic for a ``seed``.

    Returns:
        The picks, the quota modes' first.

    Raises:
        ValueError: for a negative ``count``, an unknown mode in ``quotas``, a share outside
            [0, 1], or quotas asking for more than ``count``.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(negatives):
        groups.setdefault(classify(t), []).append(i)
    modes = sorted(groups, key=lambda m: (_MODE_ORDER.get(m, len(_MODE_ORDER)), m))
    targets = _targets(quotas or {}, count, {m: len(g) for m, g in groups.items()})
    rng = np.random.default_rng(seed)
    orders = {
        m: _spread([negatives[i] for i in groups[m]], np.random.default_rng([seed % 2**32, k]))
        for k, m in enumerate(modes)
    }
    picked: list[int] = []
    for mode in modes:
        for _ in range(targets.get(mode, 0)):
            picked.append(groups[mode][next(orders[mode])])
    free = [modes[int(i)] for i in rng.permutation(len(modes)) if modes[int(i)] not in targets]
    left = {m: len(groups[m]) for m in free}
    while len(picked) < count and any(left.values()):
        for mode in free:
            if left[mode] and len(picked) < count:
                picked.append(groups[mode][next(orders[mode])])
                left[mode] -= 1
    return [negatives[i] for i in picked]
