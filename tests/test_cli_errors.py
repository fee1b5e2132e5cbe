"""Every expected error reaches the command line as one line naming the field and the fix,
with exit status 2, no traceback, and (for config errors) before any run directory exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_trainer.cli import app

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


def _fails_in_one_line(args: list[str], *expected: str) -> str:
    result = CliRunner().invoke(app, args)
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def test_an_unsupported_difficulty_is_one_line() -> None:
    _fails_in_one_line(
        ["evaluate", "--agent", "oracle", "--env", "LLMTrainer/Calculator-v0", "--difficulty", "9"],
        "difficulty 9 is not supported",
        "1, 2, 3",
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["train.precision=bf16"], ("train.precision", "needs a GPU", "'auto'")),
        (
            ["data.strategy=toolbench", "data.toolbench_path=/no/such/file.json"],
            ("data.toolbench_path", "/no/such/file.json", "not an existing file"),
        ),
        (["train.learning_rate=.nan"], ("train.learning_rate", "finite")),
        (["train.learning_rate=0"], ("train.learning_rate must be > 0",)),
        (["data.episodes=-3"], ("data.episodes must be >= 1",)),
        (
            ["data.env_id=LLMTrainer/Calculater-v0"],
            (
                "data.env_id",
                "Did you mean",
            ),
        ),
        (["eval.difficulty=7"], ("eval.difficulty", "[1, 2, 3]", "got 7")),
        (["model.path=/no/such/model"], ("model.path", "no config.json", "'tiny'")),
        (["algorithm=dpo", "dpo.beta=0"], ("dpo.beta must be > 0",)),
        (["algorithm=grpo", "grpo.num_generations=1"], ("grpo.num_generations must be >= 2",)),
        (["algorithm=ppo", "ppo.gamma=1.5"], ("ppo.gamma must be >= 0 and <= 1",)),
        (["trian.max_steps=3"], ("trian", "did you mean 'train'")),
        (["train.max_steps"], ("--set expects key=value",)),
    ],
)
def test_a_bad_config_value_is_one_line_naming_the_field_before_any_run_exists(
    tmp_path: Path, overrides: list[str], expected: tuple[str, ...]
) -> None:
    args = ["train", "--config", str(CONFIGS / "calculator_sft.yaml")]
    for item in [*overrides, f"output_dir={tmp_path / 'runs'}"]:
        args += ["--set", item]
    _fails_in_one_line(args, *expected)
    assert not (tmp_path / "runs").exists()


def test_a_config_file_with_a_duplicate_key_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "dup.yaml"
    config.write_text("name: a\ntrain:\n  max_steps: 3\n  max_steps: 4\n")
    _fails_in_one_line(
        ["train", "--config", str(config)], "duplicate key 'max_steps' at line 4", str(config)
    )


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    _fails_in_one_line(["train", "--config", str(tmp_path / "nope.yaml")], "config file not found")


def test_ppo_settings_without_the_ppo_phase_are_an_error() -> None:
    _fails_in_one_line(["quickstart", "--ppo-set", "train.max_steps=2"], "--ppo-set", "add --ppo")


def test_no_successful_trajectory_to_learn_from_is_one_line(tmp_path: Path) -> None:
    """Expert iteration from an untrained model samples no success: SFT has nothing to learn."""
    args = ["train", "--config", str(CONFIGS / "expert_iteration.yaml")]
    for item in (
        f"output_dir={tmp_path}",
        "model.tiny.n_layers=1",
        "model.tiny.hidden_size=32",
        "model.tiny.n_heads=2",
        "model.tiny.intermediate_size=64",
        "expert_iteration.rounds=1",
        "expert_iteration.tasks_per_round=2",
        "expert_iteration.samples_per_task=1",
        "eval.episodes_before=0",
        "eval.max_new_tokens=8",
    ):
        args += ["--set", item]
    _fails_in_one_line(args, "SFT needs successful trajectories and got none")
