"""``torchrun``/``accelerate launch`` of ``llm-trainer train`` is one run.

The slow tests launch the real command with ``torchrun --nproc_per_node 2 --standalone`` on CPU
(gloo): two processes train data-parallel, and the run has one run directory, one row in the
runs index, one ``summary.json``, one trajectory-store dataset, one experiment in the knowledge
graph and one complete ``final_model`` (the main process's trained weights). The fast ones check
the refusal of an algorithm without multi-process support and what a non-main process writes
(nothing).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llm_trainer.algorithms.base import AlgorithmContext
from llm_trainer.algorithms.config import load_experiment
from llm_trainer.cli import app
from llm_trainer.core.processes import Processes, launched
from llm_trainer.core.rundir import RunDir
from llm_trainer.core.store import content_hash
from llm_trainer.core.trajectory import Trajectory

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
TORCHRUN = Path(sys.executable).parent / "torchrun"

#: A tiny model, a handful of steps and held-out episodes (the shape of tests/test_cli.py's).
SMALL = [
    "model.tiny.n_layers=1",
    "model.tiny.hidden_size=32",
    "model.tiny.n_heads=2",
    "model.tiny.intermediate_size=64",
    "train.logging_steps=1",
    "train.save_steps=2",
    "train.batch_size=2",
    "eval.episodes=4",
    "eval.episodes_before=2",
    "eval.max_new_tokens=8",
]
LAUNCH_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _torchrun(config: str, overrides: list[str], out: Path) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc_per_node 2 --standalone -m llm_trainer.cli train --json`` on CPU."""
    if not TORCHRUN.exists():
        pytest.skip(f"no torchrun next to {sys.executable}")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    env["OMP_NUM_THREADS"] = "1"  # two processes on two shared cores
    args = [str(TORCHRUN), "--nproc_per_node", "2", "--standalone", "-m", "llm_trainer.cli"]
    args += ["train", "--config", str(CONFIGS / config), "--json"]
    for item in [*overrides, f"output_dir={out}", f"knowledge_path={out / 'knowledge.sqlite'}"]:
        args += ["--set", item]
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400, check=False
    )


def _summaries(stdout: str) -> list[dict[str, Any]]:
    """The summary lines ``--json`` printed (one per process)."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{"algorithm"')]


def _count(db: Path, table: str, where: str = "") -> int:
    with sqlite3.connect(db) as connection:
        found: int = connection.execute(f"SELECT COUNT(*) FROM {table} {where}").fetchone()[0]
    return found


def _one_run(result: subprocess.CompletedProcess[str], out: Path, algorithm: str) -> Path:
    """The checks every multi-process run passes; its run directory."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs  # one run directory, made by the main process
    run = runs[0]
    summaries = _summaries(result.stdout)
    assert len(summaries) == 1  # every process returns it; only the main process prints it
    summary = json.loads((run / "summary.json").read_text())
    assert summary == summaries[0]
    assert summary["algorithm"] == algorithm
    assert summary["processes"] == 2
    assert summary["run_dir"] == str(run)
    assert "process 1 of 2: training in" in result.stdout + result.stderr
    index = out / "index.sqlite"
    assert _count(index, "runs") == 1
    assert _count(index, "runs", "WHERE status='finished'") == 1
    knowledge = out / "knowledge.sqlite"
    assert _count(knowledge, "nodes", "WHERE id LIKE 'experiment:%'") == 1
    # each checkpoint is whole: the main process's model and optimizer, every process's RNGs
    checkpoints = sorted((run / "checkpoints").glob("checkpoint-*"))
    assert checkpoints, list((run / "checkpoints").iterdir())
    for checkpoint in checkpoints:
        for name in ("model.safetensors", "optimizer.pt", "rng_state_0.pth", "rng_state_1.pth"):
            assert (checkpoint / name).is_file(), checkpoint / name
    assert not list((run / "checkpoints").glob(".staging-*"))
    # TensorBoard events from the main process only (events.out.tfevents.TIME.HOST.PID.N)
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    assert len({e.name.split(".")[-2] for e in events}) == 1, events
    return run


def _weights(directory: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


@pytest.mark.slow
def test_sft_under_torchrun_is_one_run_with_the_main_process_weights(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "runs"
    steps = ["data.episodes=32", "train.max_steps=4", "train.warmup_steps=0"]
    result = _torchrun("calculator_sft.yaml", [*SMALL, *steps, "eval.every_steps=2"], out)
    run = _one_run(result, out, "sft")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_steps"] == 4
    # one dataset in the trajectory store: the main process built and stored the data once
    assert _count(run / "trajectories.db", "datasets") == 1
    assert _count(run / "trajectories.db", "trajectories") == 32
    # metrics.jsonl from the main process only: one line per logged step, held-out evaluation
    # before, at step 2 and after
    points = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points if "loss" in p] == [1, 2, 3, 4]
    assert [p["step"] for p in points if "eval/success" in p] == [0, 2, 4]
    # final_model: complete, loads, and holds the weights the main process trained
    final = run / "final_model"
    model = AutoModelForCausalLM.from_pretrained(final)
    AutoTokenizer.from_pretrained(final)
    trained, last = _weights(final), _weights(run / "checkpoints" / "checkpoint-4")
    start = _weights(run / "init_model")
    assert trained.keys() == last.keys() == start.keys()
    assert all(torch.equal(trained[k], last[k]) for k in trained)
    assert any(not torch.equal(trained[k], start[k]) for k in trained)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], trained[k]) for k in trained)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "algorithm", "overrides", "artifact"),
    [
        (
            "calculator_dpo.yaml",
            "dpo",
            ["data.episodes=16", "train.max_steps=2", "dpo.pairs=both", "dpo.samples_per_prompt=2"],
            "final_model",
        ),
        (
            "calculator_reward_model.yaml",
            "reward_model",
            ["data.episodes=16", "train.max_steps=2"],
            "reward_model",
        ),
        (
            "multitool_grpo.yaml",
            "grpo",
            [
                *("train.max_steps=2", "grpo.num_generations=2", "grpo.prompts=8"),
                *("grpo.max_completion_length=8", "grpo.max_turns=2", "eval.every_steps=0"),
            ],
            "final_model",
        ),
    ],
)
def test_trl_algorithms_under_torchrun_are_one_run(
    tmp_path: Path, config: str, algorithm: str, overrides: list[str], artifact: str
) -> None:
    pytest.importorskip("trl")
    out = tmp_path / "runs"
    run = _one_run(_torchrun(config, [*SMALL, *overrides], out), out, algorithm)
    assert (run / artifact / "model.safetensors").is_file()
    assert (run / artifact / "tokenizer.json").is_file()


@pytest.mark.slow
def test_expert_iteration_under_torchrun_is_one_run(
    tmp_path: Path, weak_calculator_agent: Path
) -> None:
    """Sampling happens in the main process (every process trains on its episodes), and each
    round's dataset is stored once."""
    out = tmp_path / "runs"
    overrides = [f"model.path={weak_calculator_agent}", "expert_iteration.rounds=2"]
    overrides += ["expert_iteration.tasks_per_round=16", "expert_iteration.samples_per_task=2"]
    overrides += ["train.max_steps=2", "train.batch_size=2", "train.save_steps=2"]
    overrides += ["eval.episodes=4", "eval.max_new_tokens=80"]
    run = _one_run(_torchrun("expert_iteration.yaml", overrides, out), out, "expert_iteration")
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["kept_per_round"]) == 2
    assert _count(run / "trajectories.db", "datasets") == 2  # one per round, stored once
    assert (run / "final_model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_an_algorithm_without_multi_process_support_fails_in_every_process(
    tmp_path: Path,
) -> None:
    out = tmp_path / "runs"
    result = _torchrun("calculator_ppo.yaml", [], out)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    # each process stops with the error (torchrun may stop one before it prints)
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert 1 <= len(errors) <= 2, output[-3000:]
    for error in errors:
        assert "algorithm 'ppo' does not train in several processes" in error
    assert "]: Traceback" not in output  # no process raised it uncaught ([rank0]: Traceback)
    assert not out.exists()


def test_an_algorithm_without_multi_process_support_is_refused_before_any_run_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ``WORLD_SIZE`` > 1 (what torchrun sets) PPO stops with one line naming the
    algorithms that do train so, before the process group or a run directory exists."""
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "runs"
    args = ["train", "--config", str(CONFIGS / "calculator_ppo.yaml"), "--set", f"output_dir={out}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    message = " ".join(result.output.split("error:", 1)[1].split())
    assert "algorithm 'ppo' does not train in several processes" in message
    assert "process 0 of 2" in message
    for name in ("dpo", "expert_iteration", "grpo", "reward_model", "sft"):
        assert name in message.rsplit("(", 1)[1]
    assert not out.exists()


def test_a_non_main_process_writes_nothing_to_the_run(tmp_path: Path) -> None:
    """What a non-main process's context does with the run's shared files: nothing."""
    config = load_experiment(
        CONFIGS / "calculator_sft.yaml",
        [f"output_dir={tmp_path}", f"knowledge_path={tmp_path / 'knowledge.sqlite'}"],
    )
    run = RunDir.follow(tmp_path / "run")
    context = AlgorithmContext(config, run, log=lambda m: None, processes=Processes(1, 2, 1))
    assert context.knowledge is None
    trajectories = [Trajectory("LLMTrainer/Calculator-v0", 3, 1, "", (), "1 + 2 = ?", ())]
    assert context.store_dataset("train", trajectories) == content_hash(trajectories)
    assert context.datasets_stored == (content_hash(trajectories),)
    run.log_metrics(1, {"loss": 1.0})
    run.write_json("summary.json", {})
    assert run.plot_learning_curve() is None
    assert list(run.path.iterdir()) == []
    assert not (tmp_path / "knowledge.sqlite").exists()


def test_the_launchers_environment_says_which_process_this_is() -> None:
    assert launched({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"}) == Processes(2, 4, 0)
    assert launched({}) == Processes()
    single = Processes()
    assert single.on_main(lambda: 7) == 7  # one process: the work runs here, no group needed
    assert single.broadcast("x") == "x"
    with pytest.raises(ValueError, match="RANK"):
        launched({"WORLD_SIZE": "2", "RANK": "2"})
    with pytest.raises(ValueError, match="not an integer"):
        launched({"WORLD_SIZE": "two"})
