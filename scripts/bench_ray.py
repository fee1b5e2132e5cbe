"""Benchmark Ray against the local process pools: the same work, 1 and 2 workers each.

    .venv/bin/python scripts/bench_ray.py            # tooluse-v0 (1200 oracle episodes)
    .venv/bin/python scripts/bench_ray.py --quick    # a smoke run (the 72-episode smoke suite)

Two workloads, each played by four executors from the same seeds:

1. **episodes**: the oracle on a benchmark suite through :func:`run_bench` (rollouts of the
   episode engine, one env and one policy per worker): ``workers=1`` (this process),
   ``workers=2`` (the forkserver pool), and ``ray_address`` on a local Ray cluster of 1 and of
   2 CPUs (``ray.init(num_cpus=N)``: N tasks at a time).
2. **fitness**: evolution's :class:`FitnessEvaluator` on generation-sized batches of 30-item
   knapsack answers (one env step per genome: the executor's overhead is what is measured):
   ``FitnessEvaluator(1)``, ``FitnessEvaluator(2)`` (the spawn pool) and
   ``FitnessEvaluator(executor=RayExecutor(...))`` on the same 1- and 2-CPU clusters.

Each suite is played twice per executor (``cold``: the first run, worker processes started
for it; ``warm``: the second, where Ray reuses its workers and a local pool starts afresh, as
``run_bench`` always does). Fitness reports the first batch (start-up) apart from the
throughput of the others. A Ray cluster's own start-up is reported apart (``ray start`` is paid
once per machine, not per run). Ratios come from the same run (``x local-1``: throughput over
this process's; ``x local-N``: over the local pool of as many workers); whether every executor
gave the same results is printed too (it must). Figures are measured, never asserted.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from llm_trainer.algorithms.evolution import FitnessEvaluator, Genome
from llm_trainer.algorithms.evolution.fitness import EvaluationSpec
from llm_trainer.benchmarks.results import deterministic_view
from llm_trainer.benchmarks.runner import BenchConfig, run_bench
from llm_trainer.distributed import RayExecutor, connect, import_ray

ITEMS = 30
EXECUTORS = ("local-1", "local-2", "ray-1", "ray-2")


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def knapsack_batches(batches: int, size: int, seed: int) -> list[list[Genome]]:
    """``batches`` lists of ``size`` distinct random answers (item subsets)."""
    rng = random.Random(seed)
    out = []
    for _ in range(batches):
        texts: dict[str, None] = {}
        while len(texts) < size:
            chosen = sorted(rng.sample(range(ITEMS), rng.randint(1, ITEMS // 2)))
            texts[", ".join(map(str, chosen))] = None
        out.append([Genome("solution", t) for t in texts])
    return out


def time_episodes(make_config: Callable[..., BenchConfig], directory: Path) -> dict[str, Any]:
    runs = []
    for attempt in ("cold", "warm"):
        start = time.perf_counter()
        run = run_bench(make_config(out=directory / f"{attempt}.json"))
        wall = time.perf_counter() - start
        view = deterministic_view(json.loads(run.path.read_text()))
        runs.append((attempt, wall, run.episodes_played, digest(view["episodes"])))
    episodes = runs[0][2]
    return {
        "episodes": episodes,
        **{f"{a}_seconds": round(w, 3) for a, w, _, _ in runs},
        **{f"{a}_episodes_per_s": episodes / w for a, w, _, _ in runs},
        "digest": runs[0][3] if runs[0][3] == runs[1][3] else "differs between runs",
    }


def make_evaluator(workers: int, ray_address: str | None) -> FitnessEvaluator:
    if ray_address is None:
        return FitnessEvaluator(workers)
    return FitnessEvaluator(executor=RayExecutor(ray_address))


def time_fitness(
    make: Callable[[], FitnessEvaluator], spec: EvaluationSpec, batches: list[list[Genome]]
) -> dict[str, Any]:
    seconds, results = [], []
    with make() as evaluator:
        for batch in batches:
            start = time.perf_counter()
            results.append([f.to_dict() for f in evaluator.evaluate(spec, batch)])
            seconds.append(time.perf_counter() - start)
    warm = seconds[1:] or seconds
    genomes = sum(len(b) for b in batches[1:]) or len(batches[0])
    return {
        "genomes": sum(len(b) for b in batches),
        "first_batch_seconds": round(seconds[0], 3),
        "genomes_per_s": genomes / sum(warm),
        "digest": digest(results),
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    spec = EvaluationSpec(
        "LLMTrainer/Knapsack-v0",
        (0,),
        "solution",
        env_kwargs={"max_revisions": 0, "config": {"items": [ITEMS, ITEMS, ITEMS]}},
    )
    batches = knapsack_batches(args.batches, args.batch_size, args.seed)
    out: dict[str, Any] = {"cores": os.cpu_count(), "episodes": {}, "fitness": {}, "ray_start": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.executors:
            kind, n = name.split("-")
            workers = int(n)
            with ExitStack() as cluster:
                if kind == "ray":
                    start = time.perf_counter()
                    connect("local", num_cpus=workers)  # a cluster of `workers` CPUs
                    out["ray_start"][name] = round(time.perf_counter() - start, 3)
                    cluster.callback(import_ray().shutdown)
                address = "local" if kind == "ray" else None
                config = functools.partial(
                    BenchConfig, args.suite, args.agent, workers=workers, ray_address=address
                )
                out["episodes"][name] = time_episodes(config, Path(tmp) / name)
                evaluator = functools.partial(make_evaluator, workers, address)
                out["fitness"][name] = time_fitness(evaluator, spec, batches)
    for workload, key in (("episodes", "warm_episodes_per_s"), ("fitness", "genomes_per_s")):
        runs = out[workload]
        for name, r in runs.items():
            local = f"local-{name.split('-')[1]}"
            for ratio, base in (("ratio_to_local_1", "local-1"), ("ratio_to_local_n", local)):
                r[ratio] = r[key] / runs[base][key] if base in runs else None
        out[f"{workload}_same_results"] = len({r["digest"] for r in runs.values()}) == 1
    return out


def print_table(result: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"Ray vs local pools, {platform.processor() or platform.machine()}, "
        f"{result['cores']} cores; episodes: {args.agent} on {args.suite}; fitness: "
        f"{args.batches} batches of {args.batch_size} knapsack answers"
    )
    print(
        "{:<10}{:>10}{:>10}{:>10}{:>11}{:>11}".format(
            "episodes", "cold s", "warm s", "ep/s", "x local-1", "x local-N"
        )
    )
    for name, r in result["episodes"].items():
        print(
            f"{name:<10}{r['cold_seconds']:>10.2f}{r['warm_seconds']:>10.2f}"
            f"{r['warm_episodes_per_s']:>10.0f}{_ratio(r['ratio_to_local_1'])}"
            f"{_ratio(r['ratio_to_local_n'])}"
        )
    print(
        "{:<10}{:>10}{:>10}{:>10}{:>11}{:>11}".format(
            "fitness", "genomes", "1st s", "genomes/s", "x local-1", "x local-N"
        )
    )
    for name, r in result["fitness"].items():
        print(
            f"{name:<10}{r['genomes']:>10}{r['first_batch_seconds']:>10.2f}"
            f"{r['genomes_per_s']:>10.0f}{_ratio(r['ratio_to_local_1'])}"
            f"{_ratio(r['ratio_to_local_n'])}"
        )
    starts = ", ".join(f"{k} {v:.1f} s" for k, v in result["ray_start"].items())
    if starts:
        print(f"Ray cluster start-up (apart from the above): {starts}")
    for workload in ("episodes", "fitness"):
        same = "yes" if result[f"{workload}_same_results"] else "NO"
        print(f"{workload}: the same results with every executor: {same}")


def _ratio(value: float | None) -> str:
    return f"{value:>11.2f}" if value is not None else f"{'-':>11}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="tooluse-v0", help="suite of the episode workload")
    parser.add_argument("--agent", default="oracle", help="agent spec of the episode workload")
    parser.add_argument("--batches", type=int, default=20, help="fitness batches (generations)")
    parser.add_argument("--batch-size", type=int, default=48, help="genomes per fitness batch")
    parser.add_argument("--seed", type=int, default=0, help="seed of the knapsack answers")
    parser.add_argument(
        "--executors", nargs="+", choices=EXECUTORS, default=list(EXECUTORS), help="to compare"
    )
    parser.add_argument("--quick", action="store_true", help="the smoke suite, 3 small batches")
    parser.add_argument("--json", action="store_true", help="end with the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.suite, args.batches, args.batch_size = "tooluse-smoke-v0", 3, 16
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    result = bench(args)
    print_table(result, args)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
