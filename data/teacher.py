"""Data strategy 2, teacher mode: Toolformer-style self-supervised tool-call insertion.

Toolformer (Schick et al., 2023, arXiv:2302.04761) turns plain text into tool-use data with the
model itself as the judge: sample candidate API calls at positions in the text, execute them,
and keep a call only if giving the model the call *and its result* makes the text that follows
easier to predict. With ``L(x)`` the model's loss on the continuation after the prefix ``x``:

* ``L_plus  = L(call -> result)``;
* ``L_minus = min(L(no call), L(call -> empty result))``;
* keep the call iff ``L_minus - L_plus >= threshold``.

Adapted to the chat format of our envs: the plain example is a question and its answer with no
tools ("What is 37 * 12?" -> "444"); a tool call is a turn of its own, so the insertion point is
the assistant turn before the answer, and the continuation is the answer text inside
``<answer>...</answer>``. Candidate calls are sampled from what the question mentions
(:func:`propose_calls`: arithmetic spans and numbers for the calculator, cities and dates for the
weather, proper names for search, plus a few distractors), executed with the real tools, scored
in batches without gradients, and the kept ones become trajectories replayed through the tool's
env (``source="teacher"``).

Losses come from any Hugging Face causal LM (:class:`CausalLMScorer`; the tiny default model of
:mod:`llm_trainer.agents.tinylm` included) or from any callable with the same signature, so the
filter itself (:func:`teacher_filter`) is testable without torch. torch and transformers are
imported only when a model is used; torch's global RNG is never touched (model loading runs
under ``torch.random.fork_rng``; scoring draws no randomness).
"""

from __future__ import annotations

import datetime as dt
import inspect
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import ToolCall, to_plain
from llm_trainer.core.trajectory import Trajectory
from llm_trainer.data.base import (
    TOOL_ENV_IDS,
    DataFormatError,
    EnvPool,
    Example,
    replay_task,
    single_call_task,
    solution_actions,
    tool_registry,
)
from llm_trainer.data.templates import TOOLS, TemplateConfig, ToolName, template_tasks
from llm_trainer.envs.tools import format_answer
from llm_trainer.envs.tools.search import corpus
from llm_trainer.envs.tools.weather import CITIES
from llm_trainer.envs.tooluse.base import AnswerKind, system_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SOURCE = "teacher"

#: ``(context, continuation)`` pairs -> mean negative log-likelihood of each continuation.
Scorer = Callable[[Sequence[tuple[str, str]]], list[float]]
#: Chat messages and tool specs -> ``(context, continuation)``; the last message is the answer.
Renderer = Callable[[Sequence[Mapping[str, str]], Sequence[Mapping[str, Any]]], tuple[str, str]]


@dataclass(frozen=True, slots=True)
class PlainExample:
    """A question and its answer, with no tool use: the raw material of teacher mode.

    Attributes:
        question: The question ("What is 37 * 12?").
        answer: Its correct answer ("444"); the continuation whose loss is measured.
        answer_kind: How the env compares answers (``"number"`` or ``"text"``).
        world_seed: Seed of the weather world the question is about (weather calls are executed
            in ``WeatherWorld(world_seed)``); also the kept trajectories' ``seed``.
    """

    question: str
    answer: str
    answer_kind: AnswerKind = "number"
    world_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("question", "answer"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise DataFormatError(f"PlainExample.{name} must be a non-empty string")
        if self.answer_kind not in get_args(AnswerKind):
            raise DataFormatError(
                f"PlainExample.answer_kind must be one of {list(get_args(AnswerKind))}, "
                f"got {self.answer_kind!r}"
            )
        try:
            format_answer(self.answer)
        except ValueError as exc:
            raise DataFormatError(f"PlainExample.answer: {exc}") from None


def plain_examples(
    tool: ToolName, n: int, seed: int, config: TemplateConfig | None = None
) -> list[PlainExample]:
    """Plain question/answer pairs made from the template strategy's canonical examples (the
    answers are right, and nothing says which tool to use)."""
    return [
        PlainExample(task.prompt, task.answer, task.answer_kind, task.world_seed)
        for task in template_tasks(tool, n, seed, config)
    ]


LossWithout = Literal["min", "no_call"]


@dataclass(frozen=True, slots=True)
class TeacherConfig:
    """Teacher mode's filter and its sampling."""

    threshold: float = 0.1
    """Keep a call iff ``L_minus - L_plus >= threshold`` (nats per answer token). ``inf`` keeps
    nothing, ``-inf`` every call that executed."""
    n_candidates: int = 4
    """Candidate calls sampled per question (fewer when the question offers fewer)."""
    seed: int = 0
    """Seed of candidate sampling."""
    tools: tuple[ToolName, ...] = TOOLS
    """Tools whose calls are proposed; the scoring prompt offers all of them."""
    loss_without: LossWithout = "min"
    """``"min"``: Toolformer's ``min(L(no call), L(call, empty result))``; ``"no_call"``:
    ``L(no call)`` only."""
    max_kept_per_question: int | None = 1
    """At most this many kept calls per question, the largest loss reductions first
    (``None``: all that pass)."""
    batch_size: int = 16
    """Sequences per forward pass."""
    max_length: int | None = None
    """Longest sequence in tokens (contexts are cut from the left); ``None``: the model's
    ``max_position_embeddings``."""
    device: str = "cpu"
    """Where a model loaded from a directory runs (a model object stays where it is)."""
    corpus_seed: int = 0
    """Seed of the search corpus."""

    def __post_init__(self) -> None:
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ConfigError(f"TeacherConfig.threshold must be a number, got {threshold!r}")
        if math.isnan(threshold):
            raise ConfigError(f"TeacherConfig.threshold must be a number, got {self.threshold!r}")
        for name in ("n_candidates", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"TeacherConfig.{name} must be an int >= 1, got {value!r}")
        for name, least in (("max_kept_per_question", 1), ("max_length", 2)):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(
                    f"TeacherConfig.{name} must be None or an int >= {least}, got {value!r}"
                )
        if not self.tools or any(t not in TOOLS for t in self.tools):
            raise ConfigError(
                f"TeacherConfig.tools must be a non-empty subset of {list(TOOLS)}, "
                f"got {self.tools!r}"
            )
        if self.loss_without not in get_args(LossWithout):
            raise ConfigError(
                f"TeacherConfig.loss_without must be one of {list(get_args(LossWithout))}, "
                f"got {self.loss_without!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"TeacherConfig.seed must be an int, got {self.seed!r}")


@dataclass(frozen=True, slots=True)
class CandidateScore:
    """One candidate call and what the filter measured.

    Losses are ``nan`` for a call that failed to execute (it is never scored nor kept).
    """

    question_index: int
    call: ToolCall
    result: str
    executed: bool
    loss_no_call: float
    loss_empty_result: float
    loss_with_result: float
    reduction: float
    kept: bool


@dataclass(frozen=True, slots=True)
class TeacherStats:
    """What the filter did, for logging (:meth:`as_dict` gives namespaced metric keys)."""

    questions: int
    candidates: int
    executed: int
    kept: int
    mean_reduction: float
    """Mean ``L_minus - L_plus`` over the executed candidates (``nan`` if none)."""
    mean_reduction_kept: float
    """The same over the kept ones (``nan`` if none)."""
    threshold: float
    kept_by_tool: Mapping[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        out = {
            "teacher/questions": float(self.questions),
            "teacher/candidates": float(self.candidates),
            "teacher/executed": float(self.executed),
            "teacher/kept": float(self.kept),
            "teacher/keep_rate": self.kept / self.executed if self.executed else 0.0,
            "teacher/mean_loss_reduction": self.mean_reduction,
            "teacher/mean_loss_reduction_kept": self.mean_reduction_kept,
            "teacher/threshold": self.threshold,
        }
        out.update({f"teacher/kept_{tool}": float(n) for tool, n in self.kept_by_tool.items()})
        return out


@dataclass(frozen=True, slots=True)
class TeacherResult:
    """The kept trajectories, their tasks, every scored candidate and the summary."""

    trajectories: tuple[Trajectory, ...]
    examples: tuple[Example, ...]
    candidates: tuple[CandidateScore, ...]
    stats: TeacherStats


# -- candidate calls -----------------------------------------------------------------------------

_ARITHMETIC = re.compile(r"[-(]*\d[\d.]*(?:\s*[-+*/%]\s*[(]*\d[\d.]*[)]*)+[)]*")
_NUMBER = re.compile(r"(?<![\w.-])\d+(?:\.\d+)?(?![\w-])")
_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_PROPER = re.compile(r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*")
_SENTENCE_WORDS = frozenset(
    (
        "What", "Which", "Who", "Whom", "Where", "When", "How", "In", "Is", "Will", "Should", "Do",
        "Does", "Name", "Tell", "Give", "Let", "Look", "Check", "Find", "Search", "Identify",
        "Describe", "About", "Roughly", "Quick", "Question", "Hey", "Hi", "Here", "Please", "Can",
        "The", "On", "Today", "It", "Thanks", "Thank", "Just", "Use", "Compute", "Calculate",
        "Evaluate", "Convert", "Round", "If", "You", "My", "A", "An", "Answer", "Reply",
    )
)  # fmt: skip


def propose_calls(
    question: str,
    rng: np.random.Generator,
    n: int,
    *,
    tools: Sequence[str] = TOOLS,
    corpus_seed: int = 0,
) -> list[ToolCall]:
    """Sample up to ``n`` distinct candidate calls from what ``question`` mentions.

    Calculator: arithmetic spans written in the question, and the numbers it mentions combined
    with ``+ - * /`` (percent forms when it says "%"). Weather: every city it names with every
    date it names (and the days after them, for "tomorrow"-style questions) and one other city
    as a distractor. Search: its proper names, their single words, and one random encyclopedia
    entity as a distractor. Calls read from the question are drawn four times as often as
    combinations and distractors.
    """
    weighted: dict[ToolCall, float] = {}

    def add(call: ToolCall, weight: float) -> None:
        weighted[call] = max(weighted.get(call, 0.0), weight)

    if "calculator" in tools:
        for expression, weight in _calculator_candidates(question):
            add(ToolCall("calculator", {"expression": expression}), weight)
    if "weather" in tools:
        for city, date, weight in _weather_candidates(question, rng):
            add(ToolCall("weather", {"city": city, "date": date}), weight)
    if "search" in tools:
        for query, weight in _search_candidates(question, rng, corpus_seed):
            add(ToolCall("search", {"query": query}), weight)
    if not weighted:
        return []
    pool = list(weighted)
    p = np.array([weighted[c] for c in pool])
    picks = rng.choice(len(pool), size=min(n, len(pool)), replace=False, p=p / p.sum())
    return [pool[int(i)] for i in picks]


def _calculator_candidates(question: str) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for match in _ARITHMETIC.finditer(question):
        span = match.group(0).strip()
        if span.count("(") == span.count(")"):
            out.append((span, 4.0))
    numbers = list(dict.fromkeys(_NUMBER.findall(question)))[:4]
    percent = "%" in question or "percent" in question.lower()
    for a, b in itertools.permutations(numbers, 2):
        out += [(f"{a} {op} {b}", 1.0) for op in "+-*/"]
        if percent:
            out += [(f"{a} * {b} / 100", 2.0), (f"{a} * (100 - {b}) / 100", 2.0)]
            out.append((f"{a} * (100 + {b}) / 100", 2.0))
    if len(numbers) >= 3:
        out += [(" + ".join(numbers[:3]), 1.0), (f"({' + '.join(numbers[:3])}) / 3", 1.0)]
    for a in numbers[:2]:
        out += [(f"sqrt({a})", 1.0), (f"{a} ** 2", 1.0)]
    return out


def _weather_candidates(question: str, rng: np.random.Generator) -> list[tuple[str, str, float]]:
    folded = question.casefold()
    cities = [c for c in CITIES if re.search(rf"\b{re.escape(c.casefold())}\b", folded)]
    dates = list(dict.fromkeys(_ISO_DATE.findall(question)))
    if not cities or not dates:
        return []
    out = [(city, date, 4.0) for city in cities for date in dates]
    for date in dates:
        try:
            day = dt.date.fromisoformat(date)
        except ValueError:
            continue
        for offset in range(1, 5):  # "tomorrow", "in N days"
            later = (day + dt.timedelta(days=offset)).isoformat()
            out += [(city, later, 1.0) for city in cities]
    others = [c for c in CITIES if c not in cities]
    out.append((others[int(rng.integers(len(others)))], dates[0], 1.0))
    return out


def _search_candidates(
    question: str, rng: np.random.Generator, corpus_seed: int
) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for match in _PROPER.finditer(question):
        words = match.group(0).split()
        while words and words[0] in _SENTENCE_WORDS:
            words = words[1:]
        if not words:
            continue
        out.append((" ".join(words), 4.0))
        if len(words) > 1:
            out += [(word, 1.0) for word in words]
    if out:
        docs = corpus(corpus_seed).documents
        out.append((docs[int(rng.integers(len(docs)))].title, 1.0))
    return out


# -- rendering and scoring -----------------------------------------------------------------------


def render_plain(
    messages: Sequence[Mapping[str, str]], tools: Sequence[Mapping[str, Any]] = ()
) -> tuple[str, str]:
    """A template-free rendering (``Role: content`` lines); the answer text is the continuation.

    >>> render_plain([{"role": "user", "content": "2+2?"},
    ...               {"role": "assistant", "content": "<answer>4</answer>"}])
    ('User: 2+2?\\nAssistant: <answer>', '4')
    """
    *history, last = messages
    answer = _answer_text(last["content"])
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in history]
    return "\n".join([*lines, "Assistant: <answer>"]), answer


def chat_template_renderer(tokenizer: PreTrainedTokenizerBase) -> Renderer:
    """Render with the tokenizer's chat template (falls back to :func:`render_plain` when it has
    none, or when the template does not keep the answer verbatim)."""
    if not getattr(tokenizer, "chat_template", None):
        bos = tokenizer.bos_token or ""
        return lambda messages, tools: _prepend(bos, render_plain(messages, tools))

    def render(
        messages: Sequence[Mapping[str, str]], tools: Sequence[Mapping[str, Any]]
    ) -> tuple[str, str]:
        answer = _answer_text(messages[-1]["content"])
        text = tokenizer.apply_chat_template(
            [dict(m) for m in messages], tools=[dict(t) for t in tools] or None, tokenize=False
        )
        if not isinstance(text, str) or format_answer(answer) not in text:
            return render_plain(messages, tools)
        start = text.rfind(format_answer(answer))
        return text[: start + len("<answer>")], answer

    return render


def _prepend(prefix: str, pair: tuple[str, str]) -> tuple[str, str]:
    return prefix + pair[0], pair[1]


def _answer_text(content: str) -> str:
    if not (content.startswith("<answer>") and content.endswith("</answer>")):
        raise ValueError(f"the last message must be an <answer>...</answer>, got {content!r}")
    return content[len("<answer>") : -len("</answer>")]


class CausalLMScorer:
    """Mean negative log-likelihood of continuations under a causal LM, in batches, no gradient.

    Sequences are left-padded with explicit position ids, and only the last
    ``max(continuation) + 1`` positions' logits are computed when the model supports
    ``logits_to_keep`` (a large vocabulary then costs little memory). The model's train/eval mode
    is restored afterwards.

    Args:
        model: A ``transformers`` causal LM.
        tokenizer: Its tokenizer.
        batch_size: Sequences per forward pass.
        max_length: Longest sequence; contexts are cut from the left (default: the model's
            ``max_position_embeddings``).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        batch_size: int = 16,
        max_length: int | None = None,
    ) -> None:
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        limit = max_length or getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_length = int(limit)
        if self.max_length < 2:
            raise ValueError(f"max_length must be at least 2 tokens, got {self.max_length}")
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (tokenizer.eos_token_id or 0))
        bos = tokenizer.bos_token_id
        self.bos_id = int(bos if bos is not None else self.pad_id)  # for an empty context
        params = inspect.signature(model.forward).parameters
        self._keep_logits = "logits_to_keep" in params
        self._positions = "position_ids" in params

    def _encode(self, context: str, continuation: str) -> tuple[list[int], int]:
        ctx = self.tokenizer(context, add_special_tokens=False)["input_ids"]
        cont = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        if not cont:
            raise ValueError(f"the continuation {continuation!r} has no tokens")
        cont = cont[: self.max_length - 1]
        ctx = list(ctx[-(self.max_length - len(cont)) :]) or [self.bos_id]
        return ctx + list(cont), len(cont)

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        import torch

        encoded = [self._encode(c, x) for c, x in pairs]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        losses = [math.nan] * len(encoded)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(order), self.batch_size):
                    batch = order[start : start + self.batch_size]
                    scores = self._batch([encoded[i] for i in batch], device)
                    for i, loss in zip(batch, scores, strict=True):
                        losses[i] = loss
        finally:
            self.model.train(was_training)
        return losses

    def _batch(self, items: list[tuple[list[int], int]], device: Any) -> list[float]:
        import torch

        width = max(len(ids) for ids, _ in items)
        keep = max(n for _, n in items) + 1
        input_ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, (ids, _) in enumerate(items):  # left padding: every continuation ends the row
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
        kwargs: dict[str, Any] = {
            "input_ids": input_ids.to(device),
            "attention_mask": mask.to(device),
        }
        if self._positions:
            kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(device)
        if self._keep_logits:
            kwargs["logits_to_keep"] = keep
        logits = self.model(**kwargs).logits.float()
        logits = logits[:, -keep:, :]  # positions width-keep .. width-1
        logprobs = torch.log_softmax(logits[:, :-1, :], dim=-1)  # predicts positions +1
        targets = input_ids[:, width - keep + 1 :].to(device)
        token_logprobs = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        out = []
        for row, (_, n) in enumerate(items):
            out.append(float(-token_logprobs[row, -n:].mean()))
        return out


# -- the filter ----------------------------------------------------------------------------------


def teacher_filter(
    questions: Sequence[PlainExample],
    scorer: Scorer,
    config: TeacherConfig | None = None,
    *,
    render: Renderer = render_plain,
) -> TeacherResult:
    """Sample, execute, score and filter candidate calls; the kept ones become trajectories.

    Args:
        questions: Plain examples (no tool use).
        scorer: Mean NLL of each ``(context, continuation)`` (e.g. a :class:`CausalLMScorer`).
        config: The filter's settings.
        render: Turns chat messages into ``(context, continuation)``.
    """
    config = config or TeacherConfig()
    rng = np.random.default_rng(config.seed)
    tool_names = [t for t in TOOLS if t in config.tools]
    specs = to_plain(tool_registry(tool_names, corpus_seed=config.corpus_seed).specs)
    system = system_prompt(tool_names)

    # 1. Sample and execute (failed calls are dropped before scoring, as in Toolformer).
    proposals: list[tuple[int, ToolCall, str, bool]] = []
    for qi, example in enumerate(questions):
        tools = tool_registry(
            tool_names, world_seed=example.world_seed, corpus_seed=config.corpus_seed
        )
        for call in propose_calls(
            example.question,
            rng,
            config.n_candidates,
            tools=tool_names,
            corpus_seed=config.corpus_seed,
        ):
            outcome = tools.call(call)
            proposals.append((qi, call, outcome.content, outcome.ok))

    # 2. Score every condition in one batched pass.
    def conversation(example: PlainExample, call: ToolCall | None, result: str) -> tuple[str, str]:
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": example.question},
        ]
        if call is not None:
            messages += [
                {"role": "assistant", "content": call.to_text()},
                {"role": "tool", "content": result},
            ]
        messages.append({"role": "assistant", "content": format_answer(example.answer)})
        return render(messages, specs)

    executed = [p for p in proposals if p[3]]
    asked = sorted({qi for qi, *_ in executed})
    pairs = [conversation(questions[qi], None, "") for qi in asked]
    for qi, call, result, _ in executed:
        pairs += [conversation(questions[qi], call, ""), conversation(questions[qi], call, result)]
    losses = scorer(pairs) if pairs else []
    if len(losses) != len(pairs):
        raise ValueError(f"the scorer returned {len(losses)} losses for {len(pairs)} inputs")
    no_call = dict(zip(asked, losses[: len(asked)], strict=True))
    pair_losses = iter(losses[len(asked) :])

    # 3. Filter: L_minus - L_plus >= threshold.
    scored: list[CandidateScore] = []
    for qi, call, result, ok in proposals:
        if not ok:
            nan = math.nan
            scored.append(CandidateScore(qi, call, result, False, nan, nan, nan, nan, False))
            continue
        empty, with_result = next(pair_losses), next(pair_losses)
        minus = no_call[qi] if config.loss_without == "no_call" else min(no_call[qi], empty)
        reduction = minus - with_result
        keep = not math.isnan(reduction) and reduction >= config.threshold
        scored.append(
            CandidateScore(qi, call, result, True, no_call[qi], empty, with_result, reduction, keep)
        )
    scored = _cap_per_question(scored, config.max_kept_per_question)

    # 4. Trajectories, replayed through the tool's env.
    pool = EnvPool(config.corpus_seed)
    examples = []
    for c in scored:
        if not c.kept:
            continue
        example = questions[c.question_index]
        task = single_call_task(
            example.question, example.answer, example.answer_kind, c.call, example.world_seed
        )
        env_id = TOOL_ENV_IDS[c.call.name]
        trajectory = replay_task(
            pool[env_id],
            task,
            solution_actions(task),
            env_id=env_id,
            seed=example.world_seed,
            source=SOURCE,
        )
        examples.append(Example(task, trajectory))

    done = [c for c in scored if c.executed]
    kept = [c for c in done if c.kept]
    stats = TeacherStats(
        questions=len(questions),
        candidates=len(scored),
        executed=len(done),
        kept=len(kept),
        mean_reduction=_mean([c.reduction for c in done]),
        mean_reduction_kept=_mean([c.reduction for c in kept]),
        threshold=float(config.threshold),
        kept_by_tool=dict(Counter(c.call.name for c in kept)),
    )
    return TeacherResult(
        tuple(ex.trajectory for ex in examples), tuple(examples), tuple(scored), stats
    )


def _cap_per_question(scored: list[CandidateScore], cap: int | None) -> list[CandidateScore]:
    """Keep at most ``cap`` calls per question: the largest reductions (then the earliest)."""
    if cap is None:
        return scored
    ranked = sorted(
        (i for i, c in enumerate(scored) if c.kept), key=lambda i: (-scored[i].reduction, i)
    )
    allowed, per_question = set(), Counter[int]()
    for i in ranked:
        if per_question[scored[i].question_index] < cap:
            per_question[scored[i].question_index] += 1
            allowed.add(i)
    return [
        c if not c.kept or i in allowed else replace(c, kept=False) for i, c in enumerate(scored)
    ]


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def teacher_trajectories(
    model: str | Path | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None = None,
    questions: Sequence[PlainExample] | None = None,
    config: TeacherConfig | None = None,
) -> TeacherResult:
    """Teacher mode with a causal LM as the judge.

    Args:
        model: A local Hugging Face model directory (e.g. one made by
            :func:`~llm_trainer.agents.tinylm.create_tiny_model`) or a loaded causal LM.
        tokenizer: Its tokenizer (loaded from the directory when ``None``; required with a model
            object). Its chat template renders the conversations when it has one.
        questions: Plain examples; default: 20 per tool from :func:`plain_examples` (seeded by
            ``config.seed``).
        config: The filter's settings.

    Returns:
        The kept trajectories (``source="teacher"``), their tasks, every scored candidate and
        the summary statistics.

    Raises:
        ValueError: a model object without a tokenizer.
    """
    config = config or TeacherConfig()
    if questions is None:
        questions = [ex for tool in config.tools for ex in plain_examples(tool, 20, config.seed)]
    lm, tok = _load(model, tokenizer, config.device)
    scorer = CausalLMScorer(lm, tok, batch_size=config.batch_size, max_length=config.max_length)
    return teacher_filter(questions, scorer, config, render=chat_template_renderer(tok))


def _load(
    model: str | Path | PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None, device: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if not isinstance(model, str | Path):
        if tokenizer is None:
            raise ValueError("teacher_trajectories: pass the tokenizer with a model object")
        return model, tokenizer
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loader: Any = AutoModelForCausalLM
    with torch.random.fork_rng(devices=[]):  # loading may initialise weights: keep ours intact
        lm = loader.from_pretrained(str(model))
    lm.to(device)
    return lm, tokenizer or AutoTokenizer.from_pretrained(str(model))
