"""Sweeps of tiny real training runs: a grid through the CLI (two trials at once, resumed), a
random sweep and an Optuna sweep that is extended by a second session; and the errors that
stop a bad sweep before any trial runs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llm_trainer.cli import app
from llm_trainer.core.errors import ConfigError
from llm_trainer.experiments.index import ExperimentManager
from llm_trainer.experiments.sweep import (
    ConfigManager,
    Sweep,
    SweepConfig,
    parse_parameter,
    random_trials,
)
from llm_trainer.tests.experiments.tiny import CONFIG, TINY, set_flags

runner = CliRunner()


def _manager(out: Path) -> ConfigManager:
    return ConfigManager(CONFIG, [*TINY, "name=sweep", f"output_dir={out}"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("train.learning_rate", "expected FIELD=SPEC"),
        ("seed=0,0", "a value is listed twice"),
        ("train.learning_rate=uniform(2,1)", "needs low < high"),
        ("train.learning_rate=loguniform(0,1)", "loguniform needs low > 0"),
        ("train.batch_size=int(1.5,4)", "int(low,high) takes integers"),
        ("train.batch_size=int(1)", "takes two numbers"),
    ],
)
def test_a_bad_parameter_is_refused_naming_it(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_parameter(spec)


def test_a_bad_field_or_value_fails_before_any_trial(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    with pytest.raises(ConfigError, match=r"train\.learnin_rate: unknown field \(did you mean"):
        Sweep(manager, SweepConfig((parse_parameter("train.learnin_rate=1e-3,2e-3"),)))
    with pytest.raises(ConfigError, match=r"train\.learning_rate must be > 0 and <= 1, got 5\.0"):
        Sweep(manager, SweepConfig((parse_parameter("train.learning_rate=1e-3,5.0"),)))
    with pytest.raises(ConfigError, match="a grid takes listed values"):
        SweepConfig((parse_parameter("seed=int(0,3)"),))
    with pytest.raises(ConfigError, match="random needs trials >= 1"):
        SweepConfig((parse_parameter("seed=0,1"),), mode="random")
    assert not (tmp_path / "index.sqlite").exists()  # refused before anything was written


def test_the_sweep_command_refuses_a_bad_search_in_one_line(tmp_path: Path) -> None:
    base = ["sweep", "--config", str(CONFIG), *set_flags([f"output_dir={tmp_path}"])]
    for extra, message in (
        (["--grid", "seed"], "error: sweep parameter 'seed': expected FIELD=SPEC"),
        (["--grid", "seed=0,1", "--random", "2", "--optuna", "2"], "error: choose one search"),
        (["--range", "seed=int(0,9)"], "error: sweep parameter seed: a grid takes listed values"),
    ):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split())
    assert not (tmp_path / "index.sqlite").exists()  # refused before anything was written


def test_a_grid_sweep_runs_its_trials_in_parallel_and_the_same_command_resumes_it(
    tmp_path: Path,
) -> None:
    pytest.importorskip("trl")
    args = ["sweep", "--config", str(CONFIG), "--grid", "train.learning_rate=1e-3,2e-2"]
    args += ["--parallel", "2", "--objective", "final_loss", "--json"]
    args += set_flags([*TINY, "name=grid", f"output_dir={tmp_path}"])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert (summary["mode"], summary["direction"], summary["ran"]) == ("grid", "minimize", 2)
    trials = {t["trial"]: t for t in summary["trials"]}
    assert {t: trials[t]["params"] for t in trials} == {
        0: {"train.learning_rate": 0.001},
        1: {"train.learning_rate": 0.02},
    }
    assert all(t["status"] == "finished" for t in trials.values())
    best = min(trials.values(), key=lambda t: t["objective"])
    assert summary["best"]["trial"] == best["trial"]
    # the two trials held different cores (one each on two cores)
    cores = re.findall(r"trial \d: train\.learning_rate=\S+ \(cores (\[[\d, ]+\])\)", result.output)
    assert len(set(cores)) == 2, cores
    index = ExperimentManager(tmp_path / "index.sqlite")
    records = index.runs(sweep_id=summary["sweep_id"])
    assert sorted(r.labels.trial for r in records) == [0, 1]
    for record in records:
        assert (
            record.config["train"]["learning_rate"]
            == trials[record.labels.trial]["params"]["train.learning_rate"]
        )
        assert record.metrics["final_loss"].value == trials[record.labels.trial]["objective"]
    assert index.sweep(summary["sweep_id"])["mode"] == "grid"

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    resumed = json.loads(again.output.strip().splitlines()[-1])
    assert resumed["ran"] == 0
    assert resumed["trials"] == summary["trials"]
    assert "resuming: 2 of 2 trials finished before" in again.output


def test_a_random_sweep_draws_its_seeded_points(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    parameters = (parse_parameter("train.learning_rate=loguniform(1e-4,1e-1)"),)
    config = SweepConfig(parameters, mode="random", trials=2, objective="final_loss", seed=3)
    result = Sweep(_manager(tmp_path), config, log=lambda _: None).run()
    drawn = random_trials(parameters, 2, seed=3)
    assert [dict(t.params) for t in sorted(result.trials, key=lambda t: t.trial)] == drawn
    assert all(1e-4 <= p["train.learning_rate"] <= 1e-1 for p in drawn)
    assert [t.status for t in result.trials] == ["finished", "finished"]
    assert all(t.objective is not None and math.isfinite(t.objective) for t in result.trials)
    assert result.best is not None
    assert result.best.objective == min(t.objective or math.inf for t in result.trials)


def test_an_optuna_sweep_keeps_its_study_and_a_second_session_extends_it(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    optuna = pytest.importorskip("optuna")
    parameters = (parse_parameter("train.learning_rate=loguniform(1e-4,1e-1)"),)
    lines: list[str] = []

    def sweep(trials: int) -> Any:
        config = SweepConfig(parameters, mode="optuna", trials=trials, objective="final_loss")
        return Sweep(_manager(tmp_path), config, log=lines.append).run()

    first = sweep(2)
    assert (first.ran, len(first.trials)) == (2, 2)
    second = sweep(3)  # the same sweep with one more trial: only that one runs
    assert second.id == first.id
    assert (second.ran, [t.trial for t in second.trials]) == (1, [0, 1, 2])
    assert any("resuming: 2 of 3 Optuna trials complete" in line for line in lines)
    study = optuna.load_study(
        study_name=second.id, storage=f"sqlite:///{tmp_path / 'optuna.sqlite'}"
    )
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    by_number = {t.number: t for t in complete}
    for trial in second.trials:  # the study and the runs index agree
        assert by_number[trial.trial].value == trial.objective
        assert by_number[trial.trial].params == dict(trial.params)
    assert study.best_value == second.best.objective if second.best else False
