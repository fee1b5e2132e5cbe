"""The ``llm-trainer`` CLI, run for real through typer."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import llm_trainer
from llm_trainer.cli import app

runner = CliRunner()


def test_quickstart_json_ends_with_a_summary_line() -> None:
    result = runner.invoke(app, ["quickstart", "--episodes", "20", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["success"] == 1.0
    assert {r["env_id"] for r in summary["results"]} == set(llm_trainer.registry())
    random_rows = [r for r in summary["results"] if r["agent"] == "random"]
    assert all(r["success"] < 0.2 for r in random_rows)
    for key in (
        "tool_accuracy",
        "format_correctness",
        "execution_success",
        "answer_correctness",
        "wall_seconds",
    ):
        assert key in summary


def test_evaluate_one_env() -> None:
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--agent",
            "random",
            "--env",
            "LLMTrainer/Search-v0",
            "--episodes",
            "10",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert [r["episodes"] for r in summary["results"]] == [10]


def test_bad_input_gets_a_clear_error_and_exit_code_2() -> None:
    result = runner.invoke(app, ["evaluate", "--env", "LLMTrainer/Calculater-v0"])
    assert result.exit_code == 2
    assert "Did you mean 'LLMTrainer/Calculator-v0'" in result.output
    result = runner.invoke(app, ["evaluate", "--agent", "orcale", "--episodes", "1"])
    assert result.exit_code == 2
    assert "did you mean 'oracle'" in result.output
