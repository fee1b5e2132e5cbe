"""scripts/search_experiments.py runs end to end at tiny sizes (issue 16, item 4): every condition
with an interval and its compute, every comparison paired on the same tasks, best-of-n within the
search's budget, a table and a plot per experiment, the same results from the same seeds. The
numbers themselves are measured, never asserted."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "search_experiments.py"
PNG = b"\x89PNG\r\n\x1a\n"


@functools.cache
def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("search_experiments", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from llm_trainer.agents.tinylm import TinyLMConfig, create_tiny_model

    config = TinyLMConfig(n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64)
    return create_tiny_model(tmp_path_factory.mktemp("search_exp") / "model", config, seed=0)


def _strip(result: Any) -> Any:
    """``result`` without wall times (they differ from run to run)."""
    if isinstance(result, dict):
        return {
            k: _strip(v)
            for k, v in result.items()
            if k not in ("minutes", "seconds", "seconds_per_task", "seconds_per_seed")
        }
    if isinstance(result, list):
        return [_strip(v) for v in result]
    return result


def test_quick_run_reports_every_condition_with_intervals_compute_and_paired_tests(
    tmp_path: Path, model_dir: Path
) -> None:
    script = _script()
    out = tmp_path / "run"
    results = script.main(["--quick", "--out", str(out), "--base", str(model_dir)])
    saved = json.loads((out / "results.json").read_text())
    assert saved["experiments"].keys() == results.keys() == set(script.EXPERIMENTS)
    seeds = saved["settings"]["seeds"]
    for name in ("mcts_knapsack", "mcts_calculator"):
        r = results[name]
        assert set(r["conditions"]) == set(script.CONDITIONS)
        for numbers in r["conditions"].values():
            for metric in ("reward", "success"):
                ci = numbers[metric]
                assert ci["ci_low"] <= ci["mean"] <= ci["ci_high"]
            assert len(numbers["per_seed_reward"]) == seeds
        costs = {c: r["conditions"][c]["cost_per_task"] for c in script.CONDITIONS}
        # best-of-n never spends more than the search did (at least one episode)
        assert costs["bon_oracle"] == costs["bon_majority"]
        if name == "mcts_calculator":
            assert costs["mcts"] > 0
            assert costs["greedy"] > 0
        for family in r["comparisons"].values():
            assert {(c["candidate"], c["baseline"]) for c in family} == set(script.COMPARISONS)
            for c in family:
                assert c["n_pairs"] == seeds * r["tasks_per_seed"]
                assert 0.0 <= c["p_value"] <= c["p_holm"] <= 1.0
        assert (out / f"{name}.png").read_bytes()[:8] == PNG
    evolution = results["evolution"]
    assert set(evolution["success"]) == {"evolved", "own_prompt", "initial_best", "best_other"}
    assert len(evolution["test_success_by_generation"]) == saved["settings"]["evo_generations"] + 1
    assert [c["n_pairs"] for c in evolution["comparisons"]] == [seeds * evolution["test_tasks"]] * 3
    assert len(evolution["per_seed"]) == seeds
    assert evolution["tokens_per_seed"] > 0
    assert (out / "evolution.png").read_bytes()[:8] == PNG
    table = (out / "results.md").read_text()
    assert "| mcts - greedy |" in table
    assert "| evolved - own_prompt |" in table

    # the same seeds give the same results
    again = script.main(["--quick", "--out", str(tmp_path / "again"), "--only", "mcts_knapsack"])
    assert _strip(again["mcts_knapsack"]) == _strip(results["mcts_knapsack"])


def test_best_of_n_keeps_to_the_budget_and_its_selectors() -> None:
    script = _script()
    sampled = script.Sampled
    samples = [
        sampled(0.2, False, "7", 5),
        sampled(1.0, True, "9", 5),
        sampled(0.2, False, "7", 5),
        sampled(1.0, True, "9", 50),
    ]
    used, oracle, majority = script.best_of_n(samples, budget=15)
    assert len(used) == 3  # the fourth would overspend
    assert oracle is samples[1]
    assert majority is samples[0]
    used, oracle, majority = script.best_of_n(samples[3:], budget=1)
    assert used == samples[3:]  # at least one episode, whatever the budget
    none = [sampled(0.0, False, None, 1), sampled(0.5, False, None, 1)]
    assert script.best_of_n(none, budget=5)[2] is none[0]  # no answer: the first
