"""The knowledge graph: typed records and ids, validation, atomic writes, concurrent writers, a
kill mid-write, BM25 related problems, solutions and failures, lineage, genealogy, export."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from rank_bm25 import BM25Okapi

import llm_trainer
from llm_trainer.agents.baselines import OracleAgent, RandomAgent
from llm_trainer.algorithms.rollout import EpisodeTask, play_episodes
from llm_trainer.core.digest import tree_digest
from llm_trainer.core.errors import ConfigError, UserError
from llm_trainer.core.knowledge import (
    Agent,
    Attempt,
    Dataset,
    Derivation,
    Evaluation,
    Experiment,
    KnowledgeGraph,
    Model,
    Problem,
    Solution,
    Training,
)
from llm_trainer.core.knowledge.bm25 import BM25Index
from llm_trainer.core.knowledge.export import write_graphml, write_html, write_png
from llm_trainer.core.knowledge.recording import add_episode, failure_mode, model_record
from llm_trainer.core.knowledge.text import bm25_tokens
from llm_trainer.core.trajectory import Trajectory
from llm_trainer.tests.core import knowledge_workers

CALCULATOR = "LLMTrainer/Calculator-v0"


def episode(agent: str, seed: int, env_id: str = CALCULATOR) -> Trajectory:
    """A real episode of the oracle or the random agent."""
    env = llm_trainer.make(env_id)
    policy = OracleAgent(env) if agent == "oracle" else RandomAgent(seed)
    [played] = play_episodes([env], policy, [EpisodeTask(seed)])
    return played.trajectory


def prompts(n: int, env_id: str = CALCULATOR, difficulty: int = 1) -> list[str]:
    env = llm_trainer.make(env_id)
    return [env.reset(seed=s, options={"difficulty": difficulty})[0] for s in range(n)]


# -- records, ids, validation -------------------------------------------------------------------


def test_node_ids_are_stable_and_named_by_content(tmp_path: Path) -> None:
    a = Problem("Compute 2 + 2.", env_id=CALCULATOR, seed=3, difficulty=1)
    b = Problem("other text, same env episode", env_id=CALCULATOR, seed=3, difficulty=1)
    assert a.node_id == b.node_id  # a problem is its env id, seed and difficulty
    assert a.node_id != Problem("Compute 2 + 2.", env_id=CALCULATOR, seed=4, difficulty=1).node_id
    assert a.node_id != Problem("Compute 2 + 2.", env_id=CALCULATOR, seed=3, difficulty=2).node_id
    assert a.node_id.startswith("problem:")
    assert Dataset("0123abcd").node_id == "dataset:0123abcd"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    (model_dir / "weights.bin").write_bytes(b"\x00" * 100)
    assert model_record(model_dir).node_id == f"model:{tree_digest(model_dir)}"
    (model_dir / "weights.bin").write_bytes(b"\x01" * 100)
    assert model_record(model_dir).node_id == f"model:{tree_digest(model_dir)}"
    assert Agent("oracle").node_id != Agent("oracle", fingerprint="abc").node_id
    # the same ids in another process
    code = (
        "from llm_trainer.core.knowledge import Problem;"
        f"print(Problem('x', env_id={CALCULATOR!r}, seed=3, difficulty=1).node_id)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == a.node_id


def test_unknown_kinds_keys_and_bad_values_are_config_errors_naming_them(tmp_path: Path) -> None:
    kg = KnowledgeGraph(tmp_path / "kg.sqlite")
    with pytest.raises(ConfigError, match=r"unknown node kind 'probem' \(did you mean 'problem'"):
        kg.add_node("probem:1", {"statement": "x"})
    with pytest.raises(ConfigError, match=r"problem\.colour: unknown field; allowed: statement"):
        kg.add_node("problem:1", {"statement": "x", "colour": "red"})
    with pytest.raises(ConfigError, match=r"problem\.statement: expected a string"):
        kg.add_node("problem:1", {"statement": 3})
    with pytest.raises(ConfigError, match="problem"):
        kg.add_node("problem:1", {})  # the statement is required
    with pytest.raises(ConfigError, match=r"not '<kind>:<identity>'"):
        kg.add_node("problem", {"statement": "x"})
    with pytest.raises(ConfigError, match=r"evaluated_on\.metrics\.success: nan is not a finite"):
        kg.add_edge(
            "model:a", "evaluated_on", "experiment:b", Evaluation({"success": float("nan")})
        )
    problem = kg.add(Problem("Compute 2 + 2.", env_id=CALCULATOR, seed=0))
    agent = kg.add(Agent("oracle"))
    with pytest.raises(ConfigError, match=r"unknown edge kind 'solves' \(did you mean 'solved_by'"):
        kg.add_edge(problem, "solves", agent)
    with pytest.raises(ConfigError, match=r"attempted_by\.score: unknown field"):
        kg.add_edge(problem, "attempted_by", agent, {"score": 1})
    with pytest.raises(
        ConfigError, match=r"a solved_by edge joins problem -> .*, not agent -> problem"
    ):
        kg.add_edge(agent, "solved_by", problem)
    with pytest.raises(ConfigError, match=r"node agent:missing is not in the graph"):
        kg.add_edge(problem, "attempted_by", "agent:missing")
    with pytest.raises(ConfigError, match="must be a mapping or a Attempt"):
        kg.add_edge(problem, "attempted_by", agent, Training())
    counts = kg.counts()
    assert (counts.nodes["problem"], counts.nodes["agent"]) == (1, 1)
    assert sum(counts.edges.values()) == 0


def test_writing_a_node_again_merges_its_attributes_and_adds_nothing(tmp_path: Path) -> None:
    kg = KnowledgeGraph(tmp_path / "kg.sqlite")
    agent = kg.add(Agent("oracle"))
    problem = kg.add(Problem("Compute 2 + 2.", env_id=CALCULATOR, seed=0, difficulty=1))
    kg.add_edge(problem, "attempted_by", agent, Attempt(reward=1.0), key="run-1")
    version = kg.version
    kg.add(Problem("Compute 2 + 2.", env_id=CALCULATOR, seed=0, difficulty=1))
    kg.add_edge(problem, "attempted_by", agent, Attempt(reward=1.0), key="run-1")
    assert kg.version == version  # nothing changed: no new version
    kg.add_node(problem, {"statement": "Compute 2 + 2.", "domain": "arithmetic"})
    assert kg.node(problem).attrs == {
        "statement": "Compute 2 + 2.",
        "env_id": CALCULATOR,
        "seed": 0,
        "difficulty": 1,
        "domain": "arithmetic",
    }
    kg.add_edge(problem, "attempted_by", agent, Attempt(reward=0.0), key="run-2")
    assert [e.attrs["reward"] for e in kg.edges(problem, "attempted_by")] == [1.0, 0.0]
    assert kg.counts().nodes["problem"] == 1


def test_a_batch_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    kg = KnowledgeGraph(tmp_path / "kg.sqlite")

    def edge_to_a_missing_node() -> None:
        with kg.batch() as batch:
            problem = batch.add(Problem("Compute 1 + 1.", env_id=CALCULATOR, seed=1))
            batch.add_edge(problem, "attempted_by", "agent:nobody")

    def writer_that_fails() -> None:
        with kg.batch() as batch:
            batch.add(Problem("Compute 1 + 1.", env_id=CALCULATOR, seed=1))
            raise RuntimeError("the writer failed before the batch ended")

    with pytest.raises(ConfigError, match="is not in the graph"):
        edge_to_a_missing_node()
    with pytest.raises(RuntimeError):
        writer_that_fails()
    assert sum(kg.counts().nodes.values()) == 0
    with kg.batch() as batch:  # an edge may join nodes of its own batch
        problem = batch.add(Problem("Compute 1 + 1.", env_id=CALCULATOR, seed=1))
        batch.add_edge(problem, "attempted_by", batch.add(Agent("oracle")))
    assert kg.counts().edges["attempted_by"] == 1


# -- concurrency and kills ----------------------------------------------------------------------


def test_two_writer_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "kg.sqlite"
    KnowledgeGraph(path)
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(
            target=knowledge_workers.write_own_and_shared_nodes, args=(str(path), f"w{k}", 150)
        )
        for k in range(2)
    ]
    for writer in writers:
        writer.start()
    reader = KnowledgeGraph(path)
    seen = []
    while any(w.is_alive() for w in writers):  # a reader during the writes sees whole writes
        graph = reader.graph()
        seen.append(graph.number_of_nodes())
        assert graph.number_of_edges() == max(0, graph.number_of_nodes() - 1)
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    counts = reader.counts()
    assert counts.nodes["problem"] == 300
    assert counts.nodes["agent"] == 1
    assert counts.edges["attempted_by"] == 300
    assert reader.graph().number_of_nodes() == 301
    assert sorted(seen) == seen  # the reader's graph only grew


def test_a_kill_mid_write_leaves_the_graph_as_it_was_before_the_write(tmp_path: Path) -> None:
    """The writer is killed inside its fourth batch's transaction (its rows written to the
    WAL, the commit not yet): the graph holds the first three batches, whole."""
    path, marker = tmp_path / "kg.sqlite", tmp_path / "inside-a-write"
    batch_size = 2000
    KnowledgeGraph(path)
    process = multiprocessing.get_context("spawn").Process(
        target=knowledge_workers.write_until_killed, args=(str(path), batch_size, 3, str(marker))
    )
    process.start()
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), "the writer never reached its fourth write"
        assert Path(f"{path}-wal").stat().st_size > 0
    finally:
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        process.join()
    assert process.exitcode == -signal.SIGKILL
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    kg = KnowledgeGraph(path)
    counts = kg.counts()
    assert counts.nodes["problem"] == 3 * batch_size  # the killed write left nothing
    assert counts.edges["attempted_by"] == 3 * batch_size
    graph = kg.graph()
    assert graph.number_of_nodes() == 3 * batch_size + 1
    problems = [n for n, kind in graph.nodes(data="kind") if kind == "problem"]
    assert all(graph.out_degree(n) == 1 for n in problems)
    kg.add(Problem("written after the kill", domain="kill"))  # the file is still writable
    assert kg.counts().nodes["problem"] == 3 * batch_size + 1


# -- queries ------------------------------------------------------------------------------------


def test_bm25_scores_are_rank_bm25s_and_grow_with_the_corpus() -> None:
    corpus = [bm25_tokens(p) for p in prompts(300) + prompts(100, "LLMTrainer/Weather-v0")]
    queries = ["Compute 12 + 7", "temperature in Paris tomorrow", "what is 3 times 4", "zzz"]
    index = BM25Index()
    for size in (50, 400):  # the same index, grown: scores as if built at once
        for doc in corpus[len(index) : size]:
            index.add(doc)
        reference = BM25Okapi(corpus[:size])
        for query in queries:
            words = bm25_tokens(query)
            expected = reference.get_scores(words)
            docs, scores = index.scores(words)
            full = np.zeros(size)
            full[docs] = scores
            np.testing.assert_allclose(full, expected, rtol=1e-12, atol=1e-12)
            shares = [i for i in range(size) if set(words) & set(corpus[i])]
            assert docs.tolist() == shares  # only documents sharing a word are candidates
            top, top_scores = index.top_k(words, 5)
            order = sorted(shares, key=lambda i: (-expected[i], -i))[:5]
            assert top.tolist() == order
            assert top_scores.tolist() == pytest.approx([expected[i] for i in order], rel=1e-12)


def test_related_solved_problems_come_with_their_solutions_and_failures(tmp_path: Path) -> None:
    kg = KnowledgeGraph(tmp_path / "kg.sqlite")
    oracle, randomly = kg.add(Agent("oracle")), kg.add(Agent("random"))
    episodes = {("oracle", s): episode("oracle", s) for s in range(6)} | {
        ("random", s): episode("random", s) for s in range(6)
    }
    episodes[("oracle", 7)] = episode("oracle", 7, "LLMTrainer/Weather-v0")
    for (agent, seed), t in episodes.items():
        with kg.batch() as batch:
            add_episode(
                batch,
                t,
                agent=oracle if agent == "oracle" else randomly,
                run="test",
                attempt=str(seed),
            )
    target = episodes[("oracle", 2)]
    [hit, *_] = kg.related_problems(target.prompt, 3)
    assert hit.problem.attrs["statement"] == target.prompt  # the same task ranks first
    assert hit.problem.attrs["tools"] == ["calculator"]
    [solution] = hit.solutions
    assert "calculator" in solution.attrs["text"]
    assert "<answer>" in solution.attrs["text"]
    assert [a.id for a in kg.parents(solution.id)] == [oracle]  # found by the oracle
    failures = kg.failures(hit.problem.id)  # the random agent failed the same problem
    assert [(mode.id, edge.attrs["agent"]) for mode, edge in failures] == [
        (f"failure_mode:{failure_mode(episodes[('random', 2)])}", randomly)
    ]
    assert {e.target for e in kg.edges(hit.problem.id, "attempted_by")} == {oracle, randomly}
    weather = kg.related_problems(episodes[("oracle", 7)].prompt, 1)[0].problem
    assert weather.attrs["env_id"] == "LLMTrainer/Weather-v0"
    assert kg.related_problems("nothing shares these words", 3) == []
    # an unsolved problem is found only when asked for
    lone = kg.add(Problem("Compute the zorblax of 9.", domain="x"))
    assert lone not in [h.problem.id for h in kg.related_problems("zorblax", 3)]
    assert [h.problem.id for h in kg.related_problems("zorblax", 3, solved=False)] == [lone]


def test_queries_see_what_other_writers_added_since(tmp_path: Path) -> None:
    reader, writer = KnowledgeGraph(tmp_path / "kg.sqlite"), KnowledgeGraph(tmp_path / "kg.sqlite")
    agent = writer.add(Agent("oracle"))
    query = "What is 26 minus 95? Calculate it."  # shares words with seeds 0, 1 and 2
    assert reader.related_problems(query, 3) == []
    for seed in range(3):
        with writer.batch() as batch:
            add_episode(batch, episode("oracle", seed), agent=agent, run="r")
        assert len(reader.related_problems(query, 5)) == seed + 1
    # a statement rewritten by another writer is searched as rewritten
    problem = reader.related_problems(query, 1)[0].problem.id
    writer.add_node(problem, {"statement": "a quite different statement about zebras"})
    assert reader.related_problems("zebras", 1)[0].problem.id == problem


def test_lineage_runs_from_datasets_through_experiments_to_models_and_scores(
    tmp_path: Path,
) -> None:
    kg = KnowledgeGraph(tmp_path / "kg.sqlite")
    with kg.batch() as b:
        e1 = b.add(Experiment("sft", algorithm="sft", run_dir="runs/1"))
        e2 = b.add(Experiment("dpo", algorithm="dpo", run_dir="runs/2"))
        tiny = b.add(Model("t1ny", origin="tiny"))
        d1 = b.add(Dataset("d1", strategy="oracle"))
        d2 = b.add(Dataset("d2", strategy="policy"))
        b.add_edge(d1, "derived_from", e1, Derivation("made in"))
        b.add_edge(d2, "derived_from", e2, Derivation("made in"))
        b.add_edge(d2, "derived_from", d1, Derivation("parent data"))
        m1, m2 = b.add(Model("m1", origin="trained")), b.add(Model("m2", origin="trained"))
        b.add_edge(m1, "derived_from", tiny)
        b.add_edge(m1, "derived_from", e1)
        b.add_edge(m1, "trained_on", d1, Training("sft", 100, e1))
        b.add_edge(m1, "evaluated_on", e1, Evaluation({"success": 0.9}, "after"), key="after")
        b.add_edge(m2, "derived_from", m1)
        b.add_edge(m2, "derived_from", e2)
        b.add_edge(m2, "trained_on", d2)
        b.add_edge(m1, "evaluated_on", e2, Evaluation({"success": 0.9}, "before"), key="before")
        b.add_edge(m2, "evaluated_on", e2, Evaluation({"success": 0.95}, "after"), key="after")
        agent = b.add(Agent("transformers:m2"))
        b.add_edge(agent, "derived_from", m2)
        for seed in range(4):
            p = b.add(Problem(f"task {seed}", env_id=CALCULATOR, seed=seed))
            b.add_edge(p, "attempted_by", agent, Attempt({"success": seed < 3}, run="suite@x"))
    lineage = kg.lineage(m2)
    assert lineage.model.id == m2
    assert [m.id for m in lineage.ancestors] == [m1, tiny]
    assert [e.id for e in lineage.experiments] == [e2, e1]
    assert [d.id for d in lineage.datasets] == [d2, d1]
    assert {(s.model, s.target, s.run, s.metrics["success"]) for s in lineage.scores} == {
        (m2, e2, "after", 0.95),
        (m2, agent, "suite@x", 0.75),
        (m1, e1, "after", 0.9),
        (m1, e2, "before", 0.9),
    }
    # genealogy hooks
    assert [n.id for n in kg.parents(m2)] == [m1, e2]
    assert [n.id for n in kg.parents(m2, "trained_on")] == [d2]
    assert [n.id for n in kg.children(m1)] == [m2]
    assert [(n.id, depth) for n, depth in kg.ancestors(d2)] == [(e2, 1), (d1, 1), (e1, 2)]
    assert [n.id for n, _ in kg.ancestors(m2, max_depth=1)] == [m1, e2]
    with pytest.raises(UserError, match="no model"):
        kg.lineage(d1)


# -- files --------------------------------------------------------------------------------------


def test_graphml_holds_the_whole_graph_and_pictures_a_neighbourhood(tmp_path: Path) -> None:
    kg = KnowledgeGraph(tmp_path / "kg.sqlite")
    agent = kg.add(Agent("oracle", name="the oracle"))
    for seed in range(5):
        with kg.batch() as batch:
            add_episode(batch, episode("oracle", seed), agent=agent, run="r", seconds=0.5)
    graph = kg.graph()
    written = write_graphml(graph, tmp_path / "kg.graphml")
    back = nx.read_graphml(written, force_multigraph=True)
    assert set(back.nodes) == set(graph.nodes)
    assert back.number_of_edges() == graph.number_of_edges()
    problem = next(n for n, kind in graph.nodes(data="kind") if kind == "problem")
    assert back.nodes[problem]["statement"] == graph.nodes[problem]["statement"]
    assert back.nodes[problem]["tools"] == '["calculator"]'  # lists as JSON text
    page = write_html(graph, tmp_path / "kg.html", "oracle").read_text()
    assert page.count('<g class="node">') == graph.number_of_nodes()
    assert page.count('<g class="edge">') == graph.number_of_edges()
    assert "<script" not in page
    assert "http://" not in page.replace("http://www.w3.org", "")  # the SVG namespace only
    png = write_png(graph, tmp_path / "kg.png", "oracle")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert oct(png.stat().st_mode & 0o777) == "0o644"


def test_importing_the_package_and_writing_does_not_import_networkx(tmp_path: Path) -> None:
    code = f"""
import sys
import llm_trainer
from llm_trainer.core.knowledge import Agent, KnowledgeGraph, Problem
kg = KnowledgeGraph({str(tmp_path / "kg.sqlite")!r})
kg.add_edge(kg.add(Problem("x", domain="d")), "attempted_by", kg.add(Agent("oracle")))
assert "networkx" not in sys.modules, "networkx imported"
kg.related_problems("x")
assert "networkx" in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_file_that_is_no_graph_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(UserError, match="not a knowledge graph file"):
        KnowledgeGraph(bad)
    with pytest.raises(UserError, match="is a directory"):
        KnowledgeGraph(tmp_path)
    kg = KnowledgeGraph(tmp_path / "kg.sqlite")
    with pytest.raises(UserError, match="no node 'problem:nope'"):
        kg.node("problem:nope")
    with pytest.raises(UserError, match="no node"):
        kg.solutions("problem:nope")
    kg.add(Solution("text", problem="p"))
    assert kg.find("solution:") == Solution("text", problem="p").node_id
