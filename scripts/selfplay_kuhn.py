"""Self-play on Kuhn poker (``configs/selfplay_kuhn.yaml``) and its exploitability plot.

    .venv/bin/python scripts/selfplay_kuhn.py                        # about 3 minutes, 2 cores
    .venv/bin/python scripts/selfplay_kuhn.py --set train.max_steps=60 --set seed=1

Runs the experiment (``algorithm: selfplay``, :mod:`llm_trainer.algorithms.selfplay`) and
prints the exact exploitability and the results against the fixed opponents before and after
self-play; the run directory holds ``selfplay_curve.png`` (exploitability over iterations),
``metrics.jsonl``, TensorBoard logs and ``final_model``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llm_trainer.algorithms.config import load_experiment
from llm_trainer.algorithms.experiment import run_experiment

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "selfplay_kuhn.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIG), help="the experiment YAML")
    parser.add_argument(
        "--set", action="append", default=[], dest="overrides", help="key=value override"
    )
    args = parser.parse_args()
    summary = run_experiment(load_experiment(args.config, args.overrides))
    keys = [k for k in summary if k.startswith(("exploitability", "legal_mass", "vs_"))]
    print(json.dumps({k: summary[k] for k in keys}, indent=1))
    print(f"plot: {summary.get('selfplay_curve')}")


if __name__ == "__main__":
    main()
