"""The hook every experiment runs in: :func:`track_run` indexes, monitors and meters a run.

:func:`~llm_trainer.algorithms.experiment.run_experiment` runs its work inside
``with track_run(config, run, log=log) as tracked:`` and ends it with
``tracked.finish(summary)``. That

* registers the run in the runs index (:class:`~llm_trainer.experiments.index.
  ExperimentManager`) as ``running``, with its resolved config, seed, commit and labels
  (:func:`~llm_trainer.experiments.index.run_labels`: sweep, trial, cycle, reproduced run);
* keeps ``status.json`` up to date (:class:`~llm_trainer.experiments.monitor.
  MonitoringService`: one stage, named after the algorithm, and every step of
  ``metrics.jsonl``);
* records the outcome: ``finished`` with the summary's numbers (held-out rates with their
  bootstrap 95% intervals) and the usage (:class:`~llm_trainer.experiments.cost.RunUsage`), or
  ``failed`` with the error, or ``interrupted``;
* logs an ``ALERT`` line for each held-out rate that fell past the noise floor of the previous
  finished run of the same name.

The index is bookkeeping: when its file cannot be written (a read-only folder, a disk full),
the run goes on and says once that it is not indexed.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from llm_trainer.core.errors import UserError
from llm_trainer.experiments.cost import (
    METER,
    PriceTable,
    RunUsage,
    default_prices,
    tokens_from_metrics,
)
from llm_trainer.experiments.index import (
    ExperimentManager,
    Metric,
    Status,
    current_labels,
    default_index_path,
)
from llm_trainer.experiments.monitor import MonitoringService

if TYPE_CHECKING:
    from llm_trainer.algorithms.config import ExperimentConfig
    from llm_trainer.core.rundir import RunDir

Log = Callable[[str], None]

#: Held-out rates of a policy: means of a 0/1 outcome per episode (their intervals and noise
#: floors come from the episode count).
RATE_NAMES = (
    "success",
    "tool_accuracy",
    "format_correctness",
    "execution_success",
    "answer_correctness",
)


def flatten_numbers(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a nested summary, by ``/``-joined key (booleans, text and paths
    left out).

    >>> flatten_numbers({"a": 1, "b": {"c": 0.5, "d": "x"}, "e": True, "f": float("nan")})
    {'a': 1.0, 'b/c': 0.5}
    """
    out: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_numbers(value, f"{name}/"))
        elif (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ):
            out[name] = float(value)
    return out


def summary_metrics(
    summary: Mapping[str, Any], episodes_after: int, episodes_before: int
) -> dict[str, Metric]:
    """The numbers of a run's summary as index metrics: each held-out rate (``success``,
    ``after/success``, ``success_after``...; ``before/...`` and ``success_before`` measured on
    ``episodes_before`` episodes) with its bootstrap 95% interval and episode count.

    >>> metrics = summary_metrics({"success": 0.5, "train_steps": 3}, 100, 0)
    >>> metrics["success"].format(), metrics["train_steps"].format()
    ('0.500 [0.400, 0.600]', '3')
    """
    from llm_trainer.experiments.noise import rate_interval

    out = {}
    for key, value in flatten_numbers(summary).items():
        prefix, _, rate = key.rpartition("/")
        episodes = None
        if (rate in RATE_NAMES and prefix in ("", "after")) or key == "success_after":
            episodes = episodes_after
        elif (rate in RATE_NAMES and prefix == "before") or key == "success_before":
            episodes = episodes_before
        metric = Metric(value)
        if episodes:
            try:
                interval = rate_interval(value, episodes)
            except ValueError:  # not a rate over those episodes (an algorithm's own number)
                pass
            else:
                metric = Metric(value, interval.low, interval.high, episodes)
        out[key] = metric
    return out


def _git_commit(run: RunDir) -> str | None:
    """The commit ``run.json`` recorded (``RunDir.create`` asked git once already)."""
    try:
        recorded = json.loads((run.path / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    commit = recorded.get("git_commit") if isinstance(recorded, dict) else None
    return commit if isinstance(commit, str) else None


def _on_gpu(config: ExperimentConfig) -> bool:
    """Whether the run trained on a GPU (torch is loaded by then when it did)."""
    if config.train.device == "cpu" or "torch" not in sys.modules:
        return False
    import torch

    return bool(torch.cuda.is_available())


class RunTracker:
    """One run's index record, monitor and meters (made by :func:`track_run`)."""

    def __init__(self, config: ExperimentConfig, run: RunDir, *, log: Log = print) -> None:
        self.config, self.run, self.log = config, run, log
        self.algorithm: str = config.algorithm_class().name
        self.index_path = default_index_path(config.output_dir)
        self.prices: PriceTable = default_prices(self.index_path.parent)
        self.started = time.time()
        self._cpu = time.process_time()
        self._api = METER.snapshot()
        self.summary: Mapping[str, Any] | None = None
        self.ended = False
        self.index: ExperimentManager | None = None
        self.run_id: int | None = None
        try:
            self.index = ExperimentManager(self.index_path)
            self.run_id = self.index.register(
                name=config.name,
                algorithm=self.algorithm,
                seed=config.seed,
                config=config.to_dict(),
                run_dir=run.path,
                git_commit=_git_commit(run),
                labels=current_labels(),
                started=self.started,
            )
        except (OSError, sqlite3.Error, UserError) as exc:
            self.index = None
            log(f"note: this run is not indexed: runs index {self.index_path}: {exc}")
        else:
            log(f"run {self.run_id} in the runs index {self.index_path}")
        self.monitor = MonitoringService(run.path, name=config.name, run_id=self.run_id, log=log)
        self.monitor.watch()

    def finish(self, summary: Mapping[str, Any]) -> None:
        """The run's summary: recorded as its metrics when the ``with`` block ends."""
        self.summary = summary

    def usage(self) -> RunUsage:
        """What the run used so far."""
        seconds = time.time() - self.started
        trained, generated = tokens_from_metrics(self.run.path / "metrics.jsonl")
        api = METER.since(self._api)
        cost = self.prices.cost(api)
        for spec in cost.unpriced:
            self.log(
                f"note: no price for {spec} (its tokens are not in cost_usd: add it to "
                f"{self.index_path.parent / 'prices.yaml'} or the file $LLM_TRAINER_PRICES "
                "names)"
            )
        return RunUsage(
            seconds=round(seconds, 3),
            cpu_seconds=round(time.process_time() - self._cpu, 3),
            gpu_seconds=round(seconds, 3) if _on_gpu(self.config) else 0.0,
            train_tokens=trained,
            generated_tokens=generated,
            api_prompt_tokens=sum(u.prompt_tokens for u in api.values()) if api else None,
            api_completion_tokens=sum(u.completion_tokens for u in api.values()) if api else None,
            cost_usd=cost.usd,
        )

    def metrics(self) -> dict[str, Metric]:
        """The summary's numbers (see :func:`summary_metrics`)."""
        if self.summary is None:
            return {}
        ev = self.config.eval
        before = ev.episodes_before if self.config.model.path == "tiny" else ev.episodes
        return summary_metrics(self.summary, ev.episodes, before)

    def end(self, status: Status, error: str | None = None) -> None:
        """Record the outcome (once): index, alerts, ``status.json``, scalars."""
        if self.ended:
            return
        self.ended = True
        usage, metrics = self.usage(), self.metrics()
        if self.index is not None and self.run_id is not None:
            try:
                self.index.finish(self.run_id, status, metrics, usage, error=error)
                if status == "finished":
                    baseline = self.index.previous(self.index.get(self.run_id))
                    if baseline is not None:
                        self.monitor.check_regressions(
                            metrics, baseline.metrics, f"run {baseline.id}"
                        )
            except (OSError, sqlite3.Error, UserError) as exc:
                self.log(f"note: the outcome of run {self.run_id} is not indexed: {exc}")
        self.monitor.finish(status, metrics=metrics, usage=usage, error=error)


@contextlib.contextmanager
def track_run(config: ExperimentConfig, run: RunDir, *, log: Log = print) -> Iterator[RunTracker]:
    """Index, monitor and meter the run in the ``with`` block (see the module docstring);
    call :meth:`RunTracker.finish` with the summary before the block ends."""
    tracker = RunTracker(config, run, log=log)
    try:
        with tracker.monitor.stage(tracker.algorithm):
            yield tracker
    except KeyboardInterrupt:
        tracker.end("interrupted", "interrupted (KeyboardInterrupt)")
        raise
    except BaseException as exc:
        tracker.end("failed", f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:2000])
        raise
    tracker.end("finished")
