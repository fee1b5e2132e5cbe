"""MCTS inside evolution (issue 16, item 3): ``evolution.search_refine`` improves each new genome
by a short tree search before selection. A refined individual is recorded as the unrefined one's
child (operator ``mcts_refine``, in the genealogy file and the knowledge graph), is never worse
on any of its seeds, takes its place in the population, and the search is deterministic
(whatever the number of workers) and resumable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm_trainer.agents.backends import Backend, ChatPrompt, SamplingConfig
from llm_trainer.algorithms.config import load_experiment
from llm_trainer.algorithms.evolution import (
    EvolutionEngine,
    EvolutionSettings,
    FitnessEvaluator,
    Genealogy,
    Genome,
    Individual,
    prepare_search,
)
from llm_trainer.algorithms.evolution.fitness import EvaluationSpec, evaluate_genome
from llm_trainer.algorithms.evolution.refine import REFINE, SearchRefine, refine_genome
from llm_trainer.algorithms.experiment import run_experiment
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.knowledge import Experiment, KnowledgeGraph
from llm_trainer.core.records import Generation

ROOT = Path(__file__).resolve().parents[3]
KNAPSACK = ROOT / "configs" / "evolve_knapsack.yaml"
quiet = lambda message: None  # noqa: E731


def check_refinements(genealogy: Genealogy) -> list[tuple[Individual, Individual]]:
    """Every (unrefined, refined) pair; asserts the refined one is never worse on any seed."""
    pairs = []
    for ind in genealogy.individuals.values():
        if ind.operator != REFINE:
            continue
        [parent_id] = ind.parents
        parent = genealogy[parent_id]
        assert parent.operator != REFINE
        assert ind.id == f"{parent.id}r"
        assert (ind.generation, ind.island) == (parent.generation, parent.island)
        assert all(
            a >= b for a, b in zip(ind.fitness.scores, parent.fitness.scores, strict=True)
        ), (ind, parent)
        pairs.append((parent, ind))
    return pairs


def test_knapsack_children_are_refined_by_mcts_and_recorded_as_their_own_operator(
    tmp_path: Path,
) -> None:
    kg_path = tmp_path / "kg.sqlite"
    overrides = [
        f"output_dir={tmp_path}",
        f"knowledge_path={kg_path}",
        "evolution.population=6",
        "evolution.generations=3",
        "evolution.islands=1",
    ]
    refined_config = load_experiment(
        KNAPSACK, [*overrides, "evolution.search_refine.simulations=16", "name=refined"]
    )
    assert refined_config.settings.search_refine == SearchRefine(simulations=16)
    summary = run_experiment(refined_config, log=quiet)
    run_dir = Path(summary["run_dir"])
    records = json.loads((run_dir / "evolution" / "genealogy.json").read_text())
    genealogy = Genealogy(Individual.from_dict(r) for r in records)
    genealogy.check(instances=1)
    pairs = check_refinements(genealogy)
    # every genome made was refined: the initial population's and every child
    raw = [i for i in genealogy.individuals.values() if i.operator != REFINE]
    assert len(pairs) == len(raw) == 6 + 3 * 5
    improved = [(a, b) for a, b in pairs if b.value > a.value]
    assert improved
    assert all(a.genome != b.genome for a, b in improved)
    assert all(a.genome == b.genome for a, b in pairs if b.value == a.value)
    assert summary["refinements"] == len(pairs)
    assert summary["refinements_improved"] == len(improved)
    # the refined individuals are the population: every member of every generation
    for path in sorted((run_dir / "evolution" / "generations").glob("*.json")):
        checkpoint = json.loads(path.read_text())
        members = [i for island in checkpoint["islands"] for i in island]
        assert all(genealogy[i].operator == REFINE for i in members)
    assert summary["chosen_id"].endswith("r")
    # the knowledge graph holds the refinement as a derivation of its own
    kg = KnowledgeGraph(kg_path)
    experiment = Experiment("refined", run_dir=str(run_dir.resolve())).node_id
    agents = {n.attrs["name"]: n.id for n in kg.children(experiment) if n.kind == "agent"}
    parent, child = improved[0]
    [edge] = [e for e in kg.edges(agents[child.id], "derived_from") if e.target != experiment]
    assert edge.target == agents[parent.id]
    assert edge.attrs == {"relation": REFINE, "generation": child.generation}

    # the same search without refinement: no such operator, and a worse final answer here
    plain = run_experiment(load_experiment(KNAPSACK, [*overrides, "name=plain"]), log=quiet)
    assert plain["refinements"] == 0
    assert summary["chosen_fitness"] >= plain["chosen_fitness"]


def _run(tmp_path: Path, name: str, settings: EvolutionSettings, *, resume: bool = False) -> Any:
    search = prepare_search(settings, seed=0)
    with FitnessEvaluator(settings.workers) as evaluator:
        engine = EvolutionEngine(
            settings, search, seed=0, directory=tmp_path / name, evaluator=evaluator, log=quiet
        )
        return engine.run(resume=resume)


def test_tsp_refinement_is_deterministic_whatever_the_workers_and_resumes(
    tmp_path: Path,
) -> None:
    base: dict[str, Any] = {
        "env_id": "LLMTrainer/TSP-v0",
        "env_kwargs": {"config": {"cities": [9, 9, 9]}, "max_revisions": 0},
        "genome": "solution",
        "episodes": 1,
        "population": 6,
        "generations": 3,
        "search_refine": SearchRefine(simulations=12, depth=3),
    }
    one = _run(tmp_path, "one", EvolutionSettings(**base))
    pairs = check_refinements(one.genealogy)
    assert any(b.value > a.value for a, b in pairs)  # 2-opt moves shortened some tours
    two = _run(tmp_path, "two", EvolutionSettings(**base, workers=2))
    assert two.genealogy.to_json() == one.genealogy.to_json()
    # a search stopped after generation 1 resumes to the same genealogy
    generations = tmp_path / "one" / "generations"
    for late in ("00002.json", "00003.json"):
        (generations / late).unlink()
    resumed = _run(tmp_path, "one", EvolutionSettings(**base), resume=True)
    assert resumed.resumed_from == 1
    assert resumed.genealogy.to_json() == one.genealogy.to_json()
    # without refinement the tours evolve less far in as many generations
    plain = _run(tmp_path, "plain", EvolutionSettings(**{**base, "search_refine": SearchRefine()}))
    assert plain.summary()["refinements"] == 0
    assert one.chosen.value >= plain.chosen.value


def test_a_refined_solution_is_never_worse_than_its_unrefined_version() -> None:
    spec = EvaluationSpec(
        env_id="LLMTrainer/Knapsack-v0",
        seeds=(3,),
        kind="solution",
        env_kwargs={"config": {"items": [12, 12, 12]}, "max_revisions": 0},
        refine=SearchRefine(simulations=8),
    )
    for text in ("none", "1", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12", "2, 5, 7"):
        genome = Genome("solution", text)
        fitness = evaluate_genome(spec, genome)
        refined = refine_genome(spec, genome, fitness)
        assert refined.fitness.scores[0] >= fitness.scores[0]
        assert refined.fitness == evaluate_genome(spec, refined.genome)  # scored as any genome
        assert refined.searches == 1
        assert refined.simulations == 8
    off = refine_genome(
        EvaluationSpec(env_id="LLMTrainer/Knapsack-v0", seeds=(3,), kind="solution"),
        Genome("solution", "1"),
        fitness,
    )
    assert (off.genome, off.fitness, off.searches) == (Genome("solution", "1"), fitness, 0)


def test_bad_refinements_fail_with_an_error_naming_the_problem() -> None:
    with pytest.raises(ConfigError, match=r"search_refine.depth must be >= 1 and <= 10"):
        SearchRefine(simulations=4, depth=11)
    with pytest.raises(ConfigError, match="search_refine must be a mapping"):
        EvolutionSettings(search_refine=4)  # type: ignore[arg-type]
    reasoning = EvaluationSpec(
        env_id="LLMTrainer/Reasoning-v0",
        seeds=(0,),
        kind="solution",
        refine=SearchRefine(simulations=4),
    )
    genome = Genome("solution", "42")
    with pytest.raises(ConfigError, match="for Knapsack-v0 and TSP-v0 problems"):
        refine_genome(reasoning, genome, evaluate_genome(reasoning, genome))


class RecordingBackend(Backend):
    """A real backend that keeps every chat prompt it answers."""

    def __init__(self, inner: Backend) -> None:
        self.inner, self.spec, self.tokenizer = inner, inner.spec, inner.tokenizer
        self.prompts: list[ChatPrompt] = []

    def generate(self, prompts: Any, params: SamplingConfig) -> list[list[Generation]]:
        return self.inner.generate(prompts, params)

    def chat(self, prompts: Any, params: SamplingConfig) -> list[list[Generation]]:
        self.prompts += list(prompts)
        return self.inner.chat(prompts, params)

    @property
    def max_context(self) -> int | None:
        return self.inner.max_context


@pytest.mark.parametrize("env_id", ["LLMTrainer/Calculator-v0", "LLMTrainer/Reasoning-v0"])
def test_a_prompt_genomes_unsolved_episodes_are_searched_with_its_prompt_proposing(
    env_id: str, tiny_model_dir: Path
) -> None:
    from llm_trainer.agents.backends import make_backend

    spec = EvaluationSpec(
        env_id=env_id,
        seeds=(0, 1),
        kind="prompt",
        backend=f"transformers:{tiny_model_dir}",
        max_new_tokens=12,
        refine=SearchRefine(simulations=6, candidates=3, batch_size=3, depth=2),
    )
    genome = Genome("prompt", "Evolved prompt: answer in one step.")
    recording = RecordingBackend(make_backend(spec.backend or "", {}))
    backends: dict[str, Backend] = {spec.backend or "": recording}
    fitness = evaluate_genome(spec, genome, backends)
    played = len(recording.prompts)
    refined = refine_genome(spec, genome, fitness, backends)
    assert refined.genome == genome  # an LLM genome keeps its text; its episodes improve
    assert all(a >= b for a, b in zip(refined.fitness.scores, fitness.scores, strict=True))
    assert refined.searches == sum(not s for s in fitness.successes) == 2  # the model is untrained
    assert refined.simulations == 2 * 6
    assert refined.tokens > 0
    assert sum(refined.fitness.tokens) == sum(fitness.tokens) + refined.tokens
    # the genome's prompt conditioned every proposal of the searches
    searched = recording.prompts[played:]
    assert searched
    assert all(p.messages[0] == {"role": "system", "content": genome.text} for p in searched)
    again = refine_genome(spec, genome, fitness, backends)  # seeded: the same again
    assert (again.genome, again.fitness) == (refined.genome, refined.fitness)


def test_refinement_through_an_executor_equals_the_local_one() -> None:
    from llm_trainer.distributed import LocalExecutor

    spec = EvaluationSpec(
        env_id="LLMTrainer/TSP-v0",
        seeds=(4,),
        kind="solution",
        difficulty=2,  # 7 cities
        env_kwargs={"max_revisions": 0},
        refine=SearchRefine(simulations=8),
    )
    genomes = [Genome("solution", t) for t in ("0 1 2 3 4 5 6", "0 6 5 4 3 2 1", "0 2 4 6 1 3 5")]
    with FitnessEvaluator(1) as local:
        items = list(zip(genomes, local.evaluate(spec, genomes), strict=True))
        expected = local.refine(spec, items)
    with FitnessEvaluator(executor=LocalExecutor(1)) as remote:
        got = remote.refine(spec, items)
    assert [(r.genome, r.fitness) for r in got] == [(r.genome, r.fitness) for r in expected]
    assert remote.refinements == len(genomes)
    assert any(r.fitness.mean > f.mean for r, (_, f) in zip(got, items, strict=True))
