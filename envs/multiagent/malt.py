"""``LLMTrainer/MALT-v0``: a generator, a verifier and a refiner solve one problem together.

MALT (Motwani et al., "MALT: Improving Reasoning with Multi-Agent LLM Training", arXiv
2412.01928; seed 002) trains three roles of a team: the generator writes a solution, the
verifier critiques it, the refiner gives the final answer. This env plays that protocol on a
problem drawn from a :class:`~llm_trainer.envs.problems.spec.ProblemFamily` (Reasoning by
default) and scores the refiner's answer with the family's exact checker.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple, TypeVar

import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from pettingzoo import AECEnv

from llm_trainer.core.errors import ConfigError, suggest
from llm_trainer.core.records import FrozenDict
from llm_trainer.envs.common import (
    INVALID_ACTION_PENALTY,
    RENDER_MODES,
    check_difficulty,
    check_int_in,
    check_text_env_arguments,
    difficulty_from_options,
    registered_ids,
    short_repr,
)
from llm_trainer.envs.problems.decompose.multistep import MultiStepFamily
from llm_trainer.envs.problems.env import DIFFICULTIES, FAMILIES
from llm_trainer.envs.problems.spec import (
    NO_CRITERIA,
    Evaluation,
    EvaluationMetrics,
    ProblemFamily,
    ProblemSpec,
    build_config,
)
from llm_trainer.envs.spaces import MAX_TEXT_LENGTH, TextObservation, UnicodeText
from llm_trainer.envs.tools.parser import ANSWER_CLOSE, ANSWER_OPEN

T = TypeVar("T")

#: The roles, in the order they act in every round.
AGENTS: tuple[str, str, str] = ("generator", "verifier", "refiner")
GENERATOR, VERIFIER, REFINER = AGENTS
#: The families MALT-v0 draws problems from (``family``): every problem family whose answers
#: the family's checker scores, Reasoning by default.
MALT_FAMILIES: Mapping[str, type[ProblemFamily[Any]]] = FrozenDict(
    {**FAMILIES, MultiStepFamily.name: MultiStepFamily}
)
#: Most rounds an episode may have (``max_cycles``).
MAX_CYCLES = 10
#: Characters an observation may hold beyond its four texts (the question, three messages).
OBSERVATION_FRAMING = 1024

#: The communication protocol: what each role observes, in the order its observation shows
#: it. ``previous_*`` are the texts of the round before (from round 2 on, ``max_cycles > 1``).
PROTOCOL: Mapping[str, tuple[str, ...]] = FrozenDict(
    {
        GENERATOR: ("question", "previous_solution", "previous_critique", "previous_answer"),
        VERIFIER: ("question", "solution"),
        REFINER: ("question", "solution", "critique"),
    }
)

_TEAM = (
    "You are the {role} of a team of three: a generator writes a solution, a verifier "
    "critiques it, and a refiner gives the team's final answer, which alone is scored. "
)
SYSTEM_PROMPTS: Mapping[str, str] = FrozenDict(
    {
        GENERATOR: _TEAM.format(role=GENERATOR)
        + "Solve the question step by step and end with your answer as <answer>ANSWER</answer>.",
        VERIFIER: _TEAM.format(role=VERIFIER)
        + "Check the proposed solution step by step and say whether it is correct; point out "
        "every error you find. Reply with your critique only.",
        REFINER: _TEAM.format(role=REFINER)
        + "Using the proposed solution and the critique, give the final answer as exactly one "
        "<answer>ANSWER</answer> (reasoning before it is allowed).",
    }
)
_HEADINGS = {
    "question": "Question:",
    "solution": "Proposed solution:",
    "critique": "Critique:",
    "previous_solution": "Your previous solution:",
    "previous_critique": "The verifier's critique of it:",
    "previous_answer": "The refiner's answer then:",
}
_EMPTY = "(none)"


class MALTRound(NamedTuple):
    """The texts of one round; ``None`` until the role has acted, ``""`` after an invalid
    action (its text is not passed on)."""

    solution: str | None = None
    critique: str | None = None
    final: str | None = None


class MALTEpisode(NamedTuple):
    """The whole state of an episode; immutable, so ``get_state()`` hands it out as is.

    Per-role tuples follow :data:`AGENTS` (generator, verifier, refiner).
    """

    task: ProblemSpec
    difficulty: int
    max_cycles: int
    turn: int = 0
    """Actions taken so far, by every role."""
    rounds: tuple[MALTRound, ...] = (MALTRound(),)
    """Every round so far; the last is the current one."""
    n_actions: tuple[int, int, int] = (0, 0, 0)
    n_invalid: tuple[int, int, int] = (0, 0, 0)
    invalid_reasons: tuple[str | None, str | None, str | None] = (None, None, None)
    """Why each role's latest action was invalid (``None``: it was valid)."""
    generator_evaluation: Evaluation | None = None
    """The generator's latest ``<answer>``, scored (``None``: it gave none)."""
    final_evaluation: Evaluation | None = None
    """The refiner's latest answer, scored (``None``: none yet, or invalid)."""
    rewards: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Each role's reward from the last step."""
    cumulative: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Each role's rewards since it last acted (what ``last()`` returns)."""
    agents: tuple[str, ...] = AGENTS
    """The live agents; once the episode is over each leaves as it steps ``None``."""
    done: bool = False


#: A round in which no role has acted yet.
NO_ROUND = MALTRound()


def read_last_answer(text: str) -> str | None:
    """The content of the last complete ``<answer>...</answer>`` block, stripped (linear)."""
    close = text.rfind(ANSWER_CLOSE)
    start = text.rfind(ANSWER_OPEN, 0, close) if close >= 0 else -1
    if start < 0:
        return None
    return text[start + len(ANSWER_OPEN) : close].strip()


def read_final_answer(text: str) -> tuple[str | None, str | None]:
    """The refiner's answer (exactly one ``<answer>...</answer>`` block, any text around it)
    and the reason it is invalid, if it is."""
    opens, closes = text.count(ANSWER_OPEN), text.count(ANSWER_CLOSE)
    if opens == 0 and closes == 0:
        return None, "the refiner must give its answer as <answer>...</answer>"
    if opens > 1 or closes > 1:
        return None, "more than one <answer> block: give exactly one final answer"
    start, close = text.find(ANSWER_OPEN), text.find(ANSWER_CLOSE)
    if start < 0 or close < start:
        return None, "unclosed tag: <answer> must come before </answer>"
    return text[start + len(ANSWER_OPEN) : close].strip(), None


def render_view(
    agent: str,
    question: str,
    current: MALTRound = NO_ROUND,
    previous: MALTRound = NO_ROUND,
    protocol: Mapping[str, tuple[str, ...]] = PROTOCOL,
) -> str:
    """What ``agent`` observes (:data:`PROTOCOL`): the question and the messages of the
    ``current`` and ``previous`` rounds it may see, each under its heading; a text not written
    yet (``None``) is left out, an empty one (an invalid action) shows as ``(none)``. The env's
    observations and a :class:`~llm_trainer.agents.team.MALTTeam` playing a single-agent env
    both render through it, so a team trained here sees the same text there.

    >>> print(render_view("refiner", "What is 2 + 2?", MALTRound("2 + 2 = 4.", "Correct.")))
    Question:
    What is 2 + 2?
    <BLANKLINE>
    Proposed solution:
    2 + 2 = 4.
    <BLANKLINE>
    Critique:
    Correct.
    """
    texts = {
        "question": question,
        "solution": current.solution,
        "critique": current.critique,
        "previous_solution": previous.solution,
        "previous_critique": previous.critique,
        "previous_answer": previous.final,
    }
    return "\n\n".join(
        f"{_HEADINGS[name]}\n{texts[name] or _EMPTY}"
        for name in protocol[agent]
        if texts[name] is not None
    )


class MALTEnv(AECEnv[str, str, str]):
    """MALT's generator -> verifier -> refiner team on one problem, as a PettingZoo AEC env.

    ## Description
    Each episode draws a :class:`~llm_trainer.envs.problems.spec.ProblemSpec` from the family
    named by ``family`` (Reasoning by default: arithmetic word problems, orderings, knights and
    knaves). Three agents act in turn, once per round (MALT, arXiv 2412.01928): the
    **generator** writes a solution, which may end with ``<answer>...</answer>``; the
    **verifier** critiques it in free text; the **refiner** gives the team's final answer as
    ``<answer>...</answer>``. The episode ends after the refiner of the last round (one round
    by default). The family's exact checker scores the refiner's answer, and that score is
    the team reward of all three agents. The generator's own answer is scored too, for
    per-role credit (``info["generator_correct"]``), but it earns no reward.

    ## Agents
    ``generator``, ``verifier``, ``refiner`` (``possible_agents``), acting in that order. The
    communication protocol (:data:`PROTOCOL`, also ``env.protocol``) is what each one
    observes:

    | agent     | observes                                                             |
    |-----------|----------------------------------------------------------------------|
    | generator | the question; from round 2 on, also its previous solution, the       |
    |           | verifier's critique of it and the refiner's answer then              |
    | verifier  | the question and the generator's solution of this round              |
    | refiner   | the question, the solution and the critique of this round            |

    Each text comes under a heading (``Question:``, ``Proposed solution:``, ``Critique:``...);
    a text not written yet is left out, one rejected as invalid shows as ``(none)``. The
    role's instructions are ``info["system_prompt"]``.

    ## Difficulty
    The family's difficulty, 1-3 (``difficulty``; also ``reset(options={"difficulty": d})``):
    for Reasoning, 2-4 step stories, orderings of 3-5 people, 2-4 knights and knaves.

    ## Action Space
    ``UnicodeText(max_text_length)`` for every agent: the role's raw completion. Any text is
    a valid generator or verifier action except an empty (or all-whitespace) one; a refiner
    action must hold exactly one ``<answer>...</answer>`` block. A text longer than
    ``max_text_length`` is invalid for every role. A non-``str`` action raises ``TypeError``
    (a bug in the caller, not model output); an agent whose episode is over steps ``None``.

    ## Observation Space
    ``UnicodeText(4 * max_text_length + 1024)`` for every agent: the question and up to three
    messages under headings (see Agents), as a
    :class:`~llm_trainer.envs.spaces.TextObservation` (a ``numpy.str_``).

    ## Rewards
    | event                                                    | reward                    |
    |----------------------------------------------------------|---------------------------|
    | a valid action that does not end the episode             | 0.0                       |
    | the refiner's answer in the last round                   | the answer's score, to    |
    |                                                          | every agent (Reasoning: 1 |
    |                                                          | if right, else 0)         |
    | invalid action (empty; too long; refiner: not exactly    | -0.1 to the agent that    |
    | one ``<answer>`` block)                                  | sent it; its text is      |
    |                                                          | recorded as empty         |

    An invalid refiner action in the last round still ends the episode, with team score 0.
    Each agent's return is the team score less 0.1 per invalid action of its own.

    ## Starting State
    A problem drawn from ``self.np_random`` at the episode's difficulty; the generator acts
    first.

    ## Episode End
    Terminated for every agent by the refiner's action in round ``max_cycles``; agents then
    step ``None`` and leave. Never truncated: every episode has exactly ``3 * max_cycles``
    actions.

    ## Info
    Per agent, as in the single-agent envs: ``system_prompt`` (the role's instructions),
    ``tools`` (none), ``difficulty``, ``role`` (``"user"``: who speaks in the observation),
    ``turn`` (actions so far, all roles), ``invalid_action`` and ``invalid_reason`` (of this
    agent's latest action), and the metrics ``format_ok`` (this agent has acted and every
    action of its was valid), ``tool_correct`` and ``exec_ok`` (this agent has acted: no tool
    is required or offered), ``answer_correct`` and ``success`` (the team's final answer scored
    1 / reached the family's success threshold). Also ``agent``, ``round`` (1-based),
    ``score``, ``criteria`` and ``failures`` (of the final answer), and per-role credit for
    MALT training: ``generator_correct`` / ``generator_score`` (the generator's own answer),
    ``refiner_correct`` / ``refiner_score`` (the final answer), and ``role_rewards`` (generator:
    its own score; verifier and refiner: the final score).

    ## Arguments
    ``family`` (one of :data:`MALT_FAMILIES`: ``reasoning``, ``knapsack``, ``tsp``,
    ``constrained_writing``, ``multistep``; default ``reasoning``), ``difficulty`` (1-3),
    ``config`` (the family's settings, a mapping), ``max_cycles`` (rounds per episode, 1-10,
    default 1; PettingZoo's name), ``render_mode`` (``None`` or ``"ansi"``: the transcript),
    ``max_text_length`` (default 8192). A bad value raises
    :class:`~llm_trainer.core.errors.ConfigError` in one line naming the env. An unknown reset
    option is ignored with a warning (PettingZoo's ``api_test`` passes one).

    ## Version History
    * v0: initial version (issue 13).

    ## Example
    >>> import llm_trainer
    >>> env = llm_trainer.make_multiagent("LLMTrainer/MALT-v0")
    >>> env.reset(seed=0)
    >>> env.agent_selection, env.observe("generator").startswith("Question:")
    ('generator', True)
    >>> env.step("I am not sure. <answer>?</answer>")  # a wrong solution
    >>> print(env.observe("verifier"))
    Question:
    ...
    <BLANKLINE>
    Proposed solution:
    I am not sure. <answer>?</answer>
    >>> env.step("The solution gives no reasoning; solve it again.")
    >>> answer = env.unwrapped.task.answer  # the ground truth, what a good refiner finds
    >>> env.step(f"<answer>{answer}</answer>")
    >>> env.rewards, env.terminations["refiner"]
    ({'generator': 1.0, 'verifier': 1.0, 'refiner': 1.0}, True)
    >>> info = env.infos["verifier"]
    >>> info["answer_correct"], info["generator_correct"], info["refiner_correct"]
    (True, False, True)
    """

    metadata = {  # noqa: RUF012 - PettingZoo's interface is a class attribute
        "name": "malt_v0",
        "render_modes": list(RENDER_MODES),
        # Not parallelizable: the verifier and the refiner read earlier roles' texts of the
        # same cycle, so the roles cannot act at once.
        "is_parallelizable": False,
    }
    difficulties: tuple[int, ...] = DIFFICULTIES
    protocol: Mapping[str, tuple[str, ...]] = PROTOCOL

    def __init__(
        self,
        family: str = "reasoning",
        difficulty: int = 1,
        *,
        config: Mapping[str, Any] | None = None,
        max_cycles: int = 1,
        render_mode: str | None = None,
        max_text_length: int = MAX_TEXT_LENGTH,
    ) -> None:
        # AECEnv.__init__ is unannotated, and untyped_calls_exclude does not reach super().
        super().__init__()  # type: ignore[no-untyped-call]
        if not isinstance(family, str) or family not in MALT_FAMILIES:
            raise ConfigError(
                f"{self.env_name}: unknown family {short_repr(family)}"
                f"{suggest(str(family), MALT_FAMILIES)}; known: {', '.join(MALT_FAMILIES)}"
            )
        self.family_name = family
        self.difficulty = self.check_difficulty(difficulty)
        check_text_env_arguments(self.env_name, render_mode, max_text_length)
        check_int_in(self.env_name, "max_cycles", max_cycles, 1, MAX_CYCLES)
        family_cls = MALT_FAMILIES[family]
        try:
            self.family: ProblemFamily[Any] = family_cls(
                build_config(family_cls.config_class, config)
            )
        except ConfigError as exc:
            raise ConfigError(f"{self.env_name}: {exc}") from None
        self.metrics: EvaluationMetrics = self.family.default_metrics()
        self.max_cycles = max_cycles
        self.render_mode = render_mode
        self.max_text_length = max_text_length
        self.observation_length = 4 * max_text_length + OBSERVATION_FRAMING
        self.possible_agents = list(AGENTS)
        self.agents = []
        # One space object per agent, the same at every call (PettingZoo's api_test checks it).
        self._observation_spaces = {a: UnicodeText(self.observation_length) for a in AGENTS}
        self._action_spaces = {a: UnicodeText(max_text_length) for a in AGENTS}
        self.observation_spaces = dict(self._observation_spaces)
        self.action_spaces = dict(self._action_spaces)
        self.rewards, self._cumulative_rewards = {}, {}
        self.terminations, self.truncations, self.infos = {}, {}, {}
        self.agent_selection = GENERATOR
        self._np_random: np.random.Generator | None = None
        self._episode: MALTEpisode | None = None

    # -- the PettingZoo API ------------------------------------------------------------------

    def observation_space(self, agent: str) -> UnicodeText:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> UnicodeText:
        return self._action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        if seed is not None or self._np_random is None:
            self._np_random, _ = seeding.np_random(seed)
        difficulty = difficulty_from_options(
            self.env_name, self._known_options(options), self.difficulty, self.check_difficulty
        )
        task = self.family.generate(self._np_random, difficulty)
        self._episode = MALTEpisode(task, difficulty, self.max_cycles)
        self._sync()

    def observe(self, agent: str) -> TextObservation:
        return TextObservation(self._view(self._require_episode("observe()"), agent))

    def step(self, action: str | None) -> None:
        ep = self._require_episode("step()")
        agent = self.agent_selection
        if ep.done:
            if action is not None:  # PettingZoo's rule for an agent whose episode is over
                raise ValueError("when an agent is dead, the only valid action is None")
            self._episode = ep._replace(
                agents=tuple(a for a in ep.agents if a != agent), rewards=(0.0, 0.0, 0.0)
            )
            self._sync()
            return
        if not isinstance(action, str):
            raise TypeError(
                f"action must be a str (the {agent}'s completion), got {type(action).__name__}"
            )
        self._episode = self._act(ep, AGENTS.index(agent), action)
        self._sync()

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self._episode is None:
            return None
        ep = self._episode
        lines = [f"[question] {ep.task.statement}"]
        for number, played in enumerate(ep.rounds, 1):
            for agent, text in zip(AGENTS, played, strict=True):
                if text is not None:
                    lines.append(f"[round {number}: {agent}] {text or _EMPTY}")
        return "\n".join(lines)

    def close(self) -> None:
        """Nothing to release (no window, process or connection)."""

    # -- evaluation and snapshots ------------------------------------------------------------

    def evaluate(self, task: ProblemSpec, answer: str) -> Evaluation:
        """Score ``answer`` (the text inside ``<answer>``) against ``task`` with the family's
        checker, without stepping."""
        return self.metrics.evaluate(self.family.check(task, answer))

    def get_state(self) -> MALTEpisode:
        """Snapshot the current episode (an immutable value; cheap to keep many)."""
        return self._require_episode("get_state()")

    def set_state(self, state: MALTEpisode) -> None:
        """Restore an episode returned by :meth:`get_state`. Steps draw no randomness, so the
        continuation is identical; the next ``reset`` continues this env's own seed stream."""
        if not isinstance(state, MALTEpisode) or not isinstance(state.task, ProblemSpec):
            raise TypeError(f"state must be a MALTEpisode from get_state(), got {type(state)}")
        self._episode = state
        self._sync()

    @property
    def np_random(self) -> np.random.Generator:
        """The env's random generator (seeded by ``reset(seed=...)``), as in gymnasium."""
        if self._np_random is None:
            self._np_random, _ = seeding.np_random()
        return self._np_random

    @property
    def task(self) -> ProblemSpec:
        """The current problem (what the oracle reads; agents must not)."""
        return self.get_state().task

    @property
    def env_name(self) -> str:
        """The registered id of this env (or the class name), for messages."""
        ids = registered_ids(type(self))
        return ids[0] if len(ids) == 1 else type(self).__name__

    def check_difficulty(self, value: Any, what: str = "difficulty") -> int:
        """``value`` as one of :attr:`difficulties`.

        Raises:
            ConfigError: in one line naming the env, the value and the allowed difficulties.
        """
        return check_difficulty(self.env_name, value, self.difficulties, what)

    # -- helpers -----------------------------------------------------------------------------

    def _require_episode(self, what: str) -> MALTEpisode:
        if self._episode is None:
            raise ResetNeeded(f"call reset() before {what}")
        return self._episode

    def _known_options(self, options: Mapping[Any, Any] | None) -> dict[str, Any]:
        if not options:
            return {}
        unknown = sorted(short_repr(k) for k in options if k != "difficulty")
        if unknown:
            warnings.warn(
                f"{self.env_name}: reset option(s) {', '.join(unknown)} ignored; "
                "known: 'difficulty'",
                stacklevel=3,
            )
        return {k: v for k, v in options.items() if k == "difficulty"}

    def _read(self, index: int, action: str) -> tuple[str, str | None, str | None]:
        """The text recorded for ``action``, the answer in it, and why it is invalid."""
        if len(action) > self.max_text_length:
            return "", None, f"action longer than {self.max_text_length} characters"
        if not action.strip():
            return "", None, "empty text"
        if AGENTS[index] == REFINER:
            answer, reason = read_final_answer(action)
            return ("", None, reason) if reason is not None else (action, answer, None)
        return action, read_last_answer(action) if AGENTS[index] == GENERATOR else None, None

    def _act(self, ep: MALTEpisode, index: int, action: str) -> MALTEpisode:
        text, answer, reason = self._read(index, action)
        scored = self.evaluate(ep.task, answer) if answer is not None else None
        current = ep.rounds[-1]
        generator_evaluation, final_evaluation = ep.generator_evaluation, ep.final_evaluation
        if index == 0:
            current = current._replace(solution=text)
            generator_evaluation = scored
        elif index == 1:
            current = current._replace(critique=text)
        else:
            current = current._replace(final=text)
            final_evaluation = scored
        done = index == 2 and len(ep.rounds) >= ep.max_cycles
        rounds = (*ep.rounds[:-1], current)
        if index == 2 and not done:
            rounds = (*rounds, MALTRound())
        rewards = [0.0, 0.0, 0.0]
        if reason is not None:
            rewards[index] += INVALID_ACTION_PENALTY
        if done:
            team = final_evaluation.score if final_evaluation is not None else 0.0
            rewards = [r + team for r in rewards]
        # last() reports each agent's rewards since its own latest action began.
        cumulative = _replace_at(ep.cumulative, index, 0.0)
        return ep._replace(
            turn=ep.turn + 1,
            rounds=rounds,
            n_actions=_replace_at(ep.n_actions, index, ep.n_actions[index] + 1),
            n_invalid=_replace_at(ep.n_invalid, index, ep.n_invalid[index] + (reason is not None)),
            invalid_reasons=_replace_at(ep.invalid_reasons, index, reason),
            generator_evaluation=generator_evaluation,
            final_evaluation=final_evaluation,
            rewards=(rewards[0], rewards[1], rewards[2]),
            cumulative=(
                cumulative[0] + rewards[0],
                cumulative[1] + rewards[1],
                cumulative[2] + rewards[2],
            ),
            done=done,
        )

    def _sync(self) -> None:
        """Set PettingZoo's per-agent dicts from the episode (the one source of truth)."""
        ep = self._require_episode("step()")
        live = [(i, a) for i, a in enumerate(AGENTS) if a in ep.agents]
        self.agents = [a for _, a in live]
        self.rewards = {a: ep.rewards[i] for i, a in live}
        self._cumulative_rewards = {a: ep.cumulative[i] for i, a in live}
        self.terminations = {a: ep.done for _, a in live}
        self.truncations = {a: False for _, a in live}
        self.infos = {a: self._info(ep, i) for i, a in live}
        if not ep.done:
            self.agent_selection = AGENTS[ep.turn % len(AGENTS)]
        else:  # the finished agents step None in order; the refiner leaves last
            self.agent_selection = self.agents[0] if self.agents else REFINER

    def _view(self, ep: MALTEpisode, agent: str) -> str:
        previous = ep.rounds[-2] if len(ep.rounds) > 1 else NO_ROUND
        view = render_view(agent, ep.task.statement, ep.rounds[-1], previous, self.protocol)
        return view[: self.observation_length]

    def _info(self, ep: MALTEpisode, index: int) -> dict[str, Any]:
        final, own = ep.final_evaluation, ep.generator_evaluation
        acted = ep.n_actions[index] > 0
        final_score = final.score if final is not None else 0.0
        generator_score = own.score if own is not None else 0.0
        return {
            "system_prompt": SYSTEM_PROMPTS[AGENTS[index]],
            "tools": (),
            "difficulty": ep.difficulty,
            "role": "user",
            "agent": AGENTS[index],
            "turn": ep.turn,
            "round": len(ep.rounds),
            "invalid_action": ep.invalid_reasons[index] is not None,
            "invalid_reason": ep.invalid_reasons[index],
            "format_ok": acted and ep.n_invalid[index] == 0,
            "tool_correct": acted,
            "exec_ok": acted,
            "answer_correct": final is not None and final.correct,
            "success": final is not None and final.success,
            "score": final_score,
            "criteria": final.criteria if final is not None else NO_CRITERIA,
            "failures": final.failures if final is not None else (),
            "generator_correct": own is not None and own.correct,
            "generator_score": generator_score,
            "refiner_correct": final is not None and final.correct,
            "refiner_score": final_score,
            "role_rewards": FrozenDict(
                {GENERATOR: generator_score, VERIFIER: final_score, REFINER: final_score}
            ),
        }


def _replace_at(values: tuple[T, T, T], index: int, value: T) -> tuple[T, T, T]:
    """``values`` with the entry of role ``index`` replaced."""
    items = list(values)
    items[index] = value
    return (items[0], items[1], items[2])
