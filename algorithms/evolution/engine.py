"""The generational loop: initial population, generations, checkpoints, the final choice.

Read top to bottom (:meth:`EvolutionEngine.run`):

1. **Initial population** (generation 0). Each island gets the given genomes (prompts: the
   env's system prompt when none are given) and is filled with random genomes (solutions,
   sampling settings, few-shot subsets) or with variations of the given ones (prompts).
2. **Generations.** Per island, with a generator seeded by (seed, generation, island):

   * ``ga``: the ``elitism`` best carried over unchanged; each other place gets a child, by
     crossover of two parents (then mutated) with probability ``crossover_rate``, else by
     mutation of one. A parent comes from the MAP-Elites archive (a uniform occupied cell)
     with probability ``archive_rate`` when there is one, else from the island by the
     selection strategy.
   * ``de``: one trial per member (the target): the island's best moved by the difference of
     two other members (the second may come from the archive), crossed with the target; the
     trial replaces the target when it is at least as fit.

   One generation's children, over every island, are made in one call (one batched
   generation for LLM operators) and evaluated in one call (in parallel with ``workers``).
   Every genome is scored on the same fitness seeds, so a child is compared with its parents
   on the same tasks; a genome met before is not played again. With
   ``search_refine.simulations`` set, each new genome (the initial population's too) is then
   refined by a short tree search (:mod:`.refine`) and the refined individual, the unrefined
   one's child by the operator ``mcts_refine``, takes its place. Then every
   ``migration_every`` generations, ring migration between islands.
3. **Checkpoint.** After each generation: its genealogy in the knowledge graph (idempotent),
   then ``generations/NNNNN.json`` (atomically): the individuals it made, each island's
   members and the archive. A killed search resumes after the last complete file: the
   generations are seeded by their number, so it goes on exactly as if it had not stopped.
4. **Final choice.** The ``finalists`` fittest distinct genomes (islands and archive) are
   played on the held-out seeds and the best there is chosen; it is compared, paired on those
   seeds, with the best of the initial population (a bootstrap interval of the difference). A
   solution genome answers one problem, so it is chosen by its score there.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from llm_trainer.algorithms.evolution.config import EvolutionSettings
from llm_trainer.algorithms.evolution.fitness import (
    EvaluationSpec,
    Fitness,
    FitnessEvaluator,
    Task,
    probe_env,
)
from llm_trainer.algorithms.evolution.genealogy import Genealogy, GenealogyRecorder
from llm_trainer.algorithms.evolution.genome import (
    Example,
    Genome,
    SolutionSpace,
    TourSpace,
    one_line,
    parse_examples,
    parse_sampling,
    render_examples,
    render_sampling,
    solution_space,
    split_sentences,
)
from llm_trainer.algorithms.evolution.operators import (
    ChildRequest,
    How,
    LLMVariation,
    Variation,
    programmatic_variation,
    random_genome,
)
from llm_trainer.algorithms.evolution.population import (
    INITIAL,
    MIGRATION,
    Individual,
    MAPElitesArchive,
    Population,
    ranked,
    score_matrix,
)
from llm_trainer.algorithms.evolution.refine import REFINE, Refinement
from llm_trainer.algorithms.evolution.selection import SelectionStrategy, make_selection
from llm_trainer.core.config import to_dict
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.rundir import atomic_write
from llm_trainer.core.seeding import derive_seed

Log = Callable[[str], None]
#: ``log_metrics(step, metrics)`` (a run directory's).
MetricsLog = Callable[[int, Mapping[str, float | int | str | None]], None]

FORMAT = 1
GENERATIONS_DIR = "generations"
FINAL_FILE = "final.json"


@dataclass(frozen=True)
class Search:
    """What a search needs besides its settings: how genomes are played and varied.

    Attributes:
        train: The fitness seeds' evaluation.
        held_out: The held-out seeds' evaluation (``None`` for solution genomes).
        variation: The operators.
        initial: The given initial genomes.
        random: Makes a random genome (``None``: the initial population is filled with
            variations of ``initial``).
        tasks: Each fitness seed's problem.
    """

    train: EvaluationSpec
    held_out: EvaluationSpec | None
    variation: Variation
    initial: tuple[Genome, ...]
    random: Callable[[np.random.Generator], Genome | None] | None
    tasks: tuple[Task, ...] = ()


@dataclass(frozen=True)
class GenerationStats:
    """One generation's summary (also in its checkpoint)."""

    generation: int
    best: float
    mean: float
    diversity: float
    archive_coverage: float
    evaluations: int
    seconds: float

    def as_metrics(self) -> dict[str, float | int]:
        return {
            "evolution/best_fitness": self.best,
            "evolution/mean_fitness": self.mean,
            "evolution/diversity": self.diversity,
            "evolution/archive_coverage": self.archive_coverage,
            "evolution/evaluations": self.evaluations,
            "evolution/seconds": self.seconds,
        }


@dataclass(frozen=True)
class EvolutionResult:
    """What a search found.

    Attributes:
        chosen: The individual chosen (by its held-out scores; solutions: by fitness).
        held_out: Its scores on the held-out seeds (``None`` for solution genomes).
        baseline: The best individual of the initial population.
        baseline_held_out: Its held-out scores.
        comparison: ``chosen - baseline`` on the held-out seeds, paired
            (:meth:`~llm_trainer.benchmarks.stats.PairedComparison.as_dict`).
        finalists: ``(id, train fitness, held-out mean)`` of each finalist.
        history: Every generation's summary.
        genealogy: Every individual.
        population: The last generation's islands.
        archive: The MAP-Elites archive.
        resumed_from: The last generation found in the checkpoints, when resumed.
        evaluations: Genomes played in this process's part of the run.
        seconds: Wall time of this process's part.
    """

    chosen: Individual
    held_out: Fitness | None
    baseline: Individual
    baseline_held_out: Fitness | None
    comparison: Mapping[str, Any] | None
    finalists: tuple[tuple[str, float, float | None], ...]
    history: tuple[GenerationStats, ...]
    genealogy: Genealogy
    population: Population
    archive: MAPElitesArchive
    resumed_from: int | None
    evaluations: int
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The headline numbers (what ``summary.json`` gets)."""
        gens = [h for h in self.history if h.generation > 0]
        gen_seconds = sum(h.seconds for h in gens)
        out: dict[str, Any] = {
            "generations": self.history[-1].generation,
            "individuals": len(self.genealogy),
            "chosen_id": self.chosen.id,
            "chosen_genome": self.chosen.genome.text,
            "chosen_operator": self.chosen.operator,
            "chosen_fitness": self.chosen.value,
            "initial_best_fitness": self.baseline.value,
            "best_fitness_by_generation": [round(h.best, 6) for h in self.history],
            "held_out_mean": self.held_out.mean if self.held_out else None,
            "held_out_success": self.held_out.success_rate if self.held_out else None,
            "initial_best_held_out_mean": (
                self.baseline_held_out.mean if self.baseline_held_out else None
            ),
            "held_out_vs_initial": dict(self.comparison) if self.comparison else None,
            "finalists": [list(f) for f in self.finalists],
            "archive_cells": len(self.archive.cells),
            "archive_coverage": self.archive.coverage(),
            "archive_qd_score": self.archive.qd_score(),
            "resumed_from_generation": self.resumed_from,
            "evaluations": self.evaluations,
            **refinement_summary(self.genealogy),
            "generations_per_minute": 60 * len(gens) / gen_seconds if gen_seconds else None,
        }
        return out


def refinement_summary(genealogy: Genealogy) -> dict[str, Any]:
    """How many individuals a search refined, how many of them it improved (a higher
    fitness than the unrefined genome's), and the mean gain in fitness."""
    known = genealogy.individuals
    refined = [ind for ind in known.values() if ind.operator == REFINE]
    gains = [ind.value - known[ind.parents[0]].value for ind in refined]
    return {
        "refinements": len(refined),
        "refinements_improved": sum(g > 0 for g in gains),
        "refinement_mean_gain": float(np.mean(gains)) if gains else None,
    }


def settings_fingerprint(settings: EvolutionSettings, seed: int) -> str:
    """A digest of the settings and seed: a checkpoint is only resumed by the same search
    (with any number of fitness workers: they do not change the results)."""
    fields = {k: v for k, v in to_dict(settings).items() if k != "workers"}  # same results
    text = json.dumps([fields, seed], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class EvolutionEngine:
    """Runs one search (see the module docstring) and keeps its checkpoints in ``directory``.

    Args:
        settings: The search's settings.
        search: How genomes are played and varied (:func:`prepare_search`).
        seed: Seeds every draw.
        directory: Checkpoints, ``genealogy.json`` and ``final.json`` go here.
        evaluator: Plays genomes (owns the worker pool); closed by the caller.
        recorder: Writes the genealogy to a knowledge graph (``None``: not recorded).
        log: Progress lines.
        log_metrics: Each generation's summary (a run directory's ``log_metrics``).
        progress: Show a progress bar on stderr (``None``: when stderr is a terminal).
    """

    def __init__(
        self,
        settings: EvolutionSettings,
        search: Search,
        *,
        seed: int,
        directory: Path,
        evaluator: FitnessEvaluator,
        recorder: GenealogyRecorder | None = None,
        log: Log = print,
        log_metrics: MetricsLog | None = None,
        progress: bool | None = None,
    ) -> None:
        self.settings, self.search, self.seed = settings, search, seed
        self.directory = Path(directory)
        self.evaluator, self.recorder = evaluator, recorder
        self.log, self.log_metrics = log, log_metrics
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.selection: SelectionStrategy = make_selection(
            settings.selection,
            tournament_size=settings.tournament_size,
            rank_pressure=settings.rank_pressure,
        )
        self.fingerprint = settings_fingerprint(settings, seed)
        self.genealogy = Genealogy()
        self.archive = MAPElitesArchive(settings.features)
        self.population = Population([[] for _ in range(settings.islands)])
        self.history: list[GenerationStats] = []
        self._cache: dict[Genome, Fitness] = {}
        self._refined: dict[Genome, Refinement] = {}
        self.refining = search.train.refine is not None and search.train.refine.enabled
        """Whether every new genome is refined by a search (``evolution.search_refine``)."""
        self._order = 0
        self._evaluations = 0

    @property
    def generations_dir(self) -> Path:
        return self.directory / GENERATIONS_DIR

    # -- the loop ------------------------------------------------------------------------------

    def run(self, *, resume: bool = False) -> EvolutionResult:
        """Search (from the last checkpoint when ``resume``), choose, and return the result.

        Raises:
            ConfigError: when ``directory`` holds another search's checkpoints, or this
                search's without ``resume``.
        """
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        start = time.perf_counter()
        last = self._load() if resume else None
        if not resume and self._checkpoint_files():
            raise ConfigError(
                f"{self.generations_dir} holds a search already: resume it (resume: true) or "
                "use another directory"
            )
        total = self.settings.generations
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not self.progress,
        )
        with bar:
            generations = bar.add_task("evolution: generations", total=total + 1)
            genomes = bar.add_task("evolution: genomes played", total=None)

            def played(n: int) -> None:
                bar.advance(genomes, n)

            if last is None:
                self._initial_population(played)
                self.log(self._line(self.history[-1]))
                first = 1
            else:
                self.log(f"evolution: resumed after generation {last} ({self.generations_dir})")
                first = last + 1
            bar.update(generations, completed=first)
            for generation in range(first, total + 1):
                self._generation(generation, played)
                self.log(self._line(self.history[-1]))
                bar.advance(generations)
        return replace(self._choose(last), seconds=time.perf_counter() - start)

    def _line(self, stats: GenerationStats) -> str:
        return (
            f"evolution: generation {stats.generation}/{self.settings.generations}: best "
            f"{stats.best:.4f}, mean {stats.mean:.4f}, diversity {stats.diversity:.2f}"
            + (f", archive {stats.archive_coverage:.0%}" if self.archive.enabled else "")
            + f" ({stats.seconds:.1f} s)"
        )

    def _initial_population(self, played: Callable[[int], None]) -> None:
        started = time.perf_counter()
        s = self.settings
        islands: list[list[tuple[Genome, str, tuple[Individual, ...]]]] = []
        given = list(self.search.initial[: s.population])
        requests: list[tuple[int, int, ChildRequest, Individual]] = []
        seeds_by_island: list[list[Individual]] = []
        for island in range(s.islands):
            rng = np.random.default_rng(derive_seed(self.seed, "initial", island))
            seeded = [
                self._new(genome, 0, island, INITIAL, (), f"g0-i{island}-{n}")
                for n, genome in enumerate(given)
            ]
            seeds_by_island.append(seeded)
            members: list[tuple[Genome, str, tuple[Individual, ...]]] = [
                (ind.genome, INITIAL, ()) for ind in seeded
            ]
            while len(members) < s.population:
                genome = self.search.random(rng) if self.search.random is not None else None
                if genome is not None:
                    members.append((genome, INITIAL, ()))
                    continue
                if not seeded:
                    raise ConfigError("evolution.initial: prompt genomes need initial prompts")
                parent = seeded[(len(members) - len(seeded)) % len(seeded)]
                seed = derive_seed(self.seed, "initial", island, len(members))
                requests.append(
                    (island, len(members), ChildRequest("mutation", (parent.genome,), seed), parent)
                )
                members.append((parent.genome, "", (parent,)))  # replaced by the child below
            islands.append(members)
        children = self.search.variation.make([r for _, _, r, _ in requests])
        for (island, place, _, parent), (genome, operator) in zip(requests, children, strict=True):
            islands[island][place] = (genome, operator, (parent,))
        # fitness of every genome at once (seeded ones included), then the individuals
        genomes = [g for members in islands for g, _, _ in members]
        fitness = self._evaluate(genomes, played)
        refined = self._refine(genomes, fitness, played)
        made: list[Individual] = []
        for island, members in enumerate(islands):
            seeded = seeds_by_island[island]
            current = []
            for n, (genome, operator, parents) in enumerate(members):
                if n < len(seeded):
                    ind = _with_fitness(seeded[n], fitness[genome])
                else:
                    ind = self._new(
                        genome,
                        0,
                        island,
                        operator,
                        tuple(p.id for p in parents),
                        f"g0-i{island}-{n}",
                        fitness[genome],
                    )
                made.append(ind)
                if self.refining:
                    ind = self._refined_individual(ind, refined[genome])
                    made.append(ind)
                current.append(ind)
            self.population.islands[island] = current
        self._commit(0, made, started)

    def _generation(self, generation: int, played: Callable[[int], None]) -> None:
        started = time.perf_counter()
        s = self.settings
        plans: list[tuple[int, ChildRequest, tuple[Individual, ...]]] = []
        for island, members in enumerate(self.population.islands):
            rng = np.random.default_rng(derive_seed(self.seed, "generation", generation, island))
            if s.strategy == "ga":
                plans += self._ga_requests(generation, island, members, rng)
            else:
                plans += self._de_requests(generation, island, members, rng)
        children = self.search.variation.make([request for _, request, _ in plans])
        fitness = self._evaluate([genome for genome, _ in children], played)
        refined = self._refine([genome for genome, _ in children], fitness, played)
        made: list[Individual] = []
        counters = [0] * s.islands
        by_island: list[list[Individual]] = [[] for _ in range(s.islands)]
        for (island, _, parents), (genome, operator) in zip(plans, children, strict=True):
            child = self._new(
                genome,
                generation,
                island,
                operator,
                tuple(dict.fromkeys(p.id for p in parents)),
                f"g{generation}-i{island}-{counters[island]}",
                fitness[genome],
            )
            counters[island] += 1
            made.append(child)
            if self.refining:
                child = self._refined_individual(child, refined[genome])
                made.append(child)
            by_island[island].append(child)
        for island, children_here in enumerate(by_island):
            members = self.population.islands[island]
            if s.strategy == "ga":
                elites = ranked(members)[: s.elitism]
                self.population.islands[island] = elites + children_here
            else:  # one-to-one: the trial replaces its target when at least as fit
                self.population.islands[island] = [
                    trial if trial.value >= target.value else target
                    for target, trial in zip(members, children_here, strict=True)
                ]
        if s.islands > 1 and s.migration_every and generation % s.migration_every == 0:
            counter = itertools.count()

            def copy(ind: Individual, destination: int) -> Individual:
                return self._new(
                    ind.genome,
                    generation,
                    destination,
                    MIGRATION,
                    (ind.id,),
                    f"g{generation}-i{destination}-m{next(counter)}",
                    ind.fitness,
                )

            made += self.population.migrate(s.migrants, copy)
        self._commit(generation, made, started)

    def _pick(
        self, members: Sequence[Individual], k: int, rng: np.random.Generator
    ) -> list[Individual]:
        """``k`` GA parents: from the archive with probability ``archive_rate`` (when there is
        one), else by the selection strategy."""
        elites = self.archive.elites()
        picked = []
        for _ in range(k):
            if elites and rng.random() < self.settings.archive_rate:
                picked.append(elites[int(rng.integers(len(elites)))])
            else:
                [i] = self.selection.select(score_matrix(members), 1, rng)
                picked.append(members[i])
        return picked

    def _ga_requests(
        self, generation: int, island: int, members: Sequence[Individual], rng: np.random.Generator
    ) -> list[tuple[int, ChildRequest, tuple[Individual, ...]]]:
        s = self.settings
        plans = []
        for c in range(s.population - s.elitism):
            crossover = rng.random() < s.crossover_rate
            parents = tuple(self._pick(members, 2 if crossover else 1, rng))
            seed = derive_seed(self.seed, "child", generation, island, c)
            how: How = "crossover" if crossover else "mutation"
            request = ChildRequest(how, tuple(p.genome for p in parents), seed)
            plans.append((island, request, parents))
        return plans

    def _de_requests(
        self, generation: int, island: int, members: Sequence[Individual], rng: np.random.Generator
    ) -> list[tuple[int, ChildRequest, tuple[Individual, ...]]]:
        best = ranked(members)[0]
        plans: list[tuple[int, ChildRequest, tuple[Individual, ...]]] = []
        for t, target in enumerate(members):
            others = [m for i, m in enumerate(members) if i != t]
            r1 = others[int(rng.integers(len(others)))]
            pool = [m for m in others if m.id != r1.id] + [
                e for e in self.archive.elites() if e.id not in {target.id, r1.id}
            ]
            r2 = pool[int(rng.integers(len(pool)))]
            parents = (target, best, r1, r2)
            seed = derive_seed(self.seed, "child", generation, island, t)
            request = ChildRequest("differential", tuple(p.genome for p in parents), seed)
            plans.append((island, request, parents))
        return plans

    # -- bookkeeping -----------------------------------------------------------------------------

    def _new(
        self,
        genome: Genome,
        generation: int,
        island: int,
        operator: str,
        parents: tuple[str, ...],
        id: str,
        fitness: Fitness | None = None,
    ) -> Individual:
        ind = Individual(
            id, genome, generation, island, operator, parents, fitness or Fitness(()), self._order
        )
        self._order += 1
        return ind

    def _evaluate(
        self, genomes: Sequence[Genome], played: Callable[[int], None]
    ) -> dict[Genome, Fitness]:
        """The fitness of each genome, playing only those not met before."""
        todo = [g for g in dict.fromkeys(genomes) if g not in self._cache]
        if todo:
            results = self.evaluator.evaluate(self.search.train, todo, played)
            self._cache.update(zip(todo, results, strict=True))
            self._evaluations += len(todo)
        return {g: self._cache[g] for g in genomes}

    def _refine(
        self,
        genomes: Sequence[Genome],
        fitness: Mapping[Genome, Fitness],
        played: Callable[[int], None],
    ) -> dict[Genome, Refinement]:
        """Each genome's refinement by a search (none when refinement is off), refining only
        those not met before."""
        if not self.refining:
            return {}
        todo = [g for g in dict.fromkeys(genomes) if g not in self._refined]
        if todo:
            results = self.evaluator.refine(
                self.search.train, [(g, fitness[g]) for g in todo], played
            )
            self._refined.update(zip(todo, results, strict=True))
        return {g: self._refined[g] for g in genomes}

    def _refined_individual(self, raw: Individual, refinement: Refinement) -> Individual:
        """The refined version of ``raw``: its child by the operator :data:`~.refine.REFINE`."""
        return self._new(
            refinement.genome,
            raw.generation,
            raw.island,
            REFINE,
            (raw.id,),
            f"{raw.id}r",
            refinement.fitness,
        )

    def _commit(self, generation: int, made: Sequence[Individual], started: float) -> None:
        """Record ``made``, update the archive, write the knowledge graph and the checkpoint."""
        unrefined = unrefined_ids(made)  # replaced by their refinement: never members
        for ind in made:
            self.genealogy.add(ind)
            if ind.operator != MIGRATION and ind.id not in unrefined:
                self.archive.offer(ind)
        members = self.population.members
        stats = GenerationStats(
            generation=generation,
            best=max(ind.value for ind in members),
            mean=float(np.mean([ind.value for ind in members])),
            diversity=self.population.diversity(),
            archive_coverage=self.archive.coverage(),
            evaluations=self._evaluations,
            seconds=time.perf_counter() - started,
        )
        self.history.append(stats)
        if self.recorder is not None:
            self.recorder.record(made, self.genealogy.individuals)
        checkpoint = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "generation": generation,
            "individuals": [ind.to_dict() for ind in made],
            "islands": self.population.ids(),
            "archive": self.archive.to_dict(),
            "stats": asdict(stats),
        }
        atomic_write(
            self.generations_dir / f"{generation:05d}.json",
            (json.dumps(checkpoint) + "\n").encode(),
        )
        if self.log_metrics is not None:
            self.log_metrics(generation, stats.as_metrics())

    def _checkpoint_files(self) -> list[Path]:
        if not self.generations_dir.is_dir():
            return []
        return sorted(self.generations_dir.glob("[0-9]" * 5 + ".json"))

    def _load(self) -> int | None:
        """Restore the state after the last complete generation; its number, or ``None``
        when there is no checkpoint."""
        last = None
        islands: list[list[str]] = []
        archive: list[list[Any]] = []
        for expected, path in enumerate(self._checkpoint_files()):
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or data.get("generation") != expected:
                raise ConfigError(f"{path}: not checkpoint {expected} of format {FORMAT}")
            if data.get("fingerprint") != self.fingerprint:
                raise ConfigError(
                    f"{path}: the checkpoint is of a search with other settings or another "
                    "seed; resume with those, or use another directory"
                )
            for record in data["individuals"]:
                self.genealogy.add(Individual.from_dict(record))
            islands, archive, last = data["islands"], data["archive"], expected
            self.history.append(GenerationStats(**data["stats"]))
        if last is None:
            return None
        known = self.genealogy.individuals
        self.population = Population([[known[i] for i in ids] for ids in islands])
        self.archive.restore(archive, known)
        self._order = 1 + max(ind.order for ind in known.values())
        for ind in known.values():
            if ind.operator == REFINE:
                parent = known[ind.parents[0]]
                self._refined.setdefault(parent.genome, Refinement(ind.genome, ind.fitness))
            elif ind.operator != MIGRATION:
                self._cache.setdefault(ind.genome, ind.fitness)
        return last

    # -- the final choice ----------------------------------------------------------------------

    def _choose(self, resumed_from: int | None) -> EvolutionResult:
        s = self.settings
        known = self.genealogy.individuals
        unrefined = unrefined_ids(known.values())
        generation0 = [i for i in known.values() if i.generation == 0 and i.id not in unrefined]
        baseline = ranked(generation0)[0]
        distinct: dict[Genome, Individual] = {}
        for ind in ranked(self.population.members + self.archive.elites()):
            distinct.setdefault(ind.genome, ind)
        finalists = list(distinct.values())[: s.finalists]
        held_out_spec = self.search.held_out
        chosen, held, base_held, comparison = finalists[0], None, None, None
        scores: dict[Genome, Fitness] = {}
        if held_out_spec is not None:
            final = self.directory / FINAL_FILE
            genomes = list(dict.fromkeys([*(f.genome for f in finalists), baseline.genome]))
            scores = self._held_out(final, held_out_spec, genomes)
            chosen = max(finalists, key=lambda f: (scores[f.genome].mean, -finalists.index(f)))
            held, base_held = scores[chosen.genome], scores[baseline.genome]
            from llm_trainer.benchmarks.stats import paired_compare

            comparison = paired_compare(held.scores, base_held.scores, seed=self.seed).as_dict()
        if self.recorder is not None:
            self.recorder.record_choice(
                chosen,
                held,
                first_seed=held_out_spec.seeds[0] if held_out_spec else None,
                difficulty=held_out_spec.difficulty if held_out_spec else None,
            )
        self.genealogy.write(self.directory / "genealogy.json")
        return EvolutionResult(
            chosen=chosen,
            held_out=held,
            baseline=baseline,
            baseline_held_out=base_held,
            comparison=comparison,
            finalists=tuple(
                (f.id, f.value, scores[f.genome].mean if f.genome in scores else None)
                for f in finalists
            ),
            history=tuple(self.history),
            genealogy=self.genealogy,
            population=self.population,
            archive=self.archive,
            resumed_from=resumed_from,
            evaluations=self._evaluations,
        )

    def _held_out(
        self, path: Path, spec: EvaluationSpec, genomes: Sequence[Genome]
    ) -> dict[Genome, Fitness]:
        """Held-out fitness of ``genomes`` (kept in ``final.json``: a resumed run that had
        finished them does not play them again)."""
        stored: dict[str, Any] = {}
        if path.is_file():
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored.get("fingerprint") != self.fingerprint:
                stored = {}
        known = {
            Genome(r["kind"], r["text"]): Fitness.from_dict(r["fitness"])
            for r in stored.get("held_out", [])
        }
        todo = [g for g in genomes if g not in known]
        if todo:
            self.log(f"evolution: {len(todo)} finalists on {len(spec.seeds)} held-out seeds")
            results = self.evaluator.evaluate(spec, todo)
            if spec.refine is not None and spec.refine.enabled:  # scored as in the search
                refined = self.evaluator.refine(spec, list(zip(todo, results, strict=True)))
                results = [r.fitness for r in refined]
            known.update(zip(todo, results, strict=True))
            self._evaluations += len(todo)
        records = [
            {"kind": g.kind, "text": g.text, "fitness": f.to_dict()} for g, f in known.items()
        ]
        document = {"fingerprint": self.fingerprint, "held_out": records}
        atomic_write(path, (json.dumps(document) + "\n").encode())
        return {g: known[g] for g in genomes}


def unrefined_ids(individuals: Iterable[Individual]) -> set[str]:
    """The ids of the individuals a search refined (each is the parent of an individual made
    by :data:`~.refine.REFINE`, which took its place)."""
    return {p for ind in individuals if ind.operator == REFINE for p in ind.parents}


def canonical(space: SolutionSpace, text: str) -> str:
    """A solution's text as its space writes it (``"3,1"`` -> ``"1, 3"``)."""
    if isinstance(space, TourSpace):
        return space.render(space.parse(text))
    return space.render(space.parse(text))


def _with_fitness(ind: Individual, fitness: Fitness) -> Individual:
    return replace(ind, fitness=fitness)


# -- preparing a search ------------------------------------------------------------------------


def few_shot_pool(
    env_id: str, seeds: Sequence[int], *, difficulty: int | None = None
) -> list[Example]:
    """Solved examples for few-shot genomes: the oracle's episodes of ``seeds`` as ``(task,
    what it did)`` pairs.

    Raises:
        ConfigError: for an env without an oracle (tool-use and problem envs have one).
    """
    from llm_trainer.algorithms.rollout import oracle_trajectories
    from llm_trainer.core.knowledge.recording import solution_text

    try:
        solved = oracle_trajectories(env_id, seeds, difficulty=difficulty)
    except TypeError as exc:
        raise ConfigError(f"evolution.genome: few_shot needs an oracle ({exc})") from None
    return [(one_line(t.prompt), one_line(solution_text(t))) for t in solved if t.success]


def prepare_search(
    settings: EvolutionSettings,
    *,
    seed: int,
    held_out_seeds: Sequence[int] = (),
    backend: str | None = None,
    system_prompt: str | None = None,
    operator_backend: Any = None,
) -> Search:
    """The evaluations, operators and initial genomes of ``settings``.

    Args:
        settings: The search.
        seed: Seeds the agents' sampling.
        held_out_seeds: The seeds of the final choice (ignored for solution genomes).
        backend: The LLM playing the genomes (``transformers:DIR``), for every kind but
            ``solution``.
        system_prompt: The base system prompt of few-shot and sampling genomes (``None``: the
            env's).
        operator_backend: A ready backend answering LLM operators (``operators: llm``).
    """
    s = settings
    train_seeds = tuple(range(s.first_seed, s.first_seed + s.episodes))
    tasks, env_prompt = probe_env(
        s.env_id, train_seeds, difficulty=s.difficulty, env_kwargs=s.env_kwargs
    )
    base_prompt = env_prompt if system_prompt is None else system_prompt
    common: dict[str, Any] = {
        "env_id": s.env_id,
        "kind": s.genome,
        "difficulty": s.difficulty,
        "env_kwargs": dict(s.env_kwargs),
        "backend": backend if s.genome != "solution" else None,
        "system_prompt": base_prompt,
        "temperature": s.temperature,
        "max_new_tokens": s.max_new_tokens,
        "sampling_seed": seed,
        "batch_size": s.batch_size,
        "refine": s.search_refine if s.search_refine.enabled else None,
    }
    train = EvaluationSpec(seeds=train_seeds, **common)
    held_out = None
    if s.genome != "solution":
        if not held_out_seeds:
            raise ConfigError("eval.episodes: the final choice needs held-out seeds")
        overlap = set(held_out_seeds) & set(train_seeds)
        if overlap:
            raise ConfigError(
                f"eval.first_seed: held-out seeds {sorted(overlap)[:5]} are also fitness seeds "
                "(evolution.first_seed .. + episodes); move one of the two ranges"
            )
        held_out = EvaluationSpec(seeds=tuple(held_out_seeds), **common)
    space: SolutionSpace | None = None
    examples: list[Example] = []
    initial = [Genome(s.genome, text) for text in s.initial]
    if s.genome == "sampling":
        initial = [Genome("sampling", render_sampling(parse_sampling(g.text))) for g in initial]
    elif s.genome == "few_shot":
        initial = [Genome("few_shot", render_examples(parse_examples(g.text))) for g in initial]
    if s.genome == "solution":
        space = solution_space(tasks[0].statement)
        if s.strategy == "de" and isinstance(space, TourSpace):
            raise ConfigError("evolution.strategy: 'de' has no operator for TSP tours; use ga")
        initial = [Genome("solution", canonical(space, g.text)) for g in initial]
    elif s.genome == "few_shot":
        pool_seeds = range(s.pool_first_seed, s.pool_first_seed + s.examples_pool)
        examples = few_shot_pool(s.env_id, list(pool_seeds), difficulty=s.difficulty)
        if len(examples) < s.examples:
            raise ConfigError(
                f"evolution.examples_pool: the oracle solved {len(examples)} of its "
                f"{s.examples_pool} episodes, fewer than examples ({s.examples})"
            )
    elif s.genome == "prompt" and not initial:  # the agent's prompt: the model's, else the env's
        initial = [Genome("prompt", system_prompt or env_prompt)]
    variation: Variation
    if s.operators == "llm":
        if operator_backend is None:
            raise ConfigError("evolution.operators: llm needs an operator model")
        variation = LLMVariation(
            operator_backend,
            temperature=s.operator_temperature,
            max_new_tokens=s.operator_max_new_tokens,
        )
    else:
        sentences = [x for g in initial for x in split_sentences(g.text)]
        variation = programmatic_variation(
            s.genome,
            space=space,
            examples=examples,
            sentences=sentences,
            rate=s.mutation_rate,
            scale=s.mutation_scale,
            factor=s.de_factor,
            crossover_rate=s.de_crossover_rate,
            max_examples=s.max_examples,
        )

    def make_random(rng: np.random.Generator) -> Genome | None:
        return random_genome(s.genome, rng, space=space, examples=examples, count=s.examples)

    return Search(
        train=train,
        held_out=held_out,
        variation=variation,
        initial=tuple(initial),
        random=None if s.genome == "prompt" else make_random,
        tasks=tuple(tasks),
    )
