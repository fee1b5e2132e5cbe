"""The sandbox benchmark runs and reports both sides of each comparison (a smoke run)."""

from __future__ import annotations

from llm_trainer.sandbox.bench import format_table, measure
from tests.sandbox.conftest import needs_l3


@needs_l3
def test_benchmark_compares_the_sandbox_with_a_plain_subprocess_in_one_run() -> None:
    result = measure(seconds=0.05, repeats=1, workloads=("print(1), python -S",))
    (row,) = result["rows"]
    assert result["level"] == "L3"
    assert row["plain_ms"] > 0
    assert row["sandbox_ms"] > 0
    assert row["startup_ratio"] == row["sandbox_ms"] / row["plain_ms"]
    assert row["throughput_ratio"] == row["sandbox_runs_per_s"] / row["plain_runs_per_s"]
    table = format_table(result)
    assert "print(1), python -S" in table
    assert "sandbox runs/s" in table
