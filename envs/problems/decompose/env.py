"""``DecomposeEnv``: a multi-step problem that the agent may break into sub-problems first.

The registry id is ``LLMTrainer/Decompose-v0``; the problems come from the ``multistep``
family (:mod:`.multistep`), whose specs carry their reference decomposition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, SupportsFloat

import gymnasium as gym
from gymnasium.error import ResetNeeded

from llm_trainer.core.records import FrozenDict, ToolCall
from llm_trainer.envs.common import (
    INVALID_ACTION_PENALTY,
    check_int_in,
    difficulty_from_options,
    registered_ids,
)
from llm_trainer.envs.problems.decompose.graph import (
    MAX_SUBPROBLEMS,
    DecompositionError,
    topological_order,
)
from llm_trainer.envs.problems.decompose.multistep import MultiStepFamily
from llm_trainer.envs.problems.decompose.plan import PlanAction, parse_decompose_action
from llm_trainer.envs.problems.env import ProblemEnv
from llm_trainer.envs.problems.spec import (
    Evaluation,
    ProblemSpec,
    SubProblem,
)
from llm_trainer.envs.spaces import MAX_TEXT_LENGTH
from llm_trainer.envs.tools import AnswerAction, InvalidAction
from llm_trainer.envs.tooluse.base import answer_matches

#: Largest ``max_subproblems`` an env accepts.
MAX_SUBPROBLEMS_LIMIT = 32
#: Characters of an earlier answer shown in an observation.
_SHOWN = 60


class DecomposeEpisode(NamedTuple):
    """The whole state of an episode; immutable, so ``get_state()`` hands it out as is.

    The first fields are :class:`~llm_trainer.envs.problems.env.ProblemEpisode`'s (counting
    final answers only); the decomposition adds the accepted plan, in the order its
    sub-problems are asked, the answers given to them so far and their credit.
    """

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
    plan: tuple[SubProblem, ...] = ()
    """The accepted decomposition in topological order (empty: none, the direct path)."""
    subanswers: tuple[str, ...] = ()
    """Answers to ``plan[0]``, ``plan[1]``... so far."""
    credit: tuple[float, ...] = ()
    """The credit of each answer in :attr:`subanswers` (1.0 or 0.0)."""
    unclaimed: tuple[str, ...] = ()
    """Values of the reference sub-problems that no sub-answer has matched yet."""

    @property
    def current(self) -> SubProblem | None:
        """The sub-problem being asked, or ``None`` (no plan, or every one answered)."""
        k = len(self.subanswers)
        return self.plan[k] if k < len(self.plan) else None


def _system_prompt(max_subproblems: int, max_revisions: int) -> str:
    revise = (
        f" An imperfect final answer gets feedback, and you may revise it up to {max_revisions} "
        "times (repeat an answer to keep it)."
        if max_revisions
        else ""
    )
    return (
        "Solve the problem. First, you may break it into sub-problems: "
        '<plan>[{"id": "s1", "statement": "...", "depends_on": []}, ...]</plan> with at most '
        f"{max_subproblems} sub-problems, each depending only on others of the plan, without "
        "cycles. You then answer them one at a time, in the order given, each with "
        "<answer>ANSWER</answer>, and then the problem itself. You may also answer the problem "
        "directly with <answer>ANSWER</answer>. At any time you may call a tool (calculator) "
        'with <tool_call>{"name": NAME, "arguments": {...}}</tool_call>.' + revise
    )


def _invalid_observation(reason: str) -> str:
    return (
        f"Invalid action: {reason}. Reply with one <plan>...</plan> (before any answer), one "
        "<tool_call>...</tool_call> or one <answer>...</answer>."
    )


def _shown(text: str) -> str:
    """An answer as an observation quotes it: on one line, at most :data:`_SHOWN` characters."""
    text = " ".join(text[: 4 * _SHOWN].split())
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 3]}..."


class DecomposeEnv(ProblemEnv):
    """A multi-step word problem that the agent may break into a DAG of sub-problems first.

    ## Description
    Each episode draws a problem of the ``multistep`` family (:mod:`.multistep`: shopping,
    travel, savings stories of 3-7 quantities to work out) with one number as its answer.
    The agent takes either path:

    * **plan**: it first proposes a decomposition, ``<plan>[{"id": "s1", "statement":
      "...", "depends_on": []}, ...]</plan>``, which is checked as a DAG (well-formed
      sub-problems, unique ids, dependencies that exist, no cycle, at most
      ``max_subproblems``). The env then asks the sub-problems one at a time in topological
      order (ties: the plan's order), each observation quoting the answers the sub-problem
      depends on; each ``<answer>`` answers the sub-problem asked. After the last one the
      agent answers the problem itself.
    * **direct**: it answers the problem with ``<answer>`` at once.

    The final answer is judged against the ground truth exactly as in ``Reasoning-v0``
    (:class:`~llm_trainer.envs.problems.env.ProblemEnv`): a wrong one gets feedback and may be
    revised up to ``max_revisions`` times; a repeated answer keeps it. The calculator may be
    called at any time. A plan is accepted only before any answer and only once.

    **Credit per sub-problem** (``info["subproblem_scores"]``, process supervision, not
    reward): a sub-answer earns 1.0 when it is the value of one of the reference
    decomposition's sub-problems (the quantities the worked solution computes) that no
    earlier sub-answer matched, else 0.0. A plan that works the problem out along other
    quantities than the reference's earns no credit for them, and restating a number of the
    story is no progress: neither is a sub-problem of the reference.

    ## Difficulty
    | kind     | 1                       | 2                        | 3                          |
    |----------|-------------------------|--------------------------|----------------------------|
    | shopping | a total (3 sub-problems)| and the change (4)       | a derived price, two       |
    |          |                         |                          | buyers, a difference (6)   |
    | travel   | a distance (3)          | an average speed (5)     | three legs, shared time (7)|
    | savings  | a total (3)             | a gift, shared by 2 (5)  | a third saver, by 3 (7)    |

    ## Action Space
    ``UnicodeText(max_text_length)``: one ``<plan>[...]</plan>``
    (:mod:`llm_trainer.envs.problems.decompose.plan`: at most 8,192 characters of JSON, ids of
    1-32 letters, digits, ``_ - .``, statements of 1-500 characters), one
    ``<tool_call>{...}</tool_call>`` or one ``<answer>...</answer>``, optionally after a
    ``<think>...</think>`` block.

    ## Observation Space
    ``UnicodeText(max_text_length)``: the statement after ``reset``; after an accepted plan,
    the order and the first sub-problem; after a sub-answer, the next sub-problem with the
    answers it depends on (``Sub-problem s3 (3 of 6): ... Known: s1 = 7; s2 = 15.``), or,
    after the last, every sub-answer and the request for the final answer; a tool's output
    after a call; the evaluator's feedback after a final answer; the broken rule after an
    invalid action.

    ## Rewards
    | event                                                        | reward               |
    |--------------------------------------------------------------|----------------------|
    | a tool call, an accepted plan, a sub-problem's answer        | 0.0                  |
    | a final answer followed by a revision                        | 0.0                  |
    | the final answer (right, last revision, or repeated)         | its score: 1 or 0    |
    | invalid action (malformed; a plan with a cycle, an unknown   | -0.1                 |
    | dependency, a duplicate id, too many sub-problems; a plan    |                      |
    | after an answer or a second plan; longer than the space)     |                      |

    Planning is not required and is rewarded only through correctness: both paths return
    the final answer's score (less 0.1 per invalid action), 1.0 at most. The credit per
    sub-problem is in ``info`` for trainers that want a process signal; it is not added to
    the reward, because it is measured against one reference decomposition among many valid
    ones.

    ## Starting State
    A problem drawn from ``self.np_random`` at the episode's difficulty.

    ## Episode End
    Terminated by a right final answer, the final answer after the last revision, or a
    repeated final answer. Truncated by ``TimeLimit`` at ``max_episode_steps`` (registry.yaml:
    24, room for a plan of 12 sub-problems). Tool calls, plans, sub-answers and invalid
    actions do not end the episode.

    ## Info
    As ``ProblemEnv`` (``system_prompt``, ``tools``, ``difficulty``, ``role``, ``turn``,
    ``invalid_action``, ``invalid_reason``, the five metrics, ``score``, ``criteria``,
    ``failures``, ``revisions_left``; ``answer_correct`` and ``success`` are about the final
    answer), and ``decomposition_valid`` (a plan was accepted this episode), ``plan`` (its ids
    in the order asked; empty on the direct path), ``subproblem`` (the id being asked, or
    ``None``) and ``subproblem_scores`` (id -> credit of each sub-problem answered so far;
    empty on the direct path).

    ## Arguments
    ``difficulty`` (1-3; also ``reset(options={"difficulty": d})``), ``config`` (the family's
    settings: ``kinds``), ``max_subproblems`` (1-32, default 12), ``max_revisions`` (0-10,
    default 2), ``weights``, ``success_threshold``, ``render_mode`` (``None`` or ``"ansi"``),
    ``max_text_length`` (default 8192). A bad value raises
    :class:`~llm_trainer.core.errors.ConfigError` in one line naming the env.

    ## Version History
    * v0: initial version (shopping, travel, savings).

    ## Example
    >>> import llm_trainer
    >>> from llm_trainer.envs.problems.decompose import ScriptedDecomposer, format_plan
    >>> env = llm_trainer.make("LLMTrainer/Decompose-v0", config={"kinds": ["shopping"]})
    >>> prompt, info = env.reset(seed=0)
    >>> prompt
    'At a market, a ... costs $... Answer with a number.'
    >>> cycle = '[{"id": "a", "statement": "x", "depends_on": ["b"]}, ' \\
    ...         '{"id": "b", "statement": "y", "depends_on": ["a"]}]'
    >>> _, reward, _, _, info = env.step(f"<plan>{cycle}</plan>")
    >>> reward, info["invalid_reason"]
    (-0.1, 'invalid plan: the plan has a cycle: a -> b -> a')
    >>> task = env.unwrapped.task
    >>> obs, *_ = env.step(format_plan(ScriptedDecomposer().plan(task)))
    >>> obs
    'Plan accepted: 3 sub-problems, in this order: s1, s2, s3. Sub-problem s1 (1 of 3): ...'
    >>> for node in task.subproblems:
    ...     obs, reward, terminated, _, info = env.step(
    ...         f"<answer>{task.data['subanswers'][node.id]}</answer>")
    >>> dict(info["subproblem_scores"]), info["decomposition_valid"], terminated
    ({'s1': 1.0, 's2': 1.0, 's3': 1.0}, True, False)
    >>> _, reward, terminated, _, info = env.step(f"<answer>{task.answer}</answer>")
    >>> reward, terminated, info["success"]
    (1.0, True, True)
    """

    def __init__(
        self,
        difficulty: int = 1,
        *,
        config: Mapping[str, Any] | None = None,
        max_subproblems: int = MAX_SUBPROBLEMS,
        max_revisions: int = 2,
        weights: Mapping[str, Any] | None = None,
        success_threshold: float | None = None,
        render_mode: str | None = None,
        max_text_length: int = MAX_TEXT_LENGTH,
    ) -> None:
        self._setup(  # the multi-step family is not one of FAMILIES (ProblemEnv.__init__'s)
            MultiStepFamily,
            difficulty,
            config=config,
            max_revisions=max_revisions,
            weights=weights,
            success_threshold=success_threshold,
            render_mode=render_mode,
            max_text_length=max_text_length,
        )
        self.max_subproblems = check_int_in(
            self.env_name, "max_subproblems", max_subproblems, 1, MAX_SUBPROBLEMS_LIMIT
        )
        self._system_prompt = _system_prompt(max_subproblems, max_revisions)
        self._state: DecomposeEpisode | None = None

    # -- the Gymnasium API -------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        gym.Env.reset(self, seed=seed)  # seeds np_random (ProblemEnv.reset would draw a task)
        difficulty = difficulty_from_options(
            self.env_name, options, self.difficulty, self.check_difficulty
        )
        task = self.family.generate(self.np_random, difficulty)
        episode = self._state = DecomposeEpisode(task, difficulty)
        if self.render_mode == "ansi":
            self._transcript = [f"[system] {self._system_prompt}", f"[user] {task.statement}"]
        return task.statement, self._decompose_info(episode, "user", None)

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        ep = self._state
        if ep is None or ep.done:
            raise ResetNeeded("call reset() before step(): the episode has ended or not started")
        if not isinstance(action, str):
            raise TypeError(f"action must be a str (the model's completion), got {type(action)}")
        parsed = (
            parse_decompose_action(action, self.max_subproblems)
            if len(action) <= self.max_text_length
            else InvalidAction(f"action longer than {self.max_text_length} characters")
        )
        ep = ep._replace(turn=ep.turn + 1)
        observation, reward, terminated, reason, role = "", 0.0, False, None, "user"
        if type(parsed) is ToolCall:
            result = self.tools.call(parsed)
            ep = ep._replace(
                called=ep.called | {parsed.name},
                succeeded=ep.succeeded | {parsed.name} if result.ok else ep.succeeded,
                n_calls=ep.n_calls + 1,
                n_failed_calls=ep.n_failed_calls + (not result.ok),
            )
            observation, role = result.content, "tool"
        elif type(parsed) is PlanAction:
            accepted = self._accept_plan(ep, parsed)
            if isinstance(accepted, str):
                reason = accepted
            else:
                ep = accepted
                assert ep.current is not None
                ids = ", ".join(node.id for node in ep.plan)
                n = len(ep.plan)
                observation = (
                    f"Plan accepted: {n} sub-problem{'s' if n > 1 else ''}, in this order: "
                    f"{ids}. {self._ask(ep, ep.current)}"
                )
        elif type(parsed) is AnswerAction:
            current = ep.current
            if current is not None:
                ep = self._record_subanswer(ep, parsed.text)
                observation = self._ask(ep, ep.current)
            else:
                ep, observation = self._final_answer(ep, parsed.text)
                terminated = ep.done
                if terminated:
                    assert ep.evaluation is not None
                    reward = ep.evaluation.score
        else:
            assert isinstance(parsed, InvalidAction)
            reason = parsed.reason
        if reason is not None:
            ep = ep._replace(n_invalid=ep.n_invalid + 1)
            observation, reward = _invalid_observation(reason), INVALID_ACTION_PENALTY
        if len(observation) > self.max_text_length:
            observation = observation[: self.max_text_length]
        self._state = ep
        if self.render_mode == "ansi":
            self._transcript += [f"[assistant] {action}", f"[{role}] {observation}"]
        return observation, reward, terminated, False, self._decompose_info(ep, role, reason)

    # -- the decomposition -------------------------------------------------------------------

    def _accept_plan(self, ep: DecomposeEpisode, action: PlanAction) -> DecomposeEpisode | str:
        """The episode with ``action``'s plan accepted, or why it is an invalid action."""
        if ep.plan:
            return "a plan was already accepted: answer the sub-problems, then the problem"
        if ep.n_answers:
            return "a plan must come before the first answer"
        try:
            order = topological_order(action.subproblems, self.max_subproblems)
        except DecompositionError as exc:
            return f"invalid plan: {exc}"
        reference = ep.task.data["subanswers"]
        return ep._replace(plan=order, unclaimed=tuple(reference.values()))

    @staticmethod
    def _record_subanswer(ep: DecomposeEpisode, text: str) -> DecomposeEpisode:
        """``ep`` with ``text`` as the answer to the current sub-problem, and its credit."""
        hit = next(
            (i for i, value in enumerate(ep.unclaimed) if answer_matches(text, value, "number")),
            None,
        )
        unclaimed = ep.unclaimed if hit is None else ep.unclaimed[:hit] + ep.unclaimed[hit + 1 :]
        return ep._replace(
            subanswers=(*ep.subanswers, text),
            credit=(*ep.credit, 0.0 if hit is None else 1.0),
            unclaimed=unclaimed,
        )

    @staticmethod
    def _ask(ep: DecomposeEpisode, node: SubProblem | None) -> str:
        """The observation asking ``node`` (with the answers it depends on), or, when every
        sub-problem is answered, asking for the final answer."""
        answers = {n.id: a for n, a in zip(ep.plan, ep.subanswers, strict=False)}
        if node is None:
            known = "; ".join(f"{i} = {_shown(a)}" for i, a in answers.items())
            return (
                f"Every sub-problem is answered: {known}. Now answer the problem itself with "
                "<answer>...</answer>."
            )
        known = "; ".join(f"{d} = {_shown(answers[d])}" for d in node.depends_on)
        return (
            f"Sub-problem {node.id} ({len(ep.subanswers) + 1} of {len(ep.plan)}): "
            f"{node.statement}{f' Known: {known}.' if known else ''} Answer it with "
            "<answer>...</answer>."
        )

    def _final_answer(self, ep: DecomposeEpisode, text: str) -> tuple[DecomposeEpisode, str]:
        """``ep`` after a final answer (as in ``ProblemEnv``: revisions, a repeat keeps it),
        and the feedback."""
        repeated = text == ep.last_answer and ep.evaluation is not None
        evaluation = ep.evaluation if repeated else self.evaluate(ep.task, text)
        assert evaluation is not None
        n_answers = ep.n_answers + (not repeated)
        done = repeated or evaluation.correct or n_answers > self.max_revisions
        ep = ep._replace(n_answers=n_answers, last_answer=text, evaluation=evaluation, done=done)
        feedback = evaluation.feedback()
        if not done:
            left = self.max_revisions - n_answers + 1
            feedback += (
                f" Revise your answer ({left} revision{'s' if left > 1 else ''} left), "
                "or repeat it to keep it."
            )
        return ep, feedback

    # -- snapshots and helpers ---------------------------------------------------------------

    # ProblemEnv's snapshot is its ProblemEpisode; this env's is a DecomposeEpisode (the plan
    # and the sub-answers too): set_state takes what this env's own get_state returned.
    def get_state(self) -> DecomposeEpisode:  # type: ignore[override]
        """Snapshot the current episode (an immutable value; cheap to keep many)."""
        if self._state is None:
            raise ResetNeeded("call reset() before get_state()")
        return self._state

    def set_state(self, state: DecomposeEpisode) -> None:  # type: ignore[override]
        """Restore an episode returned by :meth:`get_state`. Steps draw no randomness, so the
        continuation is identical; the next ``reset`` continues this env's own seed stream."""
        if not isinstance(state, DecomposeEpisode) or not isinstance(state.task, ProblemSpec):
            raise TypeError(f"state must be a DecomposeEpisode from get_state(), got {type(state)}")
        self._state = state
        if self.render_mode == "ansi":
            self._transcript = [f"[restored at turn {state.turn}] {state.task.statement}"]

    @property
    def env_name(self) -> str:
        """The registered id of this env (or the class name), for messages."""
        if self.spec is not None:
            return self.spec.id
        ids = registered_ids(type(self))
        return ids[0] if len(ids) == 1 else type(self).__name__

    def _decompose_info(
        self, ep: DecomposeEpisode, role: str, invalid_reason: str | None
    ) -> dict[str, Any]:
        current = ep.current
        return {
            **self._info(ep, role, invalid_reason),
            "decomposition_valid": bool(ep.plan),
            "plan": tuple(node.id for node in ep.plan),
            "subproblem": current.id if current is not None else None,
            "subproblem_scores": FrozenDict(
                {node.id: c for node, c in zip(ep.plan, ep.credit, strict=False)}
            ),
        }
