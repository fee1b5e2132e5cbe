"""A versioned trajectory store in one SQLite file, with JSONL / Parquet / ``datasets`` export.

Every dataset is immutable and identified by the content hash of its trajectories (its
version): adding the same trajectories twice gives the same id, and a dataset's id changes iff
its content does. Each dataset records where it came from (:class:`Provenance`: env ids, seeds,
agent, config, parent datasets), so a result can be traced back to the data that produced it.
A dataset may also carry one *annotation* per trajectory (a JSON object: e.g. the synthesis
generator, the quality filters' decision and the parent trajectory's :func:`trajectory_hash`,
:mod:`llm_trainer.data.synthesis`), kept beside the trajectories so that their canonical JSON,
and so the dataset's version, stay the same. The annotations table was added without a schema
version change: older stores gain it when opened, and older readers ignore it.

The file uses SQLite's WAL mode and writes each dataset in one transaction, so readers in other
processes see whole datasets only, and a process killed mid-write leaves the store as it was.

>>> import tempfile, os
>>> from llm_trainer.core.trajectory import Step, Trajectory
>>> t = Trajectory("LLMTrainer/Calculator-v0", 0, 1, "sys", (), "What is 1 + 1?",
...                (Step("<answer>2</answer>", "", "user", 1.0, True, False),), "oracle")
>>> store = TrajectoryStore(os.path.join(tempfile.mkdtemp(), "store.db"))
>>> info = store.add("demo", [t], Provenance(env_ids=("LLMTrainer/Calculator-v0",), seeds=(0,)))
>>> store.load(info.id) == [t], store.add("demo", [t]).id == info.id
(True, True)
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llm_trainer.core.errors import UserError
from llm_trainer.core.rundir import atomic_write
from llm_trainer.core.trajectory import Trajectory

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    size INTEGER NOT NULL,
    provenance TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trajectories (
    dataset_id TEXT NOT NULL REFERENCES datasets(id),
    idx INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (dataset_id, idx)
);
CREATE TABLE IF NOT EXISTS annotations (
    dataset_id TEXT NOT NULL REFERENCES datasets(id),
    idx INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (dataset_id, idx)
);
"""


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a dataset came from."""

    env_ids: tuple[str, ...] = ()
    """Envs the trajectories were collected in."""
    seeds: tuple[int, ...] = ()
    """Reset seeds used (or the first/last, for long ranges: record what reproduces it)."""
    agent: str = ""
    """The agent spec that acted (``oracle``, ``transformers:DIR``...)."""
    strategy: str = ""
    """The data strategy (``oracle``, ``template``, ``teacher``, ``toolbench``, ``rollout``)."""
    config: dict[str, Any] = field(default_factory=dict)
    """The configuration that produced it."""
    parents: tuple[str, ...] = ()
    """Ids of the datasets it was derived from."""


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    id: str
    name: str
    created: float
    size: int
    provenance: Provenance


def content_hash(trajectories: Iterable[Trajectory]) -> str:
    """The dataset version: sha256 over the canonical JSON of its trajectories, in order."""
    digest = hashlib.sha256()
    for t in trajectories:
        digest.update(t.to_json().encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def trajectory_hash(trajectory: Trajectory) -> str:
    """The content hash of one trajectory (the version a dataset of it alone would have): what
    lineage records and deduplication refer to."""
    return content_hash([trajectory])


class TrajectoryStore:
    """Datasets of trajectories in one SQLite file (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise UserError(
                    f"{self.path}: store schema version {row[0]}, this llm-trainer "
                    f"reads version {SCHEMA_VERSION}"
                )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            with db:  # one transaction: committed on success, rolled back on error
                yield db
        finally:
            db.close()

    def add(
        self,
        name: str,
        trajectories: Sequence[Trajectory],
        provenance: Provenance | None = None,
        *,
        annotations: Sequence[Mapping[str, Any]] | None = None,
    ) -> DatasetInfo:
        """Store a dataset; returns its info. Idempotent: the same content gives the same id.

        Args:
            name: The dataset's name.
            trajectories: Its trajectories, in order.
            provenance: Where it came from.
            annotations: One JSON-ready mapping per trajectory (see :meth:`annotations`);
                for a dataset already stored without any, they are added.

        Raises:
            UserError: for an empty dataset.
            ValueError: when ``annotations`` is not one mapping per trajectory.
        """
        if not trajectories:
            raise UserError(f"dataset {name!r} is empty")
        if annotations is not None and len(annotations) != len(trajectories):
            raise ValueError(f"{len(annotations)} annotations for {len(trajectories)} trajectories")
        notes = (
            []
            if annotations is None
            else [json.dumps(dict(a), sort_keys=True) for a in annotations]
        )
        dataset_id = content_hash(trajectories)
        provenance = provenance or Provenance()
        with self._connect() as db:
            if db.execute("SELECT 1 FROM datasets WHERE id=?", (dataset_id,)).fetchone():
                if (
                    notes
                    and not db.execute(
                        "SELECT 1 FROM annotations WHERE dataset_id=?", (dataset_id,)
                    ).fetchone()
                ):
                    db.executemany(
                        "INSERT INTO annotations VALUES (?, ?, ?)",
                        ((dataset_id, i, n) for i, n in enumerate(notes)),
                    )
                return self.info(dataset_id)
            created = time.time()
            db.execute(
                "INSERT INTO datasets VALUES (?, ?, ?, ?, ?)",
                (
                    dataset_id,
                    name,
                    created,
                    len(trajectories),
                    json.dumps(asdict(provenance), sort_keys=True),
                ),
            )
            db.executemany(
                "INSERT INTO trajectories VALUES (?, ?, ?)",
                ((dataset_id, i, t.to_json()) for i, t in enumerate(trajectories)),
            )
            db.executemany(
                "INSERT INTO annotations VALUES (?, ?, ?)",
                ((dataset_id, i, n) for i, n in enumerate(notes)),
            )
        return DatasetInfo(dataset_id, name, created, len(trajectories), provenance)

    def info(self, dataset_id: str) -> DatasetInfo:
        with self._connect() as db:
            row = db.execute(
                "SELECT id, name, created, size, provenance FROM datasets WHERE id=?", (dataset_id,)
            ).fetchone()
        if row is None:
            raise UserError(f"no dataset {dataset_id!r} in {self.path}")
        raw = json.loads(row[4])
        provenance = Provenance(
            env_ids=tuple(raw["env_ids"]),
            seeds=tuple(raw["seeds"]),
            agent=raw["agent"],
            strategy=raw["strategy"],
            config=raw["config"],
            parents=tuple(raw["parents"]),
        )
        return DatasetInfo(row[0], row[1], row[2], row[3], provenance)

    def datasets(self) -> list[DatasetInfo]:
        """Every dataset, oldest first."""
        with self._connect() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM datasets ORDER BY created, id")]
        return [self.info(i) for i in ids]

    def load(self, dataset_id: str) -> list[Trajectory]:
        self.info(dataset_id)  # a clear error for an unknown id
        with self._connect() as db:
            rows = db.execute(
                "SELECT record FROM trajectories WHERE dataset_id=? ORDER BY idx", (dataset_id,)
            ).fetchall()
        return [Trajectory.from_json(r[0]) for r in rows]

    def annotations(self, dataset_id: str) -> list[dict[str, Any]]:
        """The dataset's annotations, one per trajectory in order (``[]`` when it has none)."""
        self.info(dataset_id)  # a clear error for an unknown id
        with self._connect() as db:
            rows = db.execute(
                "SELECT record FROM annotations WHERE dataset_id=? ORDER BY idx", (dataset_id,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- export ----------------------------------------------------------------------------

    def export_jsonl(self, dataset_id: str, path: str | Path) -> Path:
        """One trajectory per line (canonical JSON); written atomically."""
        lines = "".join(t.to_json() + "\n" for t in self.load(dataset_id))
        return atomic_write(Path(path), lines.encode())

    def to_hf_dataset(self, dataset_id: str) -> Any:
        """A ``datasets.Dataset`` with one row per trajectory: its fields plus ``messages``."""
        import datasets

        rows = []
        for t in self.load(dataset_id):
            record = t.to_dict()
            record["steps"] = json.dumps(record["steps"])  # nested, variable-length: keep as JSON
            record["tools"] = json.dumps(record["tools"])
            record["messages"] = t.messages()
            record["success"] = t.success
            record["total_reward"] = t.total_reward
            rows.append(record)
        dataset = datasets.Dataset.from_list(rows)
        info = self.info(dataset_id)
        dataset.info.description = json.dumps(
            {"id": info.id, "name": info.name, "provenance": asdict(info.provenance)}
        )
        return dataset

    def export_parquet(self, dataset_id: str, path: str | Path) -> Path:
        """The :meth:`to_hf_dataset` table as Parquet; written atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".parquet.tmp")
        os.close(fd)
        try:
            self.to_hf_dataset(dataset_id).to_parquet(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path
