"""Time the main job: wall time to 95% held-out success on Calculator-v0, and training tokens/s.

    .venv/bin/python scripts/bench_quickstart.py [--every 50] [--seeds 0 1 2] [--set key=value ...]

Runs the quickstart experiment with a held-out evaluation every ``--every`` steps and reports,
from the run's own metrics.jsonl, the first evaluation at or above the target and the wall
time (from the start of the run) at which it happened. With several ``--seeds`` (model
initialisation and data order; the held-out tasks stay the same) it prints one line per seed,
then how many reached the target: when a tiny model learns to copy is a phase change whose
timing varies from seed to seed.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from llm_trainer.algorithms.config import override_experiment, quickstart_config
from llm_trainer.algorithms.experiment import run_experiment
from llm_trainer.core.rundir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=50, help="evaluate every N steps")
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    reports = [bench(args, seed) for seed in args.seeds]
    if len(reports) > 1:
        finals = [r["final_success"] for r in reports]
        summary = {
            "seeds": args.seeds,
            "reached_target": sum(r["reached"] for r in reports),
            "final_success": finals,
            "final_success_mean": round(sum(finals) / len(finals), 4),
            "wall_seconds_max": max(r["wall_seconds"] for r in reports),
        }
        print(json.dumps(summary))


def bench(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    config = override_experiment(
        quickstart_config(), [f"eval.every_steps={args.every}", f"seed={seed}", *args.overrides]
    )
    start = time.time()
    summary = run_experiment(config)
    points = RunDir(summary["run_dir"]).metrics()
    evals = [p for p in points if p.get("eval/success") is not None]
    reached = next((p for p in evals if p["eval/success"] >= args.target), None)
    report = {
        "seed": seed,
        "target": args.target,
        "reached": reached is not None,
        "step_at_target": reached["step"] if reached else None,
        "wall_seconds_to_target": round(reached["time"] - start, 1) if reached else None,
        "final_success": summary["success"],
        "train_tokens_per_second": summary["train_tokens_per_second"],
        "train_seconds": summary["train_seconds"],
        "wall_seconds": summary["wall_seconds"],
        "curve": [(p["step"], p["eval/success"]) for p in evals],
        "run_dir": summary["run_dir"],
    }
    print(json.dumps(report), flush=True)
    return report


if __name__ == "__main__":
    main()
