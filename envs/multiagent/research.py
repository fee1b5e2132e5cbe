"""``LLMTrainer/ResearchSprint-v0``: a research team of four roles runs one sprint on a goal
whose answer the harness checks by running code.

The team and the phases are those of seed 004 ("AI Research Team"): a **researcher**, an
**architect**, a **coder** and a **validator** discuss a research goal, the architect writes
the action plan, the coder implements ``experiment.py``, which runs in the sandbox
(:mod:`llm_trainer.sandbox`), and the validator states the conclusion. The harness then runs
the code again with fresh seeds and checks the conclusion against what the runs show and,
for goals of the family (:mod:`llm_trainer.envs.multiagent.research_goals`), against its own
reference experiment. Memory across sprints lives in a knowledge graph
(:mod:`llm_trainer.envs.multiagent.research_memory`).
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from pettingzoo import AECEnv

from llm_trainer.core.errors import ConfigError, suggest
from llm_trainer.core.records import FrozenDict, freeze, to_plain
from llm_trainer.envs.common import (
    INVALID_ACTION_PENALTY,
    RENDER_MODES,
    check_int_in,
    check_text_env_arguments,
    registered_ids,
    short_repr,
)
from llm_trainer.envs.multiagent.research_goals import (
    GOAL_KINDS,
    ResearchGoal,
    draw_goal,
    goal_from_text,
    reference,
)
from llm_trainer.envs.spaces import TextObservation, UnicodeText

if TYPE_CHECKING:
    from llm_trainer.sandbox import Sandbox

#: The roles, in the order they speak in the discussion.
AGENTS: tuple[str, str, str, str] = ("researcher", "architect", "coder", "validator")
RESEARCHER, ARCHITECT, CODER, VALIDATOR = AGENTS
#: The phases of a sprint (seed 004), in order.
PHASES: tuple[str, str, str, str] = ("discussion", "action_plan", "implementation", "validation")
DISCUSSION, ACTION_PLAN, IMPLEMENTATION, VALIDATION = PHASES
#: Fresh seeds the harness re-runs the code with, at most.
MAX_REPRODUCTION_SEEDS = 8
#: Relative tolerance of numeric answers (free-text goals): runs agree, and a stated number
#: matches them, within it.
NUMERIC_RTOL = 0.1
#: What a view shows of a message, of code, and of a run's stdout and stderr (tails).
MESSAGE_CHARS = 2000
CODE_CHARS = 12000
OUTPUT_CHARS = 1500
#: What a recalled past sprint may take in a view.
MEMORY_CHARS = 800
INCONCLUSIVE = "inconclusive"
#: Default ``max_text_length``: twice the text envs' (a coder's action holds a whole program).
MAX_TEXT_LENGTH = 16384

_TEAM = (
    "You are the {role} of an AI research team of four (researcher, architect, coder, "
    "validator) that runs short research sprints on how to train models efficiently: a "
    "discussion, an action plan, the implementation of one experiment, and its validation. "
)
SYSTEM_PROMPTS: Mapping[str, str] = FrozenDict(
    {
        RESEARCHER: _TEAM.format(role=RESEARCHER)
        + "Your expertise: model architectures, training efficiency, optimization algorithms. "
        "You generate hypotheses, analyse trade-offs and propose experiments. State your "
        "hypothesis on one line that starts with 'HYPOTHESIS:'.",
        ARCHITECT: _TEAM.format(role=ARCHITECT)
        + "Your expertise: model design, training pipelines, experimental design. You turn the "
        "research into a concrete experimental plan the coder can implement exactly.",
        CODER: _TEAM.format(role=CODER)
        + "Your expertise: efficient, correct numerical Python (numpy). You implement the "
        "experiment as experiment.py in one ```python block, following the contract you are "
        "given exactly.",
        VALIDATOR: _TEAM.format(role=VALIDATOR)
        + "Your expertise: experimental validation, result analysis, scientific rigour. You "
        "judge whether the code measures what the goal asks and what its result shows, and end "
        "with one line 'CONCLUSION: yes', 'CONCLUSION: no' or 'CONCLUSION: inconclusive'.",
    }
)
_PHASE_TITLES = {
    DISCUSSION: "Phase 1: discussion",
    ACTION_PLAN: "Phase 1: action plan",
    IMPLEMENTATION: "Phase 2: implementation",
    VALIDATION: "Phase 3: validation",
}
_DISCUSSION_TASKS = {
    RESEARCHER: "Give your perspective on the goal: the hypothesis you expect the experiment to "
    "confirm or refute, on one line starting with 'HYPOTHESIS:', and what to measure.",
    ARCHITECT: "Give your perspective: how the experiment should be designed (the problem, "
    "the settings, what to compare and measure).",
    CODER: "Give your perspective: how you will implement the experiment and what could go wrong.",
    VALIDATOR: "Give your perspective: which result would confirm or refute the hypothesis, and "
    "how you will check it.",
}
_PLAN_TASK = (
    "Synthesize the discussion into one action plan for the coder: the exact problem, the "
    "settings, what to measure, and the fields of the RESULT line."
)
_VALIDATION_TASK = (
    "Validate the experiment: does the code measure what the goal asks, and what does its "
    "result show? End with exactly one line 'CONCLUSION: yes' or 'CONCLUSION: no' (the answer "
    "to the goal's question){number}, or 'CONCLUSION: inconclusive' when the experiment failed "
    "or cannot answer it."
)

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_.+-]*)[ \t]*\n(.*?)```", re.DOTALL)
_PYTHON_LABELS = frozenset({"python", "py", "python3"})
_REQUIREMENT_LABELS = frozenset({"requirements", "requirements.txt", "pip"})
_CONCLUSION = re.compile(r"^[\s*_>#`]*conclusion[\s*_`]*:[\s*_`]*(.*?)[\s*_`.]*$", re.I | re.M)
_HYPOTHESIS = re.compile(r"^[\s*_>#`]*hypothesis[\s*_`]*:[\s*_`]*(.+?)[\s*_`]*$", re.I | re.M)


# -- records ----------------------------------------------------------------------------------


class SprintMessage(NamedTuple):
    """One action of the sprint: who wrote it, in which phase, and its text (``""`` for an
    invalid action: its text is not passed on)."""

    agent: str
    phase: str
    text: str


class CodeRun(NamedTuple):
    """One run of the coder's ``experiment.py`` in the sandbox, judged from outside."""

    seed: int
    ok: bool
    """It exited 0 and printed exactly one valid ``RESULT`` line (an ``answer`` of the goal's
    type)."""
    result: Mapping[str, Any] | None
    """The ``RESULT`` object (frozen JSON), when one could be read."""
    answer: bool | float | None
    """The result's ``answer`` (``None``: not ok)."""
    error: str | None
    """Why the run is not ok, in one line."""
    returncode: int | None
    timed_out: bool
    stdout: str
    """The tail of stdout (:data:`OUTPUT_CHARS`)."""
    stderr: str
    """The tail of stderr."""
    level: str
    """The sandbox's isolation level (``L3``...)."""
    wall_s: float


class Reproduction(NamedTuple):
    """The harness's re-runs of the code with fresh seeds."""

    runs: tuple[CodeRun, ...]
    reproduced: bool
    """Every re-run is ok and gives the answer of the first run (numbers: within
    :data:`NUMERIC_RTOL`)."""
    answer: bool | float | None
    """The reproduced answer (``None`` unless reproduced)."""
    reason: str | None
    """Why it did not reproduce."""


class SprintOutcome(NamedTuple):
    """How the sprint is judged at its end (see the env's Rewards)."""

    execution_ok: bool
    reproduced: bool
    truth: bool | None
    """The reference answer (``None``: a free-text goal)."""
    correct_evidence: bool
    """The runs reproduced, and (family goals) their answer is the reference's."""
    conclusion: bool | float | str | None
    """The validator's conclusion (``"inconclusive"``; ``None``: none given)."""
    verdict_correct: bool
    success: bool
    """The team reached a reproduced, correct conclusion."""
    role_rewards: Mapping[str, float]


class SprintEpisode(NamedTuple):
    """The whole state of a sprint; immutable, so ``get_state()`` hands it out as is.

    Per-role tuples follow :data:`AGENTS`.
    """

    goal: ResearchGoal
    seeds: tuple[int, ...]
    """The seed of the coder's runs, then the reproduction seeds (drawn at reset)."""
    memory: tuple[str, ...] = ()
    """Relevant past sprints, as shown in the views."""
    label: str = ""
    """The sprint's name in the knowledge graph (``reset(options={"sprint_id": ...})``)."""
    turn: int = 0
    phase: str = DISCUSSION
    phase_turn: int = 0
    """Actions taken in the current phase."""
    messages: tuple[SprintMessage, ...] = ()
    code: str | None = None
    """The coder's latest code (``None``: none submitted)."""
    requirements: str = ""
    """The requirements block that came with it."""
    attempts: tuple[CodeRun, ...] = ()
    """One run per code the coder submitted."""
    conclusion: bool | float | str | None = None
    analysis: str = ""
    reproduction: Reproduction | None = None
    outcome: SprintOutcome | None = None
    n_actions: tuple[int, int, int, int] = (0, 0, 0, 0)
    n_invalid: tuple[int, int, int, int] = (0, 0, 0, 0)
    invalid_reasons: tuple[str | None, str | None, str | None, str | None] = (
        None,
        None,
        None,
        None,
    )
    rewards: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    cumulative: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    agents: tuple[str, ...] = AGENTS
    done: bool = False

    @property
    def hypothesis(self) -> str:
        """The researcher's latest ``HYPOTHESIS:`` line (else the first line it wrote)."""
        texts = [m.text for m in self.messages if m.agent == RESEARCHER and m.text]
        for text in reversed(texts):
            found = _HYPOTHESIS.findall(text)
            if found:
                return str(found[-1]).strip()
        return next((line.strip() for t in texts for line in t.splitlines() if line.strip()), "")

    @property
    def plan(self) -> str:
        """The architect's action plan (``""``: none)."""
        return next((m.text for m in self.messages if m.phase == ACTION_PLAN), "")

    @property
    def execution(self) -> CodeRun | None:
        """The run of the coder's final code (``None``: no code ran)."""
        return self.attempts[-1] if self.attempts else None


# -- parsing the agents' texts ----------------------------------------------------------------


def read_code(text: str) -> tuple[str | None, str, str | None]:
    """The ``experiment.py`` in a coder's text (the first ```python block), its requirements
    (a ```requirements block, optional) and why the text is invalid.

    >>> read_code("Here:\\n```python\\nprint('RESULT {}')\\n```")
    ("print('RESULT {}')\\n", '', None)
    >>> read_code("no code")[2]
    'no ```python block: put experiment.py in one ```python ... ``` block'
    """
    code: str | None = None
    requirements = ""
    for label, body in _FENCE.findall(text):
        label = label.casefold()
        if label in _PYTHON_LABELS and code is None:
            code = body
        elif label in _REQUIREMENT_LABELS and not requirements:
            requirements = body
    if code is None:
        return None, "", "no ```python block: put experiment.py in one ```python ... ``` block"
    if not code.strip():
        return None, "", "the ```python block is empty"
    try:
        (code + requirements).encode("utf-8")
    except UnicodeEncodeError:
        return None, "", "the code is not valid UTF-8 text (it holds a lone surrogate)"
    return code, requirements, None


def read_conclusion(
    text: str, numeric: bool = False
) -> tuple[bool | float | str | None, str | None]:
    """The validator's conclusion (the last ``CONCLUSION:`` line): ``True`` (yes), ``False``
    (no), ``"inconclusive"``, or a number when ``numeric``; and why the text is invalid.

    >>> read_conclusion("The loss is lower.\\n**CONCLUSION: Yes.**")
    (True, None)
    >>> read_conclusion("CONCLUSION: maybe")
    (None, "CONCLUSION must be 'yes', 'no' or 'inconclusive', got 'maybe'")
    """
    found = _CONCLUSION.findall(text)
    if not found:
        return None, "no 'CONCLUSION:' line: end with 'CONCLUSION: yes', 'no' or 'inconclusive'"
    word = str(found[-1]).strip().casefold()
    if word in ("yes", "true"):
        return True, None
    if word in ("no", "false"):
        return False, None
    if word == INCONCLUSIVE:
        return INCONCLUSIVE, None
    if numeric:
        try:
            value = float(word)
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return value, None
    allowed = (
        "'yes', 'no', 'inconclusive' or a number" if numeric else ("'yes', 'no' or 'inconclusive'")
    )
    return None, f"CONCLUSION must be {allowed}, got {short_repr(word, 40)}"


def _json_safe(value: Any) -> Any:
    """``value`` (parsed JSON) with non-finite numbers as strings (``"nan"``), frozen."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return FrozenDict({str(k): _json_safe(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_json_safe(v) for v in value)
    return value


def read_result(
    stdout: str, numeric: bool = False
) -> tuple[Mapping[str, Any] | None, bool | float | None, str | None]:
    """The ``RESULT {json}`` line of a run's stdout: the object, its ``answer`` and why it is
    not a valid result (exactly one line; a JSON object; ``answer`` true/false, or a finite
    number when ``numeric``).

    >>> read_result('training...\\nRESULT {"loss": 0.5, "answer": true}\\n')[1:]
    (True, None)
    """
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT")]
    if not lines:
        return None, None, "printed no 'RESULT {json}' line"
    if len(lines) > 1:
        return None, None, f"printed {len(lines)} RESULT lines; print exactly one"
    try:
        data = json.loads(lines[0][len("RESULT") :])
    except (ValueError, RecursionError):
        return None, None, "the RESULT line is not 'RESULT ' followed by a JSON object"
    if not isinstance(data, dict):
        return None, None, "the RESULT line is not 'RESULT ' followed by a JSON object"
    result = _json_safe(data)
    answer = data.get("answer")
    if isinstance(answer, bool):
        return result, answer, None
    if (
        numeric
        and isinstance(answer, int | float)
        and math.isfinite(answer)
        and abs(answer) < 1e300
    ):
        return result, float(answer), None
    wanted = "true/false or a number" if numeric else "true or false"
    return result, None, f'the RESULT has no "answer": {wanted} (got {short_repr(answer, 40)})'


def _same(a: bool | float | str | None, b: bool | float | str | None) -> bool:
    """Whether two answers agree (numbers: within :data:`NUMERIC_RTOL`)."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return abs(a - b) <= NUMERIC_RTOL * max(abs(a), abs(b)) + 1e-12


def _tail(text: str, chars: int = OUTPUT_CHARS) -> str:
    return text if len(text) <= chars else f"[...]{text[-chars:]}"


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else f"{text[:chars]}[... {len(text) - chars} chars cut]"


def _answer_text(value: bool | float | str | None) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "none" if value is None else str(value)


# -- the env ----------------------------------------------------------------------------------


class ResearchSprintEnv(AECEnv[str, str, str]):
    """A research sprint of four roles whose conclusion the harness checks by running code.

    ## Description
    Seed 004's AI research team: a **researcher**, an **architect**, a **coder** and a
    **validator** run one sprint on a research goal. The goal is drawn from a family whose
    answer the harness can compute (:mod:`~llm_trainer.envs.multiagent.research_goals`: does
    optimizer A reach a lower loss than B on least squares within N steps; does halving an
    MLP's hidden size raise its final loss by more than x; does weight decay raise it by more
    than x), or given as text (``reset(options={"goal": "..."})``: a text that names one of
    those kinds becomes its question; any other text is checked for reproducibility only). The
    phases are step budgets:

    | phase          | turns                                                            |
    |----------------|------------------------------------------------------------------|
    | discussion     | each role once per round, in the order above (``discussion_rounds``)|
    | action plan    | the architect, once                                              |
    | implementation | the coder, until its code runs (at most ``implementation_turns``) |
    | validation     | the validator, once; then the episode ends                        |

    The coder's ``experiment.py`` (its first ```python block) runs in the sandbox
    (:mod:`llm_trainer.sandbox`, at least ``min_isolation``) as ``python experiment.py --seed
    SEED`` and must print exactly one line ``RESULT {json}`` with an ``answer`` (true/false;
    a number also for free-text goals). After the validator's conclusion the harness runs the
    final code again with ``reproduction_seeds`` fresh seeds, checks that every run gives the
    same answer, and checks the conclusion against the runs and against its own reference
    experiment (run outside the sandbox: it is the harness's code).

    ## Agents
    ``researcher``, ``architect``, ``coder``, ``validator`` (``possible_agents``). Every role
    observes the whole sprint so far (:attr:`protocol`): the goal, the relevant past sprints,
    every message, and each run's result, stdout and stderr (tails); then its task.

    ## Action Space
    ``UnicodeText(max_text_length)`` for every agent: the role's raw completion. Any non-empty
    text is valid in the discussion and the plan; the coder's must hold a ```python block (a
    ```requirements block is optional), the validator's a ``CONCLUSION:`` line (``yes``,
    ``no``, ``inconclusive``; a number for free-text goals). Empty text and text longer than
    ``max_text_length`` are invalid for every role. A non-``str`` action raises
    ``TypeError``; an agent whose episode is over steps ``None``.

    ## Observation Space
    ``UnicodeText(3 * max_text_length + 4096)``: the view above as a
    :class:`~llm_trainer.envs.spaces.TextObservation`. Messages are cut at 2,000 characters
    (code at 12,000), outputs to their last 1,500; past the bound, the oldest messages are left
    out first.

    ## Rewards
    All at the end of the sprint, except the penalty:

    | agent                 | reward                                                     |
    |-----------------------|------------------------------------------------------------|
    | researcher, architect | 1 if the sprint succeeded: the code ran, the re-runs        |
    |                       | reproduced its answer, that answer is the reference's       |
    |                       | (family goals) and the validator concluded it; else 0       |
    | coder                 | 0.5 if its final code ran (a valid RESULT), plus 0.5 if the |
    |                       | re-runs reproduced it and (family goals) match the reference|
    | validator             | 1 if its conclusion is correct: with reproduced evidence,   |
    |                       | the reference's answer (free text: the runs' answer);       |
    |                       | without, ``inconclusive``; else 0                           |
    | any, invalid action   | -0.1 to the agent that sent it (its text is not passed on)  |

    ## Starting State
    A goal drawn from ``self.np_random`` (``goal_kinds``), or the ``goal`` option's; the seed
    of the coder's runs and the reproduction seeds, drawn from ``self.np_random``; with
    ``knowledge_path``, the ``memory_k`` past sprints most relevant to the goal (BM25).

    ## Episode End
    Terminated for every agent by the validator's action; agents then step ``None`` and leave.
    Never truncated: a sprint has at most ``4 * discussion_rounds + implementation_turns + 2``
    actions.

    ## Info
    Per agent: ``system_prompt`` (the role), ``tools`` (none), ``role`` (``"user"``), ``agent``,
    ``turn``, ``phase``, ``goal`` (the goal as data: question, kind, params, text, checking),
    ``invalid_action``, ``invalid_reason``; the metrics ``format_ok`` (it has acted, every
    action valid), ``tool_correct`` (it has acted), ``exec_ok`` (coder: its latest code ran;
    others: it has acted), ``answer_correct`` (the validator's conclusion is correct) and
    ``success`` (the sprint succeeded); and ``execution`` (the latest run: ok, answer, result,
    error), ``isolation_level``, ``reproduced``, ``verdict_correct``, ``conclusion`` and
    ``role_rewards`` (each role's reward at the end, zeros before).

    ## Arguments
    ``goal_kinds`` (the kinds drawn, default all three), ``discussion_rounds`` (1-5, default
    1), ``implementation_turns`` (1-5, default 2), ``reproduction_seeds`` (1-8, default 3),
    ``timeout_s`` (seconds per run, default 60), ``min_isolation`` (the sandbox's minimum
    level, default ``L3``; ``L0`` runs code without isolation), ``allowed_requirements``
    (packages a ```requirements block may name; default numpy, already installed),
    ``knowledge_path`` (a knowledge graph file: memory across sprints; ``None``: none),
    ``memory_k`` (past sprints shown, default 3),
    ``render_mode`` (``None`` or ``"ansi"``), ``max_text_length`` (default 16384). A bad value
    raises :class:`~llm_trainer.core.errors.ConfigError` naming the env. Reset options:
    ``goal`` (a text), ``sprint_id`` (the sprint's name in the knowledge graph); others are
    ignored with a warning.

    ## Version History
    * v0: initial version (issue 14).

    ## Example
    >>> import llm_trainer
    >>> env = llm_trainer.make_multiagent("LLMTrainer/ResearchSprint-v0")
    >>> env.reset(seed=0)
    >>> env.agent_selection, env.infos["researcher"]["phase"]
    ('researcher', 'discussion')
    >>> "HYPOTHESIS:" in env.observe("researcher")
    True
    """

    metadata = {  # noqa: RUF012 - PettingZoo's interface is a class attribute
        "name": "research_sprint_v0",
        "render_modes": list(RENDER_MODES),
        # Not parallelizable: every role reads the texts the roles before it wrote.
        "is_parallelizable": False,
    }
    #: What each role observes: the whole sprint (one shared transcript).
    protocol: Mapping[str, tuple[str, ...]] = FrozenDict(
        dict.fromkeys(AGENTS, ("goal", "memory", "messages", "runs", "task"))
    )

    def __init__(
        self,
        *,
        goal_kinds: Sequence[str] = GOAL_KINDS,
        discussion_rounds: int = 1,
        implementation_turns: int = 2,
        reproduction_seeds: int = 3,
        timeout_s: float = 60.0,
        min_isolation: str = "L3",
        allowed_requirements: Sequence[str] = ("numpy",),
        knowledge_path: str | os.PathLike[str] | None = None,
        memory_k: int = 3,
        render_mode: str | None = None,
        max_text_length: int = MAX_TEXT_LENGTH,
    ) -> None:
        # AECEnv.__init__ is unannotated, and untyped_calls_exclude does not reach super().
        super().__init__()  # type: ignore[no-untyped-call]
        name = self.env_name
        check_text_env_arguments(name, render_mode, max_text_length)
        if isinstance(goal_kinds, str) or not isinstance(goal_kinds, tuple | list):
            raise ConfigError(f"{name}: goal_kinds must be a list of kinds, got {goal_kinds!r}")
        for kind in goal_kinds:
            if kind not in GOAL_KINDS:
                raise ConfigError(
                    f"{name}: unknown goal kind {short_repr(kind)}"
                    f"{suggest(str(kind), GOAL_KINDS)}; kinds: {', '.join(GOAL_KINDS)}"
                )
        if not goal_kinds:
            raise ConfigError(f"{name}: goal_kinds is empty; kinds: {', '.join(GOAL_KINDS)}")
        self.goal_kinds = tuple(goal_kinds)
        self.discussion_rounds = check_int_in(name, "discussion_rounds", discussion_rounds, 1, 5)
        self.implementation_turns = check_int_in(
            name, "implementation_turns", implementation_turns, 1, 5
        )
        self.reproduction_seeds = check_int_in(
            name, "reproduction_seeds", reproduction_seeds, 1, MAX_REPRODUCTION_SEEDS
        )
        self.memory_k = check_int_in(name, "memory_k", memory_k, 0, 10)
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, int | float)
            or not 0 < timeout_s <= 3600
        ):
            raise ConfigError(f"{name}: timeout_s must be in (0, 3600] seconds, got {timeout_s!r}")
        self.timeout_s = float(timeout_s)
        # Only the levels: the sandbox itself is built at the first run.
        from llm_trainer.sandbox import LEVELS

        if min_isolation not in LEVELS:
            raise ConfigError(
                f"{name}: min_isolation must be one of {', '.join(LEVELS)}, "
                f"got {short_repr(min_isolation)}"
            )
        self.min_isolation = min_isolation
        if isinstance(allowed_requirements, str):
            raise ConfigError(
                f"{name}: allowed_requirements must be a list of project names, "
                f"got {allowed_requirements!r}"
            )
        self.allowed_requirements = tuple(str(r) for r in allowed_requirements)
        self.knowledge_path = os.fspath(knowledge_path) if knowledge_path is not None else None
        self.render_mode = render_mode
        self.max_text_length = max_text_length
        self.observation_length = 3 * max_text_length + 4096
        self.max_turns = 4 * self.discussion_rounds + self.implementation_turns + 2
        self.possible_agents = list(AGENTS)
        self.agents = []
        # One space object per agent, the same at every call (PettingZoo's api_test checks it).
        self._observation_spaces = {a: UnicodeText(self.observation_length) for a in AGENTS}
        self._action_spaces = {a: UnicodeText(max_text_length) for a in AGENTS}
        self.observation_spaces = dict(self._observation_spaces)
        self.action_spaces = dict(self._action_spaces)
        self.rewards, self._cumulative_rewards = {}, {}
        self.terminations, self.truncations, self.infos = {}, {}, {}
        self.agent_selection = RESEARCHER
        self._np_random: np.random.Generator | None = None
        self._episode: SprintEpisode | None = None
        self._sandbox: Sandbox | None = None
        self._memory: Any = None

    # -- pickling: the sandbox and the graph connection are rebuilt on first use -------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_sandbox"] = None
        state["_memory"] = None
        return state

    # -- the PettingZoo API ------------------------------------------------------------------

    def observation_space(self, agent: str) -> UnicodeText:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> UnicodeText:
        return self._action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        if seed is not None or self._np_random is None:
            self._np_random, _ = seeding.np_random(seed)
        rng = self._np_random
        options = self._known_options(options)
        text = options.get("goal")
        if text is None:
            goal = draw_goal(rng, self.goal_kinds)
        else:
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(
                    f"{self.env_name}: reset option goal must be a non-empty text, "
                    f"got {short_repr(text)}"
                )
            goal = goal_from_text(text, rng)
        label = options.get("sprint_id", "")
        if not isinstance(label, str):
            raise ConfigError(
                f"{self.env_name}: reset option sprint_id must be a str, got {short_repr(label)}"
            )
        seeds = tuple(int(s) for s in rng.integers(0, 2**31 - 1, 1 + self.reproduction_seeds))
        memory = self._recall(goal, seeds, label)
        self._episode = SprintEpisode(goal, seeds, memory, label)
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
                agents=tuple(a for a in ep.agents if a != agent), rewards=(0.0, 0.0, 0.0, 0.0)
            )
            self._sync()
            return
        if not isinstance(action, str):
            raise TypeError(
                f"action must be a str (the {agent}'s completion), got {type(action).__name__}"
            )
        self._episode = self._act(ep, AGENTS.index(agent), action)
        if self._episode.done:
            self._remember(self._episode)
        self._sync()

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self._episode is None:
            return None
        ep = self._episode
        lines = [f"[goal: {ep.goal.checking}] {ep.goal.question}"]
        runs = iter(ep.attempts)
        for message in ep.messages:
            lines.append(f"[{message.phase}: {message.agent}] {message.text or '(invalid)'}")
            if message.phase == IMPLEMENTATION and message.text:
                run = next(runs, None)
                if run is not None:
                    lines.append(f"[run, seed {run.seed}] {self._run_line(run)}")
        if ep.reproduction is not None:
            for run in ep.reproduction.runs:
                lines.append(f"[re-run, seed {run.seed}] {self._run_line(run)}")
        if ep.outcome is not None:
            lines.append(f"[outcome] {self._outcome_line(ep.outcome)}")
        return "\n".join(lines)

    def close(self) -> None:
        """Close the knowledge graph's connection (the sandbox holds nothing between runs)."""
        if self._memory is not None:
            self._memory.close()
            self._memory = None

    # -- snapshots and properties ------------------------------------------------------------

    def get_state(self) -> SprintEpisode:
        """Snapshot the current sprint (an immutable value; cheap to keep many)."""
        return self._require_episode("get_state()")

    def set_state(self, state: SprintEpisode) -> None:
        """Restore a sprint returned by :meth:`get_state`. Steps draw no randomness, so the
        continuation is identical (the code is run again); the next ``reset`` continues this
        env's own seed stream."""
        if not isinstance(state, SprintEpisode) or not isinstance(state.goal, ResearchGoal):
            raise TypeError(f"state must be a SprintEpisode from get_state(), got {type(state)}")
        self._episode = state
        self._sync()

    @property
    def np_random(self) -> np.random.Generator:
        """The env's random generator (seeded by ``reset(seed=...)``), as in gymnasium."""
        if self._np_random is None:
            self._np_random, _ = seeding.np_random()
        return self._np_random

    @property
    def goal(self) -> ResearchGoal:
        """The current sprint's goal."""
        return self.get_state().goal

    @property
    def env_name(self) -> str:
        """The registered id of this env (or the class name), for messages."""
        ids = registered_ids(type(self))
        return ids[0] if len(ids) == 1 else type(self).__name__

    def sandbox(self) -> Sandbox:
        """The sandbox the code runs in (built on first use).

        Raises:
            ConfigError: when this machine cannot reach ``min_isolation`` (the sandbox's
                message names what is missing).
        """
        if self._sandbox is None:
            from llm_trainer.sandbox import Sandbox, SandboxConfig, SandboxUnavailable

            config = SandboxConfig(
                min_level=self.min_isolation,
                wall_s=self.timeout_s,
                cpu_s=self.timeout_s,
                allowed_requirements=self.allowed_requirements,
            )
            try:
                self._sandbox = Sandbox(config)
            except SandboxUnavailable as exc:
                raise ConfigError(
                    f"{self.env_name}: cannot run the coder's code: {exc} (min_isolation="
                    f"{self.min_isolation!r})"
                ) from exc
        return self._sandbox

    # -- helpers -----------------------------------------------------------------------------

    def _require_episode(self, what: str) -> SprintEpisode:
        if self._episode is None:
            raise ResetNeeded(f"call reset() before {what}")
        return self._episode

    def _known_options(self, options: Mapping[Any, Any] | None) -> dict[str, Any]:
        if not options:
            return {}
        known = ("goal", "sprint_id")
        unknown = sorted(short_repr(k) for k in options if k not in known)
        if unknown:
            warnings.warn(
                f"{self.env_name}: reset option(s) {', '.join(unknown)} ignored; "
                "known: 'goal', 'sprint_id'",
                stacklevel=3,
            )
        return {k: v for k, v in options.items() if k in known}

    def _numeric(self, ep: SprintEpisode) -> bool:
        """Whether answers may be numbers (free-text goals)."""
        return not ep.goal.checkable

    def _read(self, ep: SprintEpisode, index: int, action: str) -> str | None:
        """Why ``action`` is invalid for role ``index`` now (``None``: it is valid)."""
        if len(action) > self.max_text_length:
            return f"action longer than {self.max_text_length} characters"
        if not action.strip():
            return "empty text"
        if ep.phase == IMPLEMENTATION:
            return read_code(action)[2]
        if ep.phase == VALIDATION:
            return read_conclusion(action, self._numeric(ep))[1]
        return None

    def _act(self, ep: SprintEpisode, index: int, action: str) -> SprintEpisode:
        reason = self._read(ep, index, action)
        agent = AGENTS[index]
        text = action if reason is None else ""
        messages = (*ep.messages, SprintMessage(agent, ep.phase, text))
        changes: dict[str, Any] = {}
        phase, phase_turn = ep.phase, ep.phase_turn + 1
        if ep.phase == DISCUSSION and phase_turn >= 4 * self.discussion_rounds:
            phase, phase_turn = ACTION_PLAN, 0
        elif ep.phase == ACTION_PLAN:
            phase, phase_turn = IMPLEMENTATION, 0
        elif ep.phase == IMPLEMENTATION:
            if reason is None:
                code, requirements, _ = read_code(action)
                assert code is not None
                run = self._run(ep, code, requirements, ep.seeds[0])
                changes.update(code=code, requirements=requirements, attempts=(*ep.attempts, run))
                if run.ok:
                    phase_turn = self.implementation_turns  # it runs: on to the validation
            if phase_turn >= self.implementation_turns:
                phase, phase_turn = VALIDATION, 0
        elif ep.phase == VALIDATION:
            conclusion = read_conclusion(action, self._numeric(ep))[0] if reason is None else None
            changes.update(conclusion=conclusion, analysis=text)
        rewards = [0.0, 0.0, 0.0, 0.0]
        if reason is not None:
            rewards[index] += INVALID_ACTION_PENALTY
        ep = ep._replace(**changes)
        done = ep.phase == VALIDATION
        if done:
            reproduction = self._reproduce(ep)
            outcome = self._judge(ep, reproduction)
            ep = ep._replace(reproduction=reproduction, outcome=outcome)
            rewards = [r + outcome.role_rewards[a] for r, a in zip(rewards, AGENTS, strict=True)]
        # last() reports each agent's rewards since its own latest action began.
        cumulative = list(ep.cumulative)
        cumulative[index] = 0.0
        n_actions, n_invalid = list(ep.n_actions), list(ep.n_invalid)
        invalid_reasons = list(ep.invalid_reasons)
        n_actions[index] += 1
        n_invalid[index] += reason is not None
        invalid_reasons[index] = reason
        return ep._replace(
            turn=ep.turn + 1,
            phase=phase,
            phase_turn=phase_turn,
            messages=messages,
            n_actions=_four(n_actions),
            n_invalid=_four(n_invalid),
            invalid_reasons=_four(invalid_reasons),
            rewards=_four(rewards),
            cumulative=_four([c + r for c, r in zip(cumulative, rewards, strict=True)]),
            done=done,
        )

    # -- running code ------------------------------------------------------------------------

    def _run(self, ep: SprintEpisode, code: str, requirements: str, seed: int) -> CodeRun:
        """Run ``code`` as ``experiment.py --seed SEED`` in the sandbox and judge its output."""
        from llm_trainer.sandbox import DependencyError, DisallowedDependencyError

        needs = "\n".join(
            line.strip() for line in requirements.splitlines() if line.split("#")[0].strip()
        )
        try:
            result = self.sandbox().run(
                files={"experiment.py": code},
                argv=("experiment.py", "--seed", str(seed)),
                requirements=f"{needs}\n" if needs else None,
                wall_s=self.timeout_s,
            )
        except (DisallowedDependencyError, DependencyError) as exc:  # the coder's requirements
            message = " ".join(str(exc).split())
            return CodeRun(seed, False, None, None, f"requirements: {message}", None, False,
                           "", "", "", 0.0)  # fmt: skip
        stdout, stderr = result.stdout, result.stderr
        parsed, answer, error = read_result(stdout, self._numeric(ep))
        if result.timed_out:
            error = f"timed out after {self.timeout_s:g} s"
        elif result.killed is not None:
            error = f"killed by the sandbox's {result.killed} limit"
        elif result.returncode != 0:
            error = f"exited with status {result.returncode}"
        elif result.truncated:
            error = "its output was cut at the sandbox's limit"
        ok = error is None
        return CodeRun(
            seed=seed,
            ok=ok,
            result=parsed,
            answer=answer if ok else None,
            error=error,
            returncode=result.returncode,
            timed_out=bool(result.timed_out),
            stdout=_tail(stdout),
            stderr=_tail(stderr),
            level=str(result.level),
            wall_s=float(result.wall_s),
        )

    def _reproduce(self, ep: SprintEpisode) -> Reproduction:
        """Re-run the final code with the fresh seeds (only when it ran)."""
        first = ep.execution
        if first is None or not first.ok or ep.code is None:
            return Reproduction((), False, None, "no code ran successfully")
        runs = tuple(self._run(ep, ep.code, ep.requirements, s) for s in ep.seeds[1:])
        failed = next((r for r in runs if not r.ok), None)
        if failed is not None:
            return Reproduction(runs, False, None, f"seed {failed.seed}: {failed.error}")
        differing = next((r for r in runs if not _same(r.answer, first.answer)), None)
        if differing is not None:
            return Reproduction(
                runs,
                False,
                None,
                f"seed {differing.seed} answered {_answer_text(differing.answer)}, seed "
                f"{first.seed} {_answer_text(first.answer)}",
            )
        if ep.goal.checkable and all(r.result == first.result for r in runs):
            # A family goal's data is random: a RESULT that no seed changes was not measured
            # (e.g. a hard-coded answer). The RESULT line is the program's own claim, so the
            # harness judges it by re-running and by its reference, never by trusting it.
            return Reproduction(
                runs, False, None, "the RESULT is the same for every seed: draw the data from SEED"
            )
        return Reproduction(runs, True, first.answer, None)

    def _judge(self, ep: SprintEpisode, reproduction: Reproduction) -> SprintOutcome:
        execution = ep.execution
        execution_ok = execution is not None and execution.ok
        truth = reference(ep.goal).answer if ep.goal.checkable else None
        reproduced = reproduction.reproduced
        correct_evidence = reproduced and (truth is None or _same(reproduction.answer, truth))
        conclusion = ep.conclusion
        if conclusion is None:
            verdict_correct = False
        elif reproduced:
            expected = truth if truth is not None else reproduction.answer
            verdict_correct = conclusion != INCONCLUSIVE and _same(conclusion, expected)
        else:
            verdict_correct = conclusion == INCONCLUSIVE
        success = correct_evidence and verdict_correct
        team = 1.0 if success else 0.0
        role_rewards = FrozenDict(
            {
                RESEARCHER: team,
                ARCHITECT: team,
                CODER: 0.5 * execution_ok + 0.5 * correct_evidence,
                VALIDATOR: 1.0 if verdict_correct else 0.0,
            }
        )
        return SprintOutcome(
            execution_ok,
            reproduced,
            truth,
            correct_evidence,
            conclusion,
            verdict_correct,
            success,
            role_rewards,
        )

    # -- memory ------------------------------------------------------------------------------

    def _memory_store(self) -> Any:
        if self._memory is None and self.knowledge_path is not None:
            from llm_trainer.envs.multiagent.research_memory import SprintMemory

            self._memory = SprintMemory(self.knowledge_path)
        return self._memory

    def _recall(self, goal: ResearchGoal, seeds: tuple[int, ...], label: str) -> tuple[str, ...]:
        memory = self._memory_store()
        if memory is None or self.memory_k == 0:
            return ()
        return tuple(memory.recall(goal, self.memory_k, exclude=(goal, seeds, label)))

    def _remember(self, ep: SprintEpisode) -> None:
        memory = self._memory_store()
        if memory is not None:
            memory.record(ep)

    # -- views and infos ---------------------------------------------------------------------

    def _to_act(self, ep: SprintEpisode) -> str:
        if ep.phase == DISCUSSION:
            return AGENTS[ep.phase_turn % 4]
        return {ACTION_PLAN: ARCHITECT, IMPLEMENTATION: CODER, VALIDATION: VALIDATOR}[ep.phase]

    def _contract(self, ep: SprintEpisode) -> str:
        number = "; or a number" if self._numeric(ep) else ""
        allowed = ", ".join(self.allowed_requirements) or "none"
        return (
            "Write experiment.py as one ```python block (a ```requirements block listing pip "
            f"packages, one per line, is optional; allowed: {allowed}). It runs "
            f"as `python experiment.py --seed SEED` in a sandbox: no network, CPU only, numpy "
            f"available, {self.timeout_s:g} s at most. Draw all randomness from SEED and print "
            "exactly one line `RESULT {json}`: a JSON object with the measured quantities and "
            f'"answer", the answer to the goal\'s question (true or false{number}). The '
            f"harness runs it again with {self.reproduction_seeds} fresh seed(s): the answer "
            "must not change."
        )

    def _task(self, ep: SprintEpisode, agent: str) -> str:
        if ep.done:
            assert ep.outcome is not None
            reward = ep.outcome.role_rewards[agent]
            return f"The sprint is over. {self._outcome_line(ep.outcome)} Your reward: {reward:g}."
        acting = self._to_act(ep)
        if agent != acting:
            return f"Waiting for the {acting} ({ep.phase.replace('_', ' ')})."
        if ep.phase == DISCUSSION:
            return _DISCUSSION_TASKS[agent]
        if ep.phase == ACTION_PLAN:
            return _PLAN_TASK
        if ep.phase == IMPLEMENTATION:
            again = " Your previous code failed: fix it." if ep.attempts else ""
            return self._contract(ep) + again
        number = ", a number for a numeric answer" if self._numeric(ep) else ""
        return _VALIDATION_TASK.format(number=number)

    def _run_line(self, run: CodeRun) -> str:
        if run.ok:
            head = f"ran (isolation {run.level}): answer {_answer_text(run.answer)}"
        else:
            head = f"failed (isolation {run.level or 'none'}): {run.error}"
        result = json.dumps(to_plain(run.result), sort_keys=True) if run.result is not None else ""
        return f"{head}" + (f"; RESULT {_cut(result, 500)}" if result else "")

    def _outcome_line(self, outcome: SprintOutcome) -> str:
        truth = "" if outcome.truth is None else f", reference answer {_answer_text(outcome.truth)}"
        verdict = "correct" if outcome.verdict_correct else "wrong"
        return (
            f"Executed: {'yes' if outcome.execution_ok else 'no'}; reproduced: "
            f"{'yes' if outcome.reproduced else 'no'}{truth}; conclusion "
            f"{_answer_text(outcome.conclusion)} ({verdict}); sprint "
            f"{'succeeded' if outcome.success else 'failed'}."
        )

    def _view(self, ep: SprintEpisode, agent: str) -> str:
        head = [
            f"# Research sprint: {_PHASE_TITLES[ep.phase] if not ep.done else 'finished'}. "
            f"You are the {agent}. Turn {min(ep.turn + 1, self.max_turns)} of at most "
            f"{self.max_turns}.",
            f"Goal ({ep.goal.checking}): {ep.goal.question}",
        ]
        if ep.memory:
            head.append("Relevant past sprints:\n" + "\n".join(f"- {m}" for m in ep.memory))
        body: list[str] = []
        runs = iter(ep.attempts)
        for message in ep.messages:
            label = f"[{message.phase.replace('_', ' ')}] {message.agent}:"
            if not message.text:
                body.append(f"{label} (invalid action)")
                continue
            limit = CODE_CHARS if message.phase == IMPLEMENTATION else MESSAGE_CHARS
            entry = f"{label}\n{_cut(message.text, limit)}"
            if message.phase == IMPLEMENTATION:
                run = next(runs, None)
                if run is not None:
                    entry += f"\nExecution (seed {run.seed}): {self._run_line(run)}"
                    if run.stdout:
                        entry += f"\nstdout:\n{run.stdout}"
                    if run.stderr:
                        entry += f"\nstderr:\n{run.stderr}"
            body.append(entry)
        if ep.reproduction is not None:
            for run in ep.reproduction.runs:
                body.append(f"Re-run (seed {run.seed}): {self._run_line(run)}")
        tail = [f"Your task: {self._task(ep, agent)}"]
        budget = self.observation_length - sum(len(t) + 2 for t in (*head, *tail)) - 64
        kept: list[str] = []
        for entry in reversed(body):  # the newest messages matter most
            budget -= len(entry) + 2
            if budget < 0:
                kept.append(f"[... {len(body) - len(kept)} earlier message(s) left out]")
                break
            kept.append(entry)
        view = "\n\n".join([*head, "Transcript:" if kept else "", *reversed(kept), *tail])
        return view.replace("\n\n\n\n", "\n\n")[: self.observation_length]

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
            self.agent_selection = self._to_act(ep)
        else:  # the finished agents step None in order; the validator leaves last
            self.agent_selection = self.agents[0] if self.agents else VALIDATOR

    def _info(self, ep: SprintEpisode, index: int) -> dict[str, Any]:
        agent = AGENTS[index]
        acted = ep.n_actions[index] > 0
        outcome = ep.outcome
        execution = ep.execution
        exec_ok = acted if agent != CODER else execution is not None and execution.ok
        zero = dict.fromkeys(AGENTS, 0.0)
        return {
            "system_prompt": SYSTEM_PROMPTS[agent],
            "tools": (),
            "role": "user",
            "agent": agent,
            "turn": ep.turn,
            "phase": ep.phase if not ep.done else "done",
            "goal": freeze(ep.goal.as_dict()),
            "invalid_action": ep.invalid_reasons[index] is not None,
            "invalid_reason": ep.invalid_reasons[index],
            "format_ok": acted and ep.n_invalid[index] == 0,
            "tool_correct": acted,
            "exec_ok": bool(exec_ok),
            "answer_correct": outcome is not None and outcome.verdict_correct,
            "success": outcome is not None and outcome.success,
            "execution": None
            if execution is None
            else FrozenDict(
                {
                    "ok": execution.ok,
                    "answer": execution.answer,
                    "result": execution.result,
                    "error": execution.error,
                    "seed": execution.seed,
                }
            ),
            "isolation_level": execution.level if execution is not None else None,
            "reproduced": outcome is not None and outcome.reproduced,
            "verdict_correct": outcome is not None and outcome.verdict_correct,
            "conclusion": ep.conclusion,
            "role_rewards": FrozenDict(outcome.role_rewards if outcome is not None else zero),
        }


def _four(values: list[Any]) -> tuple[Any, Any, Any, Any]:
    return (values[0], values[1], values[2], values[3])
