"""The knowledge graph: typed nodes and edges in one SQLite file, queried as a networkx graph.

**Storage.** Two tables, ``nodes`` (id, kind, attributes as JSON) and ``edges`` (id, source,
target, kind, key, attributes), in WAL mode. Every write is one ``BEGIN IMMEDIATE``
transaction: a batch of any size is all written or not at all, a process killed mid-write
leaves the graph as it was before that write, and concurrent writers (the worker processes of a
benchmark run, several runs at once) wait for each other's transactions instead of losing
them. Writing a node or an edge again updates it: its attributes are merged (new values win),
so recording the same episode twice, or from a resumed run, adds nothing.

**Queries** run on a networkx ``MultiDiGraph`` loaded from the file and kept up to date
incrementally: each transaction stamps the rows it writes with a new version number, and a
query first reads the rows newer than what it holds (one indexed ``SELECT`` when nothing
changed). Related problems are found by BM25 over problem statements
(:class:`~llm_trainer.core.knowledge.bm25.BM25Index`, updated as problems arrive).

>>> import tempfile, pathlib
>>> from llm_trainer.core.knowledge.schema import Agent, Attempt, Problem, Solution
>>> kg = KnowledgeGraph(pathlib.Path(tempfile.mkdtemp()) / "kg.sqlite")
>>> with kg.batch() as batch:
...     problem = batch.add(Problem("Compute 12 * 3.", env_id="LLMTrainer/Calculator-v0", seed=0))
...     agent = batch.add(Agent("oracle"))
...     solution = batch.add(Solution("<answer>36</answer>", problem=problem))
...     _ = batch.add_edge(problem, "solved_by", solution, Attempt(reward=1.0))
>>> [hit.problem.attrs["statement"] for hit in kg.related_problems("compute 7 * 3")]
['Compute 12 * 3.']
>>> kg.solutions(problem)[0].attrs["text"]
'<answer>36</answer>'
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llm_trainer.core.errors import ConfigError, UserError
from llm_trainer.core.knowledge.bm25 import BM25Index
from llm_trainer.core.knowledge.schema import (
    EDGE_KINDS,
    EDGE_TYPES,
    NODE_TYPES,
    NodeRecord,
    check_edge,
    check_endpoints,
    check_kind,
    check_node,
    edge_id,
    kind_of,
    record_attrs,
)
from llm_trainer.core.knowledge.text import bm25_tokens

if TYPE_CHECKING:
    import networkx as nx

SCHEMA_VERSION = 1
#: Ids per ``IN (...)`` query (below SQLite's variable limit on any build).
_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    attrs TEXT NOT NULL,
    version INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS nodes_by_version ON nodes(version);
CREATE TABLE IF NOT EXISTS edges (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL REFERENCES nodes(id),
    target TEXT NOT NULL REFERENCES nodes(id),
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    attrs TEXT NOT NULL,
    version INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS edges_by_version ON edges(version);
INSERT OR IGNORE INTO meta VALUES ('version', '0');
"""


@dataclass(frozen=True, slots=True)
class Node:
    """A node as read back: its id, kind and attributes."""

    id: str
    kind: str
    attrs: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Edge:
    """An edge as read back."""

    id: str
    source: str
    target: str
    kind: str
    key: str
    attrs: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RelatedProblem:
    """A problem found by :meth:`KnowledgeGraph.related_problems`."""

    problem: Node
    score: float
    """BM25 relevance to the query."""
    solutions: tuple[Node, ...]
    """Its solutions, best first (highest reward, then fewest turns, then shortest)."""


@dataclass(frozen=True, slots=True)
class Score:
    """A measurement of a model in its :class:`Lineage`."""

    model: str
    """The model measured (the lineage's model or one of its ancestors)."""
    target: str
    """What it was measured on: an experiment (held-out), or an agent built on it (a benchmark)."""
    run: str
    """``before``/``after`` for held-out scores, the benchmark run's key for benchmarks."""
    metrics: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a model came from and how it scored: dataset -> experiment -> model -> scores."""

    model: Node
    ancestors: tuple[Node, ...]
    """The models it derives from, nearest first."""
    experiments: tuple[Node, ...]
    """The experiments that made it and its ancestors."""
    datasets: tuple[Node, ...]
    """The datasets they trained on, then those datasets' own parents."""
    scores: tuple[Score, ...]
    """Held-out evaluations and benchmark results of the model and its ancestors."""


@dataclass(frozen=True, slots=True)
class Counts:
    """Nodes and edges by kind."""

    nodes: Mapping[str, int]
    edges: Mapping[str, int]


class Batch:
    """Nodes and edges to write in one transaction (see :meth:`KnowledgeGraph.batch`).

    Everything is validated when added; the ids are returned at once, so an edge may join
    nodes of the same batch.
    """

    def __init__(self) -> None:
        self.nodes: list[tuple[str, str, dict[str, Any]]] = []
        self.edges: list[tuple[str, str, str, str, str, dict[str, Any]]] = []

    def __len__(self) -> int:
        return len(self.nodes) + len(self.edges)

    def add(self, record: NodeRecord) -> str:
        """Add a node from its typed record (its id derived from its content); returns the id."""
        if type(record) not in NODE_TYPES.values():
            raise ConfigError(f"not a node record: {type(record).__name__}")
        node_id = record.node_id
        self.nodes.append((node_id, record.kind, record_attrs(record, record.kind)))
        return node_id

    def add_node(self, node_id: str, attrs: Mapping[str, Any] | None = None) -> str:
        """Add a node by id (``<kind>:<identity>``) and attributes (checked against the kind's
        record); returns the id."""
        kind = kind_of(node_id)
        self.nodes.append((node_id, kind, check_node(kind, attrs or {})))
        return node_id

    def add_edge(
        self,
        source: str,
        kind: str,
        target: str,
        attrs: Mapping[str, Any] | Any = None,
        *,
        key: str = "",
    ) -> str:
        """Add an edge ``source -kind-> target`` with attributes (a mapping or the kind's
        record); one edge per (source, kind, target, key). Returns its id."""
        check_kind(kind, EDGE_KINDS, "edge")
        record_type = EDGE_TYPES[kind][0]
        if isinstance(attrs, record_type):
            values = record_attrs(attrs, kind)
        elif attrs is None or isinstance(attrs, Mapping):
            values = check_edge(kind, attrs)
        else:
            raise ConfigError(
                f"{kind} edge attributes must be a mapping or a {record_type.__name__}, "
                f"got {type(attrs).__name__}"
            )
        check_endpoints(kind, kind_of(source), kind_of(target), source, target)
        if not isinstance(key, str):
            raise ConfigError(f"edge key must be a str, got {key!r}")
        eid = edge_id(source, kind, target, key)
        self.edges.append((eid, source, target, kind, key, values))
        return eid


def _merged(rows: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Attributes by id, later values winning (one id written twice in a batch)."""
    out: dict[str, dict[str, Any]] = {}
    for row_id, attrs in rows:
        out[row_id] = {**out[row_id], **attrs} if row_id in out else dict(attrs)
    return out


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _loads_all(texts: Iterable[str]) -> list[dict[str, Any]]:
    """Many JSON objects parsed at once (one parse of their array: a load of 10^5 rows spends
    most of its time in per-call overhead otherwise)."""
    loaded: list[dict[str, Any]] = json.loads("[" + ",".join(texts) + "]")
    return loaded


def _dumps(attrs: Mapping[str, Any]) -> str:
    return json.dumps(attrs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class KnowledgeGraph:
    """A persistent, typed knowledge graph in one SQLite file (created on first use).

    Safe across processes and threads: each process opens its own connection (re-opened after
    a fork), writes are single transactions, and readers see whole transactions only.

    Args:
        path: The SQLite file.
        timeout_s: How long a write waits for another process's write to finish.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._lock = threading.RLock()
        self._connection: sqlite3.Connection | None = None
        self._pid = -1
        # the networkx view and what it was loaded from
        self._graph: nx.MultiDiGraph[str] | None = None
        self._version = 0
        self._index = BM25Index()
        self._docs: list[str] = []  # BM25 document number -> problem id
        self._doc_of: dict[str, int] = {}
        self._solved = np.zeros(0, dtype=bool)
        self._index_stale = False
        if self.path.is_dir():
            raise UserError(f"{self.path} is a directory, not a knowledge graph file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            db = self._db()
            version = self._schema_version(db)
            if version is None:  # a new file: create the tables (once, whoever comes first)
                db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(
                        "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                version = self._schema_version(db)
            if version != SCHEMA_VERSION:
                raise UserError(
                    f"{self.path}: knowledge graph schema version {version}, this "
                    f"llm-trainer reads version {SCHEMA_VERSION}"
                )

    @staticmethod
    def _schema_version(db: sqlite3.Connection) -> int | None:
        """The file's schema version; ``None`` for a file without the tables yet."""
        try:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError:  # no such table: a new (empty) file
            return None
        return None if row is None else int(row[0])

    # -- connection ---------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        """This process's connection (a connection must not cross a fork: a child opens its
        own and leaves the parent's alone)."""
        if self._connection is None or self._pid != os.getpid():
            try:
                db = sqlite3.connect(
                    self.path,
                    timeout=self.timeout_s,
                    isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE
                    check_same_thread=False,  # guarded by self._lock
                )
                db.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA foreign_keys=ON")
            except sqlite3.DatabaseError as exc:
                raise UserError(f"{self.path}: not a knowledge graph file ({exc})") from None
            self._connection, self._pid = db, os.getpid()
        return self._connection

    def close(self) -> None:
        """Close this process's connection (a later call opens a new one)."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    def __enter__(self) -> KnowledgeGraph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """Collect nodes and edges, written in one transaction when the block ends (nothing
        is written when it raises)."""
        batch = Batch()
        yield batch
        self.write(batch)

    def add(self, record: NodeRecord) -> str:
        """Write one node from its typed record; returns its id."""
        batch = Batch()
        node_id = batch.add(record)
        self.write(batch)
        return node_id

    def add_node(self, node_id: str, attrs: Mapping[str, Any] | None = None) -> str:
        """Write one node by id and attributes; returns the id."""
        batch = Batch()
        batch.add_node(node_id, attrs)
        self.write(batch)
        return node_id

    def add_edge(
        self,
        source: str,
        kind: str,
        target: str,
        attrs: Mapping[str, Any] | Any = None,
        *,
        key: str = "",
    ) -> str:
        """Write one edge (its endpoints must exist); returns its id."""
        batch = Batch()
        eid = batch.add_edge(source, kind, target, attrs, key=key)
        self.write(batch)
        return eid

    def write(self, batch: Batch) -> None:
        """Write ``batch`` in one transaction.

        Raises:
            ConfigError: when an edge names a node that is neither in the graph nor in the
                batch (nothing is written then).
        """
        if not len(batch):
            return
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                self._write(db, batch)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _write(self, db: sqlite3.Connection, batch: Batch) -> None:
        nodes = _merged((node_id, attrs) for node_id, _, attrs in batch.nodes)
        kinds = {node_id: kind for node_id, kind, _ in batch.nodes}
        edges = _merged((e[0], e[5]) for e in batch.edges)
        edge_rows = {e[0]: e for e in batch.edges}
        now = time.time()
        version = int(db.execute("SELECT value FROM meta WHERE key='version'").fetchone()[0]) + 1
        node_inserts, node_updates = self._changes(db, "nodes", nodes)
        edge_inserts, edge_updates = self._changes(db, "edges", edges)
        if not (node_inserts or node_updates or edge_inserts or edge_updates):
            return  # all already there: the version (and every reader's cache) stays
        db.execute("UPDATE meta SET value=? WHERE key='version'", (str(version),))
        db.executemany(
            "INSERT INTO nodes (id, kind, attrs, version, created) VALUES (?, ?, ?, ?, ?)",
            [(i, kinds[i], _dumps(a), version, now) for i, a in node_inserts.items()],
        )
        db.executemany(
            "UPDATE nodes SET attrs=?, version=? WHERE id=?",
            [(_dumps(a), version, i) for i, a in node_updates.items()],
        )
        try:
            db.executemany(
                "INSERT INTO edges (id, source, target, kind, key, attrs, version, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (i, edge_rows[i][1], edge_rows[i][2], edge_rows[i][3], edge_rows[i][4],
                     _dumps(a), version, now)
                    for i, a in edge_inserts.items()
                ],
            )  # fmt: skip
        except sqlite3.IntegrityError:
            raise self._missing_endpoint(db, [edge_rows[i] for i in edge_inserts]) from None
        db.executemany(
            "UPDATE edges SET attrs=?, version=? WHERE id=?",
            [(_dumps(a), version, i) for i, a in edge_updates.items()],
        )

    @staticmethod
    def _changes(
        db: sqlite3.Connection, table: str, rows: dict[str, dict[str, Any]]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Split ``rows`` into new ones and existing ones whose merged attributes differ."""
        existing: dict[str, dict[str, Any]] = {}
        ids = list(rows)
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            for row_id, attrs in db.execute(
                f"SELECT id, attrs FROM {table} WHERE id IN ({marks})", chunk
            ):
                existing[row_id] = json.loads(attrs)
        inserts = {i: a for i, a in rows.items() if i not in existing}
        updates = {}
        for row_id, old in existing.items():
            merged = {**old, **rows[row_id]}
            if merged != old:
                updates[row_id] = merged
        return inserts, updates

    @staticmethod
    def _missing_endpoint(
        db: sqlite3.Connection, edges: Sequence[tuple[str, str, str, str, str, Any]]
    ) -> ConfigError:
        for _, source, target, kind, _, _ in edges:
            for node_id in (source, target):
                if db.execute("SELECT 1 FROM nodes WHERE id=?", (node_id,)).fetchone() is None:
                    return ConfigError(
                        f"{kind} edge {source} -> {target}: node {node_id} is not in the graph "
                        "(add it first, or in the same batch)"
                    )
        return ConfigError("an edge names a node that is not in the graph")

    # -- plain reads (SQL) --------------------------------------------------------------------

    def node(self, node_id: str) -> Node:
        """One node, read from the file.

        Raises:
            UserError: for an id that is not in the graph.
        """
        with self._lock:
            row = (
                self._db()
                .execute("SELECT kind, attrs FROM nodes WHERE id=?", (node_id,))
                .fetchone()
            )
        if row is None:
            raise UserError(f"no node {node_id!r} in {self.path}")
        return Node(node_id, row[0], json.loads(row[1]))

    @property
    def version(self) -> int:
        """How many writes have changed the graph (a write that changed nothing is not
        counted): equal versions, equal graphs."""
        with self._lock:
            row = self._db().execute("SELECT value FROM meta WHERE key='version'").fetchone()
        return int(row[0])

    def __contains__(self, node_id: object) -> bool:
        with self._lock:
            return (
                self._db().execute("SELECT 1 FROM nodes WHERE id=?", (node_id,)).fetchone()
                is not None
            )

    def counts(self) -> Counts:
        """Nodes and edges by kind (every kind listed, zeros included)."""
        with self._lock:
            db = self._db()
            nodes = dict(db.execute("SELECT kind, count(*) FROM nodes GROUP BY kind").fetchall())
            edges = dict(db.execute("SELECT kind, count(*) FROM edges GROUP BY kind").fetchall())
        return Counts(
            {kind: nodes.get(kind, 0) for kind in NODE_TYPES},
            {kind: edges.get(kind, 0) for kind in EDGE_TYPES},
        )

    def find(self, prefix: str) -> str:
        """The node id that is ``prefix`` or the only one starting with it.

        Raises:
            UserError: when none or several match (the message lists a few).
        """
        with self._lock:
            rows = (
                self._db()
                .execute(
                    "SELECT id FROM nodes WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
                    (prefix, prefix + "\U0010ffff"),
                )
                .fetchall()
            )
        ids = [r[0] for r in rows]
        if prefix in ids:
            return prefix
        if len(ids) == 1:
            return str(ids[0])
        if not ids:
            raise UserError(f"no node {prefix!r} in {self.path}")
        raise UserError(f"{prefix!r} names several nodes ({', '.join(ids[:5])}...): give more")

    # -- the networkx view --------------------------------------------------------------------

    def graph(self) -> nx.MultiDiGraph[str]:
        """The whole graph as a read-only networkx ``MultiDiGraph`` (node data: ``kind`` and
        the attributes; edge keys: edge ids; edge data: ``kind``, ``key`` and the attributes),
        brought up to date with the file first.

        It is a view of the graph this object keeps, which its later queries bring up to date
        in place: a thread that queries while another iterates the view needs a ``copy()``.
        """
        with self._lock:
            return self._current().copy(as_view=True)

    def _current(self) -> nx.MultiDiGraph[str]:
        """The cached graph, refreshed with the rows written since it was loaded. Needs the
        lock."""
        import networkx as nx

        if self._graph is None:
            self._graph = nx.MultiDiGraph()
        db = self._db()
        db.execute("BEGIN")  # one snapshot for the version and both tables
        try:
            version = int(db.execute("SELECT value FROM meta WHERE key='version'").fetchone()[0])
            if version == self._version:
                return self._graph
            node_rows = db.execute(
                "SELECT id, kind, attrs FROM nodes WHERE version > ? ORDER BY rowid",
                (self._version,),
            ).fetchall()
            edge_rows = db.execute(
                "SELECT id, source, target, kind, key, attrs FROM edges WHERE version > ? "
                "ORDER BY rowid",
                (self._version,),
            ).fetchall()
        finally:
            db.execute("COMMIT")
        graph = self._graph
        node_attrs = _loads_all(r[2] for r in node_rows)
        edge_attrs = _loads_all(r[5] for r in edge_rows)
        if not len(graph):  # the first load: every row is new, added in bulk
            graph.add_nodes_from(
                (row[0], {**attrs, "kind": row[1]})
                for row, attrs in zip(node_rows, node_attrs, strict=True)
            )
            # (source, target, key, data): what a multigraph takes (types-networkx's stub of
            # Graph.add_edges_from lists only the 2- and 3-tuples of simple graphs)
            graph.add_edges_from(
                (row[1], row[2], row[0], {**attrs, "kind": row[3], "key": row[4]})  # type: ignore[misc]
                for row, attrs in zip(edge_rows, edge_attrs, strict=True)
            )
            for (node_id, kind, _), attrs in zip(node_rows, node_attrs, strict=True):
                if kind == "problem":
                    self._index_problem(node_id, attrs)
        else:
            self._update(graph, node_rows, node_attrs, edge_rows, edge_attrs)
        for _, source, target, kind, *_ in edge_rows:
            if kind == "solved_by" and source in self._doc_of and kind_of(target) == "solution":
                self._solved[self._doc_of[source]] = True
        self._version = version
        return graph

    def _update(
        self,
        graph: nx.MultiDiGraph[str],
        node_rows: list[tuple[str, str, str]],
        node_attrs: list[dict[str, Any]],
        edge_rows: list[tuple[str, str, str, str, str, str]],
        edge_attrs: list[dict[str, Any]],
    ) -> None:
        """Apply rows written since the last load: new nodes and edges, and updated ones."""
        for (node_id, kind, _), attrs in zip(node_rows, node_attrs, strict=True):
            if node_id in graph:
                data = graph.nodes[node_id]
                if kind == "problem" and data.get("statement") != attrs.get("statement"):
                    self._index_stale = True  # rare: rebuilt at the next search
                data.clear()
                data.update(attrs, kind=kind)
            else:
                graph.add_node(node_id, kind=kind, **attrs)
                if kind == "problem" and not self._index_stale:
                    self._index_problem(node_id, attrs)
        for (eid, source, target, kind, key, _), attrs in zip(edge_rows, edge_attrs, strict=True):
            if graph.has_edge(source, target, eid):
                data = graph.edges[source, target, eid]
                data.clear()
            else:
                graph.add_edge(source, target, eid)
                data = graph.edges[source, target, eid]
            data.update(attrs, kind=kind, key=key)

    def _index_problem(self, node_id: str, attrs: Mapping[str, Any]) -> None:
        number = self._index.add(bm25_tokens(str(attrs.get("statement", ""))))
        self._docs.append(node_id)
        self._doc_of[node_id] = number
        if number >= len(self._solved):
            self._solved = np.concatenate([self._solved, np.zeros(max(1024, number), dtype=bool)])

    def _rebuild_index(self, graph: nx.MultiDiGraph[str]) -> None:
        self._index, self._docs, self._doc_of = BM25Index(), [], {}
        self._solved = np.zeros(0, dtype=bool)
        for node_id, data in graph.nodes(data=True):
            if data["kind"] == "problem":
                self._index_problem(node_id, data)
        for source, target, data in graph.edges(data=True):
            if data["kind"] == "solved_by" and kind_of(target) == "solution":
                self._solved[self._doc_of[source]] = True
        self._index_stale = False

    # -- queries ------------------------------------------------------------------------------

    @staticmethod
    def _node(graph: nx.MultiDiGraph[str], node_id: str) -> Node:
        data = graph.nodes[node_id]
        return Node(node_id, data["kind"], {k: v for k, v in data.items() if k != "kind"})

    def related_problems(
        self, text: str, k: int = 3, *, solved: bool = True
    ) -> list[RelatedProblem]:
        """The ``k`` problems whose statements are most relevant to ``text`` (BM25; only those
        sharing a word with it; ties to the newest), with their solutions. ``solved``: only
        problems with at least one solution node."""
        words = bm25_tokens(text)
        if k < 1 or not words:
            return []
        with self._lock:
            graph = self._current()
            if self._index_stale:
                self._rebuild_index(graph)
            allowed = self._solved[: len(self._docs)] if solved else None
            docs, scores = self._index.top_k(words, k, allowed)
            problems = [self._docs[int(d)] for d in docs]
            return [
                RelatedProblem(self._node(graph, p), float(s), self._solutions(graph, p))
                for p, s in zip(problems, scores, strict=True)
            ]

    def _out(
        self, graph: nx.MultiDiGraph[str], node_id: str, kind: str | None
    ) -> list[tuple[str, dict[str, Any]]]:
        if node_id not in graph:
            raise UserError(f"no node {node_id!r} in {self.path}")
        return [
            (target, data)
            for _, target, data in graph.out_edges(node_id, data=True)
            if kind is None or data["kind"] == kind
        ]

    def _in(
        self, graph: nx.MultiDiGraph[str], node_id: str, kind: str | None
    ) -> list[tuple[str, dict[str, Any]]]:
        if node_id not in graph:
            raise UserError(f"no node {node_id!r} in {self.path}")
        return [
            (source, data)
            for source, _, data in graph.in_edges(node_id, data=True)
            if kind is None or data["kind"] == kind
        ]

    def _solutions(self, graph: nx.MultiDiGraph[str], problem: str) -> tuple[Node, ...]:
        found = {t: self._node(graph, t) for t, _ in self._out(graph, problem, "solved_by")}
        solutions = [n for n in found.values() if n.kind == "solution"]
        solutions.sort(
            key=lambda n: (
                -(n.attrs.get("reward") or 0.0),
                n.attrs.get("turns") or 0,
                len(str(n.attrs.get("text", ""))),
                n.id,
            )
        )
        return tuple(solutions)

    def solutions(self, problem: str) -> list[Node]:
        """The solution nodes of a problem, best first."""
        with self._lock:
            return list(self._solutions(self._current(), problem))

    def edges(self, node_id: str, kind: str | None = None, *, incoming: bool = False) -> list[Edge]:
        """The edges leaving ``node_id`` (``incoming``: arriving), of ``kind`` or any."""
        with self._lock:
            graph = self._current()
            if node_id not in graph:
                raise UserError(f"no node {node_id!r} in {self.path}")
            found = (
                graph.in_edges(node_id, keys=True, data=True)
                if incoming
                else graph.out_edges(node_id, keys=True, data=True)
            )
            return [
                Edge(
                    eid,
                    source,
                    target,
                    data["kind"],
                    data["key"],
                    {k: v for k, v in data.items() if k not in ("kind", "key")},
                )
                for source, target, eid, data in found
                if kind is None or data["kind"] == kind
            ]

    def failures(self, problem: str) -> list[tuple[Node, Edge]]:
        """How attempts at a problem failed: each ``fails_with`` edge (agent, run, metrics)
        with its failure-mode node."""
        edges = self.edges(problem, "fails_with")
        with self._lock:
            graph = self._current()
            return [(self._node(graph, e.target), e) for e in edges]

    def parents(self, node_id: str, kind: str | None = "derived_from") -> list[Node]:
        """Genealogy: the nodes ``node_id`` points to by ``kind`` edges (``derived_from``: what
        it was derived from; ``None``: any kind), in the order they were recorded."""
        with self._lock:
            graph = self._current()
            targets = dict.fromkeys(t for t, _ in self._out(graph, node_id, kind))
            return [self._node(graph, t) for t in targets]

    def children(self, node_id: str, kind: str | None = "derived_from") -> list[Node]:
        """Genealogy: the nodes pointing to ``node_id`` by ``kind`` edges."""
        with self._lock:
            graph = self._current()
            sources = dict.fromkeys(s for s, _ in self._in(graph, node_id, kind))
            return [self._node(graph, s) for s in sources]

    def ancestors(
        self, node_id: str, kind: str = "derived_from", *, max_depth: int | None = None
    ) -> list[tuple[Node, int]]:
        """Every node reachable from ``node_id`` by ``kind`` edges, with its distance
        (parents 1, grandparents 2...), breadth first."""
        with self._lock:
            graph = self._current()
            seen = {node_id: 0}
            queue = deque([node_id])
            out: list[tuple[Node, int]] = []
            while queue:
                current = queue.popleft()
                depth = seen[current]
                if max_depth is not None and depth >= max_depth:
                    continue
                for target, _ in self._out(graph, current, kind):
                    if target not in seen:
                        seen[target] = depth + 1
                        out.append((self._node(graph, target), depth + 1))
                        queue.append(target)
            return out

    def lineage(self, model: str) -> Lineage:
        """The lineage of a model: the models it was derived from, the experiments that made
        them, the datasets they were trained on (and those datasets' parents), and the scores
        of each: held-out evaluations (``evaluated_on``) and benchmark runs of agents built on
        it (``attempted_by`` edges, summarised per run as episodes and success rate).

        Raises:
            UserError: when ``model`` is not a model node of the graph.
        """
        with self._lock:
            graph = self._current()
            if model not in graph or graph.nodes[model]["kind"] != "model":
                raise UserError(f"no model {model!r} in {self.path}")
            chain = [model]
            seen = {model}
            for current in chain:  # grows as ancestors are found: breadth first
                for target, _ in self._out(graph, current, "derived_from"):
                    if kind_of(target) == "model" and target not in seen:
                        seen.add(target)
                        chain.append(target)
            experiments: dict[str, None] = {}
            datasets: dict[str, None] = {}
            scores: list[Score] = []
            for current in chain:
                for target, _ in self._out(graph, current, "derived_from"):
                    if kind_of(target) == "experiment":
                        experiments[target] = None
                for target, _ in self._out(graph, current, "trained_on"):
                    datasets[target] = None
                for target, data in self._out(graph, current, "evaluated_on"):
                    scores.append(
                        Score(current, target, data.get("phase", ""), data.get("metrics", {}))
                    )
                scores += self._bench_scores(graph, current)
            for current in list(datasets):  # grows: the parents' parents too
                for target, _ in self._out(graph, current, "derived_from"):
                    if kind_of(target) == "dataset":
                        datasets[target] = None
            return Lineage(
                self._node(graph, model),
                tuple(self._node(graph, m) for m in chain[1:]),
                tuple(self._node(graph, e) for e in experiments),
                tuple(self._node(graph, d) for d in datasets),
                tuple(scores),
            )

    def _bench_scores(self, graph: nx.MultiDiGraph[str], model: str) -> list[Score]:
        scores = []
        for agent, _ in self._in(graph, model, "derived_from"):
            if kind_of(agent) != "agent":
                continue
            runs: dict[str, list[bool]] = defaultdict(list)
            for _, data in self._in(graph, agent, "attempted_by"):
                runs[data.get("run", "")].append(bool(data.get("metrics", {}).get("success")))
            for run, outcomes in runs.items():
                metrics = {"episodes": len(outcomes), "success": sum(outcomes) / len(outcomes)}
                scores.append(Score(model, agent, run, metrics))
        return scores
