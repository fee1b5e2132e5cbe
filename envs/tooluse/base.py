"""The shared machinery of the tool-use envs: one episode = a task, tool calls, a final answer.

A concrete env supplies its tools and one method, :meth:`ToolUseEnv._sample_task`, which draws
a :class:`Task` from ``self.np_random``; everything else (parsing the completion, running the
tool, metrics, rewards, snapshots) lives here, once. The docstring of :class:`ToolUseEnv` is the
common part of every tool-use env's spec; each concrete env documents its tasks.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Sequence
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Decimal, localcontext
from typing import Any, ClassVar, Literal, NamedTuple, SupportsFloat, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded

from llm_trainer.core.records import ToolCall
from llm_trainer.envs.common import (
    INVALID_ACTION_PENALTY,
    check_difficulty,
    check_text_env_arguments,
    difficulty_from_options,
    invalid_action_observation,
    registered_ids,
)
from llm_trainer.envs.spaces import MAX_TEXT_LENGTH, UnicodeText
from llm_trainer.envs.tools import AnswerAction, InvalidAction, ToolRegistry, parse_action

SUCCESS_REWARD = 1.0
DIFFICULTIES: tuple[int, ...] = (1, 2, 3)

AnswerKind = Literal["number", "text"]
T = TypeVar("T")


class Task(NamedTuple):
    """One task: the prompt, the expected answer, and an oracle solution.

    (A NamedTuple rather than a frozen dataclass: one is built per reset, three times faster.)

    Attributes:
        prompt: The first observation.
        answer: The canonical answer text.
        answer_kind: ``"number"`` (compared numerically, to 6 decimal places) or ``"text"``
            (compared case- and whitespace-insensitively).
        plan: Tool calls that solve the task, in order (what the oracle does).
        required_tools: Tools that must run successfully for the episode to count as a success.
        allowed_tools: Tools that may be called without losing ``tool_correct`` (a superset of
            ``required_tools``; e.g. a calculator for a subtraction the agent could do itself).
        world_seed: Seed of the per-episode simulated world (weather); 0 when unused.
    """

    prompt: str
    answer: str
    answer_kind: AnswerKind
    plan: tuple[ToolCall, ...]
    required_tools: frozenset[str]
    allowed_tools: frozenset[str]
    world_seed: int = 0


class Episode(NamedTuple):
    """The whole state of an episode; immutable, so ``get_state()`` can hand it out as is."""

    task: Task
    difficulty: int
    turn: int = 0
    called: frozenset[str] = frozenset()
    succeeded: frozenset[str] = frozenset()
    n_calls: int = 0
    n_failed_calls: int = 0
    n_invalid: int = 0
    answer_correct: bool = False
    done: bool = False


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")  # \d: any Unicode digit (Arabic-Indic, fullwidth...)
_NUMBER_TOLERANCE = Decimal("1e-6")
# int() of at most 18 digits is cheap and far below any sys.get_int_max_str_digits() setting
# (at least 640); longer numbers go through Decimal, which reads any length in linear time.
_FAST_DIGITS = 18


def answer_matches(given: str, expected: str, kind: AnswerKind) -> bool:
    """Whether the text inside ``<answer>`` is right.

    Numbers: the answer must contain exactly one number (units and words around it are fine,
    thousands separators are ignored, any script's decimal digits count) within 1e-6 of the
    expected value; a number of any length is judged, exactly and in linear time. Text: equal
    after case folding, collapsing whitespace and dropping a trailing period or surrounding
    quotes. Never raises, whatever ``given`` holds.

    >>> answer_matches("57 °C", "57", "number"), answer_matches("1,234.0", "1234", "number")
    (True, True)
    >>> answer_matches("5 or 6", "5", "number"), answer_matches(" paris. ", "Paris", "text")
    (False, True)
    >>> answer_matches("9" * 10_000, "57", "number"), answer_matches("٥٧", "57", "number")
    (False, True)
    """
    if kind == "number":
        numbers = _NUMBER.findall(given.replace(",", ""))
        if len(numbers) != 1:
            return False
        number = numbers[0]
        if "." not in number and "." not in expected and len(number) <= _FAST_DIGITS:
            return int(number) == int(expected)  # the common case
        # Any other length: int() and Fraction() refuse more than 4,300 digits (Python's
        # int-string conversion limit) and a fuzzer sends such answers; Decimal() reads the
        # number exactly in linear time, and comparisons between Decimals are exact.
        low, high = _accepted_range(expected)
        return low <= Decimal(number) <= high
    return _normalise_text(given) == _normalise_text(expected)


def _accepted_range(expected: str) -> tuple[Decimal, Decimal]:
    """``expected`` -/+ the tolerance, computed exactly (the decimal docs' unrounded context)."""
    value = Decimal(expected)
    with localcontext(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN):
        return value - _NUMBER_TOLERANCE, value + _NUMBER_TOLERANCE


def _normalise_text(text: str) -> str:
    return " ".join(text.strip().strip("\"'").rstrip(".").split()).casefold()


def system_prompt(tool_names: Iterable[str]) -> str:
    """The system prompt of the tool-use envs: the tools and the reply format, compactly."""
    return (
        f"Solve the task with the tools ({', '.join(tool_names)}). Call a tool with "
        '<tool_call>{"name": NAME, "arguments": {...}}</tool_call> and wait for its result. '
        "Give the final answer as <answer>ANSWER</answer>."
    )


class ToolUseEnv(gym.Env[str, str], abc.ABC):
    """Common spec of the tool-use envs.

    ## Action Space
    ``UnicodeText(max_text_length)``: the model's raw completion, any Unicode string. It must be
    exactly one ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` or one
    ``<answer>...</answer>`` (optionally after a ``<think>...</think>`` block); the grammar is in
    :mod:`llm_trainer.envs.tools.parser`.

    ## Observation Space
    ``UnicodeText(max_text_length)``: after ``reset``, the task prompt; after a tool call, the
    tool's output (or ``"error: ..."``); after an invalid action, a message naming the rule it
    broke. ``info["role"]`` says who speaks: ``"user"`` or ``"tool"``.

    ## Rewards
    | event                                                        | reward |
    |--------------------------------------------------------------|--------|
    | a tool call (whatever its result)                            | 0.0    |
    | final answer, correct, every required tool ran successfully  | +1.0   |
    | final answer otherwise (wrong, or right without the tools)   | 0.0    |
    | invalid action (malformed, or longer than max_text_length)   | -0.1   |

    ## Episode End
    Terminated after the final answer. Truncated by ``TimeLimit`` at ``max_episode_steps`` from
    registry.yaml. An invalid action does not end the episode.

    ## Info
    Always: ``system_prompt``, ``tools`` (JSON-schema function specs, treat as read-only),
    ``difficulty``, ``role``, ``turn``, ``invalid_action`` and ``invalid_reason``, and the
    episode's metrics so far: ``format_ok`` (every action so far was well-formed),
    ``tool_correct`` (the tools called are exactly right: every required tool, nothing outside
    the allowed ones), ``exec_ok`` (at least one call, and every call ran without error),
    ``answer_correct`` and ``success`` (right answer, and every required tool ran successfully).

    ## Arguments
    ``difficulty`` (one of :attr:`difficulties`, 1-3; also a ``reset`` option:
    ``options={"difficulty": 2}``), ``render_mode`` (``None`` or ``"ansi"``: the transcript),
    ``max_text_length``. A bad value raises :class:`~llm_trainer.core.errors.ConfigError`
    (a ``ValueError``) in one line naming the env, the value and what is allowed.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012 - gymnasium's API
    #: The difficulties :meth:`_sample_task` implements (registry.yaml declares the same ones).
    difficulties: ClassVar[tuple[int, ...]] = DIFFICULTIES

    def __init__(
        self,
        tools: ToolRegistry,
        difficulty: int = 1,
        *,
        render_mode: str | None = None,
        max_text_length: int = MAX_TEXT_LENGTH,
    ) -> None:
        self.difficulty = self.check_difficulty(difficulty)
        check_text_env_arguments(self.env_name, render_mode, max_text_length)
        self.render_mode = render_mode
        self.max_text_length = max_text_length
        self.observation_space = UnicodeText(max_text_length)
        self.action_space = UnicodeText(max_text_length)
        self.tools = tools
        self._system_prompt = system_prompt(tools.names)
        # Tools whose output depends on the episode's world (weather) expose ``bind(seed)``.
        self._world_bound = [t.fn for t in (tools[n] for n in tools.names) if hasattr(t.fn, "bind")]
        self._episode: Episode | None = None
        self._transcript: list[str] = []

    @abc.abstractmethod
    def _sample_task(self, rng: np.random.Generator, difficulty: int) -> Task:
        """Draw a task of ``difficulty`` using only ``rng`` (which is ``self.np_random``)."""

    # -- the Gymnasium API -------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        difficulty = difficulty_from_options(
            self.env_name, options, self.difficulty, self.check_difficulty
        )
        task = self._sample_task(self.np_random, difficulty)
        self._start(Episode(task, difficulty))
        if self.render_mode == "ansi":
            self._transcript = [f"[system] {self._system_prompt}", f"[user] {task.prompt}"]
        return task.prompt, self._info(self._episode, "user", None)  # type: ignore[arg-type]

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        ep = self._episode
        if ep is None or ep.done:
            raise ResetNeeded("call reset() before step(): the episode has ended or not started")
        if not isinstance(action, str):
            raise TypeError(f"action must be a str (the model's completion), got {type(action)}")
        parsed = (
            parse_action(action)
            if len(action) <= self.max_text_length
            else InvalidAction(f"action longer than {self.max_text_length} characters")
        )
        # Episodes are immutable: each step builds the next one (positionally: it is on the
        # hot path, and NamedTuple._replace costs three times as much).
        task, turn = ep.task, ep.turn + 1
        reward, terminated, reason = 0.0, False, None
        if type(parsed) is ToolCall:
            result = self.tools.call(parsed)
            ep = Episode(
                task, ep.difficulty, turn, ep.called | {parsed.name},
                ep.succeeded | {parsed.name} if result.ok else ep.succeeded,
                ep.n_calls + 1, ep.n_failed_calls + (not result.ok), ep.n_invalid,
            )  # fmt: skip
            observation, role = result.content, "tool"
        elif type(parsed) is AnswerAction:
            correct = answer_matches(parsed.text, task.answer, task.answer_kind)
            ep = Episode(
                task, ep.difficulty, turn, ep.called, ep.succeeded, ep.n_calls,
                ep.n_failed_calls, ep.n_invalid, correct, True,
            )  # fmt: skip
            observation, role, terminated = "", "user", True
            if correct and task.required_tools <= ep.succeeded:
                reward = SUCCESS_REWARD
        else:
            assert isinstance(parsed, InvalidAction)
            reason = parsed.reason
            ep = Episode(
                task, ep.difficulty, turn, ep.called, ep.succeeded, ep.n_calls,
                ep.n_failed_calls, ep.n_invalid + 1,
            )  # fmt: skip
            observation, role = invalid_action_observation(reason), "user"
            reward = INVALID_ACTION_PENALTY
        if len(observation) > self.max_text_length:
            observation = observation[: self.max_text_length]
        self._episode = ep
        if self.render_mode == "ansi":
            self._transcript += [f"[assistant] {action}", f"[{role}] {observation}"]
        return observation, reward, terminated, False, self._info(ep, role, reason)

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return "\n".join(self._transcript)
        return None

    # -- snapshots (for MCTS and other planners) ---------------------------------------------

    def get_state(self) -> Episode:
        """Snapshot the current episode (an immutable value; cheap to keep many)."""
        if self._episode is None:
            raise ResetNeeded("call reset() before get_state()")
        return self._episode

    def set_state(self, state: Episode) -> None:
        """Restore an episode returned by :meth:`get_state` (of this env class).

        Only the episode is restored, not ``np_random``: steps draw no randomness, so the
        continuation is identical; the next ``reset`` continues this env's own seed stream.
        """
        if not isinstance(state, Episode) or not isinstance(state.task, Task):
            raise TypeError(f"state must be an Episode from get_state(), got {type(state)}")
        self._start(state)
        if self.render_mode == "ansi":
            self._transcript = [f"[restored at turn {state.turn}] {state.task.prompt}"]

    # -- helpers -----------------------------------------------------------------------------

    def check_difficulty(self, value: Any, what: str = "difficulty") -> int:
        """``value`` as one of this env's :attr:`difficulties`.

        Raises:
            ConfigError: in one line naming the env, the value and the allowed difficulties.
        """
        return check_difficulty(self.env_name, value, self.difficulties, what)

    @property
    def env_name(self) -> str:
        """The registered id of this env (or its class name, when it has none), for messages."""
        if self.spec is not None:  # set by gymnasium.make once the constructor has returned
            return self.spec.id
        ids = registered_ids(type(self))
        return ids[0] if len(ids) == 1 else type(self).__name__

    @property
    def task(self) -> Task:
        """The current task (what the oracle reads; agents must not)."""
        return self.get_state().task

    def _start(self, episode: Episode) -> None:
        self._episode = episode
        for fn in self._world_bound:
            fn.bind(episode.task.world_seed)

    def _info(self, ep: Episode, role: str, invalid_reason: str | None) -> dict[str, Any]:
        task = ep.task
        tool_correct = bool(ep.called) and task.required_tools <= ep.called <= task.allowed_tools
        return {
            "system_prompt": self._system_prompt,
            "tools": self.tools.specs,
            "difficulty": ep.difficulty,
            "role": role,
            "turn": ep.turn,
            "invalid_action": invalid_reason is not None,
            "invalid_reason": invalid_reason,
            "format_ok": ep.turn > 0 and ep.n_invalid == 0,
            "tool_correct": tool_correct,
            "exec_ok": ep.n_calls > 0 and ep.n_failed_calls == 0,
            "answer_correct": ep.answer_correct,
            "success": ep.answer_correct and task.required_tools <= ep.succeeded,
        }


class Draws:
    """Uniform draws from ``rng`` taken in blocks.

    A numpy scalar call costs about 1.5 µs, which made drawing a task several times slower
    than playing it; one ``rng.random(block)`` call serves a whole task instead. The stream
    consumed per block is fixed, so determinism is kept.

    >>> d = Draws(np.random.default_rng(0))
    >>> 0 <= d.integer(3, 7) < 7, d.pick(("a", "b")) in ("a", "b")
    (True, True)
    """

    __slots__ = ("_block", "_i", "_rng", "_size")

    def __init__(self, rng: np.random.Generator, block: int = 16) -> None:
        self._rng, self._size = rng, block
        self._block: list[float] = rng.random(block).tolist()
        self._i = 0

    def uniform(self) -> float:
        """A float in [0, 1)."""
        if self._i == self._size:
            self._block, self._i = self._rng.random(self._size).tolist(), 0
        u = self._block[self._i]
        self._i += 1
        return u

    def integer(self, low: int, high: int) -> int:
        """An int in [low, high)."""
        return low + int(self.uniform() * (high - low))

    def pick(self, options: Sequence[T]) -> T:
        """A uniformly drawn element of ``options``."""
        return options[int(self.uniform() * len(options))]


def tool_call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(name, arguments)
