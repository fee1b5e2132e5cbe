"""scripts/bench_malt.py runs end to end in its quick mode (transformers only) and reports
positive figures; the figures themselves are measured, never asserted (issue 13)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_malt.py"


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_quick_run_reports_positive_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--no-vllm", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    table = "\n".join(lines[:-1])

    episodes = result["episodes"]
    assert set(episodes) == {"malt_coordinator", "malt_bare_aec", "single_agent"}
    for run in episodes.values():
        assert _positive(run["episodes_per_s"]), run
        assert _positive(run["actions_per_s"]), run
    assert episodes["malt_coordinator"]["actions_per_episode"] == pytest.approx(3.0)  # a role each
    ratios = result["ratios"]
    assert set(ratios) == {"malt_coordinator/single_agent", "malt_coordinator/bare_aec"}
    assert all(_positive(v) for v in ratios.values()), ratios

    [run] = result["datagen"]
    assert run["backend"] == "transformers"
    assert run["questions"] == 2
    assert run["generations"] == 2 * (2 + 4 + 8)  # n + n^2 + n^3 a question, n = 2
    for key in ("questions_per_minute", "tokens_per_second", "completion_tokens"):
        assert _positive(run[key]), (key, run)
    assert result["vllm_error"] == "skipped (--no-vllm)"

    for name in ("MultiAgentCoordinator", "bare AEC loop", "play_episodes", "transformers"):
        assert name in table
    assert "malt_coordinator/single_agent" in table
