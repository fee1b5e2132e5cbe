"""``CodeEnv``: write a Python function; it runs in the sandbox on hidden tests.

The registry id is ``LLMTrainer/Code-v0``; the problems come from the ``code`` family
(:mod:`.family`). The env plays them exactly as
:class:`~llm_trainer.envs.problems.env.ProblemEnv` plays any family (answer, feedback,
revisions) and adds what judging code reports to ``info``: the compile error, the failing
tests and the sandbox's isolation level.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_trainer.envs.common import registered_ids
from llm_trainer.envs.problems.code.family import CodeFamily
from llm_trainer.envs.problems.env import ProblemEnv, ProblemEpisode
from llm_trainer.envs.problems.spec import (
    NO_CRITERIA,
    Evaluation,
    ProblemSpec,
)
from llm_trainer.envs.spaces import MAX_TEXT_LENGTH

if TYPE_CHECKING:
    from llm_trainer.envs.problems.decompose.env import DecomposeEpisode


@dataclass(frozen=True, slots=True)
class CodeEvaluation(Evaluation):
    """An :class:`~llm_trainer.envs.problems.spec.Evaluation` with what judging code found
    (kept on the episode, so snapshots and repeated answers carry it)."""

    compile_error: str | None = None
    """Why the code could not run at all (a syntax error, no such function, an error while
    loading it), or ``None``."""
    failing_tests: tuple[str, ...] = ()
    """The failing hidden tests' names (``test_3``)."""
    isolation_level: str | None = None
    """The sandbox isolation level the code ran at (``None``: it did not need to run)."""


#: What ``info`` reports before any answer.
_NOT_JUDGED = CodeEvaluation(0.0, NO_CRITERIA)


def _system_prompt(max_revisions: int) -> str:
    revise = (
        f" A failing answer gets feedback naming the failing tests, and you may revise it up "
        f"to {max_revisions} times (repeat an answer to keep it)."
        if max_revisions
        else ""
    )
    return (
        "Write the Python function the problem describes. Answer with the code in a "
        "```python block inside <answer>...</answer>; it runs in a sandbox on hidden tests, "
        f"and the score is the fraction it passes.{revise} You may call a tool (calculator) "
        'with <tool_call>{"name": NAME, "arguments": {...}}</tool_call> and wait for its '
        "result."
    )


class CodeEnv(ProblemEnv):
    """Function synthesis: write a Python function; it runs in the sandbox on hidden tests.

    ## Description
    Each episode draws a task of the ``code`` family (:mod:`.family`, templates in
    :mod:`.tasks`): the signature of one Python function, what it must return and one or two
    examples. The agent answers with the function's code (a ```` ```python ```` block inside
    ``<answer>...</answer>``). The code runs in the sandbox (:mod:`llm_trainer.sandbox`, at
    least isolation level ``config.min_level``, L3 by default) on hidden tests whose expected
    outputs never leave the judge; each test has its own time limit. The score is the
    fraction of tests passed. A perfect answer ends the episode; otherwise the feedback names
    the failing tests ("Score 0.70: test_3: rotate([1, 2, 3], 4): expected [2, 3, 1], got
    [3, 1, 2]; ...; passed 7 of 10 hidden tests.") or the compile error, and the agent may
    revise up to ``max_revisions`` times; repeating the previous answer keeps it and ends the
    episode. The calculator may be called at any time, as in the other problem envs.

    ## Difficulty
    | difficulty | templates                                                  | hidden tests |
    |------------|------------------------------------------------------------|--------------|
    | 1          | count_values, transform, shift_letters, sum_multiples,     | 8            |
    |            | long_words: list, string and number transforms             |              |
    | 2          | rotate, compress, kth_largest, balanced, merge_intervals,  | 10           |
    |            | to_base: small algorithms with edge cases                  |              |
    | 3          | count_ways, min_coins, longest_subsequence, edit_cost,     | 12           |
    |            | label, grid_paths: multi-condition rules, dynamic          |              |
    |            | programming                                                |              |

    Each template draws its parameters (a threshold, a base, coin values, a rule's words)
    from ``self.np_random``; up to half the tests are the template's edge cases.

    ## Action Space
    ``UnicodeText(max_text_length)``: one ``<answer>...</answer>`` (the code: its first
    ```` ```python ```` block, or the whole answer without one) or one
    ``<tool_call>...</tool_call>``, optionally after a ``<think>...</think>`` block.

    ## Observation Space
    ``UnicodeText(max_text_length)``: the statement after ``reset``; the judge's feedback
    after an answer; a tool's output after a call; the broken rule after an invalid action.

    ## Rewards
    | event                                                  | reward                      |
    |--------------------------------------------------------|-----------------------------|
    | a tool call (whatever its result)                      | 0.0                         |
    | an answer followed by a revision                       | 0.0                         |
    | the final answer (perfect, last revision, or repeated) | fraction of tests passed    |
    | invalid action (malformed, or longer than the space)   | -0.1                        |

    Code that does not compile, load or define the function scores 0 (the ``compiles``
    gate). A test passes only when its one result line carries the expected value: the exit
    code and any printed claim count for nothing.

    ## Starting State
    A task drawn from ``self.np_random`` at the episode's difficulty.

    ## Episode End
    Terminated by a perfect answer, the answer after the last revision, or a repeated answer.
    Truncated by ``TimeLimit`` at ``max_episode_steps`` (registry.yaml).

    ## Info
    As ``ProblemEnv`` (``system_prompt``, ``tools``, ``difficulty``, ``role``, ``turn``,
    ``invalid_action``, ``invalid_reason``, the five metrics, ``score``, ``criteria``
    (``compiles``, ``tests``), ``failures``, ``revisions_left``), and, for the latest answer,
    ``compile_error`` (or ``None``), ``failing_tests`` (names) and ``isolation_level`` (the
    sandbox level it ran at; ``None`` before any run, or when the code never needed one).

    ## Arguments
    ``difficulty`` (1-3; also ``reset(options={"difficulty": d})``), ``config`` (the
    family's settings: ``templates``, ``tests``, ``examples``, ``time_limit_s``,
    ``memory_mb``, ``min_level``), ``max_revisions`` (0-10, default 2), ``weights``,
    ``success_threshold``, ``render_mode`` (``None`` or ``"ansi"``), ``max_text_length``
    (default 8192). A bad value raises :class:`~llm_trainer.core.errors.ConfigError` in one
    line naming the env. Judging raises :class:`~llm_trainer.sandbox.SandboxUnavailable`
    when the machine cannot isolate at ``min_level`` (a rollout failure, not the agent's).

    ## Version History
    * v0: initial version (17 templates at difficulties 1-3).

    ## Example
    >>> import llm_trainer
    >>> env = llm_trainer.make("LLMTrainer/Code-v0", difficulty=2)
    >>> prompt, info = env.reset(seed=1)
    >>> prompt.startswith("Write a Python function:")
    True
    >>> name = env.unwrapped.task.data["function"]
    >>> _, reward, terminated, _, info = env.step(f"<answer>def {name}(*args): 1 / 0</answer>")
    >>> reward, terminated, info["criteria"]["tests"]
    (0.0, False, 0.0)
    >>> print(info["failures"][0])
    test_1: ...: raised ZeroDivisionError: division by zero
    >>> _, reward, terminated, _, info = env.step("<answer>def oops(:</answer>")
    >>> info["compile_error"], info["isolation_level"]
    ('SyntaxError: invalid syntax (line 1)', None)
    >>> _, reward, terminated, _, info = env.step(f"<answer>{env.unwrapped.task.answer}</answer>")
    >>> reward, terminated, info["failing_tests"], info["isolation_level"]
    (1.0, True, (), 'L3')
    >>> env.close()
    """

    family: CodeFamily

    def __init__(
        self,
        difficulty: int = 1,
        *,
        config: Mapping[str, Any] | None = None,
        max_revisions: int = 2,
        weights: Mapping[str, Any] | None = None,
        success_threshold: float | None = None,
        render_mode: str | None = None,
        max_text_length: int = MAX_TEXT_LENGTH,
    ) -> None:
        self._setup(  # the code family is not one of FAMILIES (ProblemEnv.__init__'s)
            CodeFamily,
            difficulty,
            config=config,
            max_revisions=max_revisions,
            weights=weights,
            success_threshold=success_threshold,
            render_mode=render_mode,
            max_text_length=max_text_length,
        )
        self._system_prompt = _system_prompt(max_revisions)

    def evaluate(self, task: ProblemSpec, answer: str) -> CodeEvaluation:
        """Run ``answer``'s code on ``task``'s hidden tests in the sandbox and score it with
        this env's metrics, without stepping (for verifiers, critics, data filters).

        Raises:
            SandboxUnavailable: when the machine cannot isolate at ``config.min_level``.
        """
        report = self.family.judge(task, answer)
        ev = self.metrics.evaluate(report.check)
        return CodeEvaluation(
            score=ev.score,
            criteria=ev.criteria,
            failures=ev.failures,
            details=ev.details,
            success=ev.success,
            compile_error=report.compile_error,
            failing_tests=report.failing_tests,
            isolation_level=report.isolation_level,
        )

    def close(self) -> None:
        """Release the family's sandbox (the next answer makes a new one)."""
        self.family.close()
        super().close()

    @property
    def env_name(self) -> str:
        """The registered id of this env (or the class name), for messages."""
        if self.spec is not None:
            return self.spec.id
        ids = registered_ids(type(self))
        return ids[0] if len(ids) == 1 else type(self).__name__

    def _info(
        self, ep: ProblemEpisode | DecomposeEpisode, role: str, invalid_reason: str | None
    ) -> dict[str, Any]:
        info = super()._info(ep, role, invalid_reason)
        code = ep.evaluation if isinstance(ep.evaluation, CodeEvaluation) else _NOT_JUDGED
        info["compile_error"] = code.compile_error
        info["failing_tests"] = code.failing_tests
        info["isolation_level"] = code.isolation_level
        return info
