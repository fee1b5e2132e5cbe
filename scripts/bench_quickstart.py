"""Time the main job: wall time to 95% held-out success on Calculator-v0, and training tokens/s.

    .venv/bin/python scripts/bench_quickstart.py [--every 50] [--set key=value ...]

Runs the quickstart experiment with a held-out evaluation every ``--every`` steps and reports,
from the run's own metrics.jsonl, the first evaluation at or above the target and the wall
time (from the start of the run) at which it happened.
"""

from __future__ import annotations

import argparse
import json
import time

from llm_trainer.algorithms.config import quickstart_config
from llm_trainer.algorithms.experiment import run_experiment
from llm_trainer.core.config import apply_overrides, build, to_dict
from llm_trainer.core.rundir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=50, help="evaluate every N steps")
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    data = apply_overrides(
        to_dict(quickstart_config()), [f"eval.every_steps={args.every}", *args.overrides]
    )
    config = build(type(quickstart_config()), data)
    start = time.time()
    summary = run_experiment(config)
    points = RunDir(summary["run_dir"]).metrics()
    evals = [p for p in points if p.get("eval/success") is not None]
    reached = next((p for p in evals if p["eval/success"] >= args.target), None)
    report = {
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
    print(json.dumps(report))


if __name__ == "__main__":
    main()
