"""The writers of the knowledge graph: benchmark runs (from their worker processes, two runs at
once) and experiments (lineage, dataset parents in the trajectory store); and ``llm-trainer
kg``."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_trainer.agents.tinylm import TinyLMConfig
from llm_trainer.algorithms.base import Algorithm, AlgorithmContext, AlgorithmResult
from llm_trainer.algorithms.config import DataConfig, EvalConfig, ExperimentConfig, ModelConfig
from llm_trainer.algorithms.experiment import run_experiment
from llm_trainer.benchmarks.results import load_result
from llm_trainer.benchmarks.runner import BenchConfig, run_bench
from llm_trainer.cli import app
from llm_trainer.core.digest import tree_digest
from llm_trainer.core.knowledge import KnowledgeGraph, Problem
from llm_trainer.core.knowledge.export import MAX_PICTURE_NODES
from llm_trainer.core.store import TrajectoryStore

ROOT = Path(__file__).resolve().parents[2]
SMOKE = "tooluse-smoke-v0"
HALF_ORACLE = "python:llm_trainer.tests.benchmarks.policies:half_oracle"
CALCULATOR = "LLMTrainer/Calculator-v0"


@pytest.fixture(scope="module")
def bench_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One graph written by two benchmark runs at once: the oracle from a CLI process and the
    half-oracle in this one, each with two worker processes."""
    out = tmp_path_factory.mktemp("bench")
    graph = out / "kg.sqlite"
    oracle = subprocess.Popen(
        [sys.executable, "-m", "llm_trainer.cli", "bench", "--suite", SMOKE, "--agent", "oracle",
         "--out", str(out / "oracle.json"), "--workers", "2", "--no-progress",
         "--knowledge", str(graph)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    run_bench(
        BenchConfig(SMOKE, HALF_ORACLE, out=out / "half.json", workers=2, knowledge_path=graph)
    )
    _, stderr = oracle.communicate(timeout=300)
    assert oracle.returncode == 0, stderr.decode()
    return graph


def test_benchmark_runs_record_agents_problems_solutions_and_failures(bench_graph: Path) -> None:
    kg = KnowledgeGraph(bench_graph)
    half = load_result(bench_graph.parent / "half.json")
    oracle = load_result(bench_graph.parent / "oracle.json")
    counts = kg.counts()
    assert counts.nodes["agent"] == 2
    assert counts.nodes["problem"] == 72  # both agents met the same 72 tasks
    assert counts.edges["attempted_by"] == 144
    half_wins = sum(e.metrics["success"] for e in half.episodes)
    assert 0 < half_wins < 72
    assert all(e.metrics["success"] for e in oracle.episodes)
    assert counts.edges["fails_with"] == 72 - half_wins
    assert counts.nodes["solution"] == 72  # the half-oracle's wins are the oracle's solutions
    assert counts.nodes["tool"] == 3
    graph = kg.graph()
    agents = {d["spec"]: n for n, d in graph.nodes(data=True) if d["kind"] == "agent"}
    assert set(agents) == {"oracle", HALF_ORACLE}
    assert graph.nodes[agents[HALF_ORACLE]]["fingerprint"] == half.agent_fingerprint
    solved = {
        s for s, t, k in graph.edges(data="kind") if k == "solved_by" and t in agents.values()
    }
    assert len(solved) == 72
    for record in half.episodes:  # every attempt carries its episode's metrics
        problem = next(
            n
            for n, d in graph.nodes(data=True)
            if d["kind"] == "problem"
            and (d["env_id"], d["seed"], d["difficulty"])
            == (record.env_id, record.env_seed, record.difficulty)
        )
        [attempt] = [
            e for e in kg.edges(problem, "attempted_by") if e.target == agents[HALF_ORACLE]
        ]
        assert attempt.attrs["metrics"] == dict(record.metrics)
        assert attempt.attrs["turns"] == record.turns
        failures = [e for _, e in kg.failures(problem) if e.attrs["agent"] == attempt.target]
        assert len(failures) == (not record.metrics["success"])


def test_playing_a_benchmark_again_adds_nothing(bench_graph: Path, tmp_path: Path) -> None:
    graph = tmp_path / "kg.sqlite"
    config = BenchConfig(SMOKE, "oracle", out=tmp_path / "o.json", workers=1, knowledge_path=graph)
    run_bench(config)
    first = KnowledgeGraph(graph).counts()
    run_bench(
        BenchConfig(
            SMOKE, "oracle", out=tmp_path / "o.json", workers=1, knowledge_path=graph, fresh=True
        )
    )
    assert KnowledgeGraph(graph).counts() == first


# -- experiments --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnowledgeProbeConfig:
    rollouts: int = 2
    """Episodes the policy plays and the run stores."""


class KnowledgeProbe(Algorithm):
    """Stores the oracle data and the policy's own rollouts, and nudges the model's weights (a
    stand-in for training: the trained model is another model)."""

    name = "knowledge_probe"
    config_class = KnowledgeProbeConfig
    sections = ("data",)

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        import torch

        model, tokenizer = context.load_model()
        _, demonstrations = context.training_data()
        agent = context.agent(model, tokenizer, max_new_tokens=4)
        seeds = range(self.config.rollouts)
        rollouts = context.collect(agent, CALCULATOR, seeds, source="policy:probe")
        context.store_dataset("rollouts", rollouts)
        with torch.no_grad():
            next(model.parameters()).add_(1e-3)
        return AlgorithmResult(model=model, tokenizer=tokenizer, dataset_version=demonstrations)


def probe_experiment(tmp_path: Path, name: str, model: str, first_seed: int) -> ExperimentConfig:
    return ExperimentConfig(
        name=name,
        algorithm=f"{Path(__file__)}:KnowledgeProbe",
        model=ModelConfig(
            path=model,
            tiny=TinyLMConfig(n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64),
        ),
        data=DataConfig(episodes=6, first_seed=first_seed),
        eval=EvalConfig(episodes=2, episodes_before=2, max_new_tokens=4),
        output_dir=str(tmp_path / "runs"),
        knowledge_path=str(tmp_path / "kg.sqlite"),
    )


def test_experiments_record_their_lineage_and_the_parents_of_their_data(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    first = run_experiment(probe_experiment(tmp_path, "first", "tiny", 0), log=lambda _: None)
    second = run_experiment(
        probe_experiment(tmp_path, "second", first["model_dir"], 100), log=lambda _: None
    )
    kg = KnowledgeGraph(tmp_path / "kg.sqlite")
    run1, run2 = Path(first["run_dir"]), Path(second["run_dir"])
    store1, store2 = (
        TrajectoryStore(run1 / "trajectories.db"),
        TrajectoryStore(run2 / "trajectories.db"),
    )
    [train1, rollouts1] = store1.datasets()
    [train2, rollouts2] = store2.datasets()
    # the trajectory store: who acted, and the parents of data a model made
    assert (train1.provenance.agent, train1.provenance.parents) == ("oracle", ())
    assert rollouts1.provenance.agent == "policy:probe from tiny"
    assert rollouts1.provenance.parents == (train1.id,)  # the data stored before in the run
    assert rollouts2.provenance.agent == f"policy:probe from {first['model_dir']}"
    # read from the graph: the starting model (the first run's) learnt from train1
    assert rollouts2.provenance.parents == (train1.id, train2.id)
    # the graph: experiments, models, datasets, scores
    init1 = f"model:{tree_digest(run1 / 'init_model')}"
    final1 = f"model:{tree_digest(run1 / 'final_model')}"
    final2 = f"model:{tree_digest(run2 / 'final_model')}"
    lineage = kg.lineage(final2)
    assert [m.id for m in lineage.ancestors] == [final1, init1]
    assert [e.attrs["name"] for e in lineage.experiments] == ["second", "first"]
    assert [e.attrs["status"] for e in lineage.experiments] == ["finished", "finished"]
    assert lineage.experiments[0].attrs["summary"]["success_after"] == second["success_after"]
    assert [d.attrs["version"] for d in lineage.datasets] == [train2.id, train1.id]
    exp1, exp2 = lineage.experiments[1].id, lineage.experiments[0].id
    scores = {(s.model, s.target, s.run): dict(s.metrics) for s in lineage.scores}
    assert scores == {
        (final2, exp2, "after"): second["after"],
        (final1, exp2, "before"): second["before"],
        (final1, exp1, "after"): first["after"],
        (init1, exp1, "before"): first["before"],
    }
    assert kg.node(init1).attrs["origin"] == "tiny"
    assert kg.node(final2).attrs == {
        "digest": final2.removeprefix("model:"),
        "path": second["model_dir"],
        "origin": "trained",
    }
    rollouts = kg.node(f"dataset:{rollouts2.id}")
    assert rollouts.attrs["agent"] == rollouts2.provenance.agent
    assert rollouts.attrs["store"] == str((run2 / "trajectories.db").resolve())
    assert [p.id for p in kg.parents(rollouts.id)] == [
        exp2,
        f"dataset:{train1.id}",
        f"dataset:{train2.id}",
    ]
    assert [e.attrs["algorithm"] for e in kg.edges(final2, "trained_on")] == ["knowledge_probe"]


def test_without_a_knowledge_path_nothing_is_recorded(tmp_path: Path) -> None:
    from llm_trainer.core.rundir import RunDir

    config = probe_experiment(tmp_path, "off", "tiny", 0)
    config = ExperimentConfig(**{**config.__dict__, "knowledge_path": None})
    context = AlgorithmContext(config, RunDir(tmp_path / "run"))
    assert context.knowledge is None
    assert context.starting_model_id() is None
    assert not (tmp_path / "kg.sqlite").exists()


# -- the command line ---------------------------------------------------------------------------

runner = CliRunner()


def kg(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["kg", *args])
    return result.exit_code, result.output


def test_kg_stats_query_and_export(bench_graph: Path, tmp_path: Path) -> None:
    path = str(bench_graph)
    code, out = kg("--path", path, "stats", "--json")
    assert code == 0, out
    counts = json.loads(out.strip().splitlines()[-1])
    assert counts["nodes"]["problem"] == 72
    assert counts["edges"]["attempted_by"] == 144
    statement = KnowledgeGraph(bench_graph).related_problems("calculate what is", 1)[0]
    code, out = kg(
        "--path", path, "query", statement.problem.attrs["statement"], "-k", "2", "--json"
    )
    assert code == 0, out
    found = json.loads(out.strip().splitlines()[-1])["problems"]
    assert found[0]["id"] == statement.problem.id
    assert found[0]["solutions"]
    graphml = tmp_path / "all.graphml"
    code, out = kg("--path", path, "export", "--format", "graphml", "--out", str(graphml))
    assert code == 0, out
    assert graphml.read_text().count("<node ") == sum(counts["nodes"].values())
    for fmt in ("html", "png"):
        picture = tmp_path / f"tool.{fmt}"
        code, out = kg(
            "--path", path, "export", "--format", fmt, "--around", "tool:calc",
            "--depth", "1", "--out", str(picture), "--json",
        )  # fmt: skip
        assert code == 0, out
        written = json.loads(out.strip().splitlines()[-1])
        assert written["file"] == str(picture)
        assert 1 < written["nodes"] < 72  # the calculator and its problems, not the weather
        assert picture.stat().st_size > 1000


def test_kg_errors_are_one_line_with_exit_code_2(bench_graph: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "none.sqlite")
    big = KnowledgeGraph(tmp_path / "big.sqlite")
    with big.batch() as batch:
        for i in range(MAX_PICTURE_NODES + 1):
            batch.add(Problem(f"task {i}", domain="big"))
    cases = [
        (["--path", missing, "stats"], "no knowledge graph at"),
        (["--path", str(bench_graph), "export", "--format", "svg"], "'svg' is not one of"),
        (["--path", str(big.path), "export", "--format", "png"], "is unreadable"),
        (["--path", str(bench_graph), "export", "--around", "model:nope"], "no node 'model:nope'"),
        (["--path", str(bench_graph), "export", "--around", "problem:"], "names several nodes"),
    ]
    for args, message in cases:
        code, out = kg(*args)
        assert code == 2, (args, out)
        assert message in out
        assert "Traceback" not in out
    assert not Path(missing).exists()  # reading never creates a graph
