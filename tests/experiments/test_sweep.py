"""Sweeps of tiny real training runs: a grid through the CLI (two trials at once, resumed), a
random sweep and an Optuna sweep that is extended by a second session; the same grid and an
Optuna sweep as Ray tasks on a real local cluster (equal to the local sweep, a killed worker's
trial re-run and recorded once); and the errors that stop a bad sweep before any trial runs."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llm_trainer.cli import app
from llm_trainer.core.errors import ConfigError
from llm_trainer.experiments.index import INDEX_ENV, ExperimentManager, Metric, RunLabels
from llm_trainer.experiments.sweep import (
    ConfigManager,
    Sweep,
    SweepConfig,
    TrialJob,
    parse_parameter,
    random_trials,
    run_ray_trial,
)
from llm_trainer.tests.experiments.tiny import CONFIG, TINY, set_flags

runner = CliRunner()
KNAPSACK = CONFIG.parent / "evolve_knapsack.yaml"
GRID = ("train.learning_rate=1e-3,2e-2",)


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


# -- Ray ----------------------------------------------------------------------------------------


def _comparable(record: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """A run's config and metrics less what differs between two sweeps of the same trials:
    the run name (it holds the sweep's id), the output folder and the timings."""
    config = {k: v for k, v in record.config.items() if k not in ("name", "output_dir")}
    metrics = {k: m.value for k, m in record.metrics.items() if "second" not in k}
    return config, metrics


def test_a_grid_sweep_on_ray_equals_the_local_sweep(tmp_path: Path, ray_cluster: str) -> None:
    """The same grid in this process and as two Ray tasks at once (``--ray local``): the same
    trial configs and metrics, each trial indexed once with its sweep labels."""
    pytest.importorskip("trl")
    summaries, records = {}, {}
    for where, extra in {"local": [], "ray": ["--parallel", "2", "--ray", "local"]}.items():
        args = ["sweep", "--config", str(CONFIG), "--grid", *GRID, "--objective", "final_loss"]
        args += [
            *extra,
            "--json",
            *set_flags([*TINY, "name=grid", f"output_dir={tmp_path / where}"]),
        ]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        # the last line of stdout (Ray forwards what its workers print to stderr, and late)
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["ran"] == 2
        summaries[where] = summary
        runs = ExperimentManager(tmp_path / where / "index.sqlite").runs()
        assert sorted((r.labels.sweep_id, r.labels.trial, r.status) for r in runs) == [
            (summary["sweep_id"], trial, "finished") for trial in (0, 1)
        ]  # each trial indexed once, labelled, finished
        records[where] = {r.labels.trial: _comparable(r) for r in runs}
        if where == "ray":
            assert len(re.findall(r"\(Ray task: 1 CPU, 0 GPUs\)", result.output)) == 2
            assert {r.pid for r in runs}.isdisjoint({os.getpid()})  # they ran in Ray workers
    local, ray = summaries["local"], summaries["ray"]
    fields = ("trial", "params", "status", "objective")
    assert [{k: t[k] for k in fields} for t in local["trials"]] == [
        {k: t[k] for k in fields} for t in ray["trials"]
    ]
    assert records["local"] == records["ray"]  # configs, final_loss, success... all equal
    assert ray["best"]["trial"] == local["best"]["trial"]


def test_a_killed_ray_worker_s_trial_is_rerun_and_recorded_once(
    tmp_path: Path, ray_cluster: str
) -> None:
    """SIGKILL the Ray worker of trial 0 while it trains: Ray runs the task again, and the
    index holds trial 0 once as finished (and the killed attempt as failed)."""
    pytest.importorskip("trl")
    index_path = tmp_path / "index.sqlite"
    killed: list[int] = []
    stop = threading.Event()

    def kill_trial_0() -> None:
        while not stop.is_set() and not killed:
            if index_path.exists():
                for record in ExperimentManager(index_path).runs(status="running"):
                    if record.labels.trial == 0 and record.pid != os.getpid():
                        os.kill(record.pid, signal.SIGKILL)
                        killed.append(record.pid)
                        return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_trial_0, daemon=True)
    killer.start()
    config = SweepConfig(
        tuple(parse_parameter(p) for p in GRID),
        parallel=2,
        objective="final_loss",
        ray_address=ray_cluster,
    )
    try:
        result = Sweep(_manager(tmp_path), config, log=lambda _: None).run()
    finally:
        stop.set()
        killer.join()
    assert killed, "trial 0 was never seen running"
    assert result.ran == 2
    assert [(t.trial, t.status) for t in result.trials] == [(0, "finished"), (1, "finished")]
    assert all(t.objective is not None and math.isfinite(t.objective) for t in result.trials)
    runs = ExperimentManager(index_path).runs(sweep_id=result.id)
    trial_0 = sorted((r.status, r.pid) for r in runs if r.labels.trial == 0)
    assert [status for status, _ in trial_0] == ["failed", "finished"]  # killed, then re-run
    assert trial_0[0][1] == killed[0] != trial_0[1][1]  # the re-run was another worker
    assert [r.status for r in runs if r.labels.trial == 1] == ["finished"]


def test_an_optuna_sweep_on_ray_asks_each_trial_as_a_task_frees_up(
    tmp_path: Path, ray_cluster: str
) -> None:
    pytest.importorskip("trl")
    optuna = pytest.importorskip("optuna")
    parameters = (parse_parameter("train.learning_rate=loguniform(1e-4,1e-1)"),)
    config = SweepConfig(parameters, mode="optuna", trials=3, parallel=2,
                         objective="final_loss", ray_address=ray_cluster)  # fmt: skip
    lines: list[str] = []
    result = Sweep(_manager(tmp_path), config, log=lines.append).run()
    assert (result.ran, [t.status for t in result.trials]) == (3, ["finished"] * 3)
    study = optuna.load_study(
        study_name=result.id, storage=f"sqlite:///{tmp_path / 'optuna.sqlite'}"
    )
    by_number = {t.number: t for t in study.trials}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    for trial in result.trials:  # the study and the runs index agree
        assert by_number[trial.trial].value == trial.objective
        assert by_number[trial.trial].params == dict(trial.params)
    # two trials were asked at once; the third only when one of them had been told
    asked = [i for i, line in enumerate(lines) if re.match(r"trial \d: ", line)]
    told = [i for i, line in enumerate(lines) if re.match(r"trial \d final_loss = ", line)]
    assert len(asked) == len(told) == 3
    assert asked[1] < told[0] < asked[2]


def test_a_re_run_ray_task_of_a_finished_trial_returns_that_run(tmp_path: Path) -> None:
    """What a Ray retry of a trial that had finished before its worker died does (no Ray
    needed): it finds the finished run in the index and trains nothing."""
    index = ExperimentManager(tmp_path / "index.sqlite")
    run = index.register(name="t", algorithm="sft", seed=0, config={}, run_dir=tmp_path / "r0",
                         git_commit=None, labels=RunLabels(sweep_id="s-1", trial=0))  # fmt: skip
    index.finish(run, "finished", {"final_loss": Metric(1.5)})
    before = os.getcwd(), os.environ.get(INDEX_ENV)
    config = {"output_dir": "."}  # not even a valid experiment: it is not run
    done = run_ray_trial(TrialJob("s-1", 0, config, cpus=1, cwd=str(tmp_path)))
    assert (done.run_dir, done.error) == (str((tmp_path / "r0").resolve()), None)
    assert (os.getcwd(), os.environ.get(INDEX_ENV)) == before  # the worker is left as it was
    assert len(index.runs()) == 1
    missing = run_ray_trial(TrialJob("s-1", 1, config, cwd=str(tmp_path / "elsewhere")))
    assert missing.error is not None
    assert "is not on Ray node" in missing.error


def test_without_ray_a_ray_sweep_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parameters = tuple(parse_parameter(p) for p in GRID)
    seeds = SweepConfig((parse_parameter("seed=0,1"),))
    # the base config's ray.address (an evolution experiment's) is the sweep's default
    manager = ConfigManager(KNAPSACK, ["ray.address=auto", f"output_dir={tmp_path / 'evo'}"])
    if importlib.util.find_spec("ray") is not None:
        assert Sweep(manager, seeds).ray_address == "auto"
        assert Sweep(manager, dataclasses.replace(seeds, ray_address="local")).ray_address == (
            "local"
        )
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray imports
    with pytest.raises(ConfigError, match=r"--ray needs Ray.*pip install 'llm-trainer\[ray\]'"):
        SweepConfig(parameters, ray_address="local")
    with pytest.raises(ConfigError, match=r"ray\.address needs Ray"):
        Sweep(manager, seeds)
    args = ["sweep", "--config", str(CONFIG), "--grid", *GRID, "--ray", "auto"]
    result = runner.invoke(app, [*args, *set_flags([f"output_dir={tmp_path}"])])
    assert result.exit_code == 2, result.output
    assert "error: --ray needs Ray" in result.output
    assert "pip install 'llm-trainer[ray]'" in " ".join(result.output.split())
    assert not (tmp_path / "index.sqlite").exists()  # refused before anything was written
