"""What ``llm-trainer analyze`` reads: a run's trajectory store or benchmark result files.

:func:`analyze_path` turns a path into :class:`~llm_trainer.analysis.failure_modes.
FailureReport`\\ s and says where their chart and JSON go:

=================================  ==========================================  =================
path                               reports                                     written beside
=================================  ==========================================  =================
a run directory (``trajectories.   one per agent (trajectory ``source``) of    ``failure_modes.
db`` inside) or a store file       every dataset, oldest first (or             png`` / ``.json``
                                   ``dataset``'s only)                         in the run
a benchmark result file            one (its agent); episodes in the file's     ``<name>.failure_
(``results/<suite>/<agent>.json``)  canonical order                             modes.png`` /
                                                                               ``.json``
a folder of result files           one per agent (one column each)             ``failure_modes.
                                                                               png`` / ``.json``
=================================  ==========================================  =================

Benchmark results store each failed episode's mode (``failure_mode``); files written before
that are classified from their metrics
(:func:`~llm_trainer.analysis.failure_modes.classify_metrics`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llm_trainer.analysis.failure_modes import (
    REPORT_SUFFIX,
    Case,
    FailureReport,
    classify_metrics,
    mine,
    report_of,
)
from llm_trainer.core.errors import ConfigError, suggest
from llm_trainer.core.trajectory import Trajectory

#: The trajectory store of a run directory.
STORE_NAME = "trajectories.db"
#: The chart and report names (``<name>.``-prefixed beside a single result file).
CHART_NAME = "failure_modes.png"
REPORT_NAME = REPORT_SUFFIX


@dataclass(frozen=True, slots=True)
class Analysis:
    """What :func:`analyze_path` found.

    Attributes:
        source: What was read: ``run``, ``result`` or ``results``.
        reports: One report per agent, in the order found.
        chart: Where the chart goes.
        report: Where the JSON report goes.
    """

    source: str
    reports: tuple[FailureReport, ...]
    chart: Path
    report: Path


def analyze_path(
    path: str | Path,
    *,
    dataset: str | None = None,
    out: str | Path | None = None,
    examples: int = 3,
    windows: int = 5,
) -> Analysis:
    """Mine the failure modes of a run directory, a result file or a folder of result files
    (see the module docstring).

    Args:
        path: What to read.
        dataset: Only this dataset of a run's store (its name, the name's part after the
            experiment name, or its id or an id prefix).
        out: The folder for the chart and the JSON report (default: beside the input).
        examples: Examples kept per failure mode.
        windows: Windows of the trend over episode order.

    Raises:
        ConfigError: in one line, for a path that does not exist or holds neither a store nor
            results, an unknown dataset, or a broken result file.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"{path}: no such file or directory; give a run directory (with {STORE_NAME}), "
            "a benchmark result file or a folder of result files"
        )
    store = path / STORE_NAME if path.is_dir() else path
    if store.suffix == ".db" and store.is_file():
        reports = _run_reports(store, path, dataset, examples, windows)
        return _placed("run", reports, store.parent, "", out)
    if dataset is not None:
        raise ConfigError(f"{path}: --dataset needs a run directory (with {STORE_NAME})")
    if path.is_file():
        reports = (_result_report(path, examples, windows),)
        return _placed("result", reports, path.parent, f"{path.stem}.", out)
    from llm_trainer.benchmarks.results import NotAResultError

    files = sorted(p for p in path.glob("*.json") if not p.name.endswith(REPORT_SUFFIX))
    found = []
    for file in files:
        try:
            found.append(_result_report(file, examples, windows))
        except NotAResultError:  # another tool's file, or an arena result: not ours to mine
            continue
    if not found:
        raise ConfigError(
            f"{path}: neither a run directory (no {STORE_NAME}) nor a folder of benchmark "
            "result files (no llm-trainer result among its *.json)"
        )
    return _placed("results", tuple(found), path, "", out)


def _placed(
    source: str,
    reports: Sequence[FailureReport],
    beside: Path,
    prefix: str,
    out: str | Path | None,
) -> Analysis:
    folder = Path(out) if out is not None else beside
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder}: not a directory")
    return Analysis(
        source, tuple(reports), folder / f"{prefix}{CHART_NAME}", folder / f"{prefix}{REPORT_NAME}"
    )


def _run_reports(
    store_path: Path, path: Path, dataset: str | None, examples: int, windows: int
) -> tuple[FailureReport, ...]:
    from llm_trainer.core.errors import UserError
    from llm_trainer.core.store import TrajectoryStore

    _check_store(store_path)
    try:
        store = TrajectoryStore(store_path)
        infos = store.datasets()
    except UserError as exc:
        raise ConfigError(str(exc)) from None
    except Exception as exc:  # not SQLite, or another program's database
        raise ConfigError(f"{store_path}: not a trajectory store ({exc})") from None
    if dataset is not None:
        infos = [i for i in infos if _matches(i.name, i.id, dataset)]
        if not infos:
            names = [i.name for i in store.datasets()]
            raise ConfigError(
                f"{store_path}: no dataset {dataset!r}{suggest(dataset, names)}; "
                f"datasets: {', '.join(names) or 'none'}"
            )
    trajectories = [t for info in infos for t in store.load(info.id)]
    if not trajectories:
        raise ConfigError(f"{store_path}: the store holds no trajectories")
    by_source: dict[str, list[Trajectory]] = {}
    for t in trajectories:
        by_source.setdefault(t.source, []).append(t)
    run_name = dataset or (path.name if path.is_dir() else path.stem)
    reports = []
    for source, items in by_source.items():
        name = run_name if len(by_source) == 1 else source
        reports.append(mine(items, name=name, examples=examples, windows=windows))
    return tuple(reports)


def _check_store(path: Path) -> None:
    """Refuse, without writing to it, a database that is not a trajectory store (opening a
    :class:`~llm_trainer.core.store.TrajectoryStore` would add its tables)."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"{path}: not a trajectory store ({exc})") from None
    if not {"datasets", "trajectories"} <= tables:
        raise ConfigError(f"{path}: not a trajectory store (no datasets/trajectories tables)")


def _matches(name: str, dataset_id: str, wanted: str) -> bool:
    return name == wanted or name.endswith(f"-{wanted}") or dataset_id.startswith(wanted)


def _result_report(path: Path, examples: int, windows: int) -> FailureReport:
    from llm_trainer.benchmarks.results import load_result

    result = load_result(path)
    cases = (
        Case(
            r.failure_mode or classify_metrics(r.metrics, r.error),
            r.env_id,
            r.difficulty,
            r.env_seed,
            r.error or "",
        )
        for r in result.episodes
    )
    return report_of(cases, name=result.agent, examples=examples, windows=windows)
