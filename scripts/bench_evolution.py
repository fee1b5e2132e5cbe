"""Benchmark evolution: generations/min with parallel fitness at 1, 2 and all cores.

    .venv/bin/python scripts/bench_evolution.py              # the tiny model, built fresh
    .venv/bin/python scripts/bench_evolution.py --model DIR  # any local model directory
    .venv/bin/python scripts/bench_evolution.py --quick      # a smoke run

Two searches, each run once per number of fitness workers (1: in this process; 2; every core
this process may use), from the same seed, through the public API
(:func:`~llm_trainer.algorithms.evolution.prepare_search` and
:class:`~llm_trainer.algorithms.evolution.EvolutionEngine`):

1. **prompt (LLM)**: prompt genomes on ``LLMTrainer/Calculator-v0``, each played greedily by
   the model on the same fitness seeds; programmatic sentence operators, so that the time is
   the fitness's (an LLM operator would add the same serial generation at every worker
   count). Each worker process loads the model once.
2. **knapsack (no model)**: solution genomes of a 30-item ``LLMTrainer/Knapsack-v0``: one
   env step per genome, so the pool's overhead is what is measured.

Generations/min counts generations 1.. (generation 0, which includes starting the workers
and loading the model, is reported apart as start-up). The ratios to one worker come from the
same run; whether every worker count found the same genealogy is printed too (it must: the
unit of work is one genome on all its seeds, played the same way wherever it runs). Figures
are measured, never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from llm_trainer.algorithms.evolution import (
    EvolutionEngine,
    EvolutionSettings,
    FitnessEvaluator,
    prepare_search,
)
from llm_trainer.algorithms.evolution.fitness import resolve_workers

PROMPTS = (
    "Use the calculator tool for arithmetic. Then give the result as <answer>NUMBER</answer>.",
    "Call the calculator with the expression. Answer with the number it returns.",
    "Read the question carefully. Compute it with the tool. Reply with the answer only.",
)


def workloads(args: argparse.Namespace) -> dict[str, EvolutionSettings]:
    prompt = EvolutionSettings(
        env_id="LLMTrainer/Calculator-v0",
        genome="prompt",
        population=args.population,
        generations=args.generations,
        episodes=args.episodes,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.episodes,
        initial=PROMPTS,
        finalists=1,
    )
    knapsack = EvolutionSettings(
        env_id="LLMTrainer/Knapsack-v0",
        env_kwargs={"max_revisions": 0, "config": {"items": [30, 30, 30]}},
        genome="solution",
        episodes=1,
        population=24,
        islands=2,
        generations=args.knapsack_generations,
    )
    chosen = {"prompt": ("prompt (LLM)", prompt), "knapsack": ("knapsack (no model)", knapsack)}
    return dict(chosen[name] for name in args.workloads)


def run_once(
    settings: EvolutionSettings, workers: int, model: Path | None, directory: Path, seed: int
) -> dict[str, Any]:
    settings = dataclasses.replace(settings, workers=workers)
    search = prepare_search(
        settings,
        seed=seed,
        held_out_seeds=range(1_000_000, 1_000_001),
        backend=f"transformers:{model}" if model is not None else None,
    )
    start = time.perf_counter()
    with FitnessEvaluator(workers) as evaluator:
        engine = EvolutionEngine(
            settings,
            search,
            seed=seed,
            directory=directory,
            evaluator=evaluator,
            log=lambda m: None,
        )
        result = engine.run()
    wall = time.perf_counter() - start
    gens = [h for h in result.history if h.generation > 0]
    seconds = sum(h.seconds for h in gens)
    return {
        "workers": workers,
        "generations_per_minute": 60 * len(gens) / seconds,
        "seconds_per_generation": seconds / len(gens),
        "startup_seconds": result.history[0].seconds,
        "wall_seconds": wall,
        "genomes_played": result.evaluations,
        "chosen_fitness": result.chosen.value,
        "genealogy": result.genealogy.to_json(),
    }


def bench(args: argparse.Namespace, model: Path | None) -> dict[str, Any]:
    every = resolve_workers(0)
    counts = sorted({1, 2, every} if not args.workers else set(args.workers))
    out: dict[str, Any] = {"cores": every, "workloads": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, settings in workloads(args).items():
            runs = []
            for workers in counts:
                directory = Path(tmp) / f"{len(out['workloads'])}-{workers}"
                runs.append(run_once(settings, workers, model, directory, args.seed))
            base = runs[0]["generations_per_minute"]
            same = all(r["genealogy"] == runs[0]["genealogy"] for r in runs)
            for r in runs:
                del r["genealogy"]
                r["ratio_to_1"] = r["generations_per_minute"] / base
            out["workloads"][name] = {"runs": runs, "same_result_at_every_worker_count": same}
    return out


def print_table(result: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"evolution generations/min, {platform.processor() or platform.machine()}, "
        f"{result['cores']} usable cores; prompt: population {args.population}, "
        f"{args.episodes} fitness seeds, {args.max_new_tokens} new tokens per action"
    )
    header = ("workload", "workers", "gen/min", "s/gen", "start-up s", "genomes", "x 1 worker")
    print("{:<22}{:>8}{:>10}{:>9}{:>12}{:>9}{:>12}".format(*header))
    for name, workload in result["workloads"].items():
        for r in workload["runs"]:
            print(
                f"{name:<22}{r['workers']:>8}{r['generations_per_minute']:>10.2f}"
                f"{r['seconds_per_generation']:>9.2f}{r['startup_seconds']:>12.2f}"
                f"{r['genomes_played']:>9}{r['ratio_to_1']:>12.2f}"
            )
        same = "yes" if workload["same_result_at_every_worker_count"] else "NO"
        print(f"{name}: the same genealogy at every worker count: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model directory (default: a fresh tiny model)")
    parser.add_argument("--population", type=int, default=5, help="prompt genomes per generation")
    parser.add_argument("--generations", type=int, default=3, help="prompt search generations")
    parser.add_argument("--episodes", type=int, default=4, help="fitness seeds per genome")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="budget of each action")
    parser.add_argument("--knapsack-generations", type=int, default=20, help="knapsack search")
    parser.add_argument(
        "--workers", type=int, nargs="*", help="worker counts (default: 1, 2 and every core)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the searches' seed")
    parser.add_argument(
        "--workloads",
        nargs="+",
        choices=("prompt", "knapsack"),
        default=["prompt", "knapsack"],
        help="the searches to time",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a 2-layer tiny model, 2 generations of 3 prompts"
    )
    parser.add_argument("--json", action="store_true", help="end with the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.population, args.generations, args.episodes = 3, 2, 2
        args.max_new_tokens, args.knapsack_generations = 4, 4
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None and "prompt" in args.workloads:
            from llm_trainer.agents.tinylm import TinyLMConfig, create_tiny_model

            size = (
                TinyLMConfig(n_layers=2, hidden_size=64, n_heads=4, intermediate_size=128)
                if args.quick
                else TinyLMConfig()
            )
            model = Path(create_tiny_model(Path(tmp) / "tiny", size, seed=0))
        result = bench(args, model)
    print_table(result, args)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
