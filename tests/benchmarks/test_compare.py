"""Regression detection: ``bench --compare BASELINE.json`` fails on a significant regression."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_trainer.benchmarks.compare import compare_results
from llm_trainer.benchmarks.results import load_result
from llm_trainer.benchmarks.runner import BenchConfig, run_bench
from llm_trainer.cli import app
from llm_trainer.core.errors import ConfigError
from tests.benchmarks.conftest import SMOKE

runner = CliRunner()


def test_a_worse_agent_is_flagged_with_the_metric_and_the_size_of_the_drop(
    tmp_path: Path, smoke_results: dict[str, Path]
) -> None:
    out = tmp_path / "random.json"
    shutil.copy(smoke_results["random"], out)  # reused as is: bench finds it finished
    result = runner.invoke(
        app,
        ["bench", "--suite", SMOKE, "--agent", "random", "--out", str(out),
         "--compare", str(smoke_results["oracle"]), "--json", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "REGRESSION success: 0 vs baseline 1, difference -1" in result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    comparison = summary["comparison"]
    assert comparison["regressed"]
    assert "success" in comparison["regressions"]
    assert comparison["metrics"]["success"]["worse_by"] == pytest.approx(1.0)
    assert comparison["metrics"]["success"]["p_adjusted"] < 0.05


def test_an_equal_agent_passes(tmp_path: Path, smoke_results: dict[str, Path]) -> None:
    result = runner.invoke(
        app,
        ["bench", "--suite", SMOKE, "--agent", "random", "--out", str(smoke_results["random"]),
         "--compare", str(smoke_results["random-again"]), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["reused"]
    assert not summary["comparison"]["regressed"]
    assert all(m["p_value"] == 1.0 for m in summary["comparison"]["metrics"].values())


def test_a_better_agent_is_not_a_regression_and_lower_is_better_metrics_are_handled(
    smoke_results: dict[str, Path],
) -> None:
    report = compare_results(
        load_result(smoke_results["random"]), load_result(smoke_results["oracle"])
    )
    assert not report.regressions
    by_name = {c.metric.name: c for c in report.checks}
    assert by_name["success"].worse_by < 0
    # The oracle takes more turns than the random agent (which often answers at once): worse
    # on turns, and turns is a lower-is-better metric.
    assert by_name["turns"].comparison.difference.mean > 0
    assert by_name["turns"].worse_by > 0
    tolerant = compare_results(
        load_result(smoke_results["random"]),
        load_result(smoke_results["oracle"]),
        metrics=["turns"],
        tolerance=5.0,
    )
    assert not tolerant.regressions


def test_results_of_different_suites_cannot_be_compared(
    tmp_path: Path, smoke_results: dict[str, Path]
) -> None:
    data = json.loads(smoke_results["oracle"].read_text())
    other = run_bench(BenchConfig("tooluse-v0", "oracle", out=tmp_path / "o.json", workers=2))
    with pytest.raises(ConfigError, match="different suite definitions"):
        compare_results(other.result, load_result(smoke_results["oracle"]))
    assert data["suite"]["id"] == SMOKE
    result = runner.invoke(
        app,
        ["bench", "--suite", "tooluse-v0", "--agent", "oracle", "--out", str(other.path),
         "--compare", str(smoke_results["oracle"])],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "cannot be compared" in result.output
    with pytest.raises(ConfigError, match="unknown metric 'sucess'"):
        compare_results(other.result, other.result, metrics=["sucess"])
    with pytest.raises(ConfigError, match="not available in both"):
        compare_results(other.result, other.result, metrics=["tokens"])
