"""Negative-aware tuning (NAT): SFT on successes *and* failures, told apart in the task's turn.

Wang et al., "Learning From Failure: Integrating Negative Examples when Fine-tuning Large
Language Models as Agents" (arXiv 2402.11651; NAACL 2025 as "NAT: Enhancing Agent Tuning with
Negative Samples"). NAT changes one thing in SFT: the user turn that carries the task says
whether the trajectory that follows is correct. Positives get the positive instruction,
negatives the negative one; the loss stays on the assistant turns only (the rows are
:func:`~llm_trainer.algorithms.sft.chat_rows` and :class:`NATTrainer` is an
:class:`~llm_trainer.algorithms.sft.SFTTrainer`), and at inference the model is *always*
prompted with the positive instruction: the run's evaluation uses it, and ``final_model`` is
also a saved agent that carries it (``AlgorithmResult.task_template``,
``LLMAgentConfig.task_template``). No agent built from the run ever sees the negative one.

* **Templates** (``nat.template``): ``paper`` appends an instruction sentence to the task (the
  paper's setting); ``prefix`` puts ``[Correct]`` / ``[Incorrect]`` before it (the paper's
  prefix ablation); ``meaningless`` appends tokens that mean nothing (the ablation asking
  whether the wording matters or only the split); ``custom`` takes ``positive_instruction`` and
  ``negative_instruction`` (appended after a blank line, or a whole template with ``{task}``).
* **Fine-grained NAT** (``nat.fine_grained``): graded labels instead of two (by default
  ``Correct`` / ``Partially Correct`` / ``Incorrect``) from each trajectory's score (its
  reward, or the share of the env's metrics it met) and ``nat.buckets``. A failed episode never
  gets the top label, whatever its score: inference asks for that label.
* **Negatives** (``nat.negatives``): ``policy``, the starting model's own failures on the
  data's tasks (``samples_per_task`` episodes each at ``temperature``, through the episode
  engine); ``corrupted``, each verified positive replayed in its env with a wrong final answer
  and kept only when the env scores it a failure, so every negative is a real failing episode
  with the env's observations and metrics; ``targeted``, each positive perturbed at the failure
  modes of ``nat.targeted_modes`` (a wrong tool, a corrupted argument, a dropped tool result, a
  wrong final answer, a malformed action: :mod:`llm_trainer.data.negatives`), replayed, and kept
  when the env fails it in the intended mode; ``both`` (corrupted and policy), or a list of
  sources. ``nat.ratio`` negatives per positive (0 is SFT with the positive instruction); when
  fewer exist all are used, and the log and the summary (``nat.negatives`` against
  ``nat.negatives_wanted``) say so.
* **Selection** (``nat.diversity``): by default the negatives are spread over their tasks; with
  ``diversity: true`` over failure modes (``nat.mode_quotas`` gives some modes a fixed share)
  and, within a mode, over BM25 clusters of similar trajectories
  (:func:`~llm_trainer.data.negatives.diverse_sample`).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

import numpy as np

from llm_trainer.agents.baselines import ReplayPolicy
from llm_trainer.agents.llm_agent import TASK_PLACEHOLDER, check_task_template
from llm_trainer.algorithms.base import Algorithm, AlgorithmContext, AlgorithmResult, TrainResult
from llm_trainer.algorithms.config import PositiveInt, TrainConfig
from llm_trainer.algorithms.rollout import replay_scripts
from llm_trainer.algorithms.sft import SFTTrainer, chat_rows
from llm_trainer.analysis.failure_modes import FailureMode, classify
from llm_trainer.core.config import NON_NEGATIVE, POSITIVE, check_ranges
from llm_trainer.core.errors import ConfigError, UserError, suggest
from llm_trainer.core.records import METRIC_KEYS, FrozenDict
from llm_trainer.core.rundir import RunDir
from llm_trainer.core.trajectory import Trajectory
from llm_trainer.data.negatives import (
    PERTURBATIONS,
    PerturbationName,
    diverse_sample,
    replay_perturbations,
    wrong_answers,
)
from llm_trainer.envs.tools import AnswerAction, format_answer, parse_action

__all__ = [
    "MEANINGLESS_TOKENS",
    "PAPER_INSTRUCTIONS",
    "NATAlgorithm",
    "NATBucket",
    "NATSettings",
    "NATTrainer",
    "ReplayPolicy",
    "choose_negatives",
    "corrupted_negatives",
    "nat_rows",
    "policy_negatives",
    "select_negatives",
    "wrong_answers",
]

#: A source of negatives (``nat.negatives``).
NegativeSource = Literal["policy", "corrupted", "targeted"]
#: The labels of plain (binary) NAT, positive first.
BINARY_LABELS = ("Correct", "Incorrect")
#: ``template: paper``: the sentence appended to the task, positive then negative (the paper's
#: setting: an instruction after the query saying which kind of solution follows).
PAPER_INSTRUCTIONS = (
    "Please generate a solution that correctly answers the question.",
    "Please generate a solution that incorrectly answers the question.",
)
#: ``template: paper`` with ``fine_grained``: the sentence of each graded label.
PAPER_GRADED_INSTRUCTION = "Please generate a solution that is {label}."
#: ``template: meaningless``: one token string per label (best label first), appended to the
#: task; they mean nothing, so only the split they mark can help.
MEANINGLESS_TOKENS = ("@&#%", "~|^*", "<=>;", "$!?+")


def _as_template(instruction: str) -> str:
    """An instruction as a task template: a whole template when it holds ``{task}``, else
    appended to the task after a blank line."""
    if TASK_PLACEHOLDER in instruction:
        return instruction
    return f"{TASK_PLACEHOLDER}\n\n{instruction}"


@dataclass(frozen=True)
class NATBucket:
    """One label of fine-grained NAT and the scores it takes (buckets are tried in order)."""

    label: str
    """The label (``[label]`` with ``template: prefix``)."""
    at_least: float | None = None
    """Scores >= this get the label (unless an earlier bucket took them)."""
    above: float | None = None
    """Scores > this get the label. With neither bound: every score left (the last bucket)."""
    instruction: str | None = None
    """This label's instruction instead of the template's (appended to the task after a blank
    line, or a whole template with ``{task}``); needed by the middle buckets of ``template:
    custom``."""

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label.strip():
            raise ConfigError(
                f"nat.buckets: a label must be a non-empty string, got {self.label!r}"
            )
        if self.at_least is not None and self.above is not None:
            raise ConfigError(f"nat.buckets[{self.label!r}]: set at_least or above, not both")
        bound = self.bound
        if bound is not None and not math.isfinite(bound):
            raise ConfigError(f"nat.buckets[{self.label!r}]: the bound must be finite")
        if self.instruction is not None and not self.instruction.strip():
            raise ConfigError(f"nat.buckets[{self.label!r}].instruction must not be empty")

    @property
    def bound(self) -> float | None:
        """The score bound (``None`` for the catch-all bucket)."""
        return self.at_least if self.at_least is not None else self.above

    def admits(self, score: float) -> bool:
        """Whether ``score`` falls in this bucket (ignoring earlier buckets)."""
        if self.at_least is not None:
            return score >= self.at_least
        if self.above is not None:
            return score > self.above
        return True


#: The default graded labels: full marks, something right, nothing right.
DEFAULT_BUCKETS = (
    NATBucket("Correct", at_least=1.0),
    NATBucket("Partially Correct", above=0.0),
    NATBucket("Incorrect"),
)


@dataclass(frozen=True)
class NATSettings:
    """Negative-aware tuning (``algorithm: nat``): SFT on the ``data`` section's successes and
    on failures, the task's turn saying which is which; inference always asks for success."""

    template: Literal["paper", "prefix", "meaningless", "custom"] = "paper"
    """How the label is put in the task's turn: ``paper`` (a sentence appended to the task),
    ``prefix`` (``[Correct]`` / ``[Incorrect]`` before it), ``meaningless`` (tokens without
    meaning appended) or ``custom`` (``positive_instruction`` / ``negative_instruction``)."""
    positive_instruction: str | None = None
    """``template: custom``: the positives' instruction, appended to the task after a blank line
    (or a whole template with ``{task}``). Inference always uses it."""
    negative_instruction: str | None = None
    """``template: custom``: the negatives' instruction (as ``positive_instruction``)."""
    fine_grained: bool = False
    """Graded labels (``buckets``, from each trajectory's ``score``) instead of correct /
    incorrect."""
    score: Literal["reward", "metrics"] = "reward"
    """``fine_grained``: a trajectory's score: ``reward`` (its total reward) or ``metrics`` (the
    share of the env's five metrics it met at the end: format, tool choice, execution, answer,
    success)."""
    buckets: tuple[NATBucket, ...] = DEFAULT_BUCKETS
    """``fine_grained``: the labels, best first, each with the scores it takes (``at_least`` or
    ``above``; the last one takes the rest). Inference asks for the first."""
    negatives: Literal["policy", "corrupted", "targeted", "both"] | tuple[NegativeSource, ...] = (
        "corrupted"
    )
    """Where negatives come from, one source or a list of them: ``policy`` (the starting
    model's failures on the data's tasks, sampled through the env), ``corrupted`` (each
    positive replayed with a wrong final answer the env rejects), ``targeted`` (each positive
    perturbed at the failure modes of ``targeted_modes`` and replayed, kept when the env fails
    it in the intended mode: :mod:`llm_trainer.data.negatives`); ``both`` is ``[corrupted,
    policy]``."""
    targeted_modes: tuple[PerturbationName, ...] = get_args(PerturbationName)
    """``targeted`` negatives: the perturbations, any of ``wrong_tool``, ``corrupted_argument``,
    ``dropped_tool_result``, ``wrong_final_answer``, ``malformed_action`` (default: all)."""
    diversity: bool = False
    """Pick the negatives spread over failure modes and, within a mode, over clusters of similar
    trajectories (BM25 on their actions: :func:`~llm_trainer.data.negatives.diverse_sample`)
    instead of spread over tasks."""
    mode_quotas: Mapping[str, float] = field(default_factory=dict)
    """``diversity``: the share of the negatives each named failure mode gets (e.g.
    ``{wrong_answer: 0.4, malformed_action: 0.2}``); the modes not named share the rest."""
    ratio: Annotated[float, NON_NEGATIVE] = 1.0
    """Negatives per positive (e.g. 0, 1, 2, 5, 10; 0 trains on positives alone). When fewer
    negatives exist, all are used and the summary says how many."""
    samples_per_task: PositiveInt = 4
    """``policy`` negatives: episodes sampled per task of the data."""
    temperature: Annotated[float, POSITIVE] = 1.0
    """``policy`` negatives: sampling temperature."""

    def __post_init__(self) -> None:
        check_ranges(self, "nat")
        self._check_negatives()
        for name in ("positive_instruction", "negative_instruction"):
            value = getattr(self, name)
            if self.template == "custom":
                if not isinstance(value, str) or not value.strip():
                    raise ConfigError(f"nat.{name}: template 'custom' needs it (a non-empty text)")
            elif value is not None:
                raise ConfigError(
                    f"nat.{name}: only read with template 'custom' (this is {self.template!r}); "
                    "remove it or set nat.template: custom"
                )
        if self.fine_grained:
            self._check_buckets()
        else:
            for name in ("score", "buckets"):
                if getattr(self, name) != getattr(NATSettings, name):
                    raise ConfigError(
                        f"nat.{name}: only read with fine_grained: true, so it would do nothing"
                    )
        templates = self.task_templates()
        for label, template in templates.items():
            check_task_template(template, f"nat: the template of {label!r}")
        seen: dict[str, str] = {}
        for label, template in templates.items():
            if template in seen:
                raise ConfigError(
                    f"nat: labels {seen[template]!r} and {label!r} get the same instruction "
                    f"({template!r}): the model could not tell them apart"
                )
            seen[template] = label

    @property
    def sources(self) -> tuple[NegativeSource, ...]:
        """``negatives`` as a list of sources (``both``: corrupted and policy)."""
        if self.negatives == "both":
            return ("corrupted", "policy")
        if isinstance(self.negatives, str):
            return (self.negatives,)
        return self.negatives

    def _check_negatives(self) -> None:
        allowed = get_args(NegativeSource)
        if isinstance(self.negatives, str):
            if self.negatives not in (*allowed, "both"):
                raise ConfigError(
                    f"nat.negatives: {self.negatives!r} is not one of {[*allowed, 'both']}"
                )
        else:
            sources = list(self.negatives)
            wrong = [v for v in sources if v not in allowed]
            if not sources or wrong or len(set(sources)) < len(sources):
                raise ConfigError(
                    f"nat.negatives: a list of distinct sources among {list(allowed)}, got "
                    f"{sources}"
                )
            object.__setattr__(self, "negatives", tuple(sources))
        modes = list(self.targeted_modes)
        unknown = [m for m in modes if m not in PERTURBATIONS]
        if not modes or unknown or len(set(modes)) < len(modes):
            raise ConfigError(
                f"nat.targeted_modes: a list of distinct perturbations among "
                f"{list(PERTURBATIONS)}, got {modes}"
            )
        object.__setattr__(self, "targeted_modes", tuple(modes))
        if "targeted" not in self.sources and tuple(modes) != tuple(PERTURBATIONS):
            raise ConfigError(
                "nat.targeted_modes: only read when nat.negatives has 'targeted', so it would "
                "do nothing"
            )
        known = [m.value for m in FailureMode if m is not FailureMode.SUCCESS]
        quotas = dict(self.mode_quotas)
        for mode, share in quotas.items():
            if mode not in known:
                raise ConfigError(
                    f"nat.mode_quotas: {mode!r} is not a failure mode{suggest(mode, known)}; "
                    f"known: {known}"
                )
            if isinstance(share, bool) or not isinstance(share, int | float):
                raise ConfigError(f"nat.mode_quotas.{mode}: expected a share, got {share!r}")
            if not 0 <= share <= 1:
                raise ConfigError(f"nat.mode_quotas.{mode}: a share in [0, 1], got {share}")
        if sum(quotas.values()) > 1 + 1e-9:
            raise ConfigError(
                f"nat.mode_quotas: the shares add up to {sum(quotas.values()):g}, more than 1"
            )
        if quotas and not self.diversity:
            raise ConfigError(
                "nat.mode_quotas: only read with diversity: true, so it would do nothing"
            )
        object.__setattr__(
            self, "mode_quotas", FrozenDict({m: float(v) for m, v in quotas.items()})
        )

    def _check_buckets(self) -> None:
        buckets = self.buckets
        if len(buckets) < 2:
            raise ConfigError("nat.buckets: fine-grained NAT needs at least two buckets")
        labels = [b.label for b in buckets]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ConfigError(f"nat.buckets: label(s) {twice} appear more than once")
        if buckets[-1].bound is not None:
            raise ConfigError(
                f"nat.buckets: the last bucket ({buckets[-1].label!r}) must take every score "
                "left (give it neither at_least nor above)"
            )
        for bucket in buckets[:-1]:
            if bucket.bound is None:
                raise ConfigError(
                    f"nat.buckets[{bucket.label!r}]: only the last bucket may take every score "
                    "(give it at_least or above)"
                )
        for first, second in itertools.pairwise(buckets[:-1]):
            a, b = first.bound, second.bound
            assert a is not None
            assert b is not None
            if a < b or (a == b and (first.above is None or second.at_least is None)):
                raise ConfigError(
                    f"nat.buckets[{second.label!r}] never gets a score: {first.label!r} before "
                    "it takes them all (order the buckets from the highest bound down)"
                )
        if self.template == "meaningless" and len(buckets) > len(MEANINGLESS_TOKENS):
            raise ConfigError(
                f"nat.buckets: template 'meaningless' has {len(MEANINGLESS_TOKENS)} token "
                f"strings, not enough for {len(buckets)} labels"
            )
        if self.template == "custom":
            for bucket in buckets[1:-1]:
                if bucket.instruction is None:
                    raise ConfigError(
                        f"nat.buckets[{bucket.label!r}].instruction: template 'custom' needs one "
                        "for each bucket between the first (positive_instruction) and the last "
                        "(negative_instruction)"
                    )

    # -- labels and their templates -----------------------------------------------------------

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels, the positive (what inference asks for) first."""
        return tuple(b.label for b in self.buckets) if self.fine_grained else BINARY_LABELS

    def task_templates(self) -> dict[str, str]:
        """Each label's task template (``{task}`` stands for the task), in label order."""
        labels = self.labels
        out = {}
        for rank, label in enumerate(labels):
            bucket = self.buckets[rank] if self.fine_grained else None
            if bucket is not None and bucket.instruction is not None:
                out[label] = _as_template(bucket.instruction)
            else:
                out[label] = self._template(rank, label, last=rank == len(labels) - 1)
        return out

    def _template(self, rank: int, label: str, *, last: bool) -> str:
        if self.template == "prefix":
            return f"[{label}] {TASK_PLACEHOLDER}"
        if self.template == "meaningless":
            return _as_template(MEANINGLESS_TOKENS[rank])
        if self.template == "custom":
            # rank 0 is positive_instruction, the last negative_instruction; the middle ones
            # were checked to have their own instruction
            instruction = self.positive_instruction if rank == 0 else self.negative_instruction
            assert instruction is not None
            assert rank == 0 or last
            return _as_template(instruction)
        if self.fine_grained:
            return _as_template(PAPER_GRADED_INSTRUCTION.format(label=label.lower()))
        return _as_template(PAPER_INSTRUCTIONS[rank])

    @property
    def positive_template(self) -> str:
        """The positive label's task template: how the trained model is always prompted."""
        return self.task_templates()[self.labels[0]]

    def score_of(self, trajectory: Trajectory) -> float:
        """``score``: the trajectory's total reward, or the share of the env metrics it met."""
        if self.score == "reward":
            return trajectory.total_reward
        metrics = trajectory.metrics
        return sum(metrics[k] for k in METRIC_KEYS) / len(METRIC_KEYS)

    def label_of(self, trajectory: Trajectory, *, positive: bool) -> str:
        """The label a positive (or negative) trajectory trains under: binary, or its score's
        bucket (a negative never gets the top label: it goes to the next bucket that takes its
        score)."""
        if not self.fine_grained:
            return BINARY_LABELS[0 if positive else 1]
        score = self.score_of(trajectory)
        for rank, bucket in enumerate(self.buckets):
            if (positive or rank > 0) and bucket.admits(score):
                return bucket.label
        return self.buckets[-1].label


def nat_rows(
    positives: Sequence[Trajectory],
    negatives: Sequence[Trajectory],
    settings: NATSettings,
    system_prompt: str | None = None,
) -> list[dict[str, Any]]:
    """TRL chat rows (:func:`~llm_trainer.algorithms.sft.chat_rows`) of positives, then
    negatives, each task (the first user message) put through its label's template."""
    templates = settings.task_templates()
    rows = []
    for group, positive in ((positives, True), (negatives, False)):
        for t in group:
            label = settings.label_of(t, positive=positive)
            rows += chat_rows([t], system_prompt, templates[label])
    return rows


class NATTrainer(SFTTrainer):
    """SFT with NAT's instructions: successes train under the positive label, failures under
    the negative (or graded) ones, loss on the assistant turns only.

    Args:
        model, tokenizer, config, run, seed, system_prompt, evaluate, eval_every, callbacks:
            As :class:`~llm_trainer.algorithms.trl_trainer.TRLTrainer` (``evaluate`` should
            prompt with ``settings.positive_template``).
        settings: The NAT settings (templates, labels).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: TrainConfig,
        run: RunDir,
        *,
        settings: NATSettings,
        seed: int = 0,
        system_prompt: str | None = None,
        evaluate: Callable[[Any], Mapping[str, float]] | None = None,
        eval_every: int = 0,
        callbacks: Sequence[Any] = (),
    ) -> None:
        super().__init__(
            model,
            tokenizer,
            config,
            run,
            seed=seed,
            system_prompt=system_prompt,
            evaluate=evaluate,
            eval_every=eval_every,
            callbacks=callbacks,
        )
        self.settings = settings

    def train(
        self, trajectories: Sequence[Trajectory], *, resume: bool = False, in_order: bool = False
    ) -> TrainResult:
        """Train on ``trajectories``: successes are positives, failures negatives (episodes
        that ended in an error, or with no step, are skipped). ``in_order`` is not supported:
        NAT's rows are shuffled passes (``data.phases`` is refused for NAT when it loads).

        Raises:
            ValueError: ``in_order``.
            UserError: when none succeeded, or no trajectory earned the top label (inference
                would ask for a label the model never saw).
        """
        if in_order:
            raise ValueError("NATTrainer trains on shuffled passes; in_order is not supported")
        usable = [t for t in trajectories if t.error is None and t.steps]
        positives = [t for t in usable if t.success]
        negatives = [t for t in usable if not t.success]
        if not positives:
            raise UserError(
                f"NAT needs successful trajectories and none of the {len(trajectories)} given "
                "succeeded; check the data strategy or collect from a stronger agent"
            )
        top = self.settings.labels[0]
        labels = Counter(self.settings.label_of(t, positive=True) for t in positives)
        if not labels[top]:
            raise UserError(
                f"NAT: no trajectory scored into the top bucket {top!r} (scores of the "
                f"successes: {sorted({self.settings.score_of(t) for t in positives})}), but "
                "inference asks for it; lower its bound in nat.buckets or set nat.score"
            )
        return self.train_rows(
            nat_rows(positives, negatives, self.settings, self.system_prompt), resume=resume
        )


# -- negatives -------------------------------------------------------------------------------


def corrupted_negatives(
    positives: Sequence[Trajectory], *, per_positive: int = 1, seed: int = 0
) -> list[Trajectory]:
    """Each success of ``positives`` that ends in a final answer, replayed in its env with up
    to ``per_positive`` different wrong answers in place of that answer; kept only where the
    env scores the replayed episode a failure (a "wrong" answer that is right too is dropped).
    The negatives are real episodes (source ``corrupted``): the same tool calls and results,
    then the env's verdict on the wrong answer."""
    rng = np.random.default_rng(seed)
    scripts: list[tuple[Trajectory, list[str]]] = []
    for t in positives:
        if not t.success or not t.steps:
            continue
        answer = parse_action(t.steps[-1].action)
        if not isinstance(answer, AnswerAction):
            continue
        before = [s.action for s in t.steps[:-1]]
        for wrong in wrong_answers(answer.text, rng, per_positive):
            scripts.append((t, [*before, format_answer(wrong)]))
    played = replay_scripts(scripts, source="corrupted")
    return [n for n in played if n.error is None and n.steps and not n.success]


def policy_negatives(
    context: AlgorithmContext,
    model: Any,
    tokenizer: Any,
    tasks: Sequence[Trajectory],
    settings: NATSettings,
) -> list[Trajectory]:
    """The model's own failures: ``settings.samples_per_task`` episodes of each task of
    ``tasks`` (their env, seed and difficulty) sampled from ``model`` at
    ``settings.temperature``, prompted without any NAT instruction (the model as it is); the
    failed ones (episodes that raised are left out)."""
    agent = context.agent(model, tokenizer, temperature=settings.temperature, seed=context.seed)
    sampled = context.collect_tasks(
        agent, tasks, repeats=settings.samples_per_task, source="policy:nat"
    )
    failures = [t for t in sampled if t.error is None and t.steps and not t.success]
    context.log(
        f"NAT: sampled {len(sampled)} episodes of {len(tasks)} tasks at temperature "
        f"{settings.temperature}: {len(failures)} failures"
    )
    return failures


def _task_key(t: Trajectory) -> tuple[str, int, int]:
    return (t.env_id, t.seed, t.difficulty)


def _unique(trajectories: Sequence[Trajectory]) -> list[Trajectory]:
    """Without repeats (same task, same actions), in order."""
    seen: dict[tuple[Any, ...], Trajectory] = {}
    for t in trajectories:
        seen.setdefault((*_task_key(t), tuple(s.action for s in t.steps)), t)
    return list(seen.values())


def select_negatives(
    negatives: Sequence[Trajectory], wanted: int, seed: int = 0
) -> list[Trajectory]:
    """``wanted`` of ``negatives`` (all when fewer), spread over their tasks: in a shuffled
    order of the tasks, each task gives one before any gives a second."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, int, int], list[Trajectory]] = {}
    for t in negatives:
        groups.setdefault(_task_key(t), []).append(t)
    keys = sorted(groups)
    queues = []
    for i in rng.permutation(len(keys)):
        group = groups[keys[int(i)]]
        queues.append([group[int(j)] for j in rng.permutation(len(group))])
    picked: list[Trajectory] = []
    depth = 0
    while len(picked) < wanted and any(len(q) > depth for q in queues):
        for queue in queues:
            if len(queue) > depth and len(picked) < wanted:
                picked.append(queue[depth])
        depth += 1
    return picked


def choose_negatives(
    pool: Sequence[Trajectory], wanted: int, settings: NATSettings, seed: int = 0
) -> list[Trajectory]:
    """``wanted`` of ``pool`` (repeats dropped): spread over failure modes and clusters with
    ``settings.diversity`` (:func:`~llm_trainer.data.negatives.diverse_sample`, with
    ``settings.mode_quotas``), else over tasks (:func:`select_negatives`)."""
    unique = _unique(pool)
    if settings.diversity:
        return diverse_sample(unique, wanted, quotas=settings.mode_quotas, seed=seed)
    return select_negatives(unique, wanted, seed=seed)


class NATAlgorithm(Algorithm):
    """Negative-aware tuning (Wang et al. 2024): SFT on successes and env-verified failures,
    an instruction in the task's turn saying which; inference always asks for success."""

    name = "nat"
    config_class = NATSettings
    sections = ("data",)

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        settings: NATSettings = self.config
        model, tokenizer = context.load_model()
        trajectories, version = context.training_data(model, tokenizer)
        positives = [t for t in trajectories if t.success and t.error is None]
        if not positives:
            raise UserError(
                f"NAT needs successful trajectories and none of the {len(trajectories)} of the "
                "data section succeeded; check data.strategy"
            )
        wanted = round(settings.ratio * len(positives))
        available: dict[str, int] = {}
        pool: list[Trajectory] = []
        targeted: dict[str, Any] | None = None
        if wanted:
            unique = _unique(positives)
            per_positive = math.ceil(wanted / len(unique))
            for source in settings.sources:
                if source == "corrupted":
                    found = corrupted_negatives(
                        unique, per_positive=per_positive, seed=context.seed
                    )
                elif source == "targeted":
                    # per_positive draws of every perturbation: more than wanted, so that the
                    # selection (diversity above all) has a choice
                    made = replay_perturbations(
                        unique,
                        settings.targeted_modes,
                        seed=context.seed,
                        per_positive=per_positive,
                    )
                    found = list(made.negatives)
                    targeted = made.report.to_dict()
                    context.log(f"NAT: targeted negatives:\n{made.report.summary()}")
                else:
                    tasks = list({_task_key(t): t for t in unique}.values())
                    found = policy_negatives(context, model, tokenizer, tasks, settings)
                available[source] = len(found)
                pool += found
        negatives = choose_negatives(pool, wanted, settings, seed=context.seed)
        context.log(
            f"NAT: {len(positives)} positives, {len(negatives)} negatives (nat.ratio "
            f"{settings.ratio:g} asks for {wanted}; available: "
            f"{', '.join(f'{k} {v}' for k, v in available.items()) or 'none sought'})"
        )
        if len(negatives) < wanted:
            context.log(
                f"NAT: only {len(negatives)} negatives for the {wanted} that nat.ratio asks; "
                "training with them all (more come from nat.negatives: both, or a larger "
                "nat.samples_per_task)"
            )
        data = [*positives, *negatives]
        acted = any(t.source.startswith("policy") for t in negatives)
        nat_version = context.store_dataset("nat", data, parents=None if acted else (version,))
        template = settings.positive_template
        trainer = NATTrainer(
            model,
            tokenizer,
            context.experiment.train,
            context.run,
            settings=settings,
            **context.trainer_options(tokenizer, task_template=template),
        )
        train = context.experiment.train
        context.log(
            f"NAT: {train.max_steps} steps, batch {train.batch_size}, lr {train.learning_rate}, "
            f"template {settings.template}; inference prompts with {template!r}"
        )
        result = trainer.train(data, resume=context.resume)
        labels = Counter(settings.label_of(t, positive=True) for t in positives) + Counter(
            settings.label_of(t, positive=False) for t in negatives
        )
        return AlgorithmResult(
            model=trainer.model,
            tokenizer=tokenizer,
            training=result,
            metrics={
                "nat": {
                    "positives": len(positives),
                    "negatives": len(negatives),
                    "negatives_wanted": wanted,
                    "negatives_available": available,
                    "negatives_by_source": dict(Counter(t.source for t in negatives)),
                    "negatives_by_mode": dict(Counter(classify(t) for t in negatives)),
                    **({"targeted": targeted} if targeted is not None else {}),
                    "labels": {label: labels[label] for label in settings.labels},
                    "template": settings.template,
                    "train_dataset_version": version,
                }
            },
            dataset_version=nat_version,
            task_template=template,
        )
