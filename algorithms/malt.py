"""MALT data generation: a generator -> verifier -> refiner search tree per problem, credit by
value iteration, and per-role SFT sets and DPO pairs (``algorithm: malt``).

MALT (Motwani et al., "MALT: Improving Reasoning with Multi-Agent LLM Training", arXiv
2412.01928; seed 002) trains the three roles of ``LLMTrainer/MALT-v0`` from their own samples.
For each problem, :class:`TrainingDataGenerator` samples ``n`` generator solutions, ``n``
verifier critiques of each and ``n`` refiner answers of each critique: ``n + n^2 + n^3``
generations and ``n^3`` final answers per problem (``n = 3`` in the paper). Every branch
starts from an env snapshot (``get_state()`` / ``set_state()``), never from a replay, and each
tree level of a batch of problems is one batched ``act_batch`` call.

* **Leaf reward**: the env's checker (the refiner's score), or with ``use_llm_eval`` an
  :class:`LLMEvaluator` (any backend, temperature 0.1, a configurable prompt) whose text is
  parsed into the seed's ``correctness_score``, ``reasoning_score``, ``explanation`` and
  ``key_matches``; the reward is its ``correctness_score``. Unreadable evaluator output never
  stops a run: that leaf is scored by the checker instead, and the example says so.
* **Value iteration** (:func:`node_values`): a verifier output's value is the mean reward of
  its refinements, a generator output's the mean reward of every final answer in its subtree.
  A branch is *positive* when its value reaches ``threshold`` (0.5).
* **Per-role data**: SFT sets are the positive branches, as one-step
  :class:`~llm_trainer.core.trajectory.Trajectory` records (``success`` marks positives,
  which is what :class:`~llm_trainer.algorithms.sft.SFTTrainer` keeps); DPO pairs
  (:func:`sibling_pairs`) join a positive and a negative output *of the same parent* only, as
  :class:`~llm_trainer.algorithms.dpo.PreferencePair` records that
  :class:`~llm_trainer.algorithms.dpo.DPOTrainer` trains on.
* **Files** (:meth:`MALTData.write`): the seed's ``generator_training.json``,
  ``verifier_training.json`` and ``refiner_training.json`` (``metadata``: ``timestamp``,
  ``model``, ``total_examples``; ``examples``: ``question``, ``solution``, ``score``,
  ``evaluation``, plus the branch's ``id``, ``parent_id``, ``prompt``, ``label`` and
  ``ground_truth``), every branch with its value as ``score``; and ``<role>_dpo_pairs.jsonl``
  in TRL's conversational preference format.

>>> node_values({(0, 0, 0): 1.0, (0, 0, 1): 0.0, (0, 1, 0): 1.0, (0, 1, 1): 1.0})[(0,)]
0.75
>>> sibling_pairs({(0,): 0.75, (1,): 0.25}, 0.5)
[((0,), (1,))]
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

from llm_trainer.algorithms.base import Algorithm, AlgorithmContext, AlgorithmResult
from llm_trainer.algorithms.config import NonNegativeInt, PositiveInt
from llm_trainer.algorithms.dpo import PreferencePair, dpo_rows
from llm_trainer.core.config import Range, check_ranges, to_dict
from llm_trainer.core.errors import BackendError, BatchActError, ConfigError, suggest
from llm_trainer.core.rundir import atomic_write
from llm_trainer.core.seeding import derive_seed
from llm_trainer.core.trajectory import Step, Trajectory

if TYPE_CHECKING:
    from llm_trainer.agents.backends.base import Backend
    from llm_trainer.agents.policy import Policy
    from llm_trainer.core.records import Generation
    from llm_trainer.envs.multiagent.malt import MALTEnv, MALTEpisode

__all__ = [
    "MALT_ENV_ID",
    "ROLES",
    "AnswerEvaluation",
    "LLMEvaluator",
    "MALTAlgorithm",
    "MALTData",
    "MALTNode",
    "MALTSettings",
    "MALTTree",
    "TrainingDataGenerator",
    "check_training_file",
    "node_values",
    "parse_evaluation",
    "sibling_pairs",
]

#: The env MALT data is generated in.
MALT_ENV_ID = "LLMTrainer/MALT-v0"
#: The roles, in the order they act (the env's agents).
ROLES: tuple[str, str, str] = ("generator", "verifier", "refiner")
#: A branch's place in its problem's tree: ``(g,)``, ``(g, v)``, ``(g, v, r)``.
NodePath = tuple[int, ...]
#: What :class:`TrainingDataGenerator` turns into a role's policy: a ready policy, a backend
#: spec (``transformers:DIR``, ``vllm:DIR``, ``openai:URL#MODEL``) or ``(model, tokenizer)``.
PolicyLike = Any

#: The LLM evaluator's default instructions; ``{question}``, ``{ground_truth}`` and
#: ``{answer}`` are replaced (any other braces are left as they are).
DEFAULT_EVALUATION_PROMPT = (
    "Grade the answer against the ground truth.\n"
    "Question: {question}\n"
    "Ground truth: {ground_truth}\n"
    "Answer: {answer}\n"
    'Reply with JSON only: {"correctness_score": 0-1, "reasoning_score": 0-1, '
    '"explanation": ["..."], "key_matches": ["..."]}'
)
EVALUATOR_SYSTEM_PROMPT = "You are a strict, fair grader of answers."

_SCORE_KEYS = ("correctness_score", "reasoning_score")
_LIST_KEYS = ("explanation", "key_matches")
_MAX_PARSED_CHARS = 20_000
_MAX_JSON_ATTEMPTS = 64
_MAX_ITEMS = 20
_MAX_ITEM_CHARS = 500
#: The first line of a leaf's explanation when the LLM evaluator's reply was unreadable.
_CHECKER_INSTEAD = "LLM evaluator output unreadable; scored by the env's checker instead"


# -- the evaluator -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerEvaluation:
    """How one final answer was judged (the seed's ``evaluation`` object).

    Attributes:
        correctness_score: Whether the answer matches the ground truth, in [0, 1].
        reasoning_score: How sound the reasoning is, in [0, 1] (the checker judges answers
            only: there it repeats ``correctness_score``).
        explanation: Reasons, one per line.
        key_matches: What the answer gets right (the checker: its criteria fully met).
        source: ``checker``, ``llm`` (the LLM evaluator), ``fallback`` (evaluator output
            that could not be read; scores 0) or ``subtree`` (an inner branch: the mean of
            the final answers below it).
    """

    correctness_score: float
    reasoning_score: float
    explanation: tuple[str, ...] = ()
    key_matches: tuple[str, ...] = ()
    source: Literal["checker", "llm", "fallback", "subtree"] = "llm"

    @property
    def parsed(self) -> bool:
        """Whether the scores are real judgements (not an unreadable evaluator's fallback)."""
        return self.source != "fallback"

    def to_dict(self) -> dict[str, Any]:
        """The seed's ``evaluation`` object (and ``source``)."""
        return {
            "correctness_score": self.correctness_score,
            "reasoning_score": self.reasoning_score,
            "explanation": list(self.explanation),
            "key_matches": list(self.key_matches),
            "source": self.source,
        }


def _fallback(reason: str) -> AnswerEvaluation:
    return AnswerEvaluation(0.0, 0.0, (reason,), (), "fallback")


def _score(value: Any) -> tuple[float | None, str | None]:
    """A score in [0, 1] read from a JSON value or a matched string, and a note when it was
    rescaled or clamped (``None`` when it is no number)."""
    number: float | None = None
    if isinstance(value, int | float):  # bool too: true is 1
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().rstrip(".")
        percent = text.endswith("%")
        text = text.rstrip("%").strip()
        try:
            if "/" in text:
                top, _, bottom = text.partition("/")
                number = float(top) / float(bottom)
            else:
                number = float(text)
        except (ValueError, ZeroDivisionError, OverflowError):
            return None, None
        if percent:
            number /= 100
    if number is None or not math.isfinite(number):
        return None, None
    if 0.0 <= number <= 1.0:
        return number, None
    if 1.0 < number <= 10.0:
        return number / 10, f"score {number:g} read on a 0-10 scale"
    if 10.0 < number <= 100.0:
        return number / 100, f"score {number:g} read on a 0-100 scale"
    return min(1.0, max(0.0, number)), f"score {number:g} clamped to [0, 1]"


def _strings(value: Any) -> tuple[str, ...]:
    """A list field (``explanation``, ``key_matches``) as short non-empty strings."""
    items = value if isinstance(value, list | tuple) else [value]
    out = []
    for item in items[:_MAX_ITEMS]:
        if item is None:
            continue
        text = item if isinstance(item, str) else json.dumps(item, default=str)
        text = text.strip()[:_MAX_ITEM_CHARS]
        if text:
            out.append(text)
    return tuple(out)


def _json_object(text: str) -> Mapping[str, Any] | None:
    """The first JSON object in ``text`` that holds one of the seed's keys (one level of
    nesting is looked into), or ``None``."""
    decoder = json.JSONDecoder()
    wanted = (*_SCORE_KEYS, *_LIST_KEYS)
    for attempt, match in enumerate(re.finditer(r"\{", text)):
        if attempt >= _MAX_JSON_ATTEMPTS:
            break
        try:
            found, _ = decoder.raw_decode(text, match.start())
        except (ValueError, RecursionError):  # deeply nested input exhausts the stack
            continue
        if not isinstance(found, dict):
            continue
        if any(k in found for k in wanted):
            return found
        for inner in found.values():
            if isinstance(inner, dict) and any(k in inner for k in wanted):
                return inner
    return None


_NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?\s*%?"
_KEY_VALUE = {
    key: re.compile(
        rf"{key.split('_')[0]}[ _-]?score[\"']?\s*[:=]\s*[\"']?\s*({_NUMBER})", re.IGNORECASE
    )
    for key in _SCORE_KEYS
}
_KEY_LINE = {
    key: re.compile(rf"{key.replace('_', '[ _-]?')}[\"']?\s*[:=]\s*(.+)", re.IGNORECASE)
    for key in _LIST_KEYS
}


def parse_evaluation(text: str) -> AnswerEvaluation:
    """The evaluator's reply as an :class:`AnswerEvaluation`; never raises.

    It reads the first JSON object holding the seed's keys (anywhere in the text, code fences
    and prose around it allowed), else ``key: value`` lines. Scores become numbers in
    [0, 1] (``"90%"``, ``"9/10"``, ``true``; a number above 1 is read on a 0-10 or 0-100
    scale, and the explanation says so); list fields accept a string or a list. Without a
    readable ``correctness_score`` the result is the fallback (``source="fallback"``, scores
    0, the reason and the start of the text in ``explanation``).

    >>> e = parse_evaluation('Sure! {"correctness_score": 1, "reasoning_score": "80%", '
    ...                      '"explanation": "right", "key_matches": ["Cleo"]}')
    >>> e.correctness_score, e.reasoning_score, e.explanation, e.key_matches, e.source
    (1.0, 0.8, ('right',), ('Cleo',), 'llm')
    >>> parse_evaluation("no idea").source
    'fallback'
    """
    text = text[:_MAX_PARSED_CHARS]
    found = _json_object(text)
    raw: dict[str, Any] = dict(found) if found is not None else {}
    if found is None:
        for key, pattern in _KEY_VALUE.items():
            match = pattern.search(text)
            if match:
                raw[key] = match.group(1)
        for key, pattern in _KEY_LINE.items():
            match = pattern.search(text)
            if match:
                raw[key] = match.group(1)
    notes: list[str] = []
    scores: dict[str, float | None] = {}
    for key in _SCORE_KEYS:
        value, note = _score(raw.get(key))
        scores[key] = value
        if note:
            notes.append(f"{key}: {note}")
    correctness = scores["correctness_score"]
    if correctness is None:
        head = " ".join(text.split())[:200]
        return _fallback(f"evaluator output has no readable correctness_score: {head!r}")
    reasoning = scores["reasoning_score"]
    if reasoning is None:
        notes.append("reasoning_score missing: 0")
        reasoning = 0.0
    explanation = _strings(raw.get("explanation", ())) + tuple(notes)
    return AnswerEvaluation(
        correctness, reasoning, explanation, _strings(raw.get("key_matches", ())), "llm"
    )


class LLMEvaluator:
    """An LLM that grades final answers against the ground truth (the seed's evaluator).

    Args:
        backend: Any backend spec the project's backends accept (``transformers:DIR``,
            ``vllm:DIR``, ``openai:BASE_URL#MODEL``; loaded once per process) or a ready
            :class:`~llm_trainer.agents.backends.base.Backend`.
        temperature: Sampling temperature (the seed's 0.1).
        prompt: The instructions; ``{question}``, ``{ground_truth}`` and ``{answer}`` are
            replaced (see :data:`DEFAULT_EVALUATION_PROMPT`).
        max_new_tokens: Most tokens of a reply.
        seed: Seeds sampling.
        backend_options: Options of a backend built from a spec.

    Every reply goes through :func:`parse_evaluation`; a reply that cannot be read, or a
    backend failure, gives that answer the fallback evaluation (never an exception).
    """

    def __init__(
        self,
        backend: str | Backend,
        *,
        temperature: float = 0.1,
        prompt: str = DEFAULT_EVALUATION_PROMPT,
        max_new_tokens: int = 128,
        seed: int = 0,
        backend_options: Mapping[str, Any] | None = None,
    ) -> None:
        from llm_trainer.agents.backends.base import SamplingConfig

        if not isinstance(prompt, str) or "{answer}" not in prompt:
            raise ConfigError("LLMEvaluator prompt must be a str holding {answer}")
        if isinstance(backend, str):
            from llm_trainer.agents.llm_agent import shared_backend

            backend = shared_backend(backend, backend_options)
        self.backend = backend
        self.prompt = prompt
        # no stop strings: the reply is JSON, and the protocol's </answer> may appear inside
        self.sampling = SamplingConfig(
            temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, stop=()
        )
        self.completion_tokens = 0
        """Tokens generated so far."""

    @property
    def name(self) -> str:
        """The backend's spec (what the files' metadata records)."""
        return str(getattr(self.backend, "spec", type(self.backend).__name__))

    def render(self, question: str, ground_truth: str, answer: str) -> str:
        """The user message for one answer."""
        return (
            self.prompt.replace("{question}", question)
            .replace("{ground_truth}", ground_truth)
            .replace("{answer}", answer)
        )

    def evaluate_answer(self, question: str, ground_truth: str, answer: str) -> AnswerEvaluation:
        """Grade one answer (the seed's method, synchronous here)."""
        return self.evaluate_batch([(question, ground_truth, answer)])[0]

    def evaluate_batch(self, items: Sequence[tuple[str, str, str]]) -> list[AnswerEvaluation]:
        """Grade ``(question, ground_truth, answer)`` triples in one batched call (concurrent
        requests on the OpenAI-compatible backend); a failed call is retried item by item."""
        from llm_trainer.agents.backends.base import ChatPrompt

        prompts = [
            ChatPrompt(
                (
                    {"role": "system", "content": EVALUATOR_SYSTEM_PROMPT},
                    {"role": "user", "content": self.render(q, g, a)},
                )
            )
            for q, g, a in items
        ]
        if not prompts:
            return []
        try:
            replies: list[Generation | str] = [
                s[0] for s in self.backend.chat(prompts, self.sampling)
            ]
        except BackendError:
            replies = []
            for prompt in prompts:
                try:
                    replies.append(self.backend.chat([prompt], self.sampling)[0][0])
                except BackendError as exc:
                    replies.append(f"evaluator backend failed: {exc}")
        out = []
        for reply in replies:
            if isinstance(reply, str):  # the failure's message
                out.append(_fallback(reply))
                continue
            self.completion_tokens += reply.num_tokens
            out.append(parse_evaluation(reply.text))
        return out


# -- the tree ------------------------------------------------------------------------------------


def node_values(leaf_rewards: Mapping[NodePath, float]) -> dict[NodePath, float]:
    """Value iteration up a tree given by its leaves: every leaf keeps its reward and every
    inner node (each non-empty proper prefix of a leaf's path) gets the mean reward of the
    leaves below it. In MALT's tree a verifier output's value is so the mean of its
    refinements, and a generator output's the mean over its whole subtree.

    >>> values = node_values({(0, 0): 1.0, (0, 1): 0.0, (1, 0): 0.5})
    >>> values[(0,)], values[(1,)]
    (0.5, 0.5)
    """
    sums: dict[NodePath, float] = defaultdict(float)
    counts: dict[NodePath, int] = defaultdict(int)
    for path, reward in leaf_rewards.items():
        for depth in range(1, len(path)):
            sums[path[:depth]] += reward
            counts[path[:depth]] += 1
    values = {p: sums[p] / counts[p] for p in sums}
    overlap = set(values) & set(leaf_rewards)
    if overlap:
        raise ValueError(f"leaf_rewards must hold leaves only; inner nodes: {sorted(overlap)}")
    values.update(leaf_rewards)
    return values


def sibling_pairs(
    values: Mapping[NodePath, float], threshold: float, *, max_per_parent: int | None = None
) -> list[tuple[NodePath, NodePath]]:
    """``(chosen, rejected)`` pairs of siblings: a positive (value >= ``threshold``) and a
    negative output of the same parent, never of two parents. Per parent, every positive is
    paired with every negative, the widest value gaps first, at most ``max_per_parent``.

    >>> sibling_pairs({(0, 0): 1.0, (0, 1): 0.0, (1, 0): 1.0, (2, 0): 0.0}, 0.5)
    [((0, 0), (0, 1))]
    """
    groups: dict[NodePath, list[NodePath]] = defaultdict(list)
    for path in values:
        groups[path[:-1]].append(path)
    pairs: list[tuple[NodePath, NodePath]] = []
    for parent in sorted(groups):
        siblings = sorted(groups[parent])
        positives = [p for p in siblings if values[p] >= threshold]
        negatives = [p for p in siblings if values[p] < threshold]
        combos = sorted(
            ((c, r) for c in positives for r in negatives),
            key=lambda pair: (values[pair[1]] - values[pair[0]], pair),
        )
        pairs.extend(combos if max_per_parent is None else combos[:max_per_parent])
    return pairs


@dataclass(frozen=True, slots=True)
class MALTNode:
    """One sampled output (a branch of the tree).

    Attributes:
        role: ``generator``, ``verifier`` or ``refiner``.
        path: Its place: ``(g,)``, ``(g, v)`` or ``(g, v, r)``.
        observation: What the role saw (the env's observation, the policy's prompt).
        text: What it wrote (``""`` when its generation failed).
        value: A refiner's reward, or the mean reward of the final answers below it.
        label: ``value >= threshold``: a positive branch.
        evaluation: The leaf's judgement, or the subtree's mean (``source="subtree"``).
        valid: Whether the env accepted the text (``info["invalid_action"]`` was false).
        answer_correct: A generator's or refiner's own answer was right; for a verifier, the
            label.
        generation: The token-faithful record of an LLM policy's generation, when it has one.
        error: Why the generation failed, when it did.
    """

    role: str
    path: NodePath
    observation: str
    text: str
    value: float
    label: bool
    evaluation: AnswerEvaluation
    valid: bool
    answer_correct: bool
    generation: Generation | None = None
    error: str | None = None

    @property
    def node_id(self) -> str:
        """``g.v.r`` (dot-separated branch indices)."""
        return ".".join(str(i) for i in self.path)


@dataclass(frozen=True, slots=True)
class MALTTree:
    """Every branch of one problem's tree, in breadth-first order.

    Attributes:
        seed: The env's reset seed of the problem.
        difficulty: Its difficulty.
        question: The problem statement.
        ground_truth: The reference answer.
        nodes: The branches: ``n`` generator, ``n^2`` verifier, ``n^3`` refiner outputs.
        system_prompts: Each role's instructions (``info["system_prompt"]``).
    """

    seed: int
    difficulty: int
    question: str
    ground_truth: str
    nodes: tuple[MALTNode, ...]
    system_prompts: Mapping[str, str] = field(default_factory=dict)

    def role_nodes(self, role: str) -> list[MALTNode]:
        """The branches of ``role``."""
        return [n for n in self.nodes if n.role == role]

    def node(self, path: NodePath) -> MALTNode:
        """The branch at ``path``."""
        for n in self.nodes:
            if n.path == path:
                return n
        raise KeyError(path)


@dataclass(frozen=True)
class GenerationStats:
    """What generating cost: per role, generations, completion tokens and seconds; the
    evaluator's seconds and tokens; the wall time."""

    generations: Mapping[str, int]
    completion_tokens: Mapping[str, int]
    generation_seconds: float
    evaluation_seconds: float
    evaluator_tokens: int
    wall_seconds: float


@dataclass(frozen=True)
class MALTData:
    """The generated trees, their per-role training data and what they cost.

    Attributes:
        trees: One per problem.
        threshold: A branch is positive when its value reaches it.
        branching_factor: ``n``.
        env_id: The env the trees were grown in.
        reward: ``checker`` or ``llm_evaluator``.
        models: The model (or policy) of each role, for the files' metadata.
        stats: Time and tokens.
        max_pairs_per_parent: Cap of DPO pairs per parent (``None``: every combination).
        evaluator: The LLM evaluator's backend, when one scored the final answers.
    """

    trees: tuple[MALTTree, ...]
    threshold: float
    branching_factor: int
    env_id: str
    reward: Literal["checker", "llm_evaluator"]
    models: Mapping[str, str]
    stats: GenerationStats
    max_pairs_per_parent: int | None = None
    evaluator: str | None = None

    def branches(self, role: str) -> list[tuple[MALTTree, MALTNode]]:
        """Every branch of ``role``, with its tree, in tree then path order."""
        _check_role(role)
        return [(t, n) for t in self.trees for n in t.role_nodes(role)]

    def trajectories(self, role: str) -> list[Trajectory]:
        """Every branch of ``role`` as a one-step trajectory: the prompt is what the role saw,
        the action what it wrote, the reward its value; ``success`` marks positive branches
        (so :class:`~llm_trainer.algorithms.sft.SFTTrainer` trains on exactly the SFT set)."""
        out = []
        for tree, node in self.branches(role):
            g = node.generation
            metrics = {
                "format_ok": node.valid,
                "tool_correct": True,  # no tool is offered or required
                "exec_ok": True,
                "answer_correct": node.answer_correct,
                "success": node.label,
            }
            step = Step(
                action=node.text,
                observation="",
                role="user",
                reward=node.value,
                terminated=True,
                truncated=False,
                metrics=metrics,
                prompt_token_ids=g.prompt_token_ids if g is not None else (),
                completion_token_ids=g.token_ids if g is not None else (),
                logprobs=g.logprobs if g is not None and g.token_ids else (),
            )
            out.append(
                Trajectory(
                    env_id=self.env_id,
                    seed=tree.seed,
                    difficulty=tree.difficulty,
                    system_prompt=tree.system_prompts.get(role, ""),
                    tools=(),
                    prompt=node.observation,
                    steps=(step,),
                    source=f"policy:malt-{role}",
                    error=node.error,
                )
            )
        return out

    def sft(self, role: str) -> list[Trajectory]:
        """The SFT set of ``role``: its positive branches."""
        return [t for t in self.trajectories(role) if t.success]

    def pair_paths(self, role: str) -> list[tuple[MALTTree, NodePath, NodePath]]:
        """``(tree, chosen, rejected)`` for every DPO pair of ``role``."""
        _check_role(role)
        depth = ROLES.index(role) + 1
        out = []
        for tree in self.trees:
            values = {n.path: n.value for n in tree.nodes if len(n.path) == depth}
            for chosen, rejected in sibling_pairs(
                values, self.threshold, max_per_parent=self.max_pairs_per_parent
            ):
                out.append((tree, chosen, rejected))
        return out

    def dpo(self, role: str, *, system_prompt: str | None = None) -> list[PreferencePair]:
        """The DPO pairs of ``role`` (siblings of one parent), in the format
        :class:`~llm_trainer.algorithms.dpo.DPOTrainer` trains on; ``system_prompt`` replaces
        the role's instructions (``None`` keeps them)."""
        pairs = []
        for tree, chosen, rejected in self.pair_paths(role):
            a, b = tree.node(chosen), tree.node(rejected)
            system = tree.system_prompts.get(role, "") if system_prompt is None else system_prompt
            prompt = (
                {"role": "system", "content": system},
                {"role": "user", "content": a.observation},
            )
            pairs.append(PreferencePair(prompt, a.text, b.text, (), tree.seed))
        return pairs

    def role_summary(self, role: str) -> dict[str, Any]:
        """Branches, positives, parents, parents with both signs, pairs and the pair yield
        (the share of parents whose children give at least one pair) of ``role``."""
        nodes = self.branches(role)
        signs: dict[tuple[int, NodePath], set[bool]] = defaultdict(set)
        for i, tree in enumerate(self.trees):
            for node in tree.role_nodes(role):
                signs[(i, node.path[:-1])].add(node.label)
        parents = len(signs)
        both = sum(len(s) == 2 for s in signs.values())
        pairs = len(self.pair_paths(role))
        return {
            "examples": len(nodes),
            "positives": sum(n.label for _, n in nodes),
            "parents": parents,
            "parents_with_both_signs": both,
            "pairs": pairs,
            "pair_yield": both / parents if parents else 0.0,
            "pairs_per_parent": pairs / parents if parents else 0.0,
        }

    def summary(self) -> dict[str, Any]:
        """Headline numbers: throughput (questions/min over the wall time, tokens/s over the
        policies' generation time), mean final reward, evaluator fallbacks, and per role
        :meth:`role_summary`."""
        s = self.stats
        questions = len(self.trees)
        tokens = sum(s.completion_tokens.values())
        leaves = [n for t in self.trees for n in t.role_nodes("refiner")]
        return {
            "questions": questions,
            "branching_factor": self.branching_factor,
            "generations": sum(s.generations.values()),
            "generations_per_question": sum(s.generations.values()) / max(1, questions),
            "leaves": len(leaves),
            "mean_leaf_reward": sum(n.value for n in leaves) / max(1, len(leaves)),
            "reward": self.reward,
            "evaluator_fallbacks": sum(_checker_instead(n.evaluation) for n in leaves),
            "completion_tokens": tokens,
            "tokens_per_second": round(tokens / s.generation_seconds, 1)
            if s.generation_seconds > 0
            else 0.0,
            "questions_per_minute": round(60 * questions / s.wall_seconds, 2)
            if s.wall_seconds > 0
            else 0.0,
            "generation_seconds": round(s.generation_seconds, 3),
            "evaluation_seconds": round(s.evaluation_seconds, 3),
            "wall_seconds": round(s.wall_seconds, 3),
            "roles": {role: self.role_summary(role) for role in ROLES},
        }

    def examples(self, role: str) -> list[dict[str, Any]]:
        """The seed's examples of ``role`` (``question``, ``solution``, ``score``,
        ``evaluation``), with the branch's ``id`` (``seed/g.v.r``), ``parent_id``,
        ``prompt`` (what the role saw), ``label`` and ``ground_truth``."""
        out = []
        for tree, node in self.branches(role):
            parent = ".".join(str(i) for i in node.path[:-1])
            out.append(
                {
                    "question": tree.question,
                    "solution": node.text,
                    "score": node.value,
                    "evaluation": node.evaluation.to_dict(),
                    "id": f"{tree.seed}/{node.node_id}",
                    "parent_id": f"{tree.seed}/{parent}" if parent else f"{tree.seed}",
                    "role": role,
                    "prompt": node.observation,
                    "label": node.label,
                    "ground_truth": tree.ground_truth,
                }
            )
        return out

    def document(self, role: str, *, timestamp: str | None = None) -> dict[str, Any]:
        """The seed's file for ``role``: ``metadata`` (``timestamp``, ``model``,
        ``total_examples``, and how the data was made) and ``examples``."""
        examples = self.examples(role)
        return {
            "metadata": {
                "timestamp": timestamp or dt.datetime.now().isoformat(timespec="seconds"),
                "model": self.models.get(role, ""),
                "total_examples": len(examples),
                "role": role,
                "env_id": self.env_id,
                "questions": len(self.trees),
                "branching_factor": self.branching_factor,
                "threshold": self.threshold,
                "reward": self.reward,
                "evaluator": self.evaluator,
            },
            "examples": examples,
        }

    def write(self, directory: str | Path, *, timestamp: str | None = None) -> dict[str, Path]:
        """Write ``<role>_training.json`` (the seed's three files) and
        ``<role>_dpo_pairs.jsonl`` (TRL's conversational preference rows) into
        ``directory``; returns the paths by name (``generator_training``...)."""
        directory = Path(directory)
        stamp = timestamp or dt.datetime.now().isoformat(timespec="seconds")
        paths: dict[str, Path] = {}
        for role in ROLES:
            document = self.document(role, timestamp=stamp)
            text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
            paths[f"{role}_training"] = atomic_write(
                directory / f"{role}_training.json", text.encode()
            )
            rows = "".join(
                json.dumps(row, ensure_ascii=False) + "\n" for row in dpo_rows(self.dpo(role))
            )
            paths[f"{role}_dpo_pairs"] = atomic_write(
                directory / f"{role}_dpo_pairs.jsonl", rows.encode()
            )
        return paths


def check_training_file(document: Any) -> None:
    """Raise ``ValueError`` unless ``document`` has the seed's shape: ``metadata`` with
    ``timestamp`` (str), ``model`` (str) and ``total_examples`` (the number of examples), and
    ``examples``, each with ``question`` and ``solution`` (str), ``score`` (a number in
    [0, 1]) and ``evaluation`` (``correctness_score`` and ``reasoning_score`` in [0, 1],
    ``explanation`` and ``key_matches`` lists of str).

    >>> check_training_file({"metadata": {"timestamp": "t", "model": "m",
    ...                      "total_examples": 0}, "examples": []})
    """

    def fail(message: str) -> NoReturn:
        raise ValueError(f"not a MALT training file: {message}")

    def unit(value: Any) -> bool:
        return (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and 0 <= value <= 1
        )

    if not isinstance(document, Mapping):
        fail("the document is not an object")
    metadata, examples = document.get("metadata"), document.get("examples")
    if not isinstance(metadata, Mapping) or not isinstance(examples, list):
        fail("it needs a 'metadata' object and an 'examples' list")
    for key in ("timestamp", "model"):
        if not isinstance(metadata.get(key), str):
            fail(f"metadata.{key} must be a str")
    if metadata.get("total_examples") != len(examples):
        fail(f"metadata.total_examples is not the number of examples ({len(examples)})")
    for i, example in enumerate(examples):
        if not isinstance(example, Mapping):
            fail(f"examples[{i}] is not an object")
        for key in ("question", "solution"):
            if not isinstance(example.get(key), str):
                fail(f"examples[{i}].{key} must be a str")
        if not unit(example.get("score")):
            fail(f"examples[{i}].score must be a number in [0, 1]")
        evaluation = example.get("evaluation")
        if not isinstance(evaluation, Mapping):
            fail(f"examples[{i}].evaluation must be an object")
        for key in _SCORE_KEYS:
            if not unit(evaluation.get(key)):
                fail(f"examples[{i}].evaluation.{key} must be a number in [0, 1]")
        for key in _LIST_KEYS:
            value = evaluation.get(key)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                fail(f"examples[{i}].evaluation.{key} must be a list of str")


def _checker_instead(evaluation: AnswerEvaluation) -> bool:
    """Whether the LLM evaluator's reply was unreadable and the checker scored instead."""
    return evaluation.explanation[:1] == (_CHECKER_INSTEAD,)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {list(ROLES)}, got {role!r}{suggest(role, ROLES)}")


# -- generation ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Branch:
    """A branch being grown: its text, the env snapshot after it, and what the env said."""

    tree: int
    path: NodePath
    observation: str
    text: str
    state: MALTEpisode
    info: Mapping[str, Any]
    generation: Generation | None
    error: str | None


class TrainingDataGenerator:
    """Grow MALT search trees on ``LLMTrainer/MALT-v0`` and turn them into per-role data
    (the seed's class; see the module docstring).

    Args:
        model: The policy of every role, or a mapping from each role to its own. A policy is
            any :class:`~llm_trainer.agents.policy.Policy` (used as it is, with its own
            sampling), a backend spec (``transformers:DIR``, ``vllm:DIR``,
            ``openai:URL#MODEL``) or a ``(model, tokenizer)`` pair; the last two become
            :class:`~llm_trainer.agents.llm_agent.LLMAgent`\\ s sampling at ``temperature``.
        temperature: Sampling temperature of the agents built here (0.3, the seed's).
        branching_factor: ``n``: samples per role per parent (3, the paper's).
        use_llm_eval: Score final answers with ``evaluator`` rather than the env's checker.
        evaluator: An :class:`LLMEvaluator` or a backend spec for one; by default, with
            ``use_llm_eval``, the shared model's backend.
        threshold: A branch is positive when its value reaches it.
        max_new_tokens: Generation budget of each output (agents built here).
        env_id: The MALT env (``LLMTrainer/MALT-v0``).
        env_kwargs: Its arguments (``family``, ``difficulty``...).
        batch_questions: Problems grown together: each tree level of this many problems is
            one ``act_batch`` call.
        max_pairs_per_parent: Cap of DPO pairs per parent (``None``: all).
        seed: Seeds sampling (the same seed gives the same data).
        progress: Show a progress bar on stderr (when it is a terminal).
        log: Where progress lines go (none by default).

    Each ``act_batch`` call passes, per row, the env's ``info`` for the role plus ``slot``
    (the row) and ``malt_path`` (the branch being sampled).
    """

    def __init__(
        self,
        model: PolicyLike | Mapping[str, PolicyLike],
        *,
        temperature: float = 0.3,
        branching_factor: int = 3,
        use_llm_eval: bool = False,
        evaluator: LLMEvaluator | str | None = None,
        threshold: float = 0.5,
        max_new_tokens: int = 128,
        env_id: str = MALT_ENV_ID,
        env_kwargs: Mapping[str, Any] | None = None,
        batch_questions: int = 8,
        max_pairs_per_parent: int | None = None,
        seed: int = 0,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        import llm_trainer
        from llm_trainer.envs.multiagent.malt import MALTEnv

        for name, value, low in (
            ("branching_factor", branching_factor, 1),
            ("batch_questions", batch_questions, 1),
            ("max_new_tokens", max_new_tokens, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"TrainingDataGenerator: {name} must be an int >= {low}")
        if not 0 < threshold <= 1:
            raise ConfigError(
                f"TrainingDataGenerator: threshold must be in (0, 1], got {threshold}"
            )
        self.temperature, self.max_new_tokens, self.seed = temperature, max_new_tokens, seed
        self.branching_factor = branching_factor
        self.threshold = threshold
        self.batch_questions = batch_questions
        self.max_pairs_per_parent = max_pairs_per_parent
        self.progress, self.log = progress, log or (lambda message: None)
        self.env_id = env_id
        env = llm_trainer.make_multiagent(env_id, **dict(env_kwargs or {}))
        if not isinstance(env.unwrapped, MALTEnv):
            raise ConfigError(f"{env_id} is not a MALT env (MALTEnv), but {type(env).__name__}")
        self.env: MALTEnv = env.unwrapped
        roles = _per_role(model)
        built: dict[int, tuple[Policy, str]] = {}  # one policy per distinct object given
        self.policies: dict[str, Policy] = {}
        self.models: dict[str, str] = {}
        for role in ROLES:
            given = roles[role]
            if id(given) not in built:
                built[id(given)] = self._policy(given)
            self.policies[role], self.models[role] = built[id(given)]
        self.use_llm_eval = use_llm_eval
        self.evaluator: LLMEvaluator | None = None
        if use_llm_eval:
            self.evaluator = self._evaluator(evaluator, roles)

    # -- building ------------------------------------------------------------------------------

    def _policy(self, given: PolicyLike) -> tuple[Policy, str]:
        from llm_trainer.agents.policy import Policy

        if isinstance(given, Policy):
            backend = getattr(given, "backend", None)
            return given, str(getattr(backend, "spec", type(given).__name__))
        from llm_trainer.agents.backends.base import SamplingConfig
        from llm_trainer.agents.llm_agent import LLMAgent, LLMAgentConfig, shared_backend

        sampling = SamplingConfig(
            temperature=self.temperature, max_new_tokens=self.max_new_tokens, seed=self.seed
        )
        if isinstance(given, str):
            config = LLMAgentConfig(backend=given, sampling=sampling)
            return LLMAgent(config, backend=shared_backend(given)), given
        if isinstance(given, tuple) and len(given) == 2:
            from llm_trainer.algorithms.evaluation import model_agent

            model, tokenizer = given
            name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
            agent = model_agent(
                model,
                tokenizer,
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                seed=self.seed,
            )
            return agent, name or "in-memory model"
        raise ConfigError(
            "TrainingDataGenerator: a role's model must be a Policy, a backend spec or a "
            f"(model, tokenizer) pair, got {type(given).__name__}"
        )

    def _evaluator(
        self, evaluator: LLMEvaluator | str | None, roles: Mapping[str, PolicyLike]
    ) -> LLMEvaluator:
        if isinstance(evaluator, LLMEvaluator):
            return evaluator
        if isinstance(evaluator, str):
            return LLMEvaluator(evaluator, seed=self.seed)
        shared = {id(v) for v in roles.values()}
        backend = getattr(self.policies["generator"], "backend", None)
        if len(shared) == 1 and backend is not None:
            return LLMEvaluator(backend, seed=self.seed)
        raise ConfigError(
            "use_llm_eval needs an evaluator: an LLMEvaluator or a backend spec (the default, "
            "the shared model, exists only when one LLM plays every role)"
        )

    # -- generating ----------------------------------------------------------------------------

    def generate(self, seeds: Iterable[int]) -> MALTData:
        """Grow one tree per reset seed of the env (one problem each)."""
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        seeds = list(seeds)
        start = time.perf_counter()
        counts = {"generations": dict.fromkeys(ROLES, 0), "tokens": dict.fromkeys(ROLES, 0)}
        timing = {"generation": 0.0, "evaluation": 0.0}
        evaluator_tokens_before = self.evaluator.completion_tokens if self.evaluator else 0
        trees: list[MALTTree] = []
        bar = tqdm(
            total=len(seeds),
            desc="MALT trees",
            unit="question",
            file=sys.stderr,
            disable=not (self.progress and sys.stderr.isatty()),
        )
        try:
            for first in range(0, len(seeds), self.batch_questions):
                chunk = seeds[first : first + self.batch_questions]
                trees += self._grow(chunk, counts, timing)
                bar.update(len(chunk))
                self.log(
                    f"MALT: {len(trees)}/{len(seeds)} problems, "
                    f"{sum(counts['tokens'].values())} tokens, "
                    f"{time.perf_counter() - start:.0f} s"
                )
        finally:
            bar.close()
        stats = GenerationStats(
            generations=counts["generations"],
            completion_tokens=counts["tokens"],
            generation_seconds=timing["generation"],
            evaluation_seconds=timing["evaluation"],
            evaluator_tokens=(self.evaluator.completion_tokens - evaluator_tokens_before)
            if self.evaluator
            else 0,
            wall_seconds=time.perf_counter() - start,
        )
        return MALTData(
            trees=tuple(trees),
            threshold=self.threshold,
            branching_factor=self.branching_factor,
            env_id=self.env_id,
            reward="llm_evaluator" if self.evaluator is not None else "checker",
            models=dict(self.models),
            stats=stats,
            max_pairs_per_parent=self.max_pairs_per_parent,
            evaluator=self.evaluator.name if self.evaluator is not None else None,
        )

    def generate_trajectories(self, seed: int) -> MALTTree:
        """The tree of one problem (the seed's method name)."""
        return self.generate([seed]).trees[0]

    def generate_and_evaluate(
        self, seeds: Iterable[int], output_dir: str | Path
    ) -> tuple[MALTData, dict[str, Path]]:
        """Grow the trees and write the files into ``output_dir`` (the seed's method name)."""
        data = self.generate(seeds)
        return data, data.write(output_dir)

    def _grow(
        self,
        seeds: Sequence[int],
        counts: dict[str, dict[str, int]],
        timing: dict[str, float],
    ) -> list[MALTTree]:
        """The trees of ``seeds``, one batched generation per level."""
        env, n = self.env, self.branching_factor
        roots, prompts = [], {}
        for seed in seeds:
            env.reset(seed=seed)
            roots.append(env.get_state())
        for role in ROLES:
            prompts[role] = str(env.infos[role]["system_prompt"])
        frontier: list[tuple[int, NodePath, MALTEpisode]] = [
            (i, (), state) for i, state in enumerate(roots)
        ]
        grown: dict[str, list[_Branch]] = {}
        for role in ROLES:
            rows = [(i, (*path, k), state) for i, path, state in frontier for k in range(n)]
            observations, infos = [], []
            for slot, (_, path, state) in enumerate(rows):
                env.set_state(state)
                observations.append(str(env.observe(role)))
                infos.append({**env.infos[role], "slot": slot, "malt_path": path})
            started = time.perf_counter()
            actions, generations, errors, tokens = self._act(role, observations, infos, seeds[0])
            timing["generation"] += time.perf_counter() - started
            counts["generations"][role] += len(rows)
            counts["tokens"][role] += tokens
            branches = []
            for slot, (i, path, state) in enumerate(rows):
                env.set_state(state)
                env.step(actions[slot])
                branches.append(
                    _Branch(
                        i,
                        path,
                        observations[slot],
                        actions[slot],
                        env.get_state(),
                        dict(env.infos[role]),
                        generations[slot],
                        errors[slot],
                    )
                )
            grown[role] = branches
            frontier = [(b.tree, b.path, b.state) for b in branches]
        started = time.perf_counter()
        leaf_evaluations = self._evaluate_leaves(grown["refiner"], roots)
        timing["evaluation"] += time.perf_counter() - started
        return [
            self._assemble(i, seed, roots[i], prompts, grown, leaf_evaluations)
            for i, seed in enumerate(seeds)
        ]

    def _act(
        self, role: str, observations: list[str], infos: list[dict[str, Any]], first_seed: int
    ) -> tuple[list[str], list[Generation | None], list[str | None], int]:
        """One batched call of ``role``'s policy: actions (``""`` for a failed slot), their
        generations, failures, and completion tokens."""
        policy = self.policies[role]
        policy.reset(seed=derive_seed(self.seed, "malt", first_seed, role))
        errors: list[str | None] = [None] * len(observations)
        try:
            actions = list(policy.act_batch(observations, infos))
        except BatchActError as exc:  # the siblings' actions survive a failed slot
            actions = [a if a is not None else "" for a in exc.actions]
            errors = [
                str(exc.errors.get(slot, exc)) if a is None else None
                for slot, a in enumerate(exc.actions)
            ]
        if len(actions) != len(observations):
            raise BackendError(
                f"the {role}'s policy returned {len(actions)} actions for {len(observations)} "
                "observations"
            )
        last = getattr(policy, "last_generation", None)
        generations = [
            last(slot) if callable(last) and errors[slot] is None else None
            for slot in range(len(observations))
        ]
        usage = getattr(policy, "last_usage", None)
        tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        return actions, generations, errors, tokens

    def _evaluate_leaves(
        self, leaves: list[_Branch], roots: list[MALTEpisode]
    ) -> list[AnswerEvaluation]:
        """Each final answer's judgement: the checker's, or the LLM evaluator's (the
        checker's where the evaluator's reply is unreadable)."""
        checked = [_checker_evaluation(leaf.info) for leaf in leaves]
        if self.evaluator is None:
            return checked
        judged = self.evaluator.evaluate_batch(
            [
                (roots[leaf.tree].task.statement, roots[leaf.tree].task.answer, leaf.text)
                for leaf in leaves
            ]
        )
        out = []
        for by_llm, by_checker in zip(judged, checked, strict=True):
            if by_llm.parsed:
                out.append(by_llm)
            else:
                reasons = (_CHECKER_INSTEAD, *by_llm.explanation, *by_checker.explanation)
                out.append(replace(by_checker, explanation=reasons))
        return out

    def _assemble(
        self,
        index: int,
        seed: int,
        root: MALTEpisode,
        prompts: Mapping[str, str],
        grown: Mapping[str, list[_Branch]],
        leaf_evaluations: list[AnswerEvaluation],
    ) -> MALTTree:
        """The frozen tree of problem ``index``: values, labels and evaluations."""
        leaves = {
            b.path: e
            for b, e in zip(grown["refiner"], leaf_evaluations, strict=True)
            if b.tree == index
        }
        values = node_values({p: e.correctness_score for p, e in leaves.items()})
        nodes = []
        for role in ROLES:
            for b in grown[role]:
                if b.tree != index:
                    continue
                value = values[b.path]
                label = value >= self.threshold
                if role == "refiner":
                    evaluation = leaves[b.path]
                    correct = bool(b.info.get("refiner_correct", False))
                else:
                    below = [e for p, e in leaves.items() if p[: len(b.path)] == b.path]
                    evaluation = _subtree_evaluation(role, value, below, self.threshold, b.info)
                    correct = (
                        bool(b.info.get("generator_correct")) if role == "generator" else label
                    )
                nodes.append(
                    MALTNode(
                        role=role,
                        path=b.path,
                        observation=b.observation,
                        text=b.text,
                        value=value,
                        label=label,
                        evaluation=evaluation,
                        valid=not b.info.get("invalid_action", False),
                        answer_correct=correct,
                        generation=b.generation,
                        error=b.error,
                    )
                )
        task = root.task
        return MALTTree(seed, root.difficulty, task.statement, task.answer, tuple(nodes), prompts)


def _per_role(model: PolicyLike | Mapping[str, PolicyLike]) -> dict[str, PolicyLike]:
    if isinstance(model, Mapping):
        unknown = sorted(set(model) - set(ROLES))
        missing = [r for r in ROLES if r not in model]
        if unknown or missing:
            raise ConfigError(
                f"TrainingDataGenerator: per-role models need exactly the roles {list(ROLES)}; "
                f"unknown {unknown}, missing {missing}"
            )
        return {role: model[role] for role in ROLES}
    return dict.fromkeys(ROLES, model)


def _checker_evaluation(info: Mapping[str, Any]) -> AnswerEvaluation:
    """The env checker's judgement of a final answer (it sees the answer only)."""
    score = float(info.get("refiner_score", 0.0))
    reasons = [f"env checker: score {score:g}"]
    if info.get("invalid_action"):
        reasons.append(f"invalid final answer: {info.get('invalid_reason')}")
    reasons += [str(f) for f in info.get("failures", ())]
    criteria = info.get("criteria", {})
    matches = tuple(name for name, value in criteria.items() if value >= 1.0)
    return AnswerEvaluation(score, score, tuple(reasons), matches, "checker")


def _subtree_evaluation(
    role: str,
    value: float,
    below: Sequence[AnswerEvaluation],
    threshold: float,
    info: Mapping[str, Any],
) -> AnswerEvaluation:
    """An inner branch's evaluation: the mean of the final answers below it."""
    k = max(1, len(below))
    good = sum(e.correctness_score >= threshold for e in below)
    reasons = [
        f"value {value:.3f}: mean reward of the {len(below)} final answers below this {role} "
        f"output ({good} reach {threshold:g})"
    ]
    if role == "generator":
        own = "right" if info.get("generator_correct") else "not right (or missing)"
        reasons.append(f"its own answer is {own}")
    matches = tuple(dict.fromkeys(m for e in below for m in e.key_matches))
    return AnswerEvaluation(
        sum(e.correctness_score for e in below) / k,
        sum(e.reasoning_score for e in below) / k,
        tuple(reasons),
        matches,
        "subtree",
    )


# -- the algorithm -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MALTSettings:
    """MALT data generation (``algorithm: malt``): search trees on ``LLMTrainer/MALT-v0``
    with the run's model in every role, value iteration, per-role SFT sets and DPO pairs."""

    questions: PositiveInt = 32
    """Problems (trees); their reset seeds are ``first_seed ..``."""
    first_seed: NonNegativeInt = 0
    """The first problem's reset seed."""
    family: str = "reasoning"
    """MALT-v0's problem family (``reasoning``, ``knapsack``, ``tsp``, ``constrained_writing``,
    ``multistep``)."""
    difficulty: Annotated[int, Range(ge=1, le=3)] = 1
    """MALT-v0's difficulty."""
    branching_factor: Annotated[int, Range(ge=1, le=8)] = 3
    """``n``: samples per role per parent (``n + n^2 + n^3`` generations per problem)."""
    temperature: Annotated[float, Range(ge=0)] = 0.3
    """Sampling temperature of the three roles."""
    max_new_tokens: PositiveInt = 128
    """Generation budget of each output."""
    threshold: Annotated[float, Range(gt=0, le=1)] = 0.5
    """A branch is positive when its value reaches it."""
    max_pairs_per_parent: PositiveInt | None = None
    """Cap of DPO pairs per parent (``None``: every positive-negative combination)."""
    batch_questions: PositiveInt = 8
    """Problems grown together (one batched generation per tree level)."""
    use_llm_eval: bool = False
    """Score final answers with an LLM evaluator instead of the env's checker."""
    evaluator: str | None = None
    """The evaluator's backend spec (``transformers:DIR``, ``vllm:DIR``,
    ``openai:URL#MODEL``); ``None``: the run's model."""
    evaluator_prompt: str | None = None
    """The evaluator's instructions, with ``{question}``, ``{ground_truth}`` and
    ``{answer}``; ``None``: the default."""
    evaluator_max_new_tokens: PositiveInt = 128
    """The evaluator's reply budget."""
    role_models: Mapping[str, str] = field(default_factory=dict)
    """A backend spec per role that should not be the run's model (e.g.
    ``{refiner: "vllm:runs/x/refiner"}``)."""
    sft_steps: NonNegativeInt = 0
    """Then fine-tune each role from the run's model on that role's SFT set for this many
    steps (``train`` section otherwise); 0: no SFT. With SFT or DPO steps the trained team is
    saved as ``team/`` (an agent for ``llm-trainer bench``)."""
    dpo_steps: NonNegativeInt = 0
    """Then (after its SFT) DPO each role on its sibling pairs for this many steps; 0: none."""
    dpo_beta: Annotated[float, Range(gt=0)] = 0.1
    """DPO's KL strength for the roles."""
    adapters: bool = False
    """Train one LoRA adapter per role on the shared, frozen model (``train.lora``'s rank,
    alpha and target modules) instead of a full copy per role."""
    votes: Annotated[int, Range(ge=1, le=9)] = 1
    """Chains the saved team samples per answer, with a majority vote over the refiners'
    answers (the paper's majority@3: 3); 1: one greedy chain."""
    vote_temperature: Annotated[float, Range(gt=0)] = 0.7
    """Sampling temperature of the saved team's roles when ``votes > 1``."""

    def __post_init__(self) -> None:
        check_ranges(self, "malt")
        from llm_trainer.agents.backends import parse_backend_spec
        from llm_trainer.envs.multiagent.malt import MALT_FAMILIES

        if self.family not in MALT_FAMILIES:
            raise ConfigError(
                f"malt.family: unknown family {self.family!r}"
                f"{suggest(self.family, MALT_FAMILIES)}; known: {', '.join(MALT_FAMILIES)}"
            )
        for role, spec in self.role_models.items():
            if role not in ROLES:
                raise ConfigError(
                    f"malt.role_models: unknown role {role!r}{suggest(str(role), ROLES)}; "
                    f"roles: {', '.join(ROLES)}"
                )
            try:
                parse_backend_spec(spec)
            except ConfigError as exc:
                raise ConfigError(f"malt.role_models.{role}: {exc}") from None
        if self.evaluator is not None:
            try:
                parse_backend_spec(self.evaluator)
            except ConfigError as exc:
                raise ConfigError(f"malt.evaluator: {exc}") from None
        if self.evaluator_prompt is not None and "{answer}" not in self.evaluator_prompt:
            raise ConfigError("malt.evaluator_prompt: it must hold {answer} (and should hold "
                              "{question} and {ground_truth})")  # fmt: skip


class MALTAlgorithm(Algorithm):
    """MALT data generation: generator -> verifier -> refiner search trees, value iteration,
    per-role SFT sets and sibling DPO pairs, in the seed's three JSON files and the store.

    The run's model plays every role (``malt.role_models`` replaces it per role). Writes
    ``generator_training.json``, ``verifier_training.json``, ``refiner_training.json`` and
    ``<role>_dpo_pairs.jsonl`` into the run directory and stores each role's branches as the
    dataset ``<name>-malt-<role>`` (one-step trajectories; ``success`` marks the SFT set).
    """

    name = "malt"
    config_class = MALTSettings
    produces_policy = False

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        from llm_trainer.core.store import Provenance

        s: MALTSettings = self.config
        model, tokenizer = context.load_model()
        shared = context.agent(
            model, tokenizer, temperature=s.temperature, max_new_tokens=s.max_new_tokens
        )
        policies = {role: s.role_models.get(role, shared) for role in ROLES}
        evaluator: LLMEvaluator | None = None
        if s.use_llm_eval:
            evaluator = LLMEvaluator(
                s.evaluator or shared.backend,
                prompt=s.evaluator_prompt or DEFAULT_EVALUATION_PROMPT,
                max_new_tokens=s.evaluator_max_new_tokens,
                seed=context.seed,
            )
        generator = TrainingDataGenerator(
            policies,
            temperature=s.temperature,
            branching_factor=s.branching_factor,
            use_llm_eval=s.use_llm_eval,
            evaluator=evaluator,
            threshold=s.threshold,
            max_new_tokens=s.max_new_tokens,
            env_kwargs={"family": s.family, "difficulty": s.difficulty},
            batch_questions=s.batch_questions,
            max_pairs_per_parent=s.max_pairs_per_parent,
            seed=context.seed,
            log=context.log,
        )
        n = s.branching_factor
        context.log(
            f"MALT: {s.questions} problems x {n + n**2 + n**3} generations (n = {n}), "
            f"leaves scored by {'the LLM evaluator' if s.use_llm_eval else 'the env checker'}"
        )
        data = generator.generate(range(s.first_seed, s.first_seed + s.questions))
        start = str(context.model_dir)  # the run's model (the tiny one is built there)
        data = replace(data, models={r: s.role_models.get(r, start) for r in ROLES})
        paths = data.write(context.run.path)
        versions = {}
        for role in ROLES:
            versions[role] = context.store_dataset(
                f"malt-{role}",
                data.trajectories(role),
                Provenance(
                    env_ids=(MALT_ENV_ID,),
                    seeds=(s.first_seed, s.first_seed + s.questions - 1),
                    agent=f"{data.models[role]}",
                    strategy="malt",
                    config=to_dict(s),
                ),
            )
        summary = data.summary()
        for role, numbers in summary["roles"].items():
            context.log(
                f"MALT {role}: {numbers['examples']} branches, {numbers['positives']} positive, "
                f"{numbers['pairs']} DPO pairs from {numbers['parents_with_both_signs']} of "
                f"{numbers['parents']} parents (pair yield {numbers['pair_yield']:.2f})"
            )
        context.log(
            f"MALT: {summary['questions_per_minute']} questions/min, "
            f"{summary['tokens_per_second']} tokens/s"
        )
        artifacts = {name: str(path) for name, path in paths.items()}
        if s.sft_steps or s.dpo_steps:
            artifacts.update(
                train_roles(
                    context,
                    model,
                    tokenizer,
                    data,
                    s.sft_steps,
                    dpo_steps=s.dpo_steps,
                    dpo_beta=s.dpo_beta,
                    adapters=s.adapters,
                    votes=s.votes,
                    vote_temperature=s.vote_temperature,
                    max_new_tokens=s.max_new_tokens,
                )
            )
        return AlgorithmResult(
            metrics={"malt": summary, "dataset_versions": versions}, artifacts=artifacts
        )


def train_roles(
    context: AlgorithmContext,
    model: Any,
    tokenizer: Any,
    data: MALTData,
    steps: int = 0,
    *,
    dpo_steps: int = 0,
    dpo_beta: float = 0.1,
    adapters: bool = False,
    votes: int = 1,
    vote_temperature: float = 0.7,
    max_new_tokens: int = 128,
) -> dict[str, str]:
    """Train each role from ``model`` and save the trained team.

    Per role: SFT on its positive branches for ``steps`` steps, then DPO on its sibling pairs
    for ``dpo_steps`` (the reference is the role's model after SFT), with the run's ``train``
    section otherwise; checkpoints and logs under ``roles/<role>/{sft,dpo}``. A role without
    positives (or pairs) skips that phase and says so. ``adapters``: one LoRA adapter per role
    (``train.lora``'s rank, alpha and target modules) on the shared, frozen ``model``, instead
    of a full copy per role.

    The team is saved as ``team/`` (:class:`~llm_trainer.agents.team.MALTTeam`: a saved agent
    that ``llm-trainer bench`` and the coordinator load), acting greedily, or with ``votes``
    chains sampled at ``vote_temperature`` and a majority vote. Returns ``team`` and, per role,
    ``<role>_model`` (its saved model, or its adapter).
    """
    from llm_trainer.agents.team import MALTTeam, write_adapter_team
    from llm_trainer.algorithms.dpo import DPOSettings, DPOTrainer
    from llm_trainer.algorithms.evaluation import model_agent
    from llm_trainer.algorithms.hf import apply_lora
    from llm_trainer.algorithms.sft import SFTTrainer
    from llm_trainer.core.rundir import RunDir

    train = replace(context.experiment.train, save_steps=0)
    lora = replace(train.lora, enabled=True) if adapters else train.lora
    # with adapters the role's model is wrapped once, here; the trainers must not wrap it again
    phase_train = replace(train, lora=replace(train.lora, enabled=False)) if adapters else train
    trained: dict[str, Any] = {}
    for role in ROLES:
        current = copy.deepcopy(model)
        if adapters:
            current = apply_lora(current, lora)
        positives, pairs = data.sft(role), data.dpo(role, system_prompt=context.system_prompt)
        root = context.run.path / "roles" / role
        if steps and positives:
            sft = SFTTrainer(
                current,
                tokenizer,
                replace(phase_train, max_steps=steps),
                RunDir(root / "sft"),
                seed=context.seed,
                system_prompt=context.system_prompt,
            )
            result = sft.train(positives)
            current = sft.model
            context.log(f"MALT {role}: SFT on {len(positives)} branches, {result.steps} steps")
        elif steps:
            context.log(f"MALT {role}: no positive branch, no SFT")
        if dpo_steps and pairs:
            dpo = DPOTrainer(
                current,
                tokenizer,
                replace(phase_train, max_steps=dpo_steps),
                DPOSettings(beta=dpo_beta),
                RunDir(root / "dpo"),
                seed=context.seed,
            )
            result = dpo.train(pairs)
            current = dpo.model
            context.log(f"MALT {role}: DPO on {len(pairs)} pairs, {result.steps} steps")
        elif dpo_steps:
            context.log(f"MALT {role}: no sibling pair, no DPO")
        trained[role] = current.eval()
    temperature = vote_temperature if votes > 1 else 0.0
    team_dir = context.run.path / "team"
    if adapters:
        write_adapter_team(
            team_dir,
            model,
            tokenizer,
            trained,
            agent={"sampling": {"temperature": temperature, "max_new_tokens": max_new_tokens}},
            votes=votes,
        )
        paths = {f"{role}_model": str(team_dir / "adapters" / role) for role in ROLES}
    else:
        agents = {
            role: model_agent(
                trained[role],
                tokenizer,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                seed=context.seed,
            )
            for role in ROLES
        }
        MALTTeam(agents, votes=votes).save(team_dir)
        paths = {f"{role}_model": str(team_dir / role / "model") for role in ROLES}
    context.log(f"MALT: the trained team is saved in {team_dir} (an agent for bench)")
    return {"team": str(team_dir), **paths}
