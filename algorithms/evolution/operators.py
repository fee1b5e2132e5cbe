"""Variation operators: programmatic ones for structured genomes, LLM-driven ones for prompts.

A :class:`MutationOperator` makes a child from one parent, a :class:`CrossoverOperator` from
``arity`` parents (differential evolution's operator is a crossover of four: the target, the
base, and two donors whose difference moves the base). Every operator draws from the
:class:`numpy.random.Generator` it is given, so a child depends only on its parents and its
seed.

**Programmatic** (no model; :func:`programmatic_variation` picks them by genome kind):

============  ===========================  ==========================  ======================
kind          mutation                     crossover                   differential
============  ===========================  ==========================  ======================
knapsack      ``flip``: each item in or    ``uniform``: each item      ``de/best/1/bin``:
solution      out with prob. ``rate``      from either parent          binary DE
              (1/n by default; >= 1 flip)
TSP solution  ``2opt``: reverse a segment  ``ox``: order crossover     (none)
sampling      ``gaussian``: each setting   ``uniform``: each setting   ``de/best/1/bin``
              + N(0, scale x its range)    from either parent          (clipped to bounds)
few_shot      ``example_edit``: replace,   ``one_point``: a head of    (none)
              add or drop one example      one, a tail of the other
prompt        ``sentence_edit``: drop,     ``one_point`` over          (none)
              swap or insert a sentence    sentences
              of the initial prompts
============  ===========================  ==========================  ======================

**LLM-driven** (EvoPrompt, Guo et al. 2024, arXiv 2309.08532): the model is asked, in one
prompt, to cross two parent prompts over and mutate the result (``evoprompt_ga``), or to take
the parts in which two donor prompts differ, mutate them, splice them into the best prompt and
cross that over with the current one (``evoprompt_de``); ``llm_mutation`` asks for a variation
that keeps the meaning (EvoPrompt's initial paraphrases). The new prompt is the text between
``<prompt>`` and ``</prompt>`` (the whole answer when the model wrote no tag); an empty answer
leaves the first parent unchanged (``:empty`` is added to the operator's name). One
generation's requests go to the model as one batch (:class:`LLMVariation`).

>>> rng = np.random.default_rng(0)
>>> flip = ItemFlip(ItemSetSpace(6))
>>> child = flip.mutate(Genome("solution", "1, 2"), rng)
>>> child.kind, child.text != "1, 2"
('solution', True)
>>> OrderCrossover(TourSpace(5)).crossover(
...     [Genome("solution", "0 1 2 3 4"), Genome("solution", "0 4 3 2 1")], rng).text
'0 4 2 3 1'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np

from llm_trainer.algorithms.evolution.genome import (
    SAMPLING_BOUNDS,
    Example,
    Genome,
    GenomeKind,
    ItemSetSpace,
    SolutionSpace,
    TourSpace,
    join_sentences,
    parse_examples,
    parse_sampling,
    render_examples,
    render_sampling,
    split_sentences,
)
from llm_trainer.core.errors import ConfigError

if TYPE_CHECKING:
    from llm_trainer.agents.backends import Backend


@runtime_checkable
class MutationOperator(Protocol):
    """Makes a child from one parent."""

    name: str

    def mutate(self, parent: Genome, rng: np.random.Generator) -> Genome: ...


@runtime_checkable
class CrossoverOperator(Protocol):
    """Makes a child from ``arity`` parents (in the operator's documented order)."""

    name: str
    arity: int

    def crossover(self, parents: Sequence[Genome], rng: np.random.Generator) -> Genome: ...


def _check_arity(op: CrossoverOperator, parents: Sequence[Genome]) -> None:
    if len(parents) != op.arity:
        raise ValueError(f"{op.name} takes {op.arity} parents, got {len(parents)}")


# -- knapsack item sets -------------------------------------------------------------------------


class ItemFlip:
    """Each item in or out with probability ``rate`` (default 1/n); at least one flips."""

    name = "flip"

    def __init__(self, space: ItemSetSpace, rate: float | None = None) -> None:
        self.space = space
        self.rate = 1.0 / space.n if rate is None else rate

    def mutate(self, parent: Genome, rng: np.random.Generator) -> Genome:
        items = self.space.parse(parent.text)
        flips = np.flatnonzero(rng.random(self.space.n) < self.rate)
        if flips.size == 0:
            flips = rng.integers(0, self.space.n, size=1)
        return Genome(parent.kind, self.space.render(items ^ {int(i) + 1 for i in flips}))


class UniformItemCrossover:
    """Each item's presence taken from either parent with probability 1/2."""

    name = "uniform"
    arity = 2

    def __init__(self, space: ItemSetSpace) -> None:
        self.space = space

    def crossover(self, parents: Sequence[Genome], rng: np.random.Generator) -> Genome:
        _check_arity(self, parents)
        a, b = (self.space.parse(p.text) for p in parents)
        pick_a = rng.random(self.space.n) < 0.5
        child = {i for i in range(1, self.space.n + 1) if (i in a if pick_a[i - 1] else i in b)}
        return Genome(parents[0].kind, self.space.render(child))


class BinaryDifferential:
    """Binary DE (parents: target, base, r1, r2): where the donors differ, the base's bit
    flips with probability ``factor``; then each bit comes from that mutant with probability
    ``crossover_rate`` (one of them always), else from the target."""

    name = "de/best/1/bin"
    arity = 4

    def __init__(self, space: ItemSetSpace, factor: float, crossover_rate: float) -> None:
        self.space, self.factor, self.crossover_rate = space, factor, crossover_rate

    def crossover(self, parents: Sequence[Genome], rng: np.random.Generator) -> Genome:
        _check_arity(self, parents)
        n = self.space.n
        target, base, r1, r2 = (self._bits(p) for p in parents)
        flip = (r1 != r2) & (rng.random(n) < self.factor)
        mutant = np.where(flip, ~base, base)
        take = rng.random(n) < self.crossover_rate
        take[rng.integers(0, n)] = True
        trial = np.where(take, mutant, target)
        return Genome(parents[0].kind, self.space.render(int(i) + 1 for i in np.flatnonzero(trial)))

    def _bits(self, genome: Genome) -> np.ndarray:
        bits = np.zeros(self.space.n, dtype=bool)
        bits[[i - 1 for i in self.space.parse(genome.text)]] = True
        return bits


# -- TSP tours ----------------------------------------------------------------------------------


class TwoOpt:
    """Reverse a random segment of the tour (a 2-opt move; city 0 stays first)."""

    name = "2opt"

    def __init__(self, space: TourSpace) -> None:
        self.space = space

    def mutate(self, parent: Genome, rng: np.random.Generator) -> Genome:
        tour = list(self.space.parse(parent.text))
        if len(tour) > 3:
            i, j = sorted(int(x) for x in rng.choice(np.arange(1, len(tour)), 2, replace=False))
            tour[i : j + 1] = tour[i : j + 1][::-1]
        return Genome(parent.kind, self.space.render(tour))


class OrderCrossover:
    """OX1: a slice of the first parent kept in place, the other cities in the second
    parent's order."""

    name = "ox"
    arity = 2

    def __init__(self, space: TourSpace) -> None:
        self.space = space

    def crossover(self, parents: Sequence[Genome], rng: np.random.Generator) -> Genome:
        _check_arity(self, parents)
        a, b = (list(self.space.parse(p.text)) for p in parents)
        n = len(a)
        i, j = sorted(int(x) for x in rng.choice(n + 1, 2, replace=False))
        kept = a[i:j]
        rest = iter(c for c in b if c not in kept)
        child = [a[k] if i <= k < j else next(rest) for k in range(n)]
        return Genome(parents[0].kind, self.space.render(child))


# -- sampling settings --------------------------------------------------------------------------


def _sampling_vector(genome: Genome) -> np.ndarray:
    values = parse_sampling(genome.text)
    return np.array([values[k] for k in SAMPLING_BOUNDS], dtype=np.float64)


def _sampling_genome(vector: np.ndarray) -> Genome:
    return Genome("sampling", render_sampling(dict(zip(SAMPLING_BOUNDS, vector, strict=True))))


_RANGES = np.array([high - low for low, high in SAMPLING_BOUNDS.values()])


class GaussianSampling:
    """Each setting plus N(0, ``scale`` x its range), clipped to its bounds."""

    name = "gaussian"

    def __init__(self, scale: float = 0.1) -> None:
        self.scale = scale

    def mutate(self, parent: Genome, rng: np.random.Generator) -> Genome:
        vector = _sampling_vector(parent) + rng.normal(0.0, self.scale, len(_RANGES)) * _RANGES
        return _sampling_genome(vector)


class UniformSamplingCrossover:
    """Each setting from either parent with probability 1/2."""

    name = "uniform"
    arity = 2

    def crossover(self, parents: Sequence[Genome], rng: np.random.Generator) -> Genome:
        _check_arity(self, parents)
        a, b = (_sampling_vector(p) for p in parents)
        return _sampling_genome(np.where(rng.random(len(a)) < 0.5, a, b))


class NumericDifferential:
    """DE/best/1/bin (parents: target, base, r1, r2): ``base + factor * (r1 - r2)``, each
    setting taken with probability ``crossover_rate`` (one always), clipped to its bounds."""

    name = "de/best/1/bin"
    arity = 4

    def __init__(self, factor: float, crossover_rate: float) -> None:
        self.factor, self.crossover_rate = factor, crossover_rate

    def crossover(self, parents: Sequence[Genome], rng: np.random.Generator) -> Genome:
        _check_arity(self, parents)
        target, base, r1, r2 = (_sampling_vector(p) for p in parents)
        mutant = base + self.factor * (r1 - r2)
        take = rng.random(len(target)) < self.crossover_rate
        take[rng.integers(0, len(target))] = True
        return _sampling_genome(np.where(take, mutant, target))


# -- few-shot examples --------------------------------------------------------------------------


class ExampleEdit:
    """Replace one example with one from the pool, add one (below ``max_examples``) or drop
    one (above one), each equally likely among those possible."""

    name = "example_edit"

    def __init__(self, pool: Sequence[Example], max_examples: int) -> None:
        if not pool:
            raise ConfigError("few-shot genomes need a pool of solved examples")
        self.pool, self.max_examples = list(pool), max_examples

    def mutate(self, parent: Genome, rng: np.random.Generator) -> Genome:
        examples = parse_examples(parent.text)
        unused = [e for e in self.pool if e not in examples]
        moves = []
        if unused and examples:
            moves.append("replace")
        if unused and len(examples) < self.max_examples:
            moves.append("add")
        if len(examples) > 1:
            moves.append("drop")
        if not moves:
            return parent
        move = moves[int(rng.integers(len(moves)))]
        if move == "drop":
            del examples[int(rng.integers(len(examples)))]
        else:
            new = unused[int(rng.integers(len(unused)))]
            if move == "add":
                examples.insert(int(rng.integers(len(examples) + 1)), new)
            else:
                examples[int(rng.integers(len(examples)))] = new
        return Genome(parent.kind, render_examples(examples))


class ExampleCrossover:
    """A head of the first parent's examples and a tail of the second's (repeats dropped, at
    most ``max_examples``, at least one)."""

    name = "one_point"
    arity = 2

    def __init__(self, max_examples: int) -> None:
        self.max_examples = max_examples

    def crossover(self, parents: Sequence[Genome], rng: np.random.Generator) -> Genome:
        _check_arity(self, parents)
        a, b = (parse_examples(p.text) for p in parents)
        head = a[: int(rng.integers(0, len(a) + 1))]
        tail = b[int(rng.integers(0, len(b) + 1)) :]
        child = list(dict.fromkeys(head + tail))[: self.max_examples] or (a or b)[:1]
        return Genome(parents[0].kind, render_examples(child))


# -- prompts: sentences -------------------------------------------------------------------------


class SentenceEdit:
    """Drop a sentence, swap two, or insert one of ``pool`` (the initial prompts' sentences)
    that the prompt lacks, each equally likely among those possible."""

    name = "sentence_edit"

    def __init__(self, pool: Sequence[str]) -> None:
        self.pool = list(dict.fromkeys(pool))

    def mutate(self, parent: Genome, rng: np.random.Generator) -> Genome:
        sentences = split_sentences(parent.text)
        missing = [s for s in self.pool if s not in sentences]
        moves = [m for m, ok in (("drop", len(sentences) > 1), ("swap", len(sentences) > 1),
                                 ("insert", bool(missing))) if ok]  # fmt: skip
        if not moves:
            return parent
        move = moves[int(rng.integers(len(moves)))]
        if move == "drop":
            del sentences[int(rng.integers(len(sentences)))]
        elif move == "swap":
            i, j = (int(x) for x in rng.choice(len(sentences), 2, replace=False))
            sentences[i], sentences[j] = sentences[j], sentences[i]
        else:
            sentences.insert(
                int(rng.integers(len(sentences) + 1)), missing[int(rng.integers(len(missing)))]
            )
        return Genome(parent.kind, join_sentences(sentences))


class SentenceCrossover:
    """One-point crossover over sentences: a head of the first prompt, a tail of the second
    (repeats dropped; never empty)."""

    name = "one_point"
    arity = 2

    def crossover(self, parents: Sequence[Genome], rng: np.random.Generator) -> Genome:
        _check_arity(self, parents)
        a, b = (split_sentences(p.text) for p in parents)
        head = a[: int(rng.integers(0, len(a) + 1))]
        tail = b[int(rng.integers(0, len(b) + 1)) :]
        child = list(dict.fromkeys(head + tail)) or (a or b)[:1]
        return Genome(parents[0].kind, join_sentences(child))


# -- requests: what the engine asks for ---------------------------------------------------------

How = Literal["crossover", "mutation", "differential"]


@dataclass(frozen=True, slots=True)
class ChildRequest:
    """One child to make.

    Attributes:
        how: ``crossover`` (two parents; the child is then mutated), ``mutation`` (one) or
            ``differential`` (target, base, r1, r2).
        parents: The parents' genomes.
        seed: Seeds this child's draws.
    """

    how: How
    parents: tuple[Genome, ...]
    seed: int


class Variation(Protocol):
    """Makes the children a generation asks for (programmatic or LLM operators)."""

    def make(self, requests: Sequence[ChildRequest]) -> list[tuple[Genome, str]]:
        """Each request's child and the operator that made it, in order."""
        ...


class ProgrammaticVariation:
    """Children from a mutation, a crossover and (optionally) a differential operator.

    A crossover child is then mutated (``uniform+flip``), as in a genetic algorithm.
    """

    def __init__(
        self,
        mutation: MutationOperator,
        crossover: CrossoverOperator,
        differential: CrossoverOperator | None = None,
    ) -> None:
        self.mutation, self.crossover, self.differential = mutation, crossover, differential

    def make(self, requests: Sequence[ChildRequest]) -> list[tuple[Genome, str]]:
        out = []
        for request in requests:
            rng = np.random.default_rng(request.seed)
            if request.how == "mutation":
                out.append((self.mutation.mutate(request.parents[0], rng), self.mutation.name))
            elif request.how == "crossover":
                child = self.crossover.crossover(request.parents, rng)
                name = f"{self.crossover.name}+{self.mutation.name}"
                out.append((self.mutation.mutate(child, rng), name))
            else:
                if self.differential is None:
                    raise ConfigError("these genomes have no differential-evolution operator")
                out.append(
                    (self.differential.crossover(request.parents, rng), self.differential.name)
                )
        return out


def programmatic_variation(
    kind: GenomeKind,
    *,
    space: SolutionSpace | None = None,
    examples: Sequence[Example] = (),
    sentences: Sequence[str] = (),
    rate: float | None = None,
    scale: float = 0.1,
    factor: float = 0.5,
    crossover_rate: float = 0.9,
    max_examples: int = 4,
) -> ProgrammaticVariation:
    """The programmatic operators of ``kind`` genomes (see the module docstring's table).

    Args:
        kind: The genome kind.
        space: A solution's structure (:func:`~.genome.solution_space`).
        examples: The pool of solved examples (few-shot genomes).
        sentences: The initial prompts' sentences (prompt genomes).
        rate: Knapsack flip rate (``None``: 1/n).
        scale: Sampling mutation's standard deviation, as a share of each setting's range.
        factor: DE's differential weight F.
        crossover_rate: DE's crossover rate CR.
        max_examples: Most examples a few-shot genome holds.
    """
    if kind == "solution":
        if isinstance(space, ItemSetSpace):
            return ProgrammaticVariation(
                ItemFlip(space, rate),
                UniformItemCrossover(space),
                BinaryDifferential(space, factor, crossover_rate),
            )
        if isinstance(space, TourSpace):
            return ProgrammaticVariation(TwoOpt(space), OrderCrossover(space))
        raise ConfigError("solution genomes need their problem's structure (a solution space)")
    if kind == "sampling":
        return ProgrammaticVariation(
            GaussianSampling(scale),
            UniformSamplingCrossover(),
            NumericDifferential(factor, crossover_rate),
        )
    if kind == "few_shot":
        return ProgrammaticVariation(
            ExampleEdit(examples, max_examples), ExampleCrossover(max_examples)
        )
    return ProgrammaticVariation(SentenceEdit(sentences), SentenceCrossover())


def random_genome(
    kind: GenomeKind,
    rng: np.random.Generator,
    *,
    space: SolutionSpace | None = None,
    examples: Sequence[Example] = (),
    count: int = 2,
) -> Genome | None:
    """A random genome of ``kind`` for an initial population (``None`` for prompts, which start
    from given texts and their variations)."""
    if kind == "solution":
        assert space is not None
        return Genome(kind, space.random(rng))
    if kind == "sampling":
        values = {k: rng.uniform(low, high) for k, (low, high) in SAMPLING_BOUNDS.items()}
        return Genome(kind, render_sampling(values))
    if kind == "few_shot":
        picked = rng.choice(len(examples), size=min(count, len(examples)), replace=False)
        return Genome(kind, render_examples([examples[int(i)] for i in sorted(picked)]))
    return None


# -- LLM-driven: EvoPrompt ----------------------------------------------------------------------

#: EvoPrompt's GA instruction (Guo et al. 2024, appendix: crossover then mutation in one prompt).
EVOPROMPT_GA = """Please follow the instruction step-by-step to generate a better prompt.
1. Cross over the following prompts and generate a new prompt:
Prompt 1: {prompt1}
Prompt 2: {prompt2}
2. Mutate the prompt generated in Step 1 and generate a final prompt bracketed with <prompt> \
and </prompt>."""

#: EvoPrompt's DE instruction: the donors' differences, mutated, spliced into the best prompt,
#: crossed over with the current (basic) one.
EVOPROMPT_DE = """Please follow the instruction step-by-step to generate a better prompt.
1. Identify the different parts between the Prompt 1 and Prompt 2:
Prompt 1: {prompt1}
Prompt 2: {prompt2}
2. Randomly mutate the different parts
3. Combine the different parts with Prompt 3, selectively replace it with the different parts \
in Step 2 and generate a new prompt.
Prompt 3: {prompt3}
4. Cross over the prompt in the Step 3 with the following basic prompt and generate a final \
prompt bracketed with <prompt> and </prompt>:
Basic Prompt: {prompt0}"""

#: EvoPrompt's paraphrase instruction (its initial population), our mutation-only child.
LLM_MUTATION = """Generate a variation of the following prompt while keeping the semantic \
meaning, bracketed with <prompt> and </prompt>.
Input: {prompt1}"""

_PROMPT_TAG = re.compile(r"<prompt>(.*?)(?:</prompt>|$)", re.DOTALL)


def extract_prompt(text: str) -> str:
    """The new prompt in an operator's answer: inside the last ``<prompt>...</prompt>`` (or
    after a last unclosed ``<prompt>``), else the whole answer; stripped.

    >>> extract_prompt("Step 1 ... <prompt>Be brief.</prompt>")
    'Be brief.'
    >>> extract_prompt("no tags at all ")
    'no tags at all'
    """
    found = _PROMPT_TAG.findall(text)
    return (found[-1] if found else text).strip()


def operator_prompt(request: ChildRequest) -> tuple[str, str]:
    """The instruction an LLM operator gets for ``request`` and the operator's name."""
    texts = [p.text for p in request.parents]
    if request.how == "crossover":
        return EVOPROMPT_GA.format(prompt1=texts[0], prompt2=texts[1]), "evoprompt_ga"
    if request.how == "differential":
        target, best, r1, r2 = texts
        prompt = EVOPROMPT_DE.format(prompt1=r1, prompt2=r2, prompt3=best, prompt0=target)
        return prompt, "evoprompt_de"
    return LLM_MUTATION.format(prompt1=texts[0]), "llm_mutation"


class LLMVariation:
    """EvoPrompt's operators, answered by ``backend``: one batched generation per call to
    :meth:`make` (a generation's children), seeded from the requests' seeds.

    Args:
        backend: The operator model.
        temperature: Sampling temperature of the operator (EvoPrompt samples).
        max_new_tokens: Budget of each answer (the new prompt must fit in it).
    """

    def __init__(self, backend: Backend, *, temperature: float = 1.0, max_new_tokens: int = 128):
        self.backend, self.temperature, self.max_new_tokens = backend, temperature, max_new_tokens
        self.calls = 0
        """Operator prompts answered."""

    def make(self, requests: Sequence[ChildRequest]) -> list[tuple[Genome, str]]:
        if not requests:
            return []
        from llm_trainer.agents.backends import ChatPrompt, SamplingConfig
        from llm_trainer.core.seeding import derive_seed

        asked = [operator_prompt(r) for r in requests]
        params = SamplingConfig(
            temperature=self.temperature,
            max_new_tokens=self.max_new_tokens,
            seed=derive_seed(*(r.seed for r in requests)),
            stop=("</prompt>",),
        )
        prompts = [ChatPrompt(({"role": "user", "content": text},)) for text, _ in asked]
        answers = self.backend.chat(prompts, params)
        self.calls += len(requests)
        out = []
        for request, (_, name), samples in zip(requests, asked, answers, strict=True):
            text = extract_prompt(samples[0].text)
            if text:
                out.append((Genome(request.parents[0].kind, text), name))
            else:
                out.append((request.parents[0], f"{name}:empty"))
        return out


class LLMOperator:
    """One EvoPrompt operator as a :class:`MutationOperator` (``how="mutation"``) or a
    :class:`CrossoverOperator` (``crossover``: 2 parents; ``differential``: target, best, r1,
    r2), for use outside the engine; each call is one generation of ``variation``'s model."""

    def __init__(self, variation: LLMVariation, how: How) -> None:
        self.variation, self.how = variation, how
        self.arity = {"mutation": 1, "crossover": 2, "differential": 4}[how]
        self.name = {"mutation": "llm_mutation", "crossover": "evoprompt_ga"}.get(
            how, "evoprompt_de"
        )

    def mutate(self, parent: Genome, rng: np.random.Generator) -> Genome:
        return self.crossover([parent], rng)

    def crossover(self, parents: Sequence[Genome], rng: np.random.Generator) -> Genome:
        if len(parents) != self.arity:
            raise ValueError(f"{self.name} takes {self.arity} parents, got {len(parents)}")
        seed = int(rng.integers(0, 2**31))
        [(child, _)] = self.variation.make([ChildRequest(self.how, tuple(parents), seed)])
        return child


#: Builds a genome for an initial population from a generator (see :func:`random_genome`).
GenomeFactory = Callable[[np.random.Generator], Genome | None]
