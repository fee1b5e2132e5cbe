"""Regression detection: is a result significantly worse than a baseline on the same episodes?

Both results must come from the same suite definition (same hash), so episode ``i`` of each is
the same task. For every checked metric, :func:`~llm_trainer.benchmarks.stats.paired_compare`
gives the mean difference (candidate - baseline) with its paired-bootstrap interval and a
sign-flip permutation p-value; p-values are Holm-adjusted across the metrics checked, so
checking seven metrics does not multiply false alarms by seven. A metric regresses when its
adjusted p-value is below ``alpha``, the difference goes the wrong way (lower for
higher-is-better metrics), and it is larger than ``tolerance``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm_trainer.benchmarks.results import (
    METRICS,
    BenchResult,
    Metric,
    cell_strata,
    metric,
    task_clusters,
)
from llm_trainer.benchmarks.stats import PairedComparison, Resampler, holm, paired_compare
from llm_trainer.core.errors import ConfigError

DEFAULT_ALPHA = 0.05


@dataclass(frozen=True, slots=True)
class MetricCheck:
    """One metric of a comparison."""

    metric: Metric
    comparison: PairedComparison
    p_adjusted: float
    regressed: bool

    @property
    def worse_by(self) -> float:
        """How much worse the candidate is (positive = worse), in the metric's units."""
        diff = self.comparison.difference.mean
        return -diff if self.metric.better == "higher" else diff

    def describe(self) -> str:
        c = self.comparison
        direction = "worse" if self.worse_by > 0 else "better" if self.worse_by < 0 else "equal"
        return (
            f"{self.metric.name}: {c.candidate_mean:.4g} vs baseline {c.baseline_mean:.4g}, "
            f"difference {c.difference.mean:+.4g} [{c.difference.low:+.4g}, "
            f"{c.difference.high:+.4g}] ({direction}; p={c.p_value:.3g}, Holm-adjusted "
            f"{self.p_adjusted:.3g}, d_z={c.effect_size:.3g})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric.name,
            **self.comparison.as_dict(),
            "p_adjusted": self.p_adjusted,
            "worse_by": self.worse_by,
            "regressed": self.regressed,
        }


@dataclass(frozen=True, slots=True)
class ComparisonReport:
    """A candidate result against a baseline result."""

    baseline: str
    candidate: str
    suite: str
    alpha: float
    checks: tuple[MetricCheck, ...]

    @property
    def regressions(self) -> list[MetricCheck]:
        return [c for c in self.checks if c.regressed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "suite": self.suite,
            "alpha": self.alpha,
            "regressed": bool(self.regressions),
            "regressions": [c.metric.name for c in self.regressions],
            "metrics": {c.metric.name: c.as_dict() for c in self.checks},
        }


def check_same_suite(a: BenchResult, b: BenchResult) -> None:
    """Raise :class:`ConfigError` unless ``a`` and ``b`` played the same suite definition."""
    if a.suite.hash != b.suite.hash:
        raise ConfigError(
            f"{a.agent!r} ran suite {a.suite.id} (hash {a.suite.hash}) but {b.agent!r} ran "
            f"{b.suite.id} (hash {b.suite.hash}): results of different suite definitions "
            "cannot be compared"
        )


def compare_results(
    baseline: BenchResult,
    candidate: BenchResult,
    *,
    metrics: Sequence[str] | None = None,
    alpha: float = DEFAULT_ALPHA,
    tolerance: float = 0.0,
    seed: int = 0,
) -> ComparisonReport:
    """Paired comparison of ``candidate`` against ``baseline`` on every checked metric.

    Args:
        baseline: The reference result.
        candidate: The result under test (same suite definition).
        metrics: Metric names to check; by default every metric marked ``regression`` that
            both results have (tokens only when both policies report them).
        alpha: Level of the Holm-adjusted tests.
        tolerance: Differences up to this size (in the metric's units) never count as
            regressions.
        seed: Seed of the bootstrap and permutation draws.

    Raises:
        ConfigError: for different suites, an unknown metric, or a metric one result lacks.
    """
    check_same_suite(baseline, candidate)
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")
    if tolerance < 0:
        raise ConfigError(f"tolerance must be >= 0, got {tolerance!r}")
    pairs = []
    chosen = [metric(name) for name in metrics] if metrics else [m for m in METRICS if m.regression]
    for m in chosen:
        a, b = candidate.values(m.name), baseline.values(m.name)
        if a is None or b is None:
            if metrics:
                raise ConfigError(f"metric {m.name!r} is not available in both results")
            continue
        pairs.append((m, a, b))
    strata = cell_strata(baseline.suite, baseline.episodes)
    # a suite with trials: whole tasks are resampled (its trials are not independent episodes)
    resampler = Resampler(
        strata, seed=seed, clusters=task_clusters(baseline.suite, baseline.episodes)
    )
    comparisons = [
        paired_compare(a, b, strata, resampler=resampler, seed=seed) for _, a, b in pairs
    ]
    adjusted = holm([c.p_value for c in comparisons])
    checks = []
    for (m, _, _), comparison, p_adj in zip(pairs, comparisons, adjusted, strict=True):
        diff = comparison.difference.mean
        worse = -diff if m.better == "higher" else diff
        checks.append(MetricCheck(m, comparison, p_adj, p_adj < alpha and worse > tolerance))
    return ComparisonReport(
        baseline.agent, candidate.agent, baseline.suite.id, alpha, tuple(checks)
    )
