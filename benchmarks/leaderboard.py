"""The leaderboard: built only from stored result files, every number with its interval.

``write_leaderboard(paths, out_dir)`` reads result files (:mod:`.results`; a file that is no
result at all is skipped with a :class:`ForeignFileWarning`), groups them by suite (results of
one suite id must share its hash: a changed suite is a new version), and writes:

* ``leaderboard.md``: per suite, the ranked table (mean and 95% interval of every metric), the
  ranking metric per env and difficulty, paired comparisons of neighbouring entries, the
  suite's noise floor and minimum detectable effect (MDE), and, for a suite that repeats its
  tasks (``trials``), pass^k for every k up to the trials;
* ``leaderboard.html``: the same as one static page (no network: inline CSS, vanilla JS for
  sortable columns, the chart embedded);
* ``leaderboard.png``: the ranking metric with error bars, overall and per env.

Ranks: entries whose intervals on the ranking metric overlap share a rank (``"1="``; see
:func:`~llm_trainer.benchmarks.stats.tie_ranks`). Statistics are recomputed from the stored
episodes; one bootstrap plan per suite serves every entry and every paired comparison (for a
suite with trials it resamples whole tasks, and a second plan over tasks serves pass^k).

The MDE of a metric (:func:`~llm_trainer.benchmarks.stats.minimum_detectable_effect`) is
``(z_{1 - alpha/2} + z_{power}) * sqrt(2 * var / n)`` with ``alpha`` 0.05 and 80% power:
``var`` is the per-episode variance within cells (per task, trials averaged, for a suite with
trials), pooled over the board's entries, and ``n`` the episodes (tasks) per entry. Beside the
noise floor (how far two runs of *one* agent on different seeds drift apart), it says how
small a difference between *two* agents a paired comparison on this suite reliably finds:
entries closer than that may tie on the board without being equal.

Arena results (:mod:`.arena_results`, two-player round robins) get a board of their own, after
the suite boards, in every format: the entrants ranked by their OpenSkill rating with its
bootstrap 95% interval (:mod:`.ratings`; refitted from the stored matches; the intervals, with
``min(n_resamples, N_RATING_BOOTSTRAP)`` resamples because each resample refits every match,
are the file's when its summary was computed with the board's settings and its ratings equal
the refit, else bootstrapped again: see :func:`~.arena_results.standings`),
games, win/draw/loss, win rate, score per episode (chips per hand in Kuhn poker), invalid
actions and errors, and the head-to-head table of scores per episode; entrants whose intervals
overlap share a rank.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import itertools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llm_trainer.analysis.failure_modes import REPORT_SUFFIX
from llm_trainer.benchmarks.arena_results import (
    ArenaResult,
    ArenaStanding,
    load_arena_result,
    standings,
)
from llm_trainer.benchmarks.ratings import N_RATING_BOOTSTRAP, RatingConfig
from llm_trainer.benchmarks.results import (
    METRICS,
    BenchResult,
    Metric,
    NotAResultError,
    cell_strata,
    load_result,
    metric,
    metric_matrix,
    pass_hat_k_intervals,
    task_clusters,
    trial_successes,
)
from llm_trainer.benchmarks.stats import (
    N_BOOTSTRAP,
    Interval,
    NoiseFloor,
    PairedComparison,
    Resampler,
    StratifiedBootstrap,
    minimum_detectable_effect,
    noise_floor,
    paired_compare,
    pooled_noise_floor,
    stratified_variance,
    tie_ranks,
)
from llm_trainer.benchmarks.suites import ArenaSuiteSpec, SuiteSpec
from llm_trainer.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class LeaderboardConfig:
    """How boards are ranked and how intervals are computed."""

    ranking_metric: str = "success"
    """The metric that ranks entries (a higher-is-better metric)."""
    confidence: float = 0.95
    """Of every interval."""
    n_resamples: int = N_BOOTSTRAP
    """Bootstrap resamples."""
    seed: int = 0
    """Seed of the bootstrap plan and the permutation tests."""
    mde_alpha: float = 0.05
    """Two-sided level of the paired comparison the minimum detectable effect is for."""
    mde_power: float = 0.8
    """Power at which the minimum detectable effect is detected."""

    def __post_init__(self) -> None:
        if metric(self.ranking_metric).better != "higher":
            raise ConfigError(
                f"ranking_metric must be a higher-is-better metric, got {self.ranking_metric!r}"
            )
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"confidence must be in (0, 1), got {self.confidence!r}")
        if self.n_resamples < 100:
            raise ConfigError(f"n_resamples must be >= 100, got {self.n_resamples}")
        for name in ("mde_alpha", "mde_power"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in (0, 1), got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class Entry:
    """One agent on one suite board."""

    result: BenchResult
    source: Path
    rank: str
    metrics: dict[str, Interval]
    """Overall interval of every available metric."""
    by_env: dict[str, Interval]
    """The ranking metric per env."""
    by_difficulty: dict[int, Interval]
    """The ranking metric per difficulty."""
    by_cell: dict[str, Interval]
    """The ranking metric per cell (``env@d``)."""
    floors: dict[str, NoiseFloor]
    """Seed-to-seed noise of every available metric."""
    variances: dict[str, tuple[float, int]] = field(default_factory=dict)
    """Per metric: the per-unit variance within cells and the number of units (episodes, or
    tasks of a suite with trials), what the minimum detectable effect is built from."""
    pass_hat_k: dict[int, Interval] = field(default_factory=dict)
    """pass^k for k = 1 .. trials (suites with trials; empty otherwise)."""

    @property
    def name(self) -> str:
        return self.result.agent


@dataclass(frozen=True, slots=True)
class Neighbours:
    """A paired comparison of two entries next to each other on the board."""

    better: str
    worse: str
    comparison: PairedComparison


@dataclass(frozen=True, slots=True)
class SuiteBoard:
    """The leaderboard of one suite."""

    suite: SuiteSpec
    ranking_metric: str
    confidence: float
    entries: list[Entry]
    """Best first."""
    noise_floor: dict[str, NoiseFloor]
    """Per metric, pooled over the entries (root mean square of their seed-to-seed std)."""
    neighbours: list[Neighbours] = field(default_factory=list)
    mde: dict[str, float] = field(default_factory=dict)
    """Per metric, the minimum detectable effect of a paired comparison of two entries (see
    the module docstring)."""
    mde_alpha: float = 0.05
    mde_power: float = 0.8

    @property
    def columns(self) -> list[Metric]:
        """The metrics every entry has, in :data:`METRICS` order."""
        return [m for m in METRICS if all(m.name in e.metrics for e in self.entries)]

    def as_dict(self) -> dict[str, Any]:
        entries = []
        for e in self.entries:
            entry: dict[str, Any] = {
                "rank": e.rank,
                "agent": e.name,
                "file": str(e.source),
                **{k: v.as_dict() for k, v in e.metrics.items()},
            }
            if e.pass_hat_k:
                entry["pass_hat_k"] = {str(k): v.as_dict() for k, v in e.pass_hat_k.items()}
            entries.append(entry)
        return {
            "suite": self.suite.id,
            "suite_hash": self.suite.hash,
            "ranking_metric": self.ranking_metric,
            "trials": self.suite.trials,
            "entries": entries,
            "noise_floor": {k: v.noise_floor for k, v in self.noise_floor.items()},
            "mde": dict(self.mde),
            "mde_alpha": self.mde_alpha,
            "mde_power": self.mde_power,
        }


@dataclass(frozen=True, slots=True)
class ArenaBoard:
    """The board of one arena result: its entrants rated from their matches."""

    result: ArenaResult
    source: Path
    rows: list[ArenaStanding]
    """Best rating first."""
    ranks: list[str]
    """Per row: entrants whose intervals overlap share a rank (``"1="``)."""
    head_to_head: dict[str, dict[str, float]]
    """``{row: {column: row's mean score per episode against column}}``."""
    confidence: float
    n_resamples: int

    @property
    def suite(self) -> ArenaSuiteSpec:
        return self.result.suite

    @property
    def score_label(self) -> str:
        """``chips/episode`` (the suite's score key, or ``return``, per episode)."""
        return f"{self.suite.score_key or 'return'}/episode"

    def as_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite.id,
            "suite_hash": self.suite.hash,
            "kind": "arena",
            "file": str(self.source),
            "matches": len(self.result.matches),
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "entrants": [
                {
                    "rank": rank,
                    "entrant": row.name,
                    **row.player.as_dict(),
                    "episodes": row.episodes,
                    "score_per_episode": row.score_per_episode,
                    "invalid_episodes": row.invalid_episodes,
                    "errors": row.errors,
                }
                for rank, row in zip(self.ranks, self.rows, strict=True)
            ],
            "head_to_head": self.head_to_head,
        }


# -- building ----------------------------------------------------------------------------------


class ForeignFileWarning(UserWarning):
    """A file given to the leaderboard is no benchmark result; it was skipped."""


def load_results(paths: Iterable[str | Path]) -> list[tuple[Path, BenchResult]]:
    """Read the single-agent result files among ``paths`` (each checked; see
    :func:`~.results.load_result`); arena results are left out (see :func:`load_all`).

    A file that is no result at all (not JSON, or JSON without our ``schema``: another tool's
    file that the ``results/**/*.json`` glob caught) is skipped with a
    :class:`ForeignFileWarning` naming it, so that one stray file never stops the board; a
    broken result of ours (another schema version, missing episodes) is still an error.
    The failure-mode reports ``llm-trainer analyze`` writes beside results
    (``*failure_modes.json``) are skipped without a warning.

    Raises:
        ConfigError: for a missing file or a broken result.
    """
    return load_all(paths)[0]


def load_all(
    paths: Iterable[str | Path],
) -> tuple[list[tuple[Path, BenchResult]], list[tuple[Path, ArenaResult]]]:
    """Read result files of both kinds: single-agent results and arena results
    (:func:`~.arena_results.load_arena_result`), each checked; foreign files are skipped as in
    :func:`load_results`.

    Raises:
        ConfigError: for a missing file or a broken result.
    """
    results, arenas = [], []
    for p in paths:
        if Path(p).name.endswith(REPORT_SUFFIX):  # our own analysis, not a result
            continue
        try:
            results.append((Path(p), load_result(p)))
            continue
        except NotAResultError as exc:
            skipped = exc
        try:
            arenas.append((Path(p), load_arena_result(p)))
        except NotAResultError:
            warnings.warn(
                f"leaderboard: skipped {skipped}; move it out of the results folder, or give it "
                "another extension",
                ForeignFileWarning,
                stacklevel=3,
            )
    return results, arenas


def build_arena_boards(
    results: Sequence[tuple[Path, ArenaResult]], config: LeaderboardConfig | None = None
) -> list[ArenaBoard]:
    """One board per arena result, in the order given (ratings recomputed from the matches).

    Raises:
        ConfigError: for two results of one arena suite id (keep one: a board rates one round
            robin).
    """
    config = config or LeaderboardConfig()
    seen: dict[str, Path] = {}
    for path, result in results:
        if result.suite.id in seen:
            raise ConfigError(
                f"{path} and {seen[result.suite.id]} are both arena results of "
                f"{result.suite.id}; keep one (ratings come from one round robin; play every "
                "entrant in one arena run)"
            )
        seen[result.suite.id] = path
    rating = RatingConfig(
        n_resamples=min(config.n_resamples, N_RATING_BOOTSTRAP),
        seed=config.seed,
        confidence=config.confidence,
    )
    boards = []
    for path, result in results:
        rows, head = standings(result, rating, reuse=True)
        ranks = tie_ranks([row.player.rating for row in rows])
        order = sorted(range(len(rows)), key=lambda i: (-rows[i].player.rating.mean, rows[i].name))
        boards.append(
            ArenaBoard(
                result,
                path,
                [rows[i] for i in order],
                [ranks[i] for i in order],
                head,
                rating.confidence,
                rating.n_resamples,
            )
        )
    return boards


def build_boards(
    results: Sequence[tuple[Path, BenchResult]], config: LeaderboardConfig | None = None
) -> list[SuiteBoard]:
    """One board per suite, suites in order of first appearance.

    Raises:
        ConfigError: for no results, two definitions of one suite id, or two results of one
            agent name on one suite.
    """
    config = config or LeaderboardConfig()
    if not results:
        raise ConfigError("no result files given: the leaderboard is built from result files")
    by_suite: dict[str, list[tuple[Path, BenchResult]]] = {}
    for path, result in results:
        group = by_suite.setdefault(result.suite.id, [])
        for other_path, other in group:
            if other.suite.hash != result.suite.hash:
                raise ConfigError(
                    f"{path} and {other_path} ran different definitions of suite "
                    f"{result.suite.id} ({result.suite.hash} vs {other.suite.hash}); a changed "
                    "suite must get a new version"
                )
            if other.agent == result.agent:
                raise ConfigError(
                    f"{path} and {other_path} are both results of agent {result.agent!r} on "
                    f"{result.suite.id}; keep one (or rename one with bench --name)"
                )
        group.append((path, result))
    return [_board(group, config) for group in by_suite.values()]


def _board(group: list[tuple[Path, BenchResult]], config: LeaderboardConfig) -> SuiteBoard:
    suite = group[0][1].suite
    cells = suite.cells()
    episodes = group[0][1].episodes
    strata = cell_strata(suite, episodes)
    clusters = task_clusters(suite, episodes)  # a suite with trials: resample whole tasks
    resampler = Resampler(
        strata, n_resamples=config.n_resamples, seed=config.seed, clusters=clusters
    )
    task_resampler = None
    if suite.trials > 1:
        _, task_strata = trial_successes(suite, episodes)
        task_resampler = Resampler(task_strata, n_resamples=config.n_resamples, seed=config.seed)
    drafts = []
    seeds = np.array([r.seed for r in episodes])
    conf = config.confidence
    for path, result in group:
        available, matrix = metric_matrix(result.episodes)
        boot = StratifiedBootstrap(matrix, resampler=resampler)
        j = [m.name for m in available].index(config.ranking_metric)
        by_env = {
            env: boot.interval(j, [i for i, c in enumerate(cells) if c.env_id == env], conf)
            for env in suite.envs
        }
        by_difficulty = {
            d: boot.interval(j, [i for i, c in enumerate(cells) if c.difficulty == d], conf)
            for d in suite.difficulties
        }
        drafts.append(
            Entry(
                result,
                path,
                rank="",
                metrics={m.name: boot.interval(i, None, conf) for i, m in enumerate(available)},
                by_env=by_env,
                by_difficulty=by_difficulty,
                by_cell={c.label: boot.interval(j, [i], conf) for i, c in enumerate(cells)},
                floors={
                    m.name: noise_floor([matrix[seeds == s, i].mean() for s in suite.seeds], conf)
                    for i, m in enumerate(available)
                },
                variances={
                    m.name: stratified_variance(matrix[:, i], strata, clusters)
                    for i, m in enumerate(available)
                },
                pass_hat_k=pass_hat_k_intervals(
                    suite, result.episodes, confidence=conf, resampler=task_resampler
                )
                if task_resampler is not None
                else {},
            )
        )
    ranks = tie_ranks([d.metrics[config.ranking_metric] for d in drafts])
    order = sorted(
        range(len(drafts)),
        key=lambda i: (-drafts[i].metrics[config.ranking_metric].mean, drafts[i].name),
    )
    entries = [dataclasses.replace(drafts[i], rank=ranks[i]) for i in order]
    names = [m.name for m in METRICS if all(m.name in e.floors for e in entries)]
    pooled = {name: pooled_noise_floor([e.floors[name] for e in entries]) for name in names}
    mde = {}
    for name in names:
        variance = sum(e.variances[name][0] for e in entries) / len(entries)
        units = entries[0].variances[name][1]
        mde[name] = minimum_detectable_effect(
            variance, units, alpha=config.mde_alpha, power=config.mde_power
        )
    neighbours = []
    for better, worse in itertools.pairwise(entries):
        a = better.result.values(config.ranking_metric)
        b = worse.result.values(config.ranking_metric)
        assert a is not None
        assert b is not None
        comparison = paired_compare(
            a, b, strata, confidence=config.confidence, resampler=resampler, seed=config.seed
        )
        neighbours.append(Neighbours(better.name, worse.name, comparison))
    return SuiteBoard(
        suite,
        config.ranking_metric,
        config.confidence,
        entries,
        pooled,
        neighbours,
        mde,
        config.mde_alpha,
        config.mde_power,
    )


# -- formatting --------------------------------------------------------------------------------


def format_value(m: Metric, value: float) -> str:
    """A metric value for display: rates with 3 decimals, wall time in milliseconds."""
    if m.kind == "seconds":
        return f"{value * 1000:.3g}"
    if m.kind == "rate":
        return f"{value:.3f}"
    return f"{value:.2f}"


def format_interval(m: Metric, interval: Interval) -> str:
    """``0.910 [0.870, 0.940]`` in the metric's display units."""
    values = [format_value(m, v) for v in (interval.mean, interval.low, interval.high)]
    return f"{values[0]} [{values[1]}, {values[2]}]"


def _heading(m: Metric) -> str:
    return "ms/episode" if m.kind == "seconds" else m.label


def _short_env(env_id: str) -> str:
    return env_id.split("/", 1)[-1]


def _commit(result: BenchResult) -> str:
    commit = result.provenance.get("git_commit")
    if not isinstance(commit, str):
        return "?"
    return commit[:8] + ("+" if result.provenance.get("git_dirty") else "")


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _dz(value: float) -> str:
    return "∞" if math.isinf(value) and value > 0 else "-∞" if math.isinf(value) else f"{value:.2f}"


def _method_note(board: SuiteBoard) -> str:
    pct = round(board.confidence * 100)
    units = (
        f"tasks, each with its {board.suite.trials} trials,"
        if board.suite.trials > 1
        else "episodes"
    )
    return (
        f"Mean and {pct}% percentile-bootstrap interval (resampling {units} within each env x "
        f"difficulty cell). Ranked by {board.ranking_metric}; entries whose intervals overlap "
        'share a rank ("1="). Neighbours are compared on the same episodes (paired bootstrap '
        "interval of the difference; sign-flip permutation p-value; Cohen's d_z)."
    )


def _floor_note(board: SuiteBoard) -> str:
    floor = board.noise_floor.get(board.ranking_metric)
    if floor is None:
        return ""
    return (
        f"Noise floor of {board.ranking_metric}: {floor.noise_floor:.3f} (seed-to-seed std "
        f"{floor.seed_std:.3f} over {floor.n_seeds} seeds, pooled over entries): two full runs "
        "on different seeds differ by less than this when only the seeds differ."
    )


def _mde_note(board: SuiteBoard) -> str:
    mde = board.mde.get(board.ranking_metric)
    if mde is None:
        return ""
    units = "tasks (trials averaged)" if board.suite.trials > 1 else "episodes"
    return (
        f"Minimum detectable effect of {board.ranking_metric}: {mde:.3f}: the smallest "
        f"difference a paired comparison of two entries on this suite detects at alpha "
        f"{board.mde_alpha:g} with {round(board.mde_power * 100)}% power, "
        f"(z_{{1-alpha/2}} + z_{{power}}) * sqrt(2 var / n) with var the per-episode variance "
        f"within cells pooled over entries and n the {units} per entry (taking the two "
        "entries as uncorrelated: an upper bound when they are positively correlated). Entries "
        "closer than this may tie without being equal."
    )


def _pass_note(board: SuiteBoard) -> str:
    n = board.suite.trials
    return (
        f"pass^k: the chance that k independent attempts at a task all succeed, estimated "
        f"from the {n} trials of each task as the mean over tasks of C(c, k) / C({n}, k) (c "
        "successes; tau-bench's unbiased estimator), with its percentile-bootstrap interval "
        "(resampling tasks within each cell). pass^1 is the success rate."
    )


def _suite_line(suite: SuiteSpec) -> str:
    return (
        f"{len(suite.episode_keys())} episodes per entry: {len(suite.envs)} envs x "
        f"{len(suite.difficulties)} difficulties x {len(suite.seeds)} seeds x "
        f"{suite.episodes_per_seed} episodes; suite hash {suite.hash}"
    )


def _arena_line(board: ArenaBoard) -> str:
    suite, result = board.suite, board.result
    pairs = len(board.rows) * (len(board.rows) - 1) // 2
    return (
        f"{len(board.rows)} entrants, {len(result.matches)} matches: {len(suite.seeds)} rounds x "
        f"{pairs} pairs, each match {suite.episodes_per_seating} deals x 2 seatings = "
        f"{suite.episodes_per_match} episodes of {_short_env(suite.env)}; suite hash {suite.hash}"
    )


def _arena_note(board: ArenaBoard) -> str:
    pct = round(board.confidence * 100)
    score = f"`{board.suite.score_key}`" if board.suite.score_key else "return"
    return (
        "Rating: OpenSkill's Weng-Lin Bradley-Terry model (every entrant starts at mu 25, sigma "
        "25/3; tau 0: fixed agents), one pass over the matches in schedule order. "
        f"{pct}% percentile-bootstrap interval from {board.n_resamples} refits, each redrawing "
        "every pair's match results from that pair's own matches (schedule kept). Entrants "
        f'whose intervals overlap share a rank ("1="). A match is won by the higher total '
        f"{score} over its episodes (each deal played from both seats); win rate = (wins + "
        "draws / 2) / games; invalid: episodes with an invalid action."
    )


def arena_row(rank: str, row: ArenaStanding) -> list[str]:
    """One entrant's cells on an arena board (the columns of :func:`arena_header`)."""
    r = row.player
    return [
        rank,
        row.name,
        r.rating.format(1),
        str(r.games),
        f"{r.wins}-{r.draws}-{r.losses}",
        f"{r.score_rate:.3f}",
        f"{row.score_per_episode:+.3f}",
        str(row.invalid_episodes),
        str(row.errors),
    ]


def arena_header(board: ArenaBoard) -> list[str]:
    """The columns of an arena board."""
    return [
        "rank",
        "entrant",
        f"rating [{round(board.confidence * 100)}% CI]",
        "games",
        "W-D-L",
        "win rate",
        board.score_label,
        "invalid",
        "errors",
    ]


def _arena_markdown(board: ArenaBoard) -> list[str]:
    out = [f"## {board.suite.id} (arena)", ""]
    out += [f"{board.suite.description} ({_arena_line(board)}; file {board.source}).", ""]
    out += [_arena_note(board), ""]
    header = arena_header(board)
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, row in zip(board.ranks, board.rows, strict=True):
        out.append("| " + " | ".join(arena_row(rank, row)) + " |")
    names = [row.name for row in board.rows]
    out += ["", f"### Head to head ({board.score_label}, row against column)", ""]
    out += ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for a in names:
        head = board.head_to_head[a]
        cells = [f"{head[b]:+.3f}" if b in head else "" for b in names]
        out.append(f"| {a} | " + " | ".join(cells) + " |")
    out.append("")
    return out


def render_markdown(boards: Sequence[SuiteBoard], arenas: Sequence[ArenaBoard] = ()) -> str:
    """The whole leaderboard as GitHub-flavoured markdown: the suite boards, then the arena
    boards."""
    out = ["# llm-trainer leaderboard", ""]
    for board in boards:
        suite, cols = board.suite, board.columns
        out += [f"## {suite.id}", "", f"{suite.description} ({_suite_line(suite)}).", ""]
        out += [_method_note(board), "", _floor_note(board), "", _mde_note(board), ""]
        header = ["rank", "agent", *(_heading(m) for m in cols), "errors", "commit"]
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for e in board.entries:
            row = [e.rank, e.name, *(format_interval(m, e.metrics[m.name]) for m in cols)]
            row += [str(e.result.summary.get("errors", _errors(e.result))), _commit(e.result)]
            out.append("| " + " | ".join(row) + " |")
        rank_metric = metric(board.ranking_metric)
        out += ["", f"### {board.ranking_metric} by env and difficulty", ""]
        header = ["agent", *map(_short_env, suite.envs), *(f"d{d}" for d in suite.difficulties)]
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for e in board.entries:
            row = [e.name]
            row += [format_interval(rank_metric, e.by_env[env]) for env in suite.envs]
            row += [format_interval(rank_metric, e.by_difficulty[d]) for d in suite.difficulties]
            out.append("| " + " | ".join(row) + " |")
        if board.neighbours:
            out += ["", f"### Neighbours compared on the same episodes ({board.ranking_metric})"]
            out += [
                "",
                "| better | worse | difference [95% CI] | p | d_z |",
                "|---|---|---|---|---|",
            ]
            for n in board.neighbours:
                c = n.comparison
                out.append(
                    f"| {n.better} | {n.worse} | {c.difference.format(3)} | {_p(c.p_value)} | "
                    f"{_dz(c.effect_size)} |"
                )
        if board.suite.trials > 1:
            ks = range(1, board.suite.trials + 1)
            out += ["", f"### pass^k over {board.suite.trials} trials per task", ""]
            out += [_pass_note(board), ""]
            out += ["| agent | " + " | ".join(f"pass^{k}" for k in ks) + " |"]
            out.append("|---|" + "---|" * len(ks))
            for e in board.entries:
                row = [e.name, *(e.pass_hat_k[k].format(3) for k in ks)]
                out.append("| " + " | ".join(row) + " |")
        out += ["", "### Noise floor (seed-to-seed) and minimum detectable effect", ""]
        out += ["| metric | seed std | noise floor | MDE (paired) |", "|---|---|---|---|"]
        for name, floor in board.noise_floor.items():
            m = metric(name)
            out.append(
                f"| {name} | {format_value(m, floor.seed_std)} | "
                f"{format_value(m, floor.noise_floor)} | {format_value(m, board.mde[name])} |"
            )
        out.append("")
    for arena in arenas:
        out += _arena_markdown(arena)
    return "\n".join(out)


def _errors(result: BenchResult) -> int:
    return sum(r.error is not None for r in result.episodes)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1a1a1a; max-width: 110rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; white-space: nowrap; }
.scroll { overflow-x: auto; }
th { background: #f0f0f0; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.name, th.name { text-align: left; }
.ci { color: #666; font-size: 0.8rem; }
.bar { display: block; position: relative; height: 4px; background: #eee; margin-top: 2px; }
.bar span { position: absolute; top: 0; height: 4px; background: #4c78a8; }
.note { color: #444; max-width: 70rem; }
img { max-width: 100%; }
"""

_JS = """
(function () {
  function key(cell) {
    var v = cell.getAttribute("data-value");
    return v === null || v === "" ? null : v;
  }
  function sortBy(table, th, col) {
    var numeric = th.getAttribute("data-type") === "number";
    var current = th.getAttribute("aria-sort");
    var dir = current ? (current === "ascending" ? "descending" : "ascending")
                      : (th.getAttribute("data-first") || "ascending");
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      if (x === null || y === null) { return (x === null) - (y === null); }  // blanks last
      var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, col) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, th, col); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th, col); }
      });
    });
  });
})();
"""


def _html_interval(m: Metric, interval: Interval, scale: tuple[float, float] | None) -> str:
    values = [format_value(m, v) for v in (interval.mean, interval.low, interval.high)]
    text = f"{values[0]} <span class=ci>[{values[1]}, {values[2]}]</span>"
    if scale is not None and scale[1] > scale[0]:
        lo, hi = (
            (v - scale[0]) / (scale[1] - scale[0]) * 100 for v in (interval.low, interval.high)
        )
        style = f"left:{lo:.1f}%;width:{max(hi - lo, 1):.1f}%"
        text += f'<span class=bar><span style="{style}"></span></span>'
    return f'<td data-value="{interval.mean!r}">{text}</td>'


def _html_header(label: str, kind: str, first: str, name: bool = False) -> str:
    cls = ' class="name"' if name else ""
    return f'<th{cls} data-type="{kind}" data-first="{first}">{html.escape(label)}</th>'


def _arena_html(board: ArenaBoard) -> list[str]:
    esc = html.escape
    sid = esc(board.suite.id)
    header = arena_header(board)
    kinds = ["number", "text", "number", "number", "text", "number", "number", "number", "number"]
    firsts = ["ascending", "ascending", "descending", "descending", "descending", "descending",
              "descending", "ascending", "ascending"]  # fmt: skip
    parts = [
        f'<section id="arena-{sid}"><h2>{sid} (arena)</h2>',
        f"<p class=note>{esc(board.suite.description)} ({esc(_arena_line(board))}).</p>",
        f"<p class=note>{esc(_arena_note(board))}</p>",
        f'<div class=scroll><table class="sortable arena" data-suite="{sid}"><thead><tr>',
        *(
            _html_header(label, kind, first, name=label == "entrant")
            for label, kind, first in zip(header, kinds, firsts, strict=True)
        ),
        "</tr></thead><tbody>",
    ]
    for rank, row in zip(board.ranks, board.rows, strict=True):
        r = row.player
        interval = r.rating
        text = (
            f"{interval.mean:.1f} <span class=ci>[{interval.low:.1f}, {interval.high:.1f}]</span>"
        )
        values: list[tuple[object, str]] = [
            (rank.rstrip("="), rank),
            (row.name, row.name),
            (interval.mean, text),
            (r.games, str(r.games)),
            (f"{r.wins}-{r.draws}-{r.losses}", f"{r.wins}-{r.draws}-{r.losses}"),
            (r.score_rate, f"{r.score_rate:.3f}"),
            (row.score_per_episode, f"{row.score_per_episode:+.3f}"),
            (row.invalid_episodes, str(row.invalid_episodes)),
            (row.errors, str(row.errors)),
        ]
        cells = []
        for k, (value, shown) in enumerate(values):
            cls = ' class="name entrant"' if k == 1 else ""
            body = shown if k == 2 else esc(shown)
            cells.append(f'<td{cls} data-value="{esc(str(value))}">{body}</td>')
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div>")
    names = [row.name for row in board.rows]
    parts += [
        f"<h3>Head to head ({esc(board.score_label)}, row against column)</h3>",
        '<div class=scroll><table class="sortable head-to-head"><thead><tr>',
        _html_header("entrant", "text", "ascending", name=True),
        *(_html_header(n, "number", "descending") for n in names),
        "</tr></thead><tbody>",
    ]
    for a in names:
        head = board.head_to_head[a]
        cells = [f'<td class="name" data-value="{esc(a)}">{esc(a)}</td>']
        cells += [
            f'<td data-value="{head[b]!r}">{head[b]:+.3f}</td>' if b in head else "<td></td>"
            for b in names
        ]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts += ["</tbody></table></div>", "</section>"]
    return parts


def render_html(
    boards: Sequence[SuiteBoard], png: bytes | None = None, arenas: Sequence[ArenaBoard] = ()
) -> str:
    """The leaderboard as one static, self-contained HTML page with sortable tables (the suite
    boards, then the arena boards)."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>llm-trainer leaderboard</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>llm-trainer leaderboard</h1>",
    ]
    for board in boards:
        suite, cols = board.suite, board.columns
        sid = esc(suite.id)
        parts += [
            f'<section id="suite-{sid}"><h2>{sid}</h2>',
            f"<p class=note>{esc(suite.description)} ({esc(_suite_line(suite))}).</p>",
            f"<p class=note>{esc(_method_note(board))}</p>",
            f"<p class=note>{esc(_floor_note(board))}</p>",
            f"<p class=note>{esc(_mde_note(board))}</p>",
            f'<div class=scroll><table class="sortable board" data-suite="{sid}"><thead><tr>',
            _html_header("rank", "number", "ascending"),
            _html_header("agent", "text", "ascending", name=True),
        ]
        for m in cols:
            first = "descending" if m.better == "higher" else "ascending"
            parts.append(_html_header(_heading(m), "number", first))
        parts += [
            _html_header("errors", "number", "ascending"),
            _html_header("commit", "text", "ascending"),
            "</tr></thead><tbody>",
        ]
        for e in board.entries:
            rank_number = e.rank.rstrip("=")
            cells = [
                f'<td data-value="{rank_number}">{esc(e.rank)}</td>',
                f'<td class="name agent" data-value="{esc(e.name)}">{esc(e.name)}</td>',
            ]
            for m in cols:
                scale = (0.0, 1.0) if m.kind == "rate" else None
                cells.append(_html_interval(m, e.metrics[m.name], scale))
            errors = _errors(e.result)
            cells.append(f'<td data-value="{errors}">{errors}</td>')
            commit = esc(_commit(e.result))
            cells.append(f'<td class=name data-value="{commit}">{commit}</td>')
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table></div>")
        rank_metric = metric(board.ranking_metric)
        parts += [
            f"<h3>{esc(board.ranking_metric)} by env and difficulty</h3>",
            '<div class=scroll><table class="sortable cells"><thead><tr>',
            _html_header("agent", "text", "ascending", name=True),
        ]
        parts += [_html_header(_short_env(env), "number", "descending") for env in suite.envs]
        parts += [_html_header(f"d{d}", "number", "descending") for d in suite.difficulties]
        parts += [
            _html_header(_short_env(c.env_id) + f" d{c.difficulty}", "number", "descending")
            for c in suite.cells()
        ]
        parts.append("</tr></thead><tbody>")
        for e in board.entries:
            cells = [f'<td class="name" data-value="{esc(e.name)}">{esc(e.name)}</td>']
            intervals = [
                *(e.by_env[env] for env in suite.envs),
                *(e.by_difficulty[d] for d in suite.difficulties),
                *(e.by_cell[c.label] for c in suite.cells()),
            ]
            cells += [_html_interval(rank_metric, i, (0.0, 1.0)) for i in intervals]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table></div>")
        if board.neighbours:
            parts += [
                f"<h3>Neighbours compared on the same episodes ({esc(board.ranking_metric)})</h3>",
                '<div class=scroll><table class="sortable neighbours"><thead><tr>',
                _html_header("better", "text", "ascending", name=True),
                _html_header("worse", "text", "ascending", name=True),
                _html_header("difference [95% CI]", "number", "descending"),
                _html_header("p", "number", "ascending"),
                _html_header("d_z", "number", "descending"),
                "</tr></thead><tbody>",
            ]
            for n in board.neighbours:
                c = n.comparison
                dz = c.effect_size if math.isfinite(c.effect_size) else 1e308
                parts.append(
                    f'<tr><td class=name data-value="{esc(n.better)}">{esc(n.better)}</td>'
                    f'<td class=name data-value="{esc(n.worse)}">{esc(n.worse)}</td>'
                    f'<td data-value="{c.difference.mean!r}">{esc(c.difference.format(3))}</td>'
                    f'<td data-value="{c.p_value!r}">{esc(_p(c.p_value))}</td>'
                    f'<td data-value="{dz!r}">{esc(_dz(c.effect_size))}</td></tr>'
                )
            parts.append("</tbody></table></div>")
        if board.suite.trials > 1:
            ks = range(1, board.suite.trials + 1)
            parts += [
                f"<h3>pass^k over {board.suite.trials} trials per task</h3>",
                f"<p class=note>{esc(_pass_note(board))}</p>",
                '<div class=scroll><table class="sortable pass-k"><thead><tr>',
                _html_header("agent", "text", "ascending", name=True),
                *(_html_header(f"pass^{k}", "number", "descending") for k in ks),
                "</tr></thead><tbody>",
            ]
            for e in board.entries:
                cells = [f'<td class="name" data-value="{esc(e.name)}">{esc(e.name)}</td>']
                cells += [
                    _html_interval(metric("success"), e.pass_hat_k[k], (0.0, 1.0)) for k in ks
                ]
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("</tbody></table></div>")
        parts += [
            "<h3>Noise floor (seed-to-seed) and minimum detectable effect</h3>",
            '<div class=scroll><table class="sortable floors"><thead><tr>',
            _html_header("metric", "text", "ascending", name=True),
            _html_header("seed std", "number", "ascending"),
            _html_header("noise floor", "number", "ascending"),
            _html_header("MDE (paired)", "number", "ascending"),
            "</tr></thead><tbody>",
        ]
        for name, floor in board.noise_floor.items():
            m = metric(name)
            values = (floor.seed_std, floor.noise_floor, board.mde[name])
            cells = [f'<td class="name" data-value="{esc(name)}">{esc(name)}</td>']
            cells += [f'<td data-value="{v!r}">{esc(format_value(m, v))}</td>' for v in values]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table></div>")
        parts.append("</section>")
    for arena in arenas:
        parts += _arena_html(arena)
    if png is not None:
        data = base64.b64encode(png).decode()
        parts.append(
            f'<h2>Chart</h2><img alt="leaderboard chart" src="data:image/png;base64,{data}">'
        )
    parts += [f"<script>{_JS}</script>", "</body></html>", ""]
    return "\n".join(parts)


def render_png(boards: Sequence[SuiteBoard], arenas: Sequence[ArenaBoard] = ()) -> bytes:
    """The ranking metric of every entry with its interval as error bars: overall (left) and
    per env (right), one row per suite; then, one row per arena, the ratings with their
    intervals (left) and the head-to-head scores (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = len(boards) + len(arenas)
    sizes = [len(b.entries) for b in boards] + [len(a.rows) for a in arenas]
    height = sum(1.2 + 0.45 * max(n, 2) for n in sizes) + 0.4
    fig = Figure(figsize=(13, height))  # a fixed layout: constrained layout doubles the time
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 2, squeeze=False, width_ratios=(1, 2))
    fig.subplots_adjust(left=0.17, right=0.99, top=1 - 0.45 / height, bottom=0.5 / height)
    fig.subplots_adjust(wspace=0.18, hspace=0.9 / height * rows)
    colors = [f"C{i % 10}" for i in range(10)]
    for (left, right), arena in zip(axes[len(boards) :], arenas, strict=True):
        _draw_arena(left, right, arena, colors)
    for (left, right), board in zip(axes[: len(boards)], boards, strict=True):
        entries = board.entries
        name = board.ranking_metric
        y = np.arange(len(entries))[::-1]
        means = np.array([e.metrics[name].mean for e in entries])
        errs = np.array(
            [[e.metrics[name].mean - e.metrics[name].low for e in entries],
             [e.metrics[name].high - e.metrics[name].mean for e in entries]]
        )  # fmt: skip
        left.barh(y, means, xerr=errs, color=[colors[i % 10] for i in range(len(entries))],
                  capsize=4, alpha=0.85)  # fmt: skip
        left.set_yticks(y, [f"{e.rank}  {e.name}" for e in entries])
        for yi, mean in zip(y, means, strict=True):
            left.annotate(f"{mean:.3f}", (mean, yi), xytext=(4, 6), textcoords="offset points",
                          fontsize="small")  # fmt: skip
        left.set_xlim(0, 1.12 if metric(name).kind == "rate" else None)  # room for labels
        left.set_xlabel(f"{name} (mean, {round(board.confidence * 100)}% CI)")
        left.set_title(f"{board.suite.id}: overall")
        left.grid(axis="x", alpha=0.3)
        width = 0.8 / max(len(entries), 1)
        x = np.arange(len(board.suite.envs))
        for i, e in enumerate(entries):
            ints = [e.by_env[env] for env in board.suite.envs]
            vals = np.array([v.mean for v in ints])
            err = np.array([[v.mean - v.low for v in ints], [v.high - v.mean for v in ints]])
            right.bar(x + (i - (len(entries) - 1) / 2) * width, vals, width, yerr=err,
                      capsize=3, label=e.name, color=colors[i % 10], alpha=0.85)  # fmt: skip
        right.set_xticks(x, [_short_env(env) for env in board.suite.envs])
        if metric(name).kind == "rate":
            right.set_ylim(0, 1.3)  # room for the legend above the bars
            right.set_yticks(np.linspace(0, 1, 6))
        right.set_ylabel(name)
        right.set_title(f"{board.suite.id}: {name} per env (all difficulties)")
        right.grid(axis="y", alpha=0.3)
        right.legend(loc="upper center", fontsize="small", ncols=min(len(entries), 5))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _draw_arena(left: Any, right: Any, board: ArenaBoard, colors: list[str]) -> None:
    """One arena's row of the chart: ratings with intervals, and the head-to-head matrix."""
    rows = board.rows
    y = np.arange(len(rows))[::-1]
    means = np.array([r.player.rating.mean for r in rows])
    errs = np.array(
        [[r.player.rating.mean - r.player.rating.low for r in rows],
         [r.player.rating.high - r.player.rating.mean for r in rows]]
    )  # fmt: skip
    left.barh(y, means, xerr=errs, color=[colors[i % 10] for i in range(len(rows))],
              capsize=4, alpha=0.85)  # fmt: skip
    left.set_yticks(y, [f"{rank}  {r.name}" for rank, r in zip(board.ranks, rows, strict=True)])
    for yi, mean in zip(y, means, strict=True):
        left.annotate(f"{mean:.1f}", (mean, yi), xytext=(4, 6), textcoords="offset points",
                      fontsize="small")  # fmt: skip
    highs = [r.player.rating.high for r in rows]
    left.set_xlim(min(0.0, *(r.player.rating.low for r in rows)) * 1.1, max(1.0, *highs) * 1.12)
    left.set_xlabel(f"rating (OpenSkill mu, {round(board.confidence * 100)}% CI)")
    left.set_title(f"{board.suite.id}: ratings")
    left.grid(axis="x", alpha=0.3)
    names = [r.name for r in rows]
    matrix = np.array(
        [[board.head_to_head[a].get(b, np.nan) for b in names] for a in names], dtype=np.float64
    )
    bound = float(np.nanmax(np.abs(matrix))) if np.isfinite(matrix).any() else 1.0
    right.imshow(matrix, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    for i, j in itertools.product(range(len(names)), repeat=2):
        if np.isfinite(matrix[i, j]):
            dark = abs(matrix[i, j]) > 0.6 * bound
            right.text(j, i, f"{matrix[i, j]:+.3f}", ha="center", va="center",
                       fontsize="small", color="white" if dark else "black")  # fmt: skip
    right.set_xticks(range(len(names)), names, fontsize="small")
    right.set_yticks([])  # the rows are the entrants in the order of the ratings on the left
    right.set_title(f"{board.suite.id}: {board.score_label}, row (as on the left) vs column")


@dataclass(frozen=True, slots=True)
class LeaderboardFiles:
    """What :func:`write_leaderboard` wrote."""

    markdown: Path
    html: Path
    png: Path
    boards: list[SuiteBoard]
    arenas: list[ArenaBoard] = field(default_factory=list)


def write_leaderboard(
    paths: Iterable[str | Path], out_dir: str | Path, config: LeaderboardConfig | None = None
) -> LeaderboardFiles:
    """Build the boards from result files (single-agent and arena results) and write
    ``leaderboard.md``, ``leaderboard.html`` and ``leaderboard.png`` into ``out_dir``.

    Raises:
        ConfigError: for no result files, or a broken or conflicting one.
    """
    results, arena_results = load_all(paths)
    if not results and not arena_results:
        raise ConfigError("no result files given: the leaderboard is built from result files")
    boards = build_boards(results, config) if results else []
    arenas = build_arena_boards(arena_results, config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = render_png(boards, arenas)
    files = LeaderboardFiles(
        out / "leaderboard.md", out / "leaderboard.html", out / "leaderboard.png", boards, arenas
    )
    files.png.write_bytes(png)
    files.markdown.write_text(render_markdown(boards, arenas), encoding="utf-8")
    files.html.write_text(render_html(boards, png, arenas), encoding="utf-8")
    return files
