"""Genealogy: who came from whom, in the knowledge graph and as a family-tree picture.

Every individual a search makes is kept (:class:`Genealogy`): its parents, the operator, its
generation and island, and its per-instance scores. :meth:`Genealogy.check` verifies that it
is complete (every parent is known and was made earlier) and acyclic.

:class:`GenealogyRecorder` writes it to the knowledge graph through its public records, one
transaction per generation (written before the generation's checkpoint, and idempotent: a
generation redone after a kill writes the same records again):

* each individual is an ``agent`` node, spec ``evolution:<experiment id>#<individual id>``,
  named by its id (``g<generation>-i<island>-<n>``: generation and island), fingerprinted by
  its genome's digest; it is ``derived_from`` each parent (relation: the operator; the child's
  generation), ``derived_from`` the experiment (``made in``), and ``derived_from`` the model
  that plays it (``runs``) when there is one;
* its per-instance scores are ``attempted_by`` edges from each fitness seed's ``problem`` node
  (the episode's reward, turns and success, run: the experiment);
* the chosen individual's held-out scores are an ``evaluated_on`` edge to the experiment (key
  ``held_out``); a chosen solution that succeeds is also a ``solution`` node that
  ``solved_by`` links to its problem.

:func:`draw_family_tree` draws it: generations top to bottom, islands side by side, each
individual coloured by fitness, lines from parents to children, the chosen one's ancestry in
red.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_trainer.algorithms.evolution.fitness import Fitness, Task
from llm_trainer.algorithms.evolution.population import INITIAL, MIGRATION, Individual
from llm_trainer.core.rundir import atomic_write

if TYPE_CHECKING:
    import networkx as nx

    from llm_trainer.core.knowledge import Agent, KnowledgeGraph


class Genealogy:
    """Every individual of a search, by id, in the order they were made."""

    def __init__(self, individuals: Iterable[Individual] = ()) -> None:
        self.individuals: dict[str, Individual] = {}
        for individual in individuals:
            self.add(individual)

    def __len__(self) -> int:
        return len(self.individuals)

    def __contains__(self, individual_id: object) -> bool:
        return individual_id in self.individuals

    def __getitem__(self, individual_id: str) -> Individual:
        return self.individuals[individual_id]

    def add(self, individual: Individual) -> None:
        """Record a new individual.

        Raises:
            ValueError: for an id recorded before.
        """
        if individual.id in self.individuals:
            raise ValueError(f"individual {individual.id} is already recorded")
        self.individuals[individual.id] = individual

    def graph(self) -> nx.DiGraph[str]:
        """Parent -> child edges over every individual (attributes: the individual's fields)."""
        import networkx as nx

        graph: nx.DiGraph[str] = nx.DiGraph()
        for ind in self.individuals.values():
            graph.add_node(
                ind.id,
                generation=ind.generation,
                island=ind.island,
                operator=ind.operator,
                fitness=ind.value,
            )
        for ind in self.individuals.values():
            for parent in ind.parents:
                graph.add_edge(parent, ind.id, operator=ind.operator)
        return graph

    def ancestors(self, individual_id: str) -> set[str]:
        """The ids of every ancestor of ``individual_id``."""
        seen: set[str] = set()
        stack = list(self.individuals[individual_id].parents)
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.individuals[current].parents)
        return seen

    def check(self, instances: int | None = None) -> None:
        """Raise :class:`ValueError` unless the genealogy is complete and acyclic: every parent
        is recorded and was made earlier (by ``order`` and generation), only initial
        individuals have no parents, a migrant has one parent, and every individual has one
        score per instance (``instances``, when given)."""
        import networkx as nx

        for ind in self.individuals.values():
            if not ind.operator:
                raise ValueError(f"{ind.id} has no operator")
            if (ind.operator == INITIAL) != (not ind.parents):
                raise ValueError(
                    f"{ind.id}: operator {ind.operator!r} with {len(ind.parents)} parents"
                )
            if ind.operator == MIGRATION and len(ind.parents) != 1:
                raise ValueError(f"{ind.id}: a migrant has one parent, got {ind.parents}")
            if instances is not None and len(ind.fitness.scores) != instances:
                raise ValueError(
                    f"{ind.id} has {len(ind.fitness.scores)} scores for {instances} instances"
                )
            for parent_id in ind.parents:
                parent = self.individuals.get(parent_id)
                if parent is None:
                    raise ValueError(f"{ind.id}: parent {parent_id} is not recorded")
                if parent.order >= ind.order or parent.generation > ind.generation:
                    raise ValueError(f"{ind.id} was made before its parent {parent_id}")
        if not nx.is_directed_acyclic_graph(self.graph()):
            raise ValueError("the genealogy has a cycle")

    def to_json(self) -> list[dict[str, Any]]:
        """Every individual as a dict, in the order they were made."""
        return [ind.to_dict() for ind in sorted(self.individuals.values(), key=lambda i: i.order)]

    def write(self, path: Path) -> Path:
        """The genealogy as JSON (atomically)."""
        return atomic_write(path, (json.dumps(self.to_json(), indent=1) + "\n").encode())


class GenealogyRecorder:
    """Writes a search's genealogy to a knowledge graph (see the module docstring).

    Args:
        knowledge: The graph.
        experiment: The experiment's node id (already in the graph, or added here).
        env_id: The env of the fitness seeds.
        tasks: Each fitness seed's problem, in seed order.
        model_dir: The model playing the genomes (``None`` for solution genomes).
    """

    def __init__(
        self,
        knowledge: KnowledgeGraph,
        experiment: str,
        env_id: str,
        tasks: Sequence[Task],
        model_dir: Path | None = None,
    ) -> None:
        from llm_trainer.core.knowledge import Problem
        from llm_trainer.core.knowledge.recording import model_record

        self.knowledge, self.experiment, self.env_id = knowledge, experiment, env_id
        self.tasks = list(tasks)
        self.problems = [
            Problem(t.statement, env_id=env_id, seed=t.seed, difficulty=t.difficulty, tools=t.tools)
            for t in self.tasks
        ]
        self.model = model_record(model_dir, "given") if model_dir is not None else None

    def agent_id(self, individual: Individual) -> str:
        """The node id of ``individual``'s agent."""
        return self._agent(individual).node_id

    def _agent(self, individual: Individual) -> Agent:
        from llm_trainer.core.knowledge import Agent

        spec = f"evolution:{self.experiment}#{individual.id}"
        return Agent(spec, name=individual.id, fingerprint=individual.genome.digest)

    def record(self, individuals: Sequence[Individual], known: Mapping[str, Individual]) -> None:
        """Write ``individuals`` (one transaction); ``known`` finds their parents."""
        if not individuals:
            return
        from llm_trainer.core.knowledge import Attempt, Derivation

        with self.knowledge.batch() as batch:
            problems = [batch.add(p) for p in self.problems]
            model = batch.add(self.model) if self.model is not None else None
            for ind in individuals:
                agent = batch.add(self._agent(ind))
                made = Derivation("made in", ind.generation)
                batch.add_edge(agent, "derived_from", self.experiment, made)
                if model is not None:
                    batch.add_edge(agent, "derived_from", model, Derivation("runs"))
                for parent_id in ind.parents:
                    parent = batch.add(self._agent(known[parent_id]))
                    relation = Derivation(ind.operator, ind.generation)
                    batch.add_edge(agent, "derived_from", parent, relation)
                for problem, attempt in zip(problems, _attempts(ind.fitness), strict=True):
                    outcome = Attempt(run=self.experiment, **attempt)
                    batch.add_edge(problem, "attempted_by", agent, outcome, key=self.experiment)

    def record_choice(
        self,
        chosen: Individual,
        held_out: Fitness | None,
        *,
        first_seed: int | None,
        difficulty: int | None,
    ) -> None:
        """The chosen individual's held-out scores (and, for a solution genome that solved its
        problem, the solution)."""
        from llm_trainer.core.knowledge import Attempt, Derivation, Evaluation, Solution

        with self.knowledge.batch() as batch:
            agent = batch.add(self._agent(chosen))
            if held_out is not None:
                metrics = {"mean_reward": held_out.mean, "success": held_out.success_rate}
                scores = Evaluation(
                    metrics, "after", self.env_id, difficulty, len(held_out.scores), first_seed
                )
                batch.add_edge(agent, "evaluated_on", self.experiment, scores, key="held_out")
            if chosen.genome.kind == "solution" and chosen.fitness.success_rate == 1.0:
                problem = batch.add(self.problems[0])
                solution = batch.add(
                    Solution(chosen.genome.text, problem=problem, reward=chosen.value)
                )
                solved = Attempt(reward=chosen.value, agent=agent, run=self.experiment)
                batch.add_edge(problem, "solved_by", solution, solved, key=self.experiment)
                batch.add_edge(solution, "derived_from", agent, Derivation("found by"))


def _attempts(fitness: Fitness) -> list[dict[str, Any]]:
    out = []
    for i, score in enumerate(fitness.scores):
        attempt: dict[str, Any] = {"reward": round(score, 10)}
        if i < len(fitness.successes):
            attempt["metrics"] = {"success": fitness.successes[i]}
        if i < len(fitness.steps):
            attempt["turns"] = fitness.steps[i]
        out.append(attempt)
    return out


# -- the family tree ----------------------------------------------------------------------------


_Segment = tuple[tuple[float, float], tuple[float, float]]


def tree_positions(individuals: Sequence[Individual]) -> dict[str, tuple[float, float]]:
    """``(x, y)`` of each individual: ``y`` its generation (downwards), ``x`` its place in its
    generation, islands side by side with a gap between them."""
    by_generation: dict[int, list[Individual]] = {}
    for ind in individuals:
        by_generation.setdefault(ind.generation, []).append(ind)
    positions: dict[str, tuple[float, float]] = {}
    for generation, members in by_generation.items():
        members.sort(key=lambda i: (i.island, i.order))
        x, island = 0.0, members[0].island
        for ind in members:
            if ind.island != island:
                x, island = x + 1.5, ind.island  # a gap between islands
            positions[ind.id] = (x, -float(generation))
            x += 1.0
    return positions


#: Above this many individuals the picture shows the highlighted one's ancestry only.
MAX_DRAWN = 5000


def draw_family_tree(
    genealogy: Genealogy, path: Path, *, highlight: str | None = None, title: str = ""
) -> Path:
    """Draw ``genealogy`` to a PNG at ``path`` (written atomically); ``highlight``'s ancestry
    is drawn in red (and alone, above :data:`MAX_DRAWN` individuals). Needs matplotlib (the
    ``train`` or ``bench`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    lineage = genealogy.ancestors(highlight) | {highlight} if highlight else set()
    individuals = sorted(genealogy.individuals.values(), key=lambda i: i.order)
    if len(individuals) > MAX_DRAWN and lineage:
        title = title or f"the ancestry of {highlight}: {len(lineage)} of {len(individuals)}"
        individuals = [ind for ind in individuals if ind.id in lineage]
    positions = tree_positions(individuals)
    width = max(x for x, _ in positions.values()) + 1
    generations = max(ind.generation for ind in individuals) + 1
    fig, ax = plt.subplots(figsize=(min(24, 4 + 0.25 * width), min(24, 2 + 0.6 * generations)))
    plain: list[_Segment] = []
    red: list[_Segment] = []
    for ind in individuals:
        for parent in ind.parents:
            segment = (positions[parent], positions[ind.id])
            (red if ind.id in lineage and parent in lineage else plain).append(segment)
    ax.add_collection(LineCollection(plain, colors="0.75", linewidths=0.5, zorder=1))
    ax.add_collection(LineCollection(red, colors="tab:red", linewidths=1.8, zorder=2))
    size = max(8.0, min(80.0, 4000.0 / max(1, len(individuals))))
    values = [ind.value for ind in individuals]
    points = None
    for marker, migrants in (("o", False), ("s", True)):
        chosen = [ind for ind in individuals if (ind.operator == MIGRATION) == migrants]
        if not chosen:
            continue
        points = ax.scatter(
            [positions[i.id][0] for i in chosen],
            [positions[i.id][1] for i in chosen],
            c=[i.value for i in chosen],
            cmap="viridis",
            vmin=min(values),
            vmax=max(values) if max(values) > min(values) else min(values) + 1e-9,
            s=size,
            marker=marker,
            edgecolors=["tab:red" if i.id in lineage else "none" for i in chosen],
            zorder=3,
        )
    assert points is not None  # every genealogy has initial individuals
    fig.colorbar(
        points, ax=ax, fraction=0.03, pad=0.01, label="fitness (mean score on the fitness seeds)"
    )
    ax.set_yticks([-g for g in range(generations)], [str(g) for g in range(generations)])
    ax.set_ylabel("generation")
    ax.set_xticks([])
    ax.set_title(title or f"family tree: {len(individuals)} individuals (squares: migrants)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
