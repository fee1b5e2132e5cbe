"""scripts/malt_experiment.py runs end to end on a small grid and reports every condition with
an interval and every comparison with a paired test (issue 13); the accuracies themselves are
measured, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "malt_experiment.py"


def test_quick_grid_writes_results_per_problem_rows_and_a_chart(tmp_path: Path) -> None:
    out = tmp_path / "malt"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((out / "results.json").read_text())
    seeds, problems = result["settings"]["seeds"], result["settings"]["eval_problems"]
    accuracy = result["accuracy"]
    assert set(accuracy) == {
        f"{c}@{k}" for c in ("single", "team", "malt", "malt_generator") for k in (1, 3)
    }
    for numbers in accuracy.values():
        assert 0.0 <= numbers["ci_low"] <= numbers["mean"] <= numbers["ci_high"] <= 1.0
        assert len(numbers["per_seed"]) == seeds
    for comparison in result["comparisons"]:
        assert comparison["n_pairs"] == seeds * problems  # paired on the same rows
        assert 0.0 <= comparison["p_value"] <= comparison["p_holm"] <= 1.0
    rows = (out / "per_problem.jsonl").read_text().splitlines()
    assert len(rows) == seeds * problems
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for seed in range(seeds):  # each seed's trained team is a saved agent
        assert (out / f"seed{seed}" / "team" / "malt_team.json").is_file()
    assert "malt@1 - single@1" in done.stdout
