"""MAP-Elites replaces only fitter occupants; islands migrate their best; genomes round-trip."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_trainer.algorithms.evolution.fitness import Fitness
from llm_trainer.algorithms.evolution.genome import Genome
from llm_trainer.algorithms.evolution.population import (
    FeatureSpec,
    Individual,
    MAPElitesArchive,
    Population,
    ranked,
)
from llm_trainer.core.errors import ConfigError

_ids = itertools.count()


def individual(text: str, score: float, kind: str = "prompt", island: int = 0) -> Individual:
    n = next(_ids)
    return Individual(f"x{n}", Genome(kind, text), 0, island, "initial", (), Fitness((score,)), n)  # type: ignore[arg-type]


def test_map_elites_replaces_an_occupant_only_with_a_strictly_fitter_individual() -> None:
    archive = MAPElitesArchive([FeatureSpec("length", 0, 40, bins=4)])  # cells of 10 chars
    first = individual("a" * 12, 0.5)  # cell 1
    assert archive.offer(first)
    assert archive.cells == {(1,): first}
    assert not archive.offer(individual("b" * 15, 0.4))  # less fit: stays out
    assert not archive.offer(individual("c" * 19, 0.5))  # as fit: the occupant stays
    assert archive.cells[(1,)] is first
    fitter = individual("d" * 10, 0.9)
    assert archive.offer(fitter)
    assert archive.cells[(1,)] is fitter
    # other cells are untouched by it; values outside [low, high] fall in the edge cells
    short, long_ = individual("", 0.1), individual("e" * 400, 0.2)
    assert archive.offer(short)
    assert archive.offer(long_)
    assert archive.cell(short) == (0,)
    assert archive.cell(long_) == (3,)
    assert [ind.id for ind in archive.elites()] == [short.id, fitter.id, long_.id]
    assert archive.coverage() == 0.75
    assert archive.qd_score() == pytest.approx(1.2)


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(-3, 3)), min_size=1, max_size=40))
def test_each_cell_keeps_the_first_of_its_fittest_offers(offers: list[tuple[int, int]]) -> None:
    archive = MAPElitesArchive(
        [FeatureSpec("length", 0, 30, bins=3), FeatureSpec("words", 0, 4, bins=2)]
    )
    made = [individual(("w " * length)[:length], float(score)) for length, score in offers]
    for ind in made:
        before = dict(archive.cells)
        went_in = archive.offer(ind)
        cell = archive.cell(ind)
        occupant = before.get(cell)
        assert went_in == (occupant is None or ind.value > occupant.value)
        assert all(archive.cells[c] is before[c] for c in before if c != cell)
    for cell, elite in archive.cells.items():
        in_cell = [ind for ind in made if archive.cell(ind) == cell]
        best = max(ind.value for ind in in_cell)
        assert elite is next(ind for ind in in_cell if ind.value == best)


def test_features_are_checked_by_name_range_and_genome_kind() -> None:
    with pytest.raises(ConfigError, match=r"feature 'lenght' is unknown \(did you mean 'length'"):
        FeatureSpec("lenght")
    with pytest.raises(ConfigError, match="needs finite low < high"):
        FeatureSpec("length", 5, 5)
    from llm_trainer.algorithms.evolution.config import EvolutionSettings

    with pytest.raises(ConfigError, match="feature 'temperature' is defined for sampling genomes"):
        EvolutionSettings(features=(FeatureSpec("temperature"),))
    archive = MAPElitesArchive([FeatureSpec("temperature", 0, 1.5, bins=3)])
    assert archive.cell(individual("temperature=1.2 top_p=0.5", 0.0, "sampling")) == (2,)


def test_ring_migration_copies_each_islands_best_over_the_next_islands_worst() -> None:
    islands = [
        [individual(f"i{k}-{j}", score, island=k) for j, score in enumerate(scores)]
        for k, scores in enumerate([(0.1, 0.9, 0.5), (0.3, 0.2, 0.8), (0.7, 0.0, 0.4)])
    ]
    population = Population(islands)
    best = [ranked(m)[0] for m in islands]
    worst = [ranked(m)[-1] for m in islands]
    copies = population.migrate(
        1,
        lambda ind, to: Individual(
            f"m-{ind.id}", ind.genome, 1, to, "migration", (ind.id,), ind.fitness, 100
        ),
    )
    assert [(c.parents[0], c.island) for c in copies] == [
        (best[0].id, 1),
        (best[1].id, 2),
        (best[2].id, 0),
    ]
    for k in range(3):
        ids = {ind.id for ind in population.islands[k]}
        assert worst[k].id not in ids
        assert f"m-{best[(k - 1) % 3].id}" in ids
        assert len(ids) == 3
    assert Population([islands[0]]).migrate(1, lambda ind, to: ind) == []


def test_a_genealogy_with_a_missing_or_younger_parent_fails_its_check() -> None:
    from llm_trainer.algorithms.evolution.genealogy import Genealogy

    root = Individual("g0-i0-0", Genome("prompt", "a"), 0, 0, "initial", (), Fitness((0.0,)), 0)
    child = Individual(
        "g1-i0-0", Genome("prompt", "b"), 1, 0, "flip", ("g0-i0-0",), Fitness((1.0,)), 1
    )
    Genealogy([root, child]).check(instances=1)
    with pytest.raises(ValueError, match="parent g0-i0-0 is not recorded"):
        Genealogy([child]).check()
    older = Individual(
        "g0-i0-1", Genome("prompt", "c"), 0, 0, "flip", ("g1-i0-0",), Fitness((1.0,)), 2
    )
    with pytest.raises(ValueError, match="made before its parent"):
        Genealogy([root, child, older]).check()
    with pytest.raises(ValueError, match="operator 'flip' with 0 parents"):
        Genealogy(
            [Individual("x", Genome("prompt", "d"), 0, 0, "flip", (), Fitness((1.0,)), 0)]
        ).check()
    with pytest.raises(ValueError, match="2 scores for 1 instances"):
        Genealogy([Individual.initial("y", Genome("prompt", "e"), Fitness((1.0, 0.0)))]).check(1)
