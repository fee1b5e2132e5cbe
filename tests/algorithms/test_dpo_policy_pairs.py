"""On-policy DPO pairs (``dpo.pairs: policy``): the model's own samples of the data tasks,
scored by the env, a success against a failure of the same task."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("trl")

from llm_trainer.algorithms.base import AlgorithmContext
from llm_trainer.algorithms.config import load_experiment
from llm_trainer.algorithms.dpo import DPOSettings, policy_pairs
from llm_trainer.algorithms.experiment import run_experiment
from llm_trainer.algorithms.rollout import oracle_trajectories
from llm_trainer.core.records import ToolCall
from llm_trainer.core.rundir import RunDir
from llm_trainer.envs.tools import AnswerAction, parse_action

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_policy_pairs_put_a_sampled_success_against_a_sampled_failure_of_one_task(
    weak_calculator_agent: Path, tmp_path: Path
) -> None:
    experiment = load_experiment(
        overrides=[
            "algorithm=dpo",
            f"model.path={weak_calculator_agent}",
            "model.system_prompt=''",
            "eval.max_new_tokens=80",
        ]
    )
    context = AlgorithmContext(experiment, RunDir(tmp_path), log=lambda m: None)
    model, tokenizer = context.load_model()
    tasks = oracle_trajectories("LLMTrainer/Calculator-v0", range(40), difficulty=1)
    settings = DPOSettings(pairs="policy", samples_per_prompt=4, temperature=1.0)
    pairs = policy_pairs(context, model, tokenizer, tasks, settings)
    assert pairs, "a weak agent sampled at temperature 1 both solves and fails some tasks"
    assert {p.seed for p in pairs} <= set(range(40))
    assert len({p.seed for p in pairs}) == len(pairs)  # max_pairs_per_task = 1
    for pair in pairs:
        assert pair.chosen != pair.rejected
        assert pair.prompt[-1]["role"] in ("user", "tool")
        assert isinstance(parse_action(pair.chosen), ToolCall | AnswerAction)


def test_dpo_on_policy_pairs_runs_end_to_end(weak_calculator_agent: Path, tmp_path: Path) -> None:
    config = load_experiment(
        CONFIGS / "calculator_dpo.yaml",
        [
            f"model.path={weak_calculator_agent}",
            f"output_dir={tmp_path}",
            "data.episodes=24",
            "dpo.pairs=both",
            "dpo.samples_per_prompt=4",
            "train.max_steps=2",
            "train.batch_size=4",
            "eval.episodes=8",
            "eval.max_new_tokens=80",
        ],
    )
    summary = run_experiment(config, log=lambda m: None)
    assert summary["algorithm"] == "dpo"
    assert summary["preference_pairs"] > 24  # every corrupted pair plus some on-policy ones
    assert summary["train_steps"] == 2
