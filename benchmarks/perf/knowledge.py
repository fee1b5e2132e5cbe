"""The knowledge graph at 10^5 nodes: write rates (batched and single), query rates (related
problems, lineage), load time and file size (``scripts/bench_knowledge.py``).

The graph is shaped like one that benchmarks and experiments filled: problems whose statements
are real env tasks (the four tool-use envs, difficulties 1-3), most of them solved (a solution
node each), attempts by several agents, failures; chains of models fine-tuned from each other,
each trained on datasets and evaluated in experiments, and agents built on them.
"""

from __future__ import annotations

import os
import resource
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from llm_trainer.core.knowledge import (
    Agent,
    Attempt,
    Batch,
    Dataset,
    Derivation,
    Evaluation,
    Experiment,
    Failure,
    FailureMode,
    KnowledgeGraph,
    Model,
    Problem,
    Solution,
    Tool,
    Training,
)
from llm_trainer.core.knowledge.recording import FAILURE_MODES

ENVS = (
    ("LLMTrainer/Calculator-v0", ("calculator",)),
    ("LLMTrainer/Weather-v0", ("weather",)),
    ("LLMTrainer/Search-v0", ("search",)),
    ("LLMTrainer/MultiTool-v0", ("calculator", "weather", "search")),
)


def task_statements(n: int, first_seed: int = 0) -> Iterator[tuple[str, int, int, str]]:
    """``(env id, seed, difficulty, statement)`` of ``n`` real tasks, cycling over the envs and
    difficulties."""
    from llm_trainer.envs.registration import make

    envs = [make(env_id) for env_id, _ in ENVS]
    for i in range(n):
        which, difficulty, seed = i % len(ENVS), 1 + (i // len(ENVS)) % 3, first_seed + i
        statement, _ = envs[which].reset(seed=seed, options={"difficulty": difficulty})
        yield ENVS[which][0], seed, difficulty, statement


def _elements(
    problems: int, agents: int, models: int, seed: int = 0
) -> Iterator[tuple[str, Any, Any]]:
    """The graph as a stream of ``("node", record, None)`` and ``("edge", (source, kind,
    target, key), attrs)`` items, every edge after its endpoints."""
    rng = np.random.default_rng(seed)
    for name in ("calculator", "weather", "search"):
        yield "node", Tool(name, f"the {name} tool"), None
    for mode, text in FAILURE_MODES.items():
        yield "node", FailureMode(mode, text), None
    # models in chains of five: tiny -> fine-tuned -> ..., each made by an experiment on a dataset
    model_ids: list[str] = []
    agent_ids: list[str] = []
    for m in range(models):
        experiment = Experiment(f"run-{m}", algorithm="sft", seed=m, run_dir=f"runs/{m}")
        dataset = Dataset(f"d{m:07d}", name=f"run-{m}-train", size=4000, strategy="oracle")
        model = Model(f"m{m:015d}", path=f"runs/{m}/final_model", origin="trained")
        yield "node", experiment, None
        yield "node", dataset, None
        yield "node", model, None
        yield (
            "edge",
            (dataset.node_id, "derived_from", experiment.node_id, ""),
            Derivation("made in"),
        )
        if m % 5:
            previous = model_ids[-1]
            yield "edge", (model.node_id, "derived_from", previous, ""), Derivation("fine-tuned")
            yield "edge", (dataset.node_id, "derived_from", f"dataset:d{m - 1:07d}", ""), None
        yield "edge", (model.node_id, "derived_from", experiment.node_id, ""), None
        yield "edge", (model.node_id, "trained_on", dataset.node_id, ""), Training("sft", 500)
        scores = Evaluation({"success": float(rng.random())}, "after", "LLMTrainer/Calculator-v0")
        yield "edge", (model.node_id, "evaluated_on", experiment.node_id, "after"), scores
        model_ids.append(model.node_id)
    for a in range(agents):
        agent = Agent(f"transformers:runs/{a}/final_model", name=f"agent-{a}")
        yield "node", agent, None
        if a < models:
            yield "edge", (agent.node_id, "derived_from", model_ids[a], ""), None
        agent_ids.append(agent.node_id)
    for env_id, seed, difficulty, statement in task_statements(problems):
        tools = dict(ENVS)[env_id]
        problem = Problem(statement, env_id=env_id, seed=seed, difficulty=difficulty, tools=tools)
        yield "node", problem, None
        for tool in tools:
            yield "edge", (problem.node_id, "uses", f"tool:{tool}", ""), None
        attempts = [agent_ids[int(i)] for i in rng.choice(len(agent_ids), 2, replace=False)]
        solved = rng.random() < 0.9
        for agent_id in attempts:
            run = "tooluse-v0@bench"
            outcome = Attempt({"success": solved}, reward=float(solved), turns=2, run=run)
            yield "edge", (problem.node_id, "attempted_by", agent_id, run), outcome
        if solved:
            solution = Solution(
                f'<tool_call>{{"name": "{tools[0]}", "arguments": {{"q": "{seed}"}}}}'
                f"</tool_call> -> {seed % 997} -> <answer>{seed % 997}</answer>",
                problem=problem.node_id,
                reward=1.0,
                turns=2,
            )
            yield "node", solution, None
            yield "edge", (problem.node_id, "solved_by", solution.node_id, "run"), None
            yield "edge", (problem.node_id, "solved_by", attempts[0], "run"), None
            yield "edge", (solution.node_id, "derived_from", attempts[0], ""), None
        else:
            failure = Failure(agent=attempts[0], run="run", metrics={"success": False})
            edge = (problem.node_id, "fails_with", "failure_mode:wrong_answer", attempts[0])
            yield "edge", edge, failure


def _add(batch: Batch, item: tuple[str, Any, Any]) -> None:
    what, record, attrs = item
    if what == "node":
        batch.add(record)
    else:
        source, kind, target, key = record
        batch.add_edge(source, kind, target, attrs, key=key)


def run_all(path: Path, *, nodes: int = 100_000, batch_size: int = 1000) -> dict[str, Any]:
    """Build a graph of about ``nodes`` nodes in ``path`` (removed first) and measure it."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    models = nodes // 100
    agents = nodes // 50
    problems = (nodes - 3 * models - agents - 9) * 10 // 19  # about 0.9 solutions per problem
    t0 = time.perf_counter()
    items = list(_elements(problems, agents, models))
    prepare_s = time.perf_counter() - t0
    kg = KnowledgeGraph(path)
    t0 = time.perf_counter()
    for start in range(0, len(items), batch_size):
        batch = Batch()
        for item in items[start : start + batch_size]:
            _add(batch, item)
        kg.write(batch)
    batched_s = time.perf_counter() - t0
    counts = kg.counts()
    total_nodes, total_edges = sum(counts.nodes.values()), sum(counts.edges.values())

    # single writes into the full graph: one node or one edge per transaction
    singles = 1000
    extra = list(task_statements(singles // 2, first_seed=10_000_000))
    agent = Agent("transformers:runs/0/final_model", name="agent-0").node_id
    t0 = time.perf_counter()
    for env_id, seed, difficulty, statement in extra:
        problem = kg.add(Problem(statement, env_id=env_id, seed=seed, difficulty=difficulty))
        kg.add_edge(problem, "attempted_by", agent, Attempt({"success": True}), key="single")
    single_s = time.perf_counter() - t0

    # queries: a fresh reader (the load is timed), then related problems and lineage
    reader = KnowledgeGraph(path)
    t0 = time.perf_counter()
    reader.graph()
    load_s = time.perf_counter() - t0
    queries = [s for *_, s in task_statements(500, first_seed=20_000_000)]
    reader.related_problems(queries[0], 3)  # builds nothing more: the index came with the load
    t0 = time.perf_counter()
    found = [len(reader.related_problems(q, 3)) for q in queries]
    related_s = time.perf_counter() - t0
    model_ids = [f"model:m{m:015d}" for m in range(models)]
    lineages = [model_ids[i % models] for i in range(1000)]  # 0 to 4 ancestors each
    t0 = time.perf_counter()
    depth = [len(reader.lineage(m).ancestors) for m in lineages]
    lineage_s = time.perf_counter() - t0

    kg.close()
    reader.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(path)
    return {
        "nodes": total_nodes,
        "edges": total_edges,
        "nodes_by_kind": dict(counts.nodes),
        "edges_by_kind": dict(counts.edges),
        "prepare_s": round(prepare_s, 2),
        "batched": {
            "batch_size": batch_size,
            "seconds": round(batched_s, 2),
            "elements_per_s": round((total_nodes + total_edges) / batched_s),
        },
        "single": {
            "writes": singles,
            "seconds": round(single_s, 3),
            "elements_per_s": round(singles / single_s),
        },
        "load_s": round(load_s, 2),
        "related_problems": {
            "queries": len(queries),
            "per_s": round(len(queries) / related_s, 1),
            "mean_hits": float(np.mean(found)),
        },
        "lineage": {
            "queries": len(lineages),
            "per_s": round(len(lineages) / lineage_s, 1),
            "mean_ancestors": float(np.mean(depth)),
        },
        "file_bytes": size,
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
