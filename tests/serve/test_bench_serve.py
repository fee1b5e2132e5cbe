"""scripts/bench_serve.py runs end to end in its quick mode: every target replays the same
transitions and reports positive steps/s; the figures themselves are measured, never asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_serve.py"


def test_quick_run_compares_loopback_with_in_process() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--episodes", "20", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["same_transitions"] is True
    targets = [(r["target"], r["clients"]) for r in summary["results"]]
    assert targets == [("in-process", 1), ("websocket", 1), ("http", 1), ("websocket", 2)]
    for row in summary["results"]:
        assert row["steps"] == row["clients"] * 40  # Calculator-v0's oracle: a call, an answer
        assert math.isfinite(row["steps_per_s"])
        assert row["steps_per_s"] > 0
    assert summary["results"][0]["ratio"] == 1.0
