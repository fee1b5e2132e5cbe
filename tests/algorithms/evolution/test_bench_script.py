"""scripts/bench_evolution.py runs in its quick mode and reports positive figures from one run;
the figures themselves are measured, never asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "bench_evolution.py"


def test_quick_run_reports_generations_per_minute_at_each_worker_count() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--workloads", "knapsack", "--workers", "1",
         "2", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    *table, last = done.stdout.strip().splitlines()
    result = json.loads(last)
    workload = result["workloads"]["knapsack (no model)"]
    assert workload["same_result_at_every_worker_count"] is True
    runs = workload["runs"]
    assert [r["workers"] for r in runs] == [1, 2]
    for r in runs:
        for key in ("generations_per_minute", "seconds_per_generation", "wall_seconds"):
            assert math.isfinite(r[key])
            assert r[key] > 0
        assert r["genomes_played"] == runs[0]["genomes_played"]
    assert runs[0]["ratio_to_1"] == 1.0
    assert (
        runs[1]["ratio_to_1"]
        == runs[1]["generations_per_minute"] / runs[0]["generations_per_minute"]
    )
    text = "\n".join(table)
    assert "x 1 worker" in text
    assert "the same genealogy at every worker count: yes" in text
