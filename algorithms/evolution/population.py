"""Individuals, the islands of a population, migration, and the MAP-Elites archive.

* :class:`Individual`: a genome with its genealogy (parents, operator, generation, island) and
  its fitness (per-instance scores on the fitness seeds); immutable, created once.
* :class:`Population`: the current members of each island. :meth:`Population.migrate` moves
  copies of each island's best to the next island of a ring, in place of its worst (Whitley et
  al.'s island model): islands evolve apart and share their best now and then.
* :class:`MAPElitesArchive` (Mouret and Clune 2015, arXiv 1504.04909): a grid over declared
  features (:data:`FEATURES`, each cut into ``bins`` equal cells between ``low`` and
  ``high``); each cell keeps the fittest individual that fell in it, and a newcomer replaces
  the occupant only when it is strictly fitter. The engine draws parents from it, so
  candidates unlike the current best keep breeding.

>>> archive = MAPElitesArchive([FeatureSpec("length", 0, 100, bins=2)])
>>> a, b = (Individual.initial(f"i{k}", Genome("prompt", "x" * k), Fitness((k,))) for k in (10, 20))
>>> archive.offer(b), archive.offer(a), archive.cell(a), archive.elites()[0].id
(True, False, (0,), 'i20')
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_trainer.algorithms.evolution.fitness import Fitness
from llm_trainer.algorithms.evolution.genome import (
    Genome,
    GenomeKind,
    parse_examples,
    parse_sampling,
    split_sentences,
)
from llm_trainer.algorithms.evolution.selection import Scores, best_first
from llm_trainer.core.errors import ConfigError, suggest

INITIAL = "initial"
MIGRATION = "migration"


@dataclass(frozen=True, slots=True)
class Individual:
    """One candidate of the search, with its genealogy and fitness.

    Attributes:
        id: ``g<generation>-i<island>-<n>`` (``m<n>`` for a migrant's copy): unique in a run.
        genome: What it is.
        generation: When it was made (0: the initial population).
        island: The island it was made on (a migrant's copy: the island it moved to).
        operator: How it was made: ``initial``, a programmatic operator (``uniform+flip``,
            ``de/best/1``...), an LLM one (``evoprompt_ga``, ``evoprompt_de``,
            ``llm_mutation``) or ``migration``.
        parents: The ids of the individuals it was made from (none for ``initial``).
        fitness: Its scores on the fitness seeds (the same seeds for every individual).
        order: When it was made, counted over the whole run (parents always come first).
    """

    id: str
    genome: Genome
    generation: int
    island: int
    operator: str
    parents: tuple[str, ...]
    fitness: Fitness
    order: int = 0

    @classmethod
    def initial(cls, id: str, genome: Genome, fitness: Fitness) -> Individual:
        """An individual of generation 0 without parents (for examples and tests)."""
        return cls(id, genome, 0, 0, INITIAL, (), fitness)

    @property
    def value(self) -> float:
        """Its fitness: the mean score over the fitness seeds."""
        return self.fitness.mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.genome.kind,
            "text": self.genome.text,
            "generation": self.generation,
            "island": self.island,
            "operator": self.operator,
            "parents": list(self.parents),
            "fitness": self.fitness.to_dict(),
            "order": self.order,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Individual:
        return cls(
            id=str(data["id"]),
            genome=Genome(data["kind"], str(data["text"])),
            generation=int(data["generation"]),
            island=int(data["island"]),
            operator=str(data["operator"]),
            parents=tuple(str(p) for p in data["parents"]),
            fitness=Fitness.from_dict(data["fitness"]),
            order=int(data["order"]),
        )


def score_matrix(individuals: Sequence[Individual]) -> Scores:
    """Individuals x fitness seeds (what the selection strategies read)."""
    return np.array([ind.fitness.scores for ind in individuals], dtype=np.float64)


def ranked(individuals: Sequence[Individual]) -> list[Individual]:
    """Best first by fitness (ties: the earlier-made first)."""
    by_order = sorted(individuals, key=lambda ind: ind.order)
    values = np.array([ind.value for ind in by_order], dtype=np.float64)
    return [by_order[i] for i in best_first(values)]


class Population:
    """The current members of every island.

    Args:
        islands: One list of individuals per island.
    """

    def __init__(self, islands: Sequence[Sequence[Individual]]) -> None:
        if not islands:
            raise ValueError("a population needs at least one island")
        self.islands: list[list[Individual]] = [list(members) for members in islands]

    def __len__(self) -> int:
        return sum(len(m) for m in self.islands)

    @property
    def members(self) -> list[Individual]:
        """Every island's members, island by island."""
        return [ind for members in self.islands for ind in members]

    def best(self) -> Individual:
        """The fittest member of any island (ties: the earlier-made)."""
        return ranked(self.members)[0]

    def diversity(self) -> float:
        """Distinct genomes over members (1: all different)."""
        members = self.members
        return len({ind.genome.text for ind in members}) / len(members)

    def ids(self) -> list[list[str]]:
        """Each island's member ids, in order (what a checkpoint records)."""
        return [[ind.id for ind in members] for members in self.islands]

    def migrate(
        self, count: int, copy: Callable[[Individual, int], Individual]
    ) -> list[Individual]:
        """Ring migration: the ``count`` best of island ``i`` (before any move) replace the
        ``count`` worst of island ``i + 1`` (mod the number of islands) as copies made by
        ``copy(individual, destination)``. Returns the copies, island by island."""
        k = len(self.islands)
        if k < 2 or count < 1:
            return []
        leaving = [ranked(members)[:count] for members in self.islands]
        moved: list[Individual] = []
        for source in range(k):
            destination = (source + 1) % k
            members = self.islands[destination]
            worst = {ind.id for ind in ranked(members)[len(members) - count :]}
            kept = [ind for ind in members if ind.id not in worst]
            arrivals = [copy(ind, destination) for ind in leaving[source]]
            self.islands[destination] = kept + arrivals
            moved += arrivals
        return moved


# -- MAP-Elites --------------------------------------------------------------------------------

_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True, slots=True)
class Feature:
    """A behaviour or genome feature MAP-Elites can bin individuals by."""

    kinds: tuple[GenomeKind, ...]
    """The genome kinds it is defined for."""
    measure: Callable[[Individual], float]
    description: str


ALL_KINDS: tuple[GenomeKind, ...] = ("prompt", "few_shot", "sampling", "solution")

#: The features a config may declare, by name.
FEATURES: Mapping[str, Feature] = {
    "length": Feature(ALL_KINDS, lambda i: len(i.genome.text), "characters of the genome text"),
    "words": Feature(ALL_KINDS, lambda i: len(i.genome.text.split()), "words of the genome text"),
    "sentences": Feature(
        ("prompt",), lambda i: len(split_sentences(i.genome.text)), "sentences of the prompt"
    ),
    "examples": Feature(
        ("few_shot",), lambda i: len(parse_examples(i.genome.text)), "few-shot examples"
    ),
    "temperature": Feature(
        ("sampling",), lambda i: parse_sampling(i.genome.text)["temperature"], "temperature"
    ),
    "top_p": Feature(("sampling",), lambda i: parse_sampling(i.genome.text)["top_p"], "top_p"),
    "items": Feature(
        ("solution",),
        lambda i: len(_NUMBER.findall(i.genome.text)),
        "ids the answer names (knapsack: items chosen)",
    ),
    "success": Feature(ALL_KINDS, lambda i: i.fitness.success_rate, "success rate"),
    "steps": Feature(ALL_KINDS, lambda i: i.fitness.mean_steps, "mean env steps per episode"),
}


@dataclass(frozen=True)
class FeatureSpec:
    """One axis of the MAP-Elites grid: a feature of :data:`FEATURES`, cut into ``bins`` equal
    cells between ``low`` and ``high`` (values outside fall in the first or last cell)."""

    name: str
    """The feature (``length``, ``words``, ``sentences``, ``examples``, ``temperature``,
    ``top_p``, ``items``, ``success``, ``steps``)."""
    low: float = 0.0
    """The lower edge of the first cell."""
    high: float = 1.0
    """The upper edge of the last cell."""
    bins: int = 4
    """Cells along this axis."""

    def __post_init__(self) -> None:
        if self.name not in FEATURES:
            raise ConfigError(
                f"feature {self.name!r} is unknown{suggest(self.name, FEATURES)}; "
                f"features: {', '.join(FEATURES)}"
            )
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or self.bins < 1:
            raise ConfigError(f"feature {self.name}: bins must be an int >= 1, got {self.bins!r}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ConfigError(
                f"feature {self.name}: needs finite low < high, got {self.low!r}, {self.high!r}"
            )

    def bin(self, value: float) -> int:
        """The cell of ``value`` along this axis."""
        fraction = (value - self.low) / (self.high - self.low)
        return min(self.bins - 1, max(0, math.floor(fraction * self.bins)))


def check_features(features: Iterable[FeatureSpec], kind: GenomeKind, where: str) -> None:
    """Raise :class:`ConfigError` for a feature that ``kind`` genomes do not have."""
    for spec in features:
        if kind not in FEATURES[spec.name].kinds:
            raise ConfigError(
                f"{where}: feature {spec.name!r} is defined for "
                f"{', '.join(FEATURES[spec.name].kinds)} genomes, not {kind}"
            )


class MAPElitesArchive:
    """The fittest individual of each cell of a grid over ``features``.

    Args:
        features: The grid's axes (none: an archive that keeps nothing).
    """

    def __init__(self, features: Sequence[FeatureSpec]) -> None:
        self.features = tuple(features)
        self.cells: dict[tuple[int, ...], Individual] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.features)

    @property
    def size(self) -> int:
        """Cells in the grid."""
        return math.prod(f.bins for f in self.features) if self.features else 0

    def cell(self, individual: Individual) -> tuple[int, ...]:
        """The cell ``individual`` falls in."""
        return tuple(f.bin(float(FEATURES[f.name].measure(individual))) for f in self.features)

    def offer(self, individual: Individual) -> bool:
        """Put ``individual`` in its cell if the cell is empty or its occupant is strictly less
        fit; returns whether it went in."""
        if not self.enabled:
            return False
        cell = self.cell(individual)
        occupant = self.cells.get(cell)
        if occupant is not None and individual.value <= occupant.value:
            return False
        self.cells[cell] = individual
        return True

    def elites(self) -> list[Individual]:
        """The occupants, by cell."""
        return [self.cells[c] for c in sorted(self.cells)]

    def coverage(self) -> float:
        """Occupied cells over cells."""
        return len(self.cells) / self.size if self.size else 0.0

    def qd_score(self) -> float:
        """The sum of the occupants' fitness (quality-diversity score)."""
        return float(sum(ind.value for ind in self.cells.values()))

    def to_dict(self) -> list[list[Any]]:
        """``[[cell, id], ...]`` (a checkpoint records the ids)."""
        return [[list(c), self.cells[c].id] for c in sorted(self.cells)]

    def restore(
        self, cells: Iterable[Sequence[Any]], individuals: Mapping[str, Individual]
    ) -> None:
        """Fill from :meth:`to_dict` data and the individuals by id."""
        self.cells = {tuple(int(b) for b in cell): individuals[str(i)] for cell, i in cells}
