"""Reproduce a run: train its stored config and seed again and compare within the noise floor.

``llm-trainer runs reproduce ID`` re-runs run ``ID`` of the runs index from its stored,
resolved config and seed into a new run directory (the new run is indexed with
``reproduces: ID``), then compares each held-out rate of the two runs: it reproduces when
every difference is within the noise floor of the stored rate (:func:`~llm_trainer.
experiments.noise.rate_noise_floor`: how far two evaluations of one model on that many episodes
differ by chance). On the same commit, packages and hardware a run reproduces exactly (the
training is deterministic); elsewhere the floor says how close is close enough.

The commit is compared, not checked out: a reproduction at another commit (or of a run made on
a checkout with uncommitted changes, or with other package versions) says so before it starts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_trainer.core.errors import UserError
from llm_trainer.experiments.index import (
    ExperimentManager,
    Metric,
    RunRecord,
    default_index_path,
    run_labels,
)

Log = Callable[[str], None]

#: Metrics shown beside the checked rates (no noise floor: not part of the verdict).
SHOWN = ("reward_after", "final_loss", "train_steps")


@dataclass(frozen=True, slots=True)
class MetricCheck:
    """One metric of the stored run and of its reproduction."""

    key: str
    stored: Metric
    reproduced: Metric | None
    noise_floor: float | None
    """``None``: the metric has no noise floor, it is shown but not checked."""

    @property
    def difference(self) -> float | None:
        return None if self.reproduced is None else self.reproduced.value - self.stored.value

    @property
    def within(self) -> bool | None:
        """Whether the difference is within the noise floor (``None``: not checked; a
        metric the reproduction lacks is outside)."""
        if self.noise_floor is None:
            return None
        if self.difference is None:
            return False
        return abs(self.difference) <= self.noise_floor + 1e-12

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.key,
            "stored": self.stored.value,
            "reproduced": None if self.reproduced is None else self.reproduced.value,
            "difference": self.difference,
            "noise_floor": self.noise_floor,
            "within": self.within,
        }


def compare_runs(
    stored: Mapping[str, Metric], reproduced: Mapping[str, Metric]
) -> list[MetricCheck]:
    """Check each held-out rate of ``stored`` (a top-level metric with an episode count;
    ``success_after``, the same number as ``success``, is left out) against ``reproduced``;
    the metrics of :data:`SHOWN` come along unchecked.

    >>> stored = {"success": Metric(0.5, episodes=200), "final_loss": Metric(0.1)}
    >>> [c.within for c in compare_runs(stored, {"success": Metric(0.45, episodes=200)})]
    [True, None]
    >>> [c.within for c in compare_runs(stored, {"success": Metric(0.3, episodes=200)})]
    [False, None]
    """
    checks = []
    for key, metric in sorted(stored.items()):
        if metric.episodes is not None and "/" not in key and key != "success_after":
            checks.append(MetricCheck(key, metric, reproduced.get(key), metric.noise_floor()))
    for key in SHOWN:
        if key in stored:
            checks.append(MetricCheck(key, stored[key], reproduced.get(key), None))
    return checks


@dataclass(frozen=True)
class Reproduction:
    """A run, its reproduction and the comparison."""

    original: RunRecord
    reproduced: RunRecord
    checks: tuple[MetricCheck, ...]
    warnings: tuple[str, ...]

    @property
    def checked(self) -> list[MetricCheck]:
        return [c for c in self.checks if c.within is not None]

    @property
    def matches(self) -> bool:
        """Every checked metric within its noise floor (and at least one checked)."""
        return bool(self.checked) and all(c.within for c in self.checked)

    def verdict(self) -> str:
        """One line: whether it reproduced."""
        checked = self.checked
        if not checked:
            return (
                f"run {self.original.id} has no held-out rate with an episode count: nothing "
                "can be checked against a noise floor"
            )
        outside = [c.key for c in checked if not c.within]
        if not outside:
            return (
                f"run {self.reproduced.id} reproduces run {self.original.id}: all "
                f"{len(checked)} held-out rates within the noise floor"
            )
        return (
            f"run {self.reproduced.id} does NOT reproduce run {self.original.id}: "
            f"{', '.join(outside)} outside the noise floor"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "original": self.original.id,
            "reproduced": self.reproduced.id,
            "run_dir": self.reproduced.run_dir,
            "matches": self.matches,
            "verdict": self.verdict(),
            "warnings": list(self.warnings),
            "checks": [c.as_dict() for c in self.checks],
        }


def provenance_warnings(original: RunRecord, commit: str | None) -> list[str]:
    """What differs between the stored run's code and this checkout's (``commit``:
    :func:`~llm_trainer.core.rundir.git_commit` of it), and its package versions."""
    from llm_trainer.core.rundir import package_versions
    from llm_trainer.experiments.index import split_commit

    warnings = []
    sha, dirty = split_commit(commit)
    if original.git_commit is None:
        warnings.append(f"run {original.id} recorded no commit: its code cannot be compared")
    elif sha != original.git_commit:
        warnings.append(
            f"run {original.id} ran at commit {original.git_commit[:12]}, this checkout is at "
            f"{(sha or 'no commit')[:12]}: a difference may come from the code"
        )
    if original.git_dirty:
        warnings.append(
            f"run {original.id} ran on a checkout with uncommitted changes: its exact code is "
            "not recorded"
        )
    if dirty:
        warnings.append("this checkout has uncommitted changes")
    try:
        stored = json.loads((Path(original.run_dir) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return warnings
    packages = stored.get("packages") if isinstance(stored, dict) else None
    if isinstance(packages, dict):
        now = package_versions(packages)
        changed = [
            f"{name} {version} -> {now.get(name, 'not installed')}"
            for name, version in sorted(packages.items())
            if now.get(name) != version
        ]
        if changed:
            warnings.append(f"package versions differ: {', '.join(changed)}")
    return warnings


def reproduce_run(
    index: ExperimentManager,
    reference: str | int,
    *,
    output_dir: str | Path | None = None,
    log: Log = print,
) -> Reproduction:
    """Re-run run ``reference`` (an id or a run directory) of ``index`` and compare.

    Args:
        index: The runs index the run is in.
        reference: The run.
        output_dir: Where the new run directory goes (default: the index's folder, so the
            reproduction lands beside the run, in the same index).
        log: Where warnings and the training's progress go.

    Raises:
        UserError: for an unknown run, a run that did not finish, or a stored config that no
            longer loads.
    """
    from llm_trainer.algorithms.config import experiment_from_dict
    from llm_trainer.algorithms.experiment import run_experiment
    from llm_trainer.core.rundir import git_commit

    original = index.find(reference)
    if original.status != "finished":
        raise UserError(f"run {original.id} is {original.status}: it has no results to reproduce")
    warnings = provenance_warnings(original, git_commit())
    for line in warnings:
        log(f"warning: {line}")
    out = Path(output_dir) if output_dir is not None else index.path.parent
    data = {**original.config, "output_dir": str(out), "resume": False}
    try:
        config = experiment_from_dict(data, f"the stored config of run {original.id}")
    except UserError as exc:
        raise UserError(f"{exc} (the code changed since the run?)") from None
    log(f"reproducing run {original.id} ({original.name}, seed {original.seed})")
    with run_labels(reproduces=original.id):
        summary = run_experiment(config, log=log)
    reproduced = ExperimentManager(default_index_path(config.output_dir)).find(
        str(summary["run_dir"])
    )
    checks = compare_runs(original.metrics, reproduced.metrics)
    return Reproduction(original, reproduced, tuple(checks), tuple(warnings))
