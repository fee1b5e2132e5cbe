"""scripts/bench_ray.py runs in its quick mode (this process and a 1-CPU local Ray cluster) and
reports the same results from both; the figures themselves are measured, never asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_ray.py"


def test_quick_run_compares_ray_with_the_local_path_on_the_same_work() -> None:
    pytest.importorskip("ray", reason="the ray extra: pip install 'llm-trainer[ray]'")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--executors", "local-1", "ray-1", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    *table, last = done.stdout.strip().splitlines()
    result = json.loads(last)
    assert result["episodes_same_results"] is True
    assert result["fitness_same_results"] is True
    assert set(result["ray_start"]) == {"ray-1"}
    for workload, key in (("episodes", "warm_episodes_per_s"), ("fitness", "genomes_per_s")):
        runs = result[workload]
        assert list(runs) == ["local-1", "ray-1"]
        assert runs["local-1"]["ratio_to_local_1"] == 1.0
        assert math.isfinite(runs["ray-1"][key])
        assert runs["ray-1"][key] > 0
        assert runs["ray-1"]["ratio_to_local_1"] == runs["ray-1"][key] / runs["local-1"][key]
    assert result["episodes"]["ray-1"]["episodes"] == 72
    text = "\n".join(table)
    assert "episodes: the same results with every executor: yes" in text
    assert "fitness: the same results with every executor: yes" in text
