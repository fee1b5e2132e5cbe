"""The generational loop on LLMTrainer/Knapsack-v0 (no model): it improves on its initial
population, its genealogy is complete and acyclic (in the knowledge graph too), it is
deterministic whatever the number of fitness workers, and a killed run resumes at the same
generation with the same population (issue 16, item 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llm_trainer.algorithms.config import load_experiment
from llm_trainer.algorithms.evolution import (
    EvolutionEngine,
    EvolutionSettings,
    FitnessEvaluator,
    Genealogy,
    Individual,
    prepare_search,
)
from llm_trainer.algorithms.evolution.population import FeatureSpec
from llm_trainer.algorithms.experiment import run_experiment
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.knowledge import Experiment, KnowledgeGraph

ROOT = Path(__file__).resolve().parents[3]
KNAPSACK = ROOT / "configs" / "evolve_knapsack.yaml"
quiet = lambda message: None  # noqa: E731


def genealogy_of(run_dir: Path) -> Genealogy:
    records = json.loads((run_dir / "evolution" / "genealogy.json").read_text())
    return Genealogy(Individual.from_dict(r) for r in records)


def checkpoints(run_dir: Path) -> list[dict[str, Any]]:
    files = sorted((run_dir / "evolution" / "generations").glob("*.json"))
    return [json.loads(f.read_text()) for f in files]


def test_knapsack_evolution_improves_and_records_a_complete_acyclic_genealogy(
    tmp_path: Path,
) -> None:
    kg_path = tmp_path / "kg.sqlite"
    config = load_experiment(
        KNAPSACK,
        [
            f"output_dir={tmp_path}",
            f"knowledge_path={kg_path}",
            "evolution.population=10",
            "evolution.generations=12",
            "evolution.islands=2",
            "evolution.migration_every=3",
            "evolution.selection=pareto",
        ],
    )
    summary = run_experiment(config, log=quiet)
    run_dir = Path(summary["run_dir"])
    genealogy = genealogy_of(run_dir)
    genealogy.check(instances=1)  # complete (every parent known and older) and acyclic
    saved = checkpoints(run_dir)
    assert [c["generation"] for c in saved] == list(range(13))
    made = [r["id"] for c in saved for r in c["individuals"]]
    assert sorted(made) == sorted(genealogy.individuals)  # each made once, all recorded
    for c in saved:  # every member of every generation is a recorded individual
        assert all(i in genealogy for island in c["islands"] for i in island)
        assert [len(island) for island in c["islands"]] == [10, 10]
    operators = {ind.operator for ind in genealogy.individuals.values()}
    assert operators == {"initial", "flip", "uniform+flip", "migration"}
    migrants = [i for i in genealogy.individuals.values() if i.operator == "migration"]
    assert {m.generation for m in migrants} == {3, 6, 9, 12}
    assert all(genealogy[m.parents[0]].island != m.island for m in migrants)
    # it searched: the chosen answer beats the initial population's best
    assert summary["chosen_fitness"] > summary["initial_best_fitness"]
    assert summary["chosen_fitness"] == pytest.approx(max(summary["best_fitness_by_generation"]))
    assert summary["best_fitness_by_generation"] == sorted(summary["best_fitness_by_generation"])
    assert summary["held_out_mean"] is None  # a solution answers its own problem only
    assert (run_dir / "best_genome.txt").read_text() == summary["chosen_genome"]
    assert (run_dir / "family_tree.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the knowledge graph holds the same genealogy
    kg = KnowledgeGraph(kg_path)
    experiment = Experiment("evolve_knapsack", run_dir=str(run_dir.resolve())).node_id
    agents = {n.attrs["name"]: n.id for n in kg.children(experiment) if n.kind == "agent"}
    assert set(agents) == set(genealogy.individuals)
    for ind in genealogy.individuals.values():
        edges = kg.edges(agents[ind.id], "derived_from")
        to_parents = {e.target: e.attrs for e in edges if e.target != experiment}
        assert set(to_parents) == {agents[p] for p in ind.parents}
        assert all(a == {"relation": ind.operator, "generation": ind.generation}
                   for a in to_parents.values())  # fmt: skip
        [attempt] = kg.edges(agents[ind.id], "attempted_by", incoming=True)
        assert attempt.attrs["reward"] == pytest.approx(ind.value)
    chosen = agents[summary["chosen_id"]]
    ancestors = {n.id for n, _ in kg.ancestors(chosen)} - {experiment}
    assert ancestors == {agents[i] for i in genealogy.ancestors(summary["chosen_id"])}
    if summary["chosen_fitness"] >= 0.95:  # a success is a solution node of its problem
        [solution] = [n for n in kg.children(chosen) if n.kind == "solution"]
        assert solution.attrs["text"] == summary["chosen_genome"]


def _engine_run(tmp_path: Path, name: str, settings: EvolutionSettings, seed: int = 0) -> Any:
    search = prepare_search(settings, seed=seed)
    with FitnessEvaluator(settings.workers) as evaluator:
        engine = EvolutionEngine(
            settings, search, seed=seed, directory=tmp_path / name, evaluator=evaluator, log=quiet
        )
        return engine.run()


def test_same_seed_same_search_whatever_the_number_of_fitness_workers(tmp_path: Path) -> None:
    base: dict[str, Any] = {
        "env_id": "LLMTrainer/Knapsack-v0",
        "env_kwargs": {"config": {"items": [20, 20, 20]}},
        "genome": "solution",
        "episodes": 1,
        "population": 6,
        "generations": 3,
        "features": (FeatureSpec("items", 0, 20, bins=5),),
    }
    one = _engine_run(tmp_path, "one", EvolutionSettings(**base, workers=1))
    again = _engine_run(tmp_path, "again", EvolutionSettings(**base, workers=1))
    two = _engine_run(tmp_path, "two", EvolutionSettings(**base, workers=2))
    assert one.genealogy.to_json() == again.genealogy.to_json() == two.genealogy.to_json()
    assert one.archive.to_dict() == two.archive.to_dict()
    other = _engine_run(tmp_path, "other", EvolutionSettings(**base, workers=1), seed=1)
    assert other.genealogy.to_json() != one.genealogy.to_json()
    # differential evolution is elitist by construction: no island's best ever gets worse
    de = _engine_run(tmp_path, "de", EvolutionSettings(**{**base, "strategy": "de"}))
    bests = [h.best for h in de.history]
    assert bests == sorted(bests)
    assert {i.operator for i in de.genealogy.individuals.values()} == {"initial", "de/best/1/bin"}
    # a directory holding a search is resumed, never overwritten
    with pytest.raises(ConfigError, match="holds a search already"):
        _engine_run(tmp_path, "one", EvolutionSettings(**base, workers=1))


def test_a_killed_evolution_resumes_at_the_same_generation_with_the_same_population(
    tmp_path: Path,
) -> None:
    overrides = [
        "evolution.population=8",
        "evolution.generations=40",
        f"knowledge_path={tmp_path / 'kg.sqlite'}",
    ]
    killed_root = tmp_path / "killed"
    command = [sys.executable, "-m", "llm_trainer.cli", "train", "--config", str(KNAPSACK)]
    command += [f"--set={o}" for o in [*overrides, f"output_dir={killed_root}"]]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            found = list(killed_root.glob("*/evolution/generations/*.json"))
            if len(found) >= 3:
                os.kill(process.pid, signal.SIGKILL)  # mid-search, wherever it is
                break
            time.sleep(0.01)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read() if process.stderr else ""
    [run_dir] = [p for p in killed_root.iterdir() if p.is_dir()]
    at_kill = checkpoints(run_dir)
    last = at_kill[-1]["generation"]
    assert 2 <= last < 40
    assert not (run_dir / "summary.json").exists()

    logged: list[str] = []
    resumed = run_experiment(
        load_experiment(KNAPSACK, [*overrides, f"output_dir={killed_root}", "resume=true"]),
        log=logged.append,
    )
    assert resumed["run_dir"] == str(run_dir)
    assert resumed["resumed_from_generation"] == last
    assert f"evolution: resumed after generation {last} ({run_dir}/evolution/generations)" in logged
    assert not any(f"generation {g}/40:" in line for g in range(last + 1) for line in logged)

    reference = run_experiment(
        load_experiment(KNAPSACK, [*overrides, f"output_dir={tmp_path / 'reference'}"]), log=quiet
    )
    # the generations before the kill are what the uninterrupted run had, and so is the rest
    ref_checkpoints = checkpoints(Path(reference["run_dir"]))
    after = checkpoints(run_dir)
    strip = lambda c: {k: v for k, v in c.items() if k != "stats"}  # noqa: E731 - wall times differ
    assert [strip(c) for c in at_kill] == [strip(c) for c in ref_checkpoints[: last + 1]]
    assert [strip(c) for c in after] == [strip(c) for c in ref_checkpoints]
    assert genealogy_of(run_dir).to_json() == genealogy_of(Path(reference["run_dir"])).to_json()
    for key in ("chosen_id", "chosen_genome", "chosen_fitness", "best_fitness_by_generation"):
        assert resumed[key] == reference[key]
    # the knowledge graph has the run's genealogy once (a redone generation wrote the same)
    kg = KnowledgeGraph(tmp_path / "kg.sqlite")
    experiment = Experiment("evolve_knapsack", run_dir=str(run_dir.resolve())).node_id
    agents = [n for n in kg.children(experiment) if n.kind == "agent"]
    assert len(agents) == len(genealogy_of(run_dir))


def test_settings_errors_name_the_field(tmp_path: Path) -> None:
    cases = [
        ({"genome": "solution", "operators": "llm"}, r"evolution.operators: 'llm' operators"),
        ({"genome": "solution"}, r"evolution.episodes: a solution genome answers one problem"),
        ({"genome": "few_shot", "strategy": "de"}, r"support \['ga'\], not 'de'"),
        ({"population": 4, "elitism": 4}, r"evolution.elitism \(4\) must be below population"),
        ({"genome": "sampling", "strategy": "de", "selection": "rank"}, r"donors uniformly"),
        ({"genome": "sampling", "initial": ("temp=1",)}, r"evolution.initial\[0\]: sampling"),
        ({"env_id": "LLMTrainer/Knapsak-v0"}, r"evolution.env_id: Unknown env id"),
    ]
    for fields, message in cases:
        with pytest.raises(ConfigError, match=message):
            EvolutionSettings(**fields)  # type: ignore[arg-type]
    tsp = EvolutionSettings(
        env_id="LLMTrainer/TSP-v0", genome="solution", episodes=1, strategy="de"
    )
    with pytest.raises(ConfigError, match="'de' has no operator for TSP tours"):
        prepare_search(tsp, seed=0)
    overlap = EvolutionSettings(episodes=4)
    with pytest.raises(ConfigError, match=r"held-out seeds \[2, 3\] are also fitness seeds"):
        prepare_search(overlap, seed=0, held_out_seeds=range(2, 10), backend="transformers:x")
    bad = tmp_path / "bad.yaml"
    bad.write_text(KNAPSACK.read_text() + "eval: {env_id: LLMTrainer/TSP-v0}\n")
    with pytest.raises(ConfigError, match=r"eval\.env_id: evolution plays its held-out seeds"):
        run_experiment(load_experiment(bad, [f"output_dir={tmp_path}"]), log=quiet)
