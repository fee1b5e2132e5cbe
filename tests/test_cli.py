"""The ``llm-trainer`` CLI, run for real through typer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from llm_trainer.cli import app
from llm_trainer.envs.registration import single_agent_ids

runner = CliRunner()


def test_evaluate_all_envs_with_the_baselines() -> None:
    for agent, expected in (("oracle", 1.0), ("random", 0.0)):
        result = runner.invoke(app, ["evaluate", "--agent", agent, "--episodes", "20", "--json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output.strip().splitlines()[-1])
        # "all" is every single-agent env (PettingZoo envs are played by other means).
        assert {r["env_id"] for r in summary["results"]} == set(single_agent_ids())
        assert all(abs(r["success"] - expected) <= 0.1 for r in summary["results"])


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


def test_quickstart_json_ends_with_the_summary_line(tmp_path: Path) -> None:
    """The main job on a tiny budget: the pipeline runs end to end and reports its summary."""
    pytest.importorskip("trl")
    small = [
        "model.tiny.n_layers=1",
        "model.tiny.hidden_size=32",
        "model.tiny.n_heads=2",
        "model.tiny.intermediate_size=64",
        "data.episodes=32",
        "train.max_steps=2",
        "train.batch_size=4",
        "eval.episodes=4",
        "eval.max_new_tokens=8",
        f"output_dir={tmp_path}",
    ]
    args = ["quickstart", "--json"] + [x for item in small for x in ("--set", item)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    for key in (
        "success",
        "tool_accuracy",
        "format_correctness",
        "execution_success",
        "answer_correctness",
        "wall_seconds",
        "run_dir",
    ):
        assert key in summary
    run_dir = Path(summary["run_dir"])
    for name in ("config.yaml", "run.json", "metrics.jsonl", "summary.json", "final_model"):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "tensorboard").iterdir())


def test_train_rejects_a_misspelt_field_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("name: x\ntrain:\n  max_step: 2\n")
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2
    assert "train.max_step: unknown field (did you mean 'max_steps'?)" in result.output
    result = runner.invoke(app, ["quickstart", "--set", "train.lr_scheduler=linearr"])
    assert result.exit_code == 2
    assert "train.lr_scheduler: 'linearr' is not one of" in result.output


SMALL_MODEL = [
    "model.tiny.n_layers=1",
    "model.tiny.hidden_size=32",
    "model.tiny.n_heads=2",
    "model.tiny.intermediate_size=64",
]


def _last_json(output: str) -> dict[str, object]:
    summary = json.loads(output.strip().splitlines()[-1])
    assert isinstance(summary, dict)
    return summary


def test_quickstart_ppo_continues_the_sft_agent_and_reports_before_and_after(
    tmp_path: Path,
) -> None:
    """``quickstart --ppo`` on a tiny budget: SFT with a few difficulty-2 demonstrations, then
    PPO on difficulty 2's symbolic form, measured on that form; one JSON line."""
    pytest.importorskip("trl")
    sft = [*SMALL_MODEL, "data.episodes=32", "train.max_steps=2", "train.batch_size=4"]
    sft += ["data.extra=[{difficulty: 2, episodes: 3, match: '\\('}]"]
    sft += ["eval.episodes=4", "eval.max_new_tokens=8", f"output_dir={tmp_path}"]
    ppo = ["train.max_steps=1", "train.batch_size=4", "train.save_steps=1"]
    ppo += ["ppo.episodes_per_iteration=4", "ppo.num_minibatches=1", "ppo.max_new_tokens=8"]
    ppo += ["eval.episodes=4", "eval.max_new_tokens=8", "eval.every_steps=0"]
    args = ["quickstart", "--ppo", "--json"]
    args += [x for item in sft for x in ("--set", item)]
    args += [x for item in ppo for x in ("--ppo-set", item)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = _last_json(result.output)
    assert summary["algorithm"] == "ppo"
    for key in ("reward_before", "reward_after", "success_before", "success_after", "warm_start"):
        assert key in summary, key
    assert isinstance(summary["after"], dict)
    assert summary["after"]["mean_steps"] >= 1
    run_dir = Path(str(summary["run_dir"]))
    assert (run_dir / "checkpoints" / "iteration-1" / "policy").is_dir()
    assert (run_dir / "final_model" / "config.json").is_file()
    assert "PPO: 1 iterations" in result.output
    assert (
        "data.extra: 3 oracle demonstrations at difficulty 2 matching the regex \\("
        in result.output
    )
    ppo_config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (
        ppo_config["ppo"]["env_kwargs"] == ppo_config["eval"]["env_kwargs"] == {"form": "symbols"}
    )


def test_train_runs_grpo_from_a_config_file(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    sets = [*SMALL_MODEL, "train.max_steps=1", "train.batch_size=4", "grpo.num_generations=2"]
    sets += ["grpo.prompts=4", "grpo.max_completion_length=8", "grpo.max_turns=1"]
    sets += ["eval.episodes=2", "eval.max_new_tokens=8", "eval.every_steps=0"]
    sets += [f"output_dir={tmp_path}"]
    args = ["train", "--config", "configs/multitool_grpo.yaml", "--json"]
    args += [x for item in sets for x in ("--set", item)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = _last_json(result.output)
    assert summary["algorithm"] == "grpo"
    assert summary["train_steps"] == 1
