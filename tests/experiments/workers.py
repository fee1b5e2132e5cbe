"""Child processes of the experiments tests (spawned children and subprocesses import them by
name, as ``llm_trainer.tests.experiments.workers``): writers of the runs index, and a probe of
a worker's confinement."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from llm_trainer.experiments.cost import RunUsage
from llm_trainer.experiments.index import ExperimentManager, Metric, Status

#: The metrics every test run records (so a half-written outcome would show).
METRICS = {f"metric_{i}": Metric(i / 10, episodes=10) for i in range(8)}


def register_and_finish(path: str, writer: str, n: int) -> list[int]:
    """``n`` runs of one writer, each registered and then finished with :data:`METRICS`."""
    index = ExperimentManager(path)
    ids = []
    for i in range(n):
        run = index.register(
            name=writer,
            algorithm="sft",
            seed=i,
            config={"writer": writer, "i": i},
            run_dir=f"/nonexistent/{writer}/{i}",
            git_commit="abc",
        )
        index.finish(run, "finished", METRICS, RunUsage(seconds=1.0, train_tokens=10))
        ids.append(run)
    return ids


class PausingManager(ExperimentManager):
    """An index whose finish after the first ``committed`` stops inside its transaction (the
    rows written, no commit yet), announces it in ``marker`` and waits there to be killed."""

    def __init__(self, path: str, committed: int, marker: str) -> None:
        super().__init__(path)
        self.committed, self.marker, self.finished = committed, Path(marker), 0

    def _finish_rows(
        self,
        db: sqlite3.Connection,
        run_id: int,
        status: Status,
        metrics: Mapping[str, Metric],
        usage: RunUsage,
        error: str | None,
        ended: float,
    ) -> None:
        super()._finish_rows(db, run_id, status, metrics, usage, error, ended)
        self.finished += 1
        if self.finished > self.committed:
            self.marker.write_text(str(run_id))
            time.sleep(600)


def finish_until_killed(path: str, committed: int, marker: str) -> None:
    """Register and finish runs: ``committed`` of them, then one killed before its commit."""
    index = PausingManager(path, committed, marker)
    for i in range(committed + 1):
        run = index.register(
            name="killed",
            algorithm="sft",
            seed=i,
            config={"i": i},
            run_dir=f"/nonexistent/killed/{i}",
            git_commit=None,
        )
        index.finish(run, "finished", METRICS, RunUsage(seconds=1.0))


def confinement() -> tuple[list[int], str | None, str | None]:
    """The cores this process may run on, its OpenMP threads and its visible GPUs."""
    return (
        sorted(os.sched_getaffinity(0)),
        os.environ.get("OMP_NUM_THREADS"),
        os.environ.get("CUDA_VISIBLE_DEVICES"),
    )


if __name__ == "__main__":
    finish_until_killed(sys.argv[1], int(sys.argv[2]), sys.argv[3])
