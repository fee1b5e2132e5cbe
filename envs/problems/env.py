"""``ProblemEnv``: one env class that plays any family of :class:`ProblemSpec` problems.

Each family is a registry id (``LLMTrainer/Reasoning-v0``, ``Knapsack-v0``, ``TSP-v0``,
``ConstrainedWriting-v0``) whose ``kwargs`` name the family and set its difficulty parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, SupportsFloat

import gymnasium as gym
from gymnasium.error import ResetNeeded

from llm_trainer.core.errors import ConfigError, suggest
from llm_trainer.core.records import ToolCall
from llm_trainer.envs.common import (
    INVALID_ACTION_PENALTY,
    RENDER_MODES,
    check_difficulty,
    check_int_in,
    check_text_env_arguments,
    difficulty_from_options,
    invalid_action_observation,
    registered_ids,
    short_repr,
)
from llm_trainer.envs.problems.knapsack import KnapsackFamily
from llm_trainer.envs.problems.reasoning import ReasoningFamily
from llm_trainer.envs.problems.spec import (
    NO_CRITERIA,
    Evaluation,
    EvaluationMetrics,
    ProblemFamily,
    ProblemSpec,
    build_config,
)
from llm_trainer.envs.problems.tsp import TSPFamily
from llm_trainer.envs.problems.writing import ConstrainedWritingFamily
from llm_trainer.envs.spaces import MAX_TEXT_LENGTH, UnicodeText
from llm_trainer.envs.tools import (
    AnswerAction,
    InvalidAction,
    ToolRegistry,
    calculator_tool,
    parse_action,
)

#: Every family, by the name the env's ``family`` argument takes.
FAMILIES: Mapping[str, type[ProblemFamily[Any]]] = {
    family.name: family
    for family in (ReasoningFamily, KnapsackFamily, TSPFamily, ConstrainedWritingFamily)
}
DIFFICULTIES: tuple[int, ...] = (1, 2, 3)
#: Most revisions an episode may allow (``max_revisions``).
MAX_REVISIONS = 10


if TYPE_CHECKING:
    from llm_trainer.envs.problems.decompose.env import DecomposeEpisode


class ProblemEpisode(NamedTuple):
    """The whole state of an episode; immutable, so ``get_state()`` hands it out as is."""

    task: ProblemSpec
    difficulty: int
    turn: int = 0
    called: frozenset[str] = frozenset()
    succeeded: frozenset[str] = frozenset()
    n_calls: int = 0
    n_failed_calls: int = 0
    n_invalid: int = 0
    n_answers: int = 0
    last_answer: str | None = None
    evaluation: Evaluation | None = None
    done: bool = False


def _system_prompt(tool_names: tuple[str, ...], max_revisions: int) -> str:
    revise = (
        f" An imperfect answer gets feedback, and you may revise it up to {max_revisions} "
        "times (repeat an answer to keep it)."
        if max_revisions
        else ""
    )
    return (
        f"Solve the problem. You may call a tool ({', '.join(tool_names)}) with "
        '<tool_call>{"name": NAME, "arguments": {...}}</tool_call> and wait for its result. '
        f"Give your answer as <answer>ANSWER</answer>.{revise}"
    )


class ProblemEnv(gym.Env[str, str]):
    """A problem drawn from a family, answered in text, scored by the family's exact checker.

    ## Description
    Each episode draws a :class:`~llm_trainer.envs.problems.spec.ProblemSpec` from the family
    named by ``family`` (one registry id per family) and asks its statement. The agent may call
    the calculator (``<tool_call>...</tool_call>``, as in the tool-use envs) any number of
    times, then answers with ``<answer>...</answer>``. The family's checker scores the answer in
    [0, 1] from named criteria (``info["criteria"]``), with a reason for every failed constraint
    (``info["failures"]``). A perfect answer ends the episode; otherwise the agent gets the
    feedback ("Score 0.00: infeasible: total weight 23 > capacity 20.") and may revise, up to
    ``max_revisions`` times; repeating the previous answer keeps it and ends the episode.

    ## Difficulty
    | family              | 1                       | 2                   | 3                   |
    |---------------------|-------------------------|---------------------|---------------------|
    | reasoning           | 2-step stories; first   | 3 steps; order of   | 4 steps and a       |
    |                     | of 3 people; 2 knights  | 4; 3 inhabitants    | distractor; order   |
    |                     | and knaves              |                     | of 5; 4 inhabitants |
    | knapsack            | 5 items                 | 8 items             | 12 items            |
    | tsp                 | 5 cities                | 7 cities            | 9 cities            |
    | constrained_writing | 2 constraints, 3 lines  | 3 constraints, 4    | 5 constraints, 5    |
    |                     |                         | lines               | lines               |

    These are the defaults; each family's ``config`` sets them (registry.yaml shows them).

    ## Action Space
    ``UnicodeText(max_text_length)``: the model's raw completion, exactly one
    ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` or one ``<answer>...</answer>``
    (optionally after a ``<think>...</think>`` block); :mod:`llm_trainer.envs.tools.parser`.

    ## Observation Space
    ``UnicodeText(max_text_length)``: the statement after ``reset``; a tool's output after a
    call (``info["role"] == "tool"``); the evaluator's feedback after an answer; a message
    naming the broken rule after an invalid action.

    ## Rewards
    | event                                                  | reward                      |
    |--------------------------------------------------------|-----------------------------|
    | a tool call (whatever its result)                      | 0.0                         |
    | an answer followed by a revision                       | 0.0                         |
    | the final answer (perfect, last revision, or repeated) | its score, in [0, 1]        |
    | invalid action (malformed, or longer than the space)   | -0.1                        |

    The episode's return is the final answer's score (less 0.1 per invalid action).

    ## Starting State
    A problem drawn from ``self.np_random`` at the episode's difficulty.

    ## Episode End
    Terminated by a perfect answer, the answer after the last revision, or a repeated answer.
    Truncated by ``TimeLimit`` at ``max_episode_steps`` (registry.yaml). Invalid actions and
    tool calls do not end the episode.

    ## Info
    As in the tool-use envs: ``system_prompt``, ``tools``, ``difficulty``, ``role``, ``turn``,
    ``invalid_action``, ``invalid_reason``, and the metrics ``format_ok`` (every action so far
    well-formed), ``tool_correct`` (every required tool ran and no unknown tool was called;
    no family requires one), ``exec_ok`` (no tool call failed), ``answer_correct`` (the latest
    answer scored 1) and ``success`` (its score reached the family's success threshold:
    reasoning and writing 1.0, knapsack and TSP 0.95). Also ``score``, ``criteria`` (named
    scores), ``failures`` (reasons) of the latest answer, and ``revisions_left``.

    ## Arguments
    ``family`` (``reasoning``, ``knapsack``, ``tsp``, ``constrained_writing``), ``difficulty``
    (1-3; also ``reset(options={"difficulty": d})``), ``config`` (the family's settings, a
    mapping; unknown keys are errors), ``max_revisions`` (0-10, default 2), ``weights``
    (criterion weights overriding the family's), ``success_threshold`` (in (0, 1]),
    ``render_mode`` (``None`` or ``"ansi"``), ``max_text_length`` (default 8192). A bad value
    raises :class:`~llm_trainer.core.errors.ConfigError` in one line naming the env.

    ## Version History
    * v0: initial version (Reasoning, Knapsack, TSP, ConstrainedWriting).

    ## Example
    >>> import gymnasium as gym, llm_trainer
    >>> env = gym.make("LLMTrainer/Knapsack-v0")
    >>> prompt, info = env.reset(seed=0)
    >>> prompt.startswith("Knapsack of capacity")
    True
    >>> _, reward, terminated, _, info = env.step("<answer>1, 2, 3, 4, 5</answer>")
    >>> reward, terminated, info["failures"][0].startswith("infeasible: total weight")
    (0.0, False, True)
    >>> answer = env.unwrapped.task.answer  # an optimal selection, e.g. "1, 3, 4"
    >>> _, reward, terminated, _, info = env.step(f"<answer>{answer}</answer>")
    >>> reward, terminated, info["success"], info["criteria"]["value"]
    (1.0, True, True, 1.0)
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 4}  # noqa: RUF012 - gymnasium's
    difficulties: tuple[int, ...] = DIFFICULTIES

    def __init__(
        self,
        family: str,
        difficulty: int = 1,
        *,
        config: Mapping[str, Any] | None = None,
        max_revisions: int = 2,
        weights: Mapping[str, Any] | None = None,
        success_threshold: float | None = None,
        render_mode: str | None = None,
        max_text_length: int = MAX_TEXT_LENGTH,
    ) -> None:
        if not isinstance(family, str) or family not in FAMILIES:
            raise ConfigError(
                f"{type(self).__name__}: unknown family {short_repr(family)}"
                f"{suggest(str(family), FAMILIES)}; known: {', '.join(FAMILIES)}"
            )
        self._setup(
            FAMILIES[family],
            difficulty,
            config=config,
            max_revisions=max_revisions,
            weights=weights,
            success_threshold=success_threshold,
            render_mode=render_mode,
            max_text_length=max_text_length,
        )
        self._system_prompt = _system_prompt(tuple(self.tools.names), max_revisions)

    def _setup(
        self,
        family_cls: type[ProblemFamily[Any]],
        difficulty: int,
        *,
        config: Mapping[str, Any] | None,
        max_revisions: int,
        weights: Mapping[str, Any] | None,
        success_threshold: float | None,
        render_mode: str | None,
        max_text_length: int,
    ) -> None:
        """Check the arguments and build what every problem env has: the family (its config
        checked), the metrics, the text spaces, the tools and an empty episode. Envs of a
        family that is not in ``FAMILIES`` (code, multi-step) call it with their family's
        class, then set their ``_system_prompt``."""
        self.family_name = family_cls.name
        self.difficulty = self.check_difficulty(difficulty)
        check_text_env_arguments(self.env_name, render_mode, max_text_length)
        check_int_in(self.env_name, "max_revisions", max_revisions, 0, MAX_REVISIONS)
        if weights is not None and not isinstance(weights, Mapping):
            raise ConfigError(f"{self.env_name}: weights must be a mapping of criteria to numbers")
        try:
            self.family: ProblemFamily[Any] = family_cls(
                build_config(family_cls.config_class, config)
            )
            self.metrics: EvaluationMetrics = self.family.default_metrics().with_overrides(
                weights, success_threshold
            )
        except ConfigError as exc:
            raise ConfigError(f"{self.env_name}: {exc}") from None
        self.max_revisions = max_revisions
        self.render_mode = render_mode
        self.max_text_length = max_text_length
        self.observation_space = UnicodeText(max_text_length)
        self.action_space = UnicodeText(max_text_length)
        self.tools = ToolRegistry([calculator_tool()])
        self._tool_names = frozenset(self.tools.names)
        self._episode: ProblemEpisode | None = None
        self._transcript: list[str] = []

    # -- the Gymnasium API -------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        difficulty = difficulty_from_options(
            self.env_name, options, self.difficulty, self.check_difficulty
        )
        task = self.family.generate(self.np_random, difficulty)
        episode = self._episode = ProblemEpisode(task, difficulty)
        if self.render_mode == "ansi":
            self._transcript = [f"[system] {self._system_prompt}", f"[user] {task.statement}"]
        return task.statement, self._info(episode, "user", None)

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
        turn = ep.turn + 1
        reward, terminated, reason = 0.0, False, None
        if type(parsed) is ToolCall:
            result = self.tools.call(parsed)
            ep = ep._replace(
                turn=turn,
                called=ep.called | {parsed.name},
                succeeded=ep.succeeded | {parsed.name} if result.ok else ep.succeeded,
                n_calls=ep.n_calls + 1,
                n_failed_calls=ep.n_failed_calls + (not result.ok),
            )
            observation, role = result.content, "tool"
        elif type(parsed) is AnswerAction:
            repeated = parsed.text == ep.last_answer and ep.evaluation is not None
            evaluation = ep.evaluation if repeated else self.evaluate(ep.task, parsed.text)
            assert evaluation is not None
            n_answers = ep.n_answers + (not repeated)
            terminated = repeated or evaluation.correct or n_answers > self.max_revisions
            ep = ep._replace(
                turn=turn,
                n_answers=n_answers,
                last_answer=parsed.text,
                evaluation=evaluation,
                done=terminated,
            )
            observation, role = evaluation.feedback(), "user"
            if terminated:
                reward = evaluation.score
            else:
                left = self.max_revisions - n_answers + 1
                observation += (
                    f" Revise your answer ({left} revision{'s' if left > 1 else ''} left), "
                    "or repeat it to keep it."
                )
        else:
            assert isinstance(parsed, InvalidAction)
            reason = parsed.reason
            ep = ep._replace(turn=turn, n_invalid=ep.n_invalid + 1)
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

    # -- evaluation and snapshots ------------------------------------------------------------

    def evaluate(self, task: ProblemSpec, answer: str) -> Evaluation:
        """Score ``answer`` (the text inside ``<answer>``) against ``task`` with this env's
        metrics, without stepping (for verifiers, MALT critics, data filters)."""
        return self.metrics.evaluate(self.family.check(task, answer))

    def get_state(self) -> ProblemEpisode:
        """Snapshot the current episode (an immutable value; cheap to keep many)."""
        if self._episode is None:
            raise ResetNeeded("call reset() before get_state()")
        return self._episode

    def set_state(self, state: ProblemEpisode) -> None:
        """Restore an episode returned by :meth:`get_state`. Steps draw no randomness, so the
        continuation is identical; the next ``reset`` continues this env's own seed stream."""
        if not isinstance(state, ProblemEpisode) or not isinstance(state.task, ProblemSpec):
            raise TypeError(f"state must be a ProblemEpisode from get_state(), got {type(state)}")
        self._episode = state
        if self.render_mode == "ansi":
            self._transcript = [f"[restored at turn {state.turn}] {state.task.statement}"]

    # -- helpers -----------------------------------------------------------------------------

    def check_difficulty(self, value: Any, what: str = "difficulty") -> int:
        """``value`` as one of :attr:`difficulties`.

        Raises:
            ConfigError: in one line naming the env, the value and the allowed difficulties.
        """
        return check_difficulty(self.env_name, value, self.difficulties, what)

    @property
    def env_name(self) -> str:
        """The registered id of this env's family (or the class name), for messages."""
        if self.spec is not None:
            return self.spec.id
        ids = registered_ids(type(self), family=self.family_name)
        return ids[0] if len(ids) == 1 else f"{type(self).__name__}({self.family_name})"

    @property
    def task(self) -> ProblemSpec:
        """The current problem (what the oracle reads; agents must not)."""
        return self.get_state().task

    def _info(
        self, ep: ProblemEpisode | DecomposeEpisode, role: str, invalid_reason: str | None
    ) -> dict[str, Any]:
        """The ``info`` of a step (a ``DecomposeEpisode`` starts with the same fields)."""
        ev = ep.evaluation
        started = ep.turn > 0
        return {
            "system_prompt": self._system_prompt,
            "tools": self.tools.specs,
            "difficulty": ep.difficulty,
            "role": role,
            "turn": ep.turn,
            "invalid_action": invalid_reason is not None,
            "invalid_reason": invalid_reason,
            "format_ok": started and ep.n_invalid == 0,
            "tool_correct": started
            and ep.task.required_tools <= ep.succeeded
            and ep.called <= self._tool_names,
            "exec_ok": started and ep.n_failed_calls == 0,
            "answer_correct": ev is not None and ev.correct,
            "success": ev is not None and ev.success,
            "score": ev.score if ev is not None else 0.0,
            "criteria": ev.criteria if ev is not None else NO_CRITERIA,
            "failures": ev.failures if ev is not None else (),
            "revisions_left": self.max_revisions - max(0, ep.n_answers - 1),
        }
