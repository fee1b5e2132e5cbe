"""Prompt, few-shot and sampling genomes played by the real tiny LLM, through the env: the
shipped EvoPrompt config end to end, and the other kinds through the engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm_trainer.agents.llm_agent import LLMAgent
from llm_trainer.algorithms.config import load_experiment
from llm_trainer.algorithms.evolution import (
    EvolutionEngine,
    EvolutionSettings,
    FitnessEvaluator,
    Genome,
    prepare_search,
)
from llm_trainer.algorithms.evolution.fitness import agent_config, evaluate_genome
from llm_trainer.algorithms.evolution.genome import parse_examples, parse_sampling
from llm_trainer.algorithms.experiment import run_experiment

from .conftest import SMALL_TINY

ROOT = Path(__file__).resolve().parents[3]
PROMPTS = ROOT / "configs" / "evolve_prompt_calculator.yaml"


def test_evoprompt_config_runs_on_the_tiny_model_and_saves_the_chosen_agent(
    tmp_path: Path,
) -> None:
    overrides = [f"output_dir={tmp_path}", f"knowledge_path={tmp_path / 'kg.sqlite'}"]
    overrides += [f"model.tiny.{k}={v}" for k, v in SMALL_TINY.items()]
    overrides += [
        "evolution.population=3",
        "evolution.generations=1",
        "evolution.episodes=2",
        "evolution.max_new_tokens=8",
        "evolution.operator_max_new_tokens=16",
        "eval.episodes=2",
    ]
    summary = run_experiment(load_experiment(PROMPTS, overrides), log=lambda m: None)
    run_dir = Path(summary["run_dir"])
    records = json.loads((run_dir / "evolution" / "genealogy.json").read_text())
    operators = [r["operator"].split(":")[0] for r in records]
    # two given prompts, a third made by the model; then a generation of LLM-made children
    assert operators[:3] == ["initial", "initial", "llm_mutation"]
    assert set(operators[3:]) <= {"evoprompt_ga", "llm_mutation"}
    assert len(operators) == 5  # 3 + (population - elitism)
    assert all(len(r["fitness"]["scores"]) == 2 for r in records)  # paired: the same 2 seeds
    # the finalists were played on the held-out seeds, and the choice compared with the start
    assert 1 <= len(summary["finalists"]) <= 3
    assert all(held is not None for _, _, held in summary["finalists"])
    assert summary["held_out_mean"] == max(held for _, _, held in summary["finalists"])
    assert summary["held_out_vs_initial"]["n_pairs"] == 2
    # the chosen prompt is a saved agent that plays it
    agent = LLMAgent.load(summary["best_agent"])
    assert agent.config.system_prompt == summary["chosen_genome"]
    assert agent.config.sampling.max_new_tokens == 8
    agent.close()


def _search(
    settings: EvolutionSettings, model: Path, tmp_path: Path, name: str, workers: int = 1
) -> Any:
    search = prepare_search(
        settings, seed=0, held_out_seeds=range(100, 102), backend=f"transformers:{model}"
    )
    with FitnessEvaluator(workers) as evaluator:
        engine = EvolutionEngine(
            settings,
            search,
            seed=0,
            directory=tmp_path / name,
            evaluator=evaluator,
            log=lambda m: None,
        )
        return search, engine.run()


def test_few_shot_and_sampling_genomes_shape_the_agent_that_plays_them(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    small: dict[str, Any] = {"population": 3, "generations": 1, "episodes": 2}
    small |= {"max_new_tokens": 6, "batch_size": 2}
    few_shot = EvolutionSettings(genome="few_shot", examples_pool=4, max_examples=3, **small)
    search, result = _search(few_shot, tiny_model_dir, tmp_path, "few_shot")
    chosen = result.chosen.genome
    examples = parse_examples(chosen.text)
    assert 1 <= len(examples) <= 3
    prompt = agent_config(search.train, chosen).system_prompt
    assert prompt is not None
    assert prompt.startswith(search.train.system_prompt)  # the env's prompt, then the examples
    assert prompt.endswith(chosen.text)

    sampling = EvolutionSettings(genome="sampling", strategy="de", **small)
    search, first = _search(sampling, tiny_model_dir, tmp_path, "sampling")
    # sampled at each genome's temperature, yet seeded: two worker processes, each loading the
    # model, find exactly what this process found
    _, parallel = _search(sampling, tiny_model_dir, tmp_path, "sampling_parallel", workers=2)
    assert first.genealogy.to_json() == parallel.genealogy.to_json()
    assert any(
        parse_sampling(i.genome.text)["temperature"] > 0
        for i in first.genealogy.individuals.values()
    )
    values = parse_sampling(first.chosen.genome.text)
    config = agent_config(search.train, first.chosen.genome)
    assert config.sampling.temperature == values["temperature"]
    assert config.sampling.top_p == values["top_p"]
    # a genome's fitness is its episodes' rewards through the env, seed by seed
    hot = Genome("sampling", "temperature=1.5 top_p=1")
    fitness = evaluate_genome(search.train, hot)
    assert len(fitness.scores) == 2
    assert all(-0.1 * 6 <= s <= 1.0 for s in fitness.scores)
