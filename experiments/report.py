"""Tables of the runs index for the command line (``llm-trainer runs`` and ``sweep``), and the
JSON shapes of ``--json``."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from llm_trainer.experiments.cost import RunUsage
from llm_trainer.experiments.index import RunRecord
from llm_trainer.experiments.reproduce import Reproduction
from llm_trainer.experiments.sweep import SweepResult


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _metric(record: RunRecord, key: str) -> str:
    metric = record.metrics.get(key)
    return "-" if metric is None else metric.format()


def _labels(record: RunRecord) -> str:
    parts = []
    if record.labels.sweep_id is not None:
        parts.append(f"{record.labels.sweep_id}#{record.labels.trial}")
    if record.labels.cycle_id is not None:
        parts.append(f"cycle {record.labels.cycle_id}")
    if record.labels.reproduces is not None:
        parts.append(f"reproduces {record.labels.reproduces}")
    return ", ".join(parts)


def runs_table(records: Sequence[RunRecord], title: str) -> Table:
    """One row per run: id, name, status, seed, commit, when, how long, headline numbers."""
    table = Table(title=title)
    columns = ("id", "name", "algorithm", "status", "seed", "commit", "started", "seconds")
    for column in (*columns, "success [95% CI]", "final loss", "labels", "run folder"):
        right = column in ("id", "seed", "seconds", "success [95% CI]", "final loss")
        table.add_column(column, justify="right" if right else "left", overflow="fold")
    for r in records:
        table.add_row(
            str(r.id),
            r.name,
            r.algorithm,
            r.status,
            str(r.seed),
            r.commit_label,
            _when(r.started),
            _seconds(r.seconds),
            _metric(r, "success"),
            _metric(r, "final_loss"),
            _labels(r),
            Path(r.run_dir).name,
        )
    return table


def usage_rows(usage: RunUsage) -> list[tuple[str, str]]:
    """``(field, value)`` of a usage record, uncounted fields as ``-``."""
    rows = []
    for field in dataclasses.fields(usage):
        value = getattr(usage, field.name)
        if value is None:
            text = "-"
        elif field.name == "cost_usd":
            text = f"${value:.4f}"
        elif isinstance(value, float):
            text = f"{value:.1f}"
        else:
            text = f"{value:,}"
        rows.append((field.name, text))
    return rows


def usage_table(usage: RunUsage, title: str) -> Table:
    table = Table(title=title)
    table.add_column("usage")
    table.add_column("total", justify="right")
    for row in usage_rows(usage):
        table.add_row(*row)
    return table


def run_tables(record: RunRecord) -> list[Table]:
    """``runs show``: the run's record, its metrics (with intervals), its usage."""
    about = Table(title=f"run {record.id}: {record.name}", show_header=False)
    about.add_column("field")
    about.add_column("value", overflow="fold")
    rows = [
        ("status", record.status),
        ("algorithm", record.algorithm),
        ("seed", str(record.seed)),
        ("commit", f"{record.git_commit or '-'}{' (dirty)' if record.git_dirty else ''}"),
        ("started", _when(record.started)),
        ("ended", _when(record.ended)),
        ("seconds", _seconds(record.seconds)),
        ("host / pid", f"{record.host} / {record.pid}"),
        ("run dir", record.run_dir),
        ("labels", _labels(record) or "-"),
    ]
    if record.error:
        rows.append(("error", record.error))
    for row in rows:
        about.add_row(*row)
    metrics = Table(title="metrics (held-out rates: mean [95% bootstrap CI], episodes)")
    for column in ("metric", "value", "episodes"):
        metrics.add_column(column, justify="left" if column == "metric" else "right")
    for key, m in sorted(record.metrics.items()):
        metrics.add_row(key, m.format(), "-" if m.episodes is None else str(m.episodes))
    return [about, metrics, usage_table(record.usage, "usage")]


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def config_differences(records: Sequence[RunRecord]) -> list[tuple[str, list[Any]]]:
    """The config fields whose values differ between the runs, with each run's value."""
    flat = [_flatten(r.config) for r in records]
    keys = sorted(set().union(*flat))
    missing = object()
    out = []
    for key in keys:
        values = [f.get(key, missing) for f in flat]
        if any(v != values[0] for v in values[1:]):
            out.append((key, ["<absent>" if v is missing else v for v in values]))
    return out


def compare_tables(records: Sequence[RunRecord]) -> list[Table]:
    """``runs compare``: the metrics side by side (with intervals), then the config fields
    that differ."""
    metrics = Table(title="metrics: mean [95% CI] where recorded")
    metrics.add_column("metric")
    for r in records:
        metrics.add_column(f"run {r.id} ({r.name})", justify="right", overflow="fold")
    keys = sorted(set().union(*(r.metrics for r in records)))
    for key in keys:
        metrics.add_row(key, *(_metric(r, key) for r in records))
    for field, *_ in usage_rows(RunUsage()):
        metrics.add_row(f"usage: {field}", *(dict(usage_rows(r.usage))[field] for r in records))
    config = Table(title="config fields that differ")
    config.add_column("field")
    for r in records:
        config.add_column(f"run {r.id}", justify="right", overflow="fold")
    differences = config_differences(records)
    for field, values in differences:
        config.add_row(field, *(str(v) for v in values))
    if not differences:
        config.add_row("(none: the same config)", *("" for _ in records))
    return [metrics, config]


def reproduction_table(reproduction: Reproduction) -> Table:
    """``runs reproduce``: stored and reproduced values, the difference, the noise floor."""
    o, r = reproduction.original, reproduction.reproduced
    table = Table(title=f"run {o.id} reproduced as run {r.id}")
    for column in ("metric", f"run {o.id}", f"run {r.id}", "difference", "noise floor", "ok"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for c in reproduction.checks:
        table.add_row(
            c.key,
            c.stored.format(),
            "-" if c.reproduced is None else c.reproduced.format(),
            "-" if c.difference is None else f"{c.difference:+.4g}",
            "-" if c.noise_floor is None else f"{c.noise_floor:.3f}",
            {True: "yes", False: "NO", None: "(shown)"}[c.within],
        )
    return table


def sweep_table(result: SweepResult) -> Table:
    """``sweep``: the trials, best first."""
    best = result.best
    arrow = "higher" if result.direction == "maximize" else "lower"
    table = Table(title=f"sweep {result.id}: {result.objective} ({arrow} is better)")
    fields = list(result.trials[0].params) if result.trials else []
    for column in ("trial", *fields, result.objective, "status", "run"):
        table.add_column(column, justify="left" if column == "status" else "right")
    for t in result.ranked():
        mark = " *" if best is not None and t.trial == best.trial else ""
        table.add_row(
            f"{t.trial}{mark}",
            *(f"{t.params[f]:.4g}" if isinstance(t.params[f], float) else str(t.params[f])
              for f in fields),
            "-" if t.objective is None else f"{t.objective:.4g}",
            t.status,
            "-" if t.run_id is None else str(t.run_id),
        )  # fmt: skip
    return table


def record_dict(record: RunRecord) -> dict[str, Any]:
    """A run as JSON-ready data (``--json``)."""
    out = dataclasses.asdict(record)
    out["metrics"] = {k: dataclasses.asdict(m) for k, m in record.metrics.items()}
    out["seconds"] = record.seconds
    return out
