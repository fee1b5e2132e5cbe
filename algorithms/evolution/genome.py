"""Genomes: what evolves, always as text, and the structure read from each kind of text.

A :class:`Genome` is a kind and a text. The text is exactly what the agent is built from, so
two individuals with the same text are the same candidate (their fitness is computed once):

==============  ====================================================================  ==========
kind            the text                                                              structure
==============  ====================================================================  ==========
``prompt``      the agent's system prompt                                             sentences
``few_shot``    a solved-examples block appended to the system prompt                 examples
                (:func:`~llm_trainer.agents.memory.format_solved_examples`)
``sampling``    sampling settings, ``temperature=0.7 top_p=0.9``                      numbers
``solution``    a candidate answer to one problem instance (what goes inside          item set
                ``<answer>``): knapsack item ids ``1, 4, 5``, a TSP tour ``0 3 1 2``  or tour
==============  ====================================================================  ==========

The structure is what the programmatic operators (:mod:`.operators`) edit; each codec reads it
from the text and writes it back in one canonical form, so an edit that changes nothing gives
the same text. A solution's structure comes from the problem's statement (the env's first
observation): :func:`solution_space` reads how many items or cities it has.

>>> parse_sampling("temperature=0.7 top_p=0.9")
{'temperature': 0.7, 'top_p': 0.9}
>>> render_sampling({"temperature": 0.71234, "top_p": 1.0})
'temperature=0.712 top_p=1'
>>> space = solution_space("Knapsack of capacity 20. Items #id (weight, value): #1 (5, 10), "
...                        "#2 (4, 40), #3 (6, 30). Choose items ...")
>>> space, space.parse("3, #1"), space.render(frozenset({2, 1}))
(ItemSetSpace(n=3), frozenset({1, 3}), '1, 2')
>>> TourSpace(4).render(TourSpace(4).parse("2 -> 0 -> 3 -> 1 -> 2"))
'0 3 1 2'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from llm_trainer.agents.memory import format_solved_examples
from llm_trainer.core.errors import ConfigError

GenomeKind = Literal["prompt", "few_shot", "sampling", "solution"]
GENOME_KINDS: tuple[str, ...] = get_args(GenomeKind)


@dataclass(frozen=True, slots=True)
class Genome:
    """A candidate: its kind and its text (see the module docstring).

    >>> Genome("prompt", "Be brief.").digest
    '1d0eda0849020ac1'
    """

    kind: GenomeKind
    text: str

    def __post_init__(self) -> None:
        if self.kind not in GENOME_KINDS:
            raise ValueError(f"Genome.kind must be one of {list(GENOME_KINDS)}, got {self.kind!r}")
        if not isinstance(self.text, str):
            raise TypeError(f"Genome.text must be a str, got {type(self.text).__name__}")

    @property
    def digest(self) -> str:
        """16 hex digits of the SHA-256 of kind and text: the genome's identity."""
        return hashlib.sha256(f"{self.kind}\0{self.text}".encode()).hexdigest()[:16]


# -- prompts: sentences -------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    """The sentences of a prompt (split after ``.``, ``!`` or ``?`` and whitespace; each
    stripped, empty ones dropped).

    >>> split_sentences("Solve it. Use the tool!  Answer with <answer>X</answer>.")
    ['Solve it.', 'Use the tool!', 'Answer with <answer>X</answer>.']
    """
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def join_sentences(sentences: Iterable[str]) -> str:
    """Sentences back into one prompt, separated by single spaces."""
    return " ".join(s.strip() for s in sentences if s.strip())


# -- few-shot examples --------------------------------------------------------------------------

Example = tuple[str, str]
"""A solved example: ``(task, solution)``, each on one line."""


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


def render_examples(examples: Sequence[Example]) -> str:
    """The few-shot genome text of ``examples`` (``""`` for none): the solved-examples block
    the agent's system prompt gets, with each task and solution on one line.

    >>> print(render_examples([("2 + 2?", "calculator -> 4")]))
    Solved examples:
    Task: 2 + 2?
    Solution: calculator -> 4
    """
    if not examples:
        return ""
    return format_solved_examples((one_line(t), one_line(s)) for t, s in examples)


def parse_examples(text: str) -> list[Example]:
    """The examples of a few-shot genome text (the inverse of :func:`render_examples`).

    Raises:
        ValueError: for text that is not a solved-examples block.

    >>> parse_examples(render_examples([("a", "b"), ("c", "d")]))
    [('a', 'b'), ('c', 'd')]
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header, *rest = lines
    if header.strip() != "Solved examples:" or len(rest) % 2:
        raise ValueError(
            "a few-shot genome is 'Solved examples:' then 'Task: ...' / 'Solution: ...' line "
            f"pairs, got {text[:80]!r}"
        )
    examples: list[Example] = []
    for task, solution in zip(rest[::2], rest[1::2], strict=True):
        if not (task.startswith("Task: ") and solution.startswith("Solution: ")):
            raise ValueError(f"expected 'Task: ...' then 'Solution: ...', got {task[:40]!r}")
        examples.append((task.removeprefix("Task: "), solution.removeprefix("Solution: ")))
    return examples


# -- sampling settings --------------------------------------------------------------------------

#: The sampling settings a ``sampling`` genome holds, each with its (low, high) bounds.
SAMPLING_BOUNDS: Mapping[str, tuple[float, float]] = {
    "temperature": (0.0, 1.5),
    "top_p": (0.05, 1.0),
}
#: Values of settings a genome text leaves out.
SAMPLING_DEFAULTS: Mapping[str, float] = {"temperature": 0.0, "top_p": 1.0}


def parse_sampling(text: str) -> dict[str, float]:
    """The settings of a sampling genome text (``key=value`` words; missing keys take
    :data:`SAMPLING_DEFAULTS`), each within :data:`SAMPLING_BOUNDS`.

    Raises:
        ValueError: for an unknown key, a value that is not a number, or one out of bounds.
    """
    values = dict(SAMPLING_DEFAULTS)
    for word in text.split():
        key, sep, raw = word.partition("=")
        if not sep or key not in SAMPLING_BOUNDS:
            raise ValueError(
                f"sampling genome: {word!r} is not key=value with a key of {list(SAMPLING_BOUNDS)}"
            )
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"sampling genome: {key}={raw!r} is not a number") from None
        low, high = SAMPLING_BOUNDS[key]
        if not low <= value <= high:
            raise ValueError(f"sampling genome: {key} must be in [{low}, {high}], got {value}")
        values[key] = value
    return values


def render_sampling(values: Mapping[str, float]) -> str:
    """The canonical text of sampling settings: every key of :data:`SAMPLING_BOUNDS` in order,
    clipped to its bounds, 3 significant digits."""
    words = []
    for key, (low, high) in SAMPLING_BOUNDS.items():
        value = min(high, max(low, float(values.get(key, SAMPLING_DEFAULTS[key]))))
        words.append(f"{key}={value:.3g}")
    return " ".join(words)


# -- solutions: item sets and tours -------------------------------------------------------------

_KNAPSACK_ITEM = re.compile(r"#(\d+) \(\d+, \d+\)")
_TSP_CITIES = re.compile(r"\bCities 0-(\d+);")
_SEPARATORS = re.compile(r"(?:\s|,|;|->|→|-|\band\b)+")


@dataclass(frozen=True, slots=True)
class ItemSetSpace:
    """Knapsack answers: a set of item ids ``1..n`` (``none`` for the empty set)."""

    n: int

    def parse(self, text: str) -> frozenset[int]:
        """The ids in ``text`` that name an item (others are dropped: the genome stays a valid
        selection)."""
        ids = (w.removeprefix("#") for w in _SEPARATORS.split(text.strip().lower()))
        return frozenset(int(w) for w in ids if w.isdecimal() and 1 <= int(w) <= self.n)

    def render(self, items: Iterable[int]) -> str:
        chosen = sorted(set(items))
        return ", ".join(str(i) for i in chosen) if chosen else "none"

    def random(self, rng: np.random.Generator, density: float = 0.3) -> str:
        """Each item chosen with probability ``density`` (a third of the items is usually
        within a capacity of 35-60% of the total weight)."""
        return self.render(i + 1 for i in np.flatnonzero(rng.random(self.n) < density))


@dataclass(frozen=True, slots=True)
class TourSpace:
    """TSP answers: a permutation of the cities ``0..n-1``, written from city 0 (the return
    is implied)."""

    n: int

    def parse(self, text: str) -> tuple[int, ...]:
        """The tour in ``text``, rotated to start at city 0; repeated and unknown cities are
        dropped and missing ones appended in order (the genome stays a valid tour)."""
        seen: list[int] = []
        for word in _SEPARATORS.split(text.strip()):
            if word.isdecimal() and int(word) < self.n and int(word) not in seen:
                seen.append(int(word))
        seen += [c for c in range(self.n) if c not in seen]
        start = seen.index(0)
        return tuple(seen[start:] + seen[:start])

    def render(self, tour: Sequence[int]) -> str:
        return " ".join(str(c) for c in self.parse(" ".join(str(c) for c in tour)))

    def random(self, rng: np.random.Generator) -> str:
        return self.render([0, *(int(c) + 1 for c in rng.permutation(self.n - 1))])


SolutionSpace = ItemSetSpace | TourSpace


def solution_space(statement: str) -> SolutionSpace:
    """The answer structure of a problem, read from its statement (the env's first
    observation): a knapsack's item ids or a TSP's cities.

    Raises:
        ConfigError: for a statement of another family (solution genomes need one of these
            two structures for their programmatic operators).
    """
    items = _KNAPSACK_ITEM.findall(statement)
    if statement.startswith("Knapsack") and items:
        return ItemSetSpace(len(items))
    cities = _TSP_CITIES.search(statement)
    if cities is not None:
        return TourSpace(int(cities.group(1)) + 1)
    raise ConfigError(
        "evolution.genome: solution genomes evolve answers to LLMTrainer/Knapsack-v0 or "
        f"LLMTrainer/TSP-v0 problems; this problem's statement is neither: {statement[:80]!r}"
    )
