"""Measure the main job's RL phase: `llm-trainer quickstart --ppo`, seed by seed.

    .venv/bin/python scripts/bench_quickstart_ppo.py [--seeds 0 1 2 3 4] [--out runs/bench_ppo]
        [--set key=value ...] [--ppo-set key=value ...] [--sft-from runs/bench_ppo]

Each seed runs the two phases exactly as the command does (the SFT warm start with a few
difficulty-2 demonstrations, then PPO on Calculator-v0 difficulty 2 in its symbolic form) and
reports the PPO phase's wall time and held-out success before and after it, on the same 200
held-out tasks (greedy). The before/after outcomes are then re-played episode by episode (a
check that they match the runs' own summaries) and compared pairwise: the mean gain with a 95%
paired-bootstrap interval stratified by seed, and a paired permutation test, per seed and over
all seeds. The last line is one JSON object. ``--sft-from DIR`` starts PPO from the SFT phases
an earlier run of this script left in DIR (``seed<s>/*_quickstart_ppo_sft``) instead of
training them again: the same starting agents, to compare PPO settings pairwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default="runs/bench_quickstart_ppo")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--ppo-set", dest="ppo_overrides", action="append", default=[])
    parser.add_argument("--sft-from", help="reuse the SFT phases of an earlier --out")
    args = parser.parse_args()
    reports = [bench(args, seed) for seed in args.seeds]
    print(json.dumps(summarize(reports)))


def bench(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    from llm_trainer.algorithms.config import (
        override_experiment,
        quickstart_ppo_config,
        quickstart_ppo_warm_start,
    )
    from llm_trainer.algorithms.experiment import run_experiment

    out = str(Path(args.out) / f"seed{seed}")
    sft = override_experiment(
        quickstart_ppo_warm_start(), [f"seed={seed}", f"output_dir={out}", *args.overrides]
    )
    start = time.perf_counter()
    warm = run_experiment(sft) if args.sft_from is None else earlier_sft(args.sft_from, seed)
    sft_seconds = time.perf_counter() - start
    rl = override_experiment(
        quickstart_ppo_config(output_dir=out), [f"seed={seed}", *args.ppo_overrides]
    )
    rl = dataclasses.replace(rl, model=dataclasses.replace(rl.model, path=warm["model_dir"]))
    start = time.perf_counter()
    summary = run_experiment(rl)
    ppo_seconds = time.perf_counter() - start
    before = outcomes(warm["model_dir"], rl)
    after = outcomes(summary["model_dir"], rl)
    for name, played, reported in [
        ("before", before, summary["success_before"]),
        ("after", after, summary["success_after"]),
    ]:
        if abs(sum(played) / len(played) - reported) > 1e-9:
            raise SystemExit(f"seed {seed}: re-played {name} success differs from the run's")
    report = {
        "seed": seed,
        "sft_success_difficulty_1": warm["success"],
        "sft_seconds": round(sft_seconds, 1),
        "ppo_seconds": round(ppo_seconds, 1),
        "ppo_train_seconds": summary.get("train_seconds"),
        "success_before": summary["success_before"],
        "success_after": summary["success_after"],
        "gain": round(summary["success_after"] - summary["success_before"], 4),
        "outcomes_before": before,
        "outcomes_after": after,
    }
    printed = {k: v for k, v in report.items() if not k.startswith("outcomes")}
    print(json.dumps(printed), flush=True)
    return report


def earlier_sft(directory: str, seed: int) -> dict[str, Any]:
    """The summary of the finished SFT phase of ``seed`` in an earlier run's ``directory``."""
    runs = sorted(Path(directory, f"seed{seed}").glob("*_quickstart_ppo_sft/summary.json"))
    if not runs:
        raise SystemExit(f"--sft-from: no finished SFT phase for seed {seed} in {directory}")
    summary: dict[str, Any] = json.loads(runs[-1].read_text())
    return summary


def outcomes(model_dir: str, rl: Any) -> list[int]:
    """Greedy held-out success (0/1) of ``model_dir`` on each of ``rl``'s eval episodes."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm_trainer.algorithms.evaluation import evaluate_model

    ev = rl.eval
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    _, trajectories = evaluate_model(
        model,
        AutoTokenizer.from_pretrained(model_dir),
        ev.env_id,
        range(ev.first_seed, ev.first_seed + ev.episodes),
        difficulty=ev.difficulty,
        env_kwargs=ev.env_kwargs,
        system_prompt=rl.model.system_prompt,
        max_new_tokens=ev.max_new_tokens,
        batch_size=ev.batch_size,
    )
    return [int(t.success) for t in trajectories]


def summarize(reports: list[dict[str, Any]]) -> dict[str, Any]:
    from llm_trainer.benchmarks.stats import paired_compare

    def compared(rows: list[dict[str, Any]]) -> dict[str, Any]:
        after = [x for r in rows for x in r["outcomes_after"]]
        before = [x for r in rows for x in r["outcomes_before"]]
        strata = [r["seed"] for r in rows for _ in r["outcomes_after"]]
        result = paired_compare(after, before, strata if len(rows) > 1 else None)
        d = result.difference
        return {"gain": round(d.mean, 4), "ci95": [round(d.low, 4), round(d.high, 4)],
                "p_value": result.p_value}  # fmt: skip

    per_seed = {r["seed"]: compared([r]) for r in reports}
    return {
        "seeds": [r["seed"] for r in reports],
        "success_before": [r["success_before"] for r in reports],
        "success_after": [r["success_after"] for r in reports],
        "gain_per_seed": per_seed,
        "gain_all_seeds": compared(reports),
        "seeds_with_gain_at_least_20_points": sum(r["gain"] >= 0.2 - 1e-9 for r in reports),
        "ppo_seconds_max": max(r["ppo_seconds"] for r in reports),
        "sft_success_difficulty_1_min": min(r["sft_success_difficulty_1"] for r in reports),
    }


if __name__ == "__main__":
    main()
