"""ExperimentManager: the index of runs, one SQLite file beside the run directories.

Every ``llm-trainer train`` run registers itself at its start (``running``) and records its
outcome at its end (``finished``, ``failed`` or ``interrupted``, with its metrics and its
usage), so that runs can be listed, compared and reproduced without opening their folders
(``llm-trainer runs list|show|compare|reproduce|usage``). The index lives in the run's
``output_dir`` as ``index.sqlite`` (``$LLM_TRAINER_RUNS_INDEX`` names another file).

Schema (version 1)::

    runs     id (INTEGER, the run id), name, algorithm, status, seed, config (the resolved
             config, JSON), git_commit, git_dirty, run_dir (unique), started, ended, host,
             pid, sweep_id, trial, cycle_id, reproduces (a run id), error, and the usage:
             seconds, cpu_seconds, gpu_seconds, train_tokens, generated_tokens,
             api_prompt_tokens, api_completion_tokens, cost_usd
    metrics  run_id, key, value, ci_low, ci_high, episodes (one row per numeric metric of
             the run's summary; a rate measured on held-out episodes has its bootstrap 95%
             interval and the episode count behind it)
    sweeps   id, name, mode, spec (JSON), base_config (JSON), created
    meta     schema_version

Like the trajectory store (:mod:`llm_trainer.core.store`), the file is in WAL mode and every
write is one transaction (``BEGIN IMMEDIATE``, so concurrent writers queue rather than fail):
a run's outcome and all its metrics appear together or not at all, and a process killed
mid-write leaves the index as it was. A run whose process died without recording an outcome
(killed, out of memory) stays ``running`` until :meth:`ExperimentManager.reap` (called by
``runs list`` and ``runs show``) finds its process gone and marks it ``failed``.

>>> import os, tempfile
>>> index = ExperimentManager(os.path.join(tempfile.mkdtemp(), "index.sqlite"))
>>> run = index.register(name="demo", algorithm="sft", seed=0, config={"seed": 0},
...                      run_dir="/tmp/demo-run", git_commit="abc123+dirty")
>>> index.finish(run, "finished", {"success": Metric(0.5, 0.4, 0.6, 100)})
>>> record = index.get(run)
>>> record.status, record.git_commit, record.git_dirty, record.metrics["success"].format()
('finished', 'abc123', True, '0.500 [0.400, 0.600]')
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import math
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llm_trainer.core.errors import UserError
from llm_trainer.experiments.cost import RunUsage

SCHEMA_VERSION = 1
#: Environment variable naming the runs index every run of this process registers in.
INDEX_ENV = "LLM_TRAINER_RUNS_INDEX"
#: The index's file name in a run's ``output_dir``.
INDEX_NAME = "index.sqlite"

Status = Literal["running", "finished", "failed", "interrupted"]
STATUSES: tuple[Status, ...] = ("running", "finished", "failed", "interrupted")

_USAGE_COLUMNS = tuple(f.name for f in dataclasses.fields(RunUsage))

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    git_commit TEXT,
    git_dirty INTEGER,
    run_dir TEXT NOT NULL UNIQUE,
    started REAL NOT NULL,
    ended REAL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    sweep_id TEXT,
    trial INTEGER,
    cycle_id TEXT,
    reproduces INTEGER REFERENCES runs(id),
    error TEXT,
    seconds REAL, cpu_seconds REAL, gpu_seconds REAL, train_tokens INTEGER,
    generated_tokens INTEGER, api_prompt_tokens INTEGER, api_completion_tokens INTEGER,
    cost_usd REAL
);
CREATE INDEX IF NOT EXISTS runs_by_name ON runs(name, id);
CREATE INDEX IF NOT EXISTS runs_by_sweep ON runs(sweep_id, trial);
CREATE INDEX IF NOT EXISTS runs_by_cycle ON runs(cycle_id);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value REAL NOT NULL,
    ci_low REAL,
    ci_high REAL,
    episodes INTEGER,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    mode TEXT NOT NULL,
    spec TEXT NOT NULL,
    base_config TEXT NOT NULL,
    created REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Metric:
    """One number of a run, with its 95% interval and episode count when it has them."""

    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    episodes: int | None = None
    """Held-out episodes behind a rate (what its noise floor is computed from)."""

    def format(self, digits: int = 3) -> str:
        """``value [low, high]`` (or the value alone, in 4 significant digits).

        >>> Metric(0.25, 0.125, 0.375).format(), Metric(1234.5678).format()
        ('0.250 [0.125, 0.375]', '1235')
        """
        if self.ci_low is None or self.ci_high is None:
            return f"{self.value:.4g}"
        return f"{self.value:.{digits}f} [{self.ci_low:.{digits}f}, {self.ci_high:.{digits}f}]"

    def noise_floor(self) -> float | None:
        """How far a re-evaluation may differ by chance (a rate with its episode count:
        :func:`~llm_trainer.experiments.noise.rate_noise_floor`), else ``None``."""
        if self.episodes is None:
            return None
        from llm_trainer.experiments.noise import rate_noise_floor

        return rate_noise_floor(self.value, self.episodes)


@dataclass(frozen=True, slots=True)
class RunLabels:
    """What a run belongs to (set around a run with :func:`run_labels`)."""

    sweep_id: str | None = None
    """The sweep it is a trial of."""
    trial: int | None = None
    """Its trial number in the sweep."""
    cycle_id: str | None = None
    """The training cycle it is a stage of."""
    reproduces: int | None = None
    """The id of the run it re-runs (``runs reproduce``)."""


_LABELS: contextvars.ContextVar[RunLabels | None] = contextvars.ContextVar(
    "llm_trainer_run_labels", default=None
)


@contextmanager
def run_labels(**labels: Any) -> Iterator[RunLabels]:
    """Label the runs started in the ``with`` block (a sweep's trials, a cycle's stages).

    >>> with run_labels(sweep_id="s1", trial=3) as labels:
    ...     current_labels() == labels, labels.trial
    (True, 3)
    >>> current_labels()
    RunLabels(sweep_id=None, trial=None, cycle_id=None, reproduces=None)
    """
    token = _LABELS.set(dataclasses.replace(current_labels(), **labels))
    try:
        yield current_labels()
    finally:
        _LABELS.reset(token)


def current_labels() -> RunLabels:
    """The labels of a run started now."""
    return _LABELS.get() or RunLabels()


@dataclass(frozen=True)
class RunRecord:
    """One run of the index."""

    id: int
    name: str
    algorithm: str
    status: Status
    seed: int
    config: dict[str, Any]
    """The resolved config (what ``config.yaml`` holds)."""
    git_commit: str | None
    """The commit the run ran at (``None`` outside a git checkout)."""
    git_dirty: bool | None
    """Whether the checkout had uncommitted changes."""
    run_dir: str
    started: float
    ended: float | None
    host: str
    pid: int
    labels: RunLabels
    error: str | None
    usage: RunUsage
    metrics: Mapping[str, Metric] = field(default_factory=dict)

    @property
    def commit_label(self) -> str:
        """The short commit, ``*`` when dirty (``-`` when unknown)."""
        if self.git_commit is None:
            return "-"
        return self.git_commit[:8] + ("*" if self.git_dirty else "")

    @property
    def seconds(self) -> float | None:
        """Wall-clock seconds from start to end (``None`` while running)."""
        return None if self.ended is None else self.ended - self.started


def split_commit(commit: str | None) -> tuple[str | None, bool | None]:
    """``("sha", dirty)`` from :func:`~llm_trainer.core.rundir.git_commit`'s ``sha+dirty``.

    >>> split_commit("abc+dirty"), split_commit("abc"), split_commit(None)
    (('abc', True), ('abc', False), (None, None))
    """
    if commit is None:
        return None, None
    sha, _, dirty = commit.partition("+")
    return sha, dirty == "dirty"


def default_index_path(output_dir: str | Path) -> Path:
    """The index a run in ``output_dir`` registers in: ``$LLM_TRAINER_RUNS_INDEX`` when set,
    else ``output_dir/index.sqlite``."""
    named = os.environ.get(INDEX_ENV)
    return Path(named) if named else Path(output_dir) / INDEX_NAME


def _process_started(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds; psutil when installed), else ``None``."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def process_alive(pid: int, since: float | None = None) -> bool:
    """Whether process ``pid`` of this host is alive (and, with ``since``, is the process that
    was running then, not a later one that reuses its id)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    if since is not None:
        started = _process_started(pid)
        if started is not None and started > since + 1.0:
            return False
    return True


class ExperimentManager:
    """The runs index in one SQLite file (see the module docstring).

    Args:
        path: The index file (created, with its folder, on first use unless ``must_exist``).
        must_exist: Raise :class:`UserError` when there is no index at ``path`` (reading
            commands never create one).
    """

    def __init__(self, path: str | Path, *, must_exist: bool = False) -> None:
        self.path = Path(path)
        if must_exist and not self.path.is_file():
            raise UserError(
                f"no runs index at {self.path} (every `llm-trainer train` run writes "
                f"{INDEX_NAME} in its output_dir; pass --index to name another)"
            )
        if self.path.is_dir():
            raise UserError(f"runs index {self.path} is a directory, not a file")
        try:
            if must_exist:  # a reader: check, write nothing (the file may be read-only)
                with self._read() as db:
                    self._check_version(db)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self._write() as db:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    self._check_version(db)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path} is not a usable runs index: {exc}") from None

    def _check_version(self, db: sqlite3.Connection) -> None:
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise UserError(
                f"{self.path}: runs index schema version {row[0]}, this llm-trainer reads "
                f"version {SCHEMA_VERSION}"
            )

    # -- connections -----------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` (takes the write lock at once, waiting
        for other writers), committed on success, rolled back on error."""
        db = self._open()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction (a consistent snapshot of the index)."""
        db = self._open()
        try:
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("ROLLBACK")
        finally:
            db.close()

    # -- writing ---------------------------------------------------------------------------

    def register(
        self,
        *,
        name: str,
        algorithm: str,
        seed: int,
        config: Mapping[str, Any],
        run_dir: str | Path,
        git_commit: str | None,
        labels: RunLabels | None = None,
        started: float | None = None,
    ) -> int:
        """Record a run as ``running``; returns its id. A run directory already indexed (a
        resumed run) keeps its id and starts running again, its old outcome cleared."""
        sha, dirty = split_commit(git_commit)
        labels = labels or current_labels()
        values = {
            "name": name,
            "algorithm": algorithm,
            "status": "running",
            "seed": seed,
            "config": json.dumps(config, default=str),
            "git_commit": sha,
            "git_dirty": None if dirty is None else int(dirty),
            "run_dir": str(Path(run_dir).resolve()),
            "started": time.time() if started is None else started,
            "ended": None,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            **dataclasses.asdict(labels),
            "error": None,
            **dict.fromkeys(_USAGE_COLUMNS),
        }
        with self._write() as db:
            row = db.execute("SELECT id FROM runs WHERE run_dir=?", (values["run_dir"],)).fetchone()
            if row is not None:
                db.execute("DELETE FROM metrics WHERE run_id=?", (row[0],))
                db.execute(
                    f"UPDATE runs SET {', '.join(f'{k}=?' for k in values)} WHERE id=?",
                    (*values.values(), row[0]),
                )
                return int(row[0])
            cursor = db.execute(
                f"INSERT INTO runs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            )
            assert cursor.lastrowid is not None
            return int(cursor.lastrowid)

    def finish(
        self,
        run_id: int,
        status: Status,
        metrics: Mapping[str, Metric] | None = None,
        usage: RunUsage | None = None,
        *,
        error: str | None = None,
        ended: float | None = None,
    ) -> None:
        """Record a run's outcome, its metrics and its usage, in one transaction.

        Raises:
            ValueError: for an unknown status or a metric that is not a finite number.
            UserError: for an unknown run id.
        """
        if status not in STATUSES or status == "running":
            raise ValueError(f"status must be one of {list(STATUSES[1:])}, got {status!r}")
        metrics = dict(metrics or {})
        for key, metric in metrics.items():
            if not math.isfinite(metric.value):
                raise ValueError(f"metric {key!r} is not a finite number: {metric.value!r}")
        with self._write() as db:
            self._finish_rows(
                db, run_id, status, metrics, usage or RunUsage(), error, ended or time.time()
            )

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
        """The writes of :meth:`finish`, inside its transaction."""
        updated = db.execute(
            f"UPDATE runs SET status=?, ended=?, error=?, "
            f"{', '.join(f'{c}=?' for c in _USAGE_COLUMNS)} WHERE id=?",
            (status, ended, error, *(getattr(usage, c) for c in _USAGE_COLUMNS), run_id),
        )
        if updated.rowcount != 1:
            raise UserError(f"no run {run_id} in {self.path}")
        db.execute("DELETE FROM metrics WHERE run_id=?", (run_id,))
        db.executemany(
            "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)",
            (
                (run_id, key, m.value, m.ci_low, m.ci_high, m.episodes)
                for key, m in sorted(metrics.items())
            ),
        )

    def reap(self) -> list[int]:
        """Mark ``failed`` the runs of this host still ``running`` whose process is gone
        (killed before it could record an outcome); returns their ids."""
        host = socket.gethostname()
        with self._read() as db:
            rows = db.execute(
                "SELECT id, pid, started FROM runs WHERE status='running' AND host=?", (host,)
            ).fetchall()
        dead = [int(i) for i, pid, started in rows if not process_alive(int(pid), started)]
        if dead:
            with self._write() as db:  # raises sqlite3.Error on a read-only index
                db.executemany(
                    "UPDATE runs SET status='failed', error=? WHERE id=? AND status='running'",
                    (("its process ended without recording an outcome (killed?)", i) for i in dead),
                )
        return dead

    # -- sweeps ----------------------------------------------------------------------------

    def add_sweep(
        self,
        sweep_id: str,
        name: str,
        mode: str,
        spec: Mapping[str, Any],
        base_config: Mapping[str, Any],
    ) -> None:
        """Record a sweep (idempotent: a resumed sweep keeps its first record)."""
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO sweeps VALUES (?, ?, ?, ?, ?, ?)",
                (
                    sweep_id,
                    name,
                    mode,
                    json.dumps(spec, sort_keys=True, default=str),
                    json.dumps(base_config, default=str),
                    time.time(),
                ),
            )

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        """A sweep's record (``id``, ``name``, ``mode``, ``spec``, ``base_config``,
        ``created``).

        Raises:
            UserError: for an unknown sweep.
        """
        with self._read() as db:
            row = db.execute(
                "SELECT id, name, mode, spec, base_config, created FROM sweeps WHERE id=?",
                (sweep_id,),
            ).fetchone()
        if row is None:
            raise UserError(f"no sweep {sweep_id!r} in {self.path}")
        return {
            "id": row[0],
            "name": row[1],
            "mode": row[2],
            "spec": json.loads(row[3]),
            "base_config": json.loads(row[4]),
            "created": row[5],
        }

    # -- reading ---------------------------------------------------------------------------

    _COLUMNS = (
        "id, name, algorithm, status, seed, config, git_commit, git_dirty, run_dir, started, "
        "ended, host, pid, sweep_id, trial, cycle_id, reproduces, error, "
        + ", ".join(_USAGE_COLUMNS)
    )

    def _records(self, db: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> list[RunRecord]:
        ids = [int(r[0]) for r in rows]
        metrics: dict[int, dict[str, Metric]] = {i: {} for i in ids}
        for start in range(0, len(ids), 500):  # SQLite's parameter limit
            chunk = ids[start : start + 500]
            for run_id, key, value, low, high, episodes in db.execute(
                "SELECT run_id, key, value, ci_low, ci_high, episodes FROM metrics WHERE run_id "
                f"IN ({', '.join('?' * len(chunk))}) ORDER BY run_id, key",
                chunk,
            ):
                metrics[run_id][key] = Metric(value, low, high, episodes)
        out = []
        for r in rows:
            seconds, cpu, gpu, trained, generated, prompt, completion, cost = r[18:]
            usage = RunUsage(
                seconds or 0.0, cpu or 0.0, gpu or 0.0, trained, generated, prompt, completion, cost
            )
            out.append(
                RunRecord(
                    id=int(r[0]),
                    name=r[1],
                    algorithm=r[2],
                    status=r[3],
                    seed=int(r[4]),
                    config=json.loads(r[5]),
                    git_commit=r[6],
                    git_dirty=None if r[7] is None else bool(r[7]),
                    run_dir=r[8],
                    started=r[9],
                    ended=r[10],
                    host=r[11],
                    pid=int(r[12]),
                    labels=RunLabels(r[13], r[14], r[15], r[16]),
                    error=r[17],
                    usage=usage,
                    metrics=metrics[int(r[0])],
                )
            )
        return out

    def get(self, run_id: int) -> RunRecord:
        """Run ``run_id``.

        Raises:
            UserError: when the index has no such run.
        """
        with self._read() as db:
            rows = db.execute(f"SELECT {self._COLUMNS} FROM runs WHERE id=?", (run_id,)).fetchall()
            records = self._records(db, rows)
        if not records:
            raise UserError(f"no run {run_id} in {self.path} (`llm-trainer runs list` lists them)")
        return records[0]

    def find(self, reference: str | int) -> RunRecord:
        """A run by its id, or by its run directory (a path, or the folder's name).

        Raises:
            UserError: when no run (or more than one) matches.
        """
        if isinstance(reference, int) or str(reference).isdigit():
            return self.get(int(reference))
        path = str(Path(reference).resolve())
        with self._read() as db:
            rows = db.execute(
                f"SELECT {self._COLUMNS} FROM runs WHERE run_dir=? OR run_dir LIKE ? ESCAPE '\\'",
                (path, "%/" + str(reference).replace("%", r"\%").replace("_", r"\_")),
            ).fetchall()
            records = self._records(db, rows)
        if len(records) != 1:
            found = "no run" if not records else f"{len(records)} runs"
            raise UserError(f"{found} in {self.path} matches {reference!r}; use a run id")
        return records[0]

    def runs(
        self,
        *,
        name: str | None = None,
        status: str | None = None,
        algorithm: str | None = None,
        sweep_id: str | None = None,
        cycle_id: str | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """The runs that match every given filter, newest first (at most ``limit``)."""
        if status is not None and status not in STATUSES:
            raise UserError(f"status: {status!r} is not one of {list(STATUSES)}")
        filters = {
            "name": name,
            "status": status,
            "algorithm": algorithm,
            "sweep_id": sweep_id,
            "cycle_id": cycle_id,
        }
        where = [f"{k}=?" for k, v in filters.items() if v is not None]
        query = f"SELECT {self._COLUMNS} FROM runs"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY id DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        with self._read() as db:
            rows = db.execute(query, [v for v in filters.values() if v is not None]).fetchall()
            return self._records(db, rows)

    def previous(self, record: RunRecord) -> RunRecord | None:
        """The latest ``finished`` run of the same name before ``record`` (what it is
        compared with for regressions), or ``None``."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {self._COLUMNS} FROM runs WHERE name=? AND id<? AND status='finished' "
                "ORDER BY id DESC LIMIT 1",
                (record.name, record.id),
            ).fetchall()
            records = self._records(db, rows)
        return records[0] if records else None

    def usage(self, **filters: Any) -> RunUsage:
        """The usage of the runs that match ``filters`` (as :meth:`runs`), summed."""
        return RunUsage.total(r.usage for r in self.runs(**filters))
