"""Writer processes of the knowledge-graph tests (spawned children import them by name, as
``llm_trainer.tests.core.knowledge_workers``)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from llm_trainer.core.knowledge import Agent, Attempt, Batch, KnowledgeGraph, Problem


def write_own_and_shared_nodes(path: str, name: str, n: int) -> None:
    """One writer process: ``n`` single writes of its own nodes and edges, each also touching
    the nodes every writer shares."""
    kg = KnowledgeGraph(path)
    shared = kg.add(Agent("shared agent"))
    for i in range(n):
        with kg.batch() as batch:
            problem = batch.add(Problem(f"{name} task {i}", domain=name))
            batch.add(Agent("shared agent", name=f"last written by {name}"))
            batch.add_edge(problem, "attempted_by", shared, Attempt(run=name), key=name)


class PausingGraph(KnowledgeGraph):
    """A graph whose writes after the first ``committed`` stop inside their transaction (rows
    written, no commit yet), announce it in ``marker`` and wait there to be killed."""

    def __init__(self, path: str, committed: int, marker: str) -> None:
        super().__init__(path)
        self.committed, self.marker, self.writes = committed, Path(marker), 0

    def _write(self, db: sqlite3.Connection, batch: Batch) -> None:
        super()._write(db, batch)
        self.writes += 1
        if self.writes > self.committed:
            self.marker.write_text("inside a write transaction")
            time.sleep(600)


def write_until_killed(path: str, batch_size: int, committed: int, marker: str) -> None:
    """Write batches of ``batch_size`` problems, each with an edge to one agent: ``committed``
    of them, then one that is killed before its commit."""
    kg = PausingGraph(path, committed + 1, marker)  # the agent's write is the first
    agent = kg.add(Agent("writer"))
    i = 0
    while True:
        with kg.batch() as batch:
            for _ in range(batch_size):
                problem = batch.add(Problem(f"task {i} " + "words " * 30, domain="kill"))
                batch.add_edge(problem, "attempted_by", agent, Attempt(reward=float(i)))
                i += 1
