"""The runs index on a real SQLite file: concurrent writers, a writer killed mid-transaction,
resumed runs, usage sums, clear errors."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_trainer.core.errors import UserError
from llm_trainer.experiments.cost import RunUsage
from llm_trainer.experiments.index import ExperimentManager, Metric, run_labels
from llm_trainer.tests.experiments.workers import METRICS, register_and_finish

ROOT = Path(__file__).resolve().parents[2]


def _integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def test_concurrent_writers_each_record_every_run_with_distinct_ids(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    ExperimentManager(path)  # created once; the writers open it at the same time
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        results = pool.starmap(register_and_finish, [(str(path), f"w{i}", 15) for i in range(3)])
    ids = [run for writer in results for run in writer]
    assert len(ids) == len(set(ids)) == 45
    index = ExperimentManager(path)
    runs = index.runs()
    assert sorted(r.id for r in runs) == sorted(ids)
    assert {r.status for r in runs} == {"finished"}
    assert all(dict(r.metrics) == METRICS for r in runs)
    assert index.usage().train_tokens == 45 * 10
    assert index.usage(name="w1") == RunUsage(seconds=15.0, train_tokens=150)
    assert _integrity(path) == "ok"


def test_a_writer_killed_inside_its_transaction_leaves_the_index_as_it_was(
    tmp_path: Path,
) -> None:
    path, marker = tmp_path / "index.sqlite", tmp_path / "inside"
    writer = subprocess.Popen(
        [sys.executable, "-m", "llm_trainer.tests.experiments.workers", str(path), "3",
         str(marker)],
        cwd=ROOT, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert writer.poll() is None, writer.stderr.read().decode() if writer.stderr else ""
        assert time.monotonic() < deadline, "the writer never reached its fourth finish"
        time.sleep(0.05)
    killed_run = int(marker.read_text())
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    assert _integrity(path) == "ok"
    index = ExperimentManager(path)
    runs = {r.id: r for r in index.runs()}
    assert len(runs) == 4
    # the three committed outcomes are whole; the killed one wrote nothing: still running
    for run_id, record in runs.items():
        if run_id == killed_run:
            assert (record.status, dict(record.metrics), record.ended) == ("running", {}, None)
        else:
            assert record.status == "finished"
            assert dict(record.metrics) == METRICS
    # its process is gone: reaping marks it failed, and says why
    assert index.reap() == [killed_run]
    reaped = index.get(killed_run)
    assert reaped.status == "failed"
    assert reaped.error is not None
    assert "without recording an outcome" in reaped.error


def test_a_resumed_run_keeps_its_id_and_forgets_its_old_outcome(tmp_path: Path) -> None:
    index = ExperimentManager(tmp_path / "index.sqlite")
    first = index.register(
        name="r", algorithm="sft", seed=0, config={}, run_dir=tmp_path / "run", git_commit=None
    )
    index.finish(first, "failed", {"loss": Metric(1.0)}, error="boom")
    again = index.register(
        name="r", algorithm="sft", seed=0, config={}, run_dir=tmp_path / "run", git_commit=None
    )
    record = index.get(again)
    assert again == first
    assert (record.status, record.error, dict(record.metrics)) == ("running", None, {})
    assert index.reap() == []  # this process is alive


def test_labels_and_filters_find_a_sweeps_trials(tmp_path: Path) -> None:
    index = ExperimentManager(tmp_path / "index.sqlite")
    for trial in range(3):
        with run_labels(sweep_id="s", trial=trial):
            run = index.register(
                name=f"t{trial}", algorithm="sft", seed=0, config={},
                run_dir=tmp_path / str(trial), git_commit="c0ffee+dirty",
            )  # fmt: skip
        index.finish(run, "finished", usage=RunUsage(seconds=2.0, cost_usd=0.5))
    other = index.register(
        name="x", algorithm="ppo", seed=1, config={}, run_dir=tmp_path / "x", git_commit=None
    )
    trials = index.runs(sweep_id="s")
    assert [(r.labels.trial, r.commit_label) for r in trials] == [(2, "c0ffee*"), (1, "c0ffee*"),
                                                                 (0, "c0ffee*")]  # fmt: skip
    assert index.usage(sweep_id="s") == RunUsage(seconds=6.0, cost_usd=1.5)
    assert [r.id for r in index.runs(status="running")] == [other]
    assert index.find(str(tmp_path / "x")).id == other
    assert index.find("x").id == other  # the folder's name


def test_missing_index_unknown_run_and_bad_values_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no runs index at .*index\.sqlite"):
        ExperimentManager(tmp_path / "index.sqlite", must_exist=True)
    assert not (tmp_path / "index.sqlite").exists()  # reading never creates one
    (tmp_path / "notes.txt").write_text("not a database, " * 100)
    with pytest.raises(UserError, match=r"notes\.txt is not a usable runs index"):
        ExperimentManager(tmp_path / "notes.txt", must_exist=True)
    index = ExperimentManager(tmp_path / "index.sqlite")
    with pytest.raises(UserError, match="no run 7 in"):
        index.get(7)
    with pytest.raises(UserError, match="status: 'done' is not one of"):
        index.runs(status="done")
    run = index.register(
        name="r", algorithm="sft", seed=0, config={}, run_dir=tmp_path / "r", git_commit=None
    )
    with pytest.raises(ValueError, match="not a finite number"):
        index.finish(run, "finished", {"loss": Metric(float("nan"))})
    assert index.get(run).status == "running"  # the refused outcome wrote nothing
