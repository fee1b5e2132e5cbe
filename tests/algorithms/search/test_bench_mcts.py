"""scripts/bench_mcts.py runs end to end in its quick mode and reports positive figures; the
figures themselves are measured, never asserted (issue 16)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "bench_mcts.py"


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_quick_run_reports_simulations_per_second_of_every_setting(small_model_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", "--model", str(small_model_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert _positive(figures["scripted"]["simulations_per_s"])
    assert _positive(figures["scripted"]["snapshot_step"]["microseconds_per_step"])
    llm = figures["llm"]
    for name in ("batched", "one_leaf"):
        assert _positive(llm[name]["simulations_per_s"])
        assert llm[name]["simulations"] >= 8
    assert (
        llm["one_leaf"]["proposer_calls_per_search"] > llm["batched"]["proposer_calls_per_search"]
    )
    assert _positive(llm["batched_over_one_leaf_simulations_per_s"])
    assert any("batched / one leaf at a time" in line for line in lines)
