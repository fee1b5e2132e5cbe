"""ProblemDecomposer: sub-problem lists as validated networkx DAGs and back, topological order,
and the rules a decomposition must follow (checked against networkx's own answers)."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
from typing import Any

import networkx as nx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_trainer.envs.problems import ProblemEnv, ProblemSpec, SubProblem
from llm_trainer.envs.problems.decompose import (
    MAX_SUBPROBLEMS,
    DecompositionError,
    MultiStepConfig,
    MultiStepFamily,
    ProblemDecomposer,
    ScriptedDecomposer,
    from_graph,
    to_graph,
    topological_order,
)
from tests.envs.problems.decompose_helpers import dags
from tests.envs.problems.helpers import draw


def _respects_dependencies(order: tuple[SubProblem, ...] | list[SubProblem]) -> bool:
    seen: set[str] = set()
    for node in order:
        if not set(node.depends_on) <= seen:
            return False
        seen.add(node.id)
    return True


@given(nodes=dags())
def test_random_dags_round_trip_through_the_validator(nodes: list[SubProblem]) -> None:
    graph = to_graph(nodes)
    assert nx.is_directed_acyclic_graph(graph)
    assert list(graph) == [n.id for n in nodes]
    assert set(graph.edges) == {(d, n.id) for n in nodes for d in n.depends_on}
    assert all(graph.nodes[n.id]["statement"] == n.statement for n in nodes)
    assert from_graph(graph) == tuple(nodes)  # already topological: unchanged
    assert topological_order(nodes) == tuple(nodes)


@given(nodes=dags(), seed=st.integers(0, 2**32 - 1))
def test_topological_order_respects_dependencies_whatever_the_listing(
    nodes: list[SubProblem], seed: int
) -> None:
    shuffled = list(nodes)
    random.Random(seed).shuffle(shuffled)
    order = topological_order(shuffled)
    assert sorted(order) == sorted(nodes)
    assert _respects_dependencies(order)
    # ties are broken by the listing: the first node listed among those ready comes first
    position = {n.id: i for i, n in enumerate(shuffled)}
    done: set[str] = set()
    for node in order:
        ready = [n for n in shuffled if n.id not in done and set(n.depends_on) <= done]
        assert node == min(ready, key=lambda n: position[n.id])
        done.add(node.id)


@st.composite
def digraphs(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str]]]:
    """Any directed graph on 1-8 nodes (self-loops included), as nodes and edges."""
    n = draw(st.integers(1, 8))
    names = [f"n{i}" for i in range(n)]
    pairs = st.tuples(st.sampled_from(names), st.sampled_from(names))
    return names, draw(st.lists(pairs, unique=True, max_size=16))


@given(graph=digraphs())
def test_the_validator_accepts_exactly_the_graphs_networkx_finds_acyclic(
    graph: tuple[list[str], list[tuple[str, str]]],
) -> None:
    names, edges = graph
    nodes = [SubProblem(n, f"what is {n}?", tuple(a for a, b in edges if b == n)) for n in names]
    reference: nx.DiGraph[str] = nx.DiGraph(edges)
    reference.add_nodes_from(names)
    if nx.is_directed_acyclic_graph(reference):
        assert _respects_dependencies(topological_order(nodes))
    else:
        with pytest.raises(DecompositionError, match=r"^the plan has a cycle: ") as caught:
            to_graph(nodes)
        # the cycle named is one of the graph's: consecutive ids are edges, and it closes
        path = str(caught.value).removeprefix("the plan has a cycle: ").split(" -> ")
        assert path[0] == path[-1]
        assert all(reference.has_edge(a, b) for a, b in itertools.pairwise(path))


@given(nodes=dags(), data=st.data())
def test_random_graphs_with_a_cycle_are_rejected(nodes: list[SubProblem], data: Any) -> None:
    graph = to_graph(nodes)
    i = data.draw(st.integers(0, len(nodes) - 1), label="node")
    # make nodes[i] depend on itself or on one of its descendants: a cycle through nodes[i]
    below = sorted(nx.descendants(graph, nodes[i].id) | {nodes[i].id})
    target = data.draw(st.sampled_from(below), label="dependency")
    nodes[i] = nodes[i]._replace(depends_on=(*nodes[i].depends_on, target))
    with pytest.raises(DecompositionError, match="cycle") as caught:
        to_graph(data.draw(st.permutations(nodes), label="listing"))
    assert "\n" not in str(caught.value)


A, B = SubProblem("a", "x"), SubProblem("b", "y")
ID_RULE = "sub-problem 1: 'id' must be 1-32 letters, digits, '_', '-' or '.', got"
BAD: list[tuple[list[Any], str]] = [
    ([SubProblem("a", "x", ("b",))], "sub-problem 'a' depends on unknown 'b'"),
    ([A, B._replace(depends_on=("c",))], "sub-problem 'b' depends on unknown 'c'"),
    ([A, A], "duplicate sub-problem id 'a'"),
    ([A, B._replace(depends_on=("a", "a"))], "sub-problem 'b' depends on 'a' twice"),
    ([A._replace(depends_on=("a",))], "the plan has a cycle: a -> a"),
    ([], "a plan needs at least one sub-problem"),
    ([SubProblem("", "x")], f"{ID_RULE} ''"),
    ([SubProblem("a b", "x")], f"{ID_RULE} 'a b'"),
    ([SubProblem("x" * 33, "x")], f"{ID_RULE} 'xxxxxxxxx"),
    ([SubProblem("s\n1", "x")], f"{ID_RULE} 's\\n1'"),
    ([SubProblem("a", " \n ")], "sub-problem 'a': 'statement' must be a non-empty string"),
    ([SubProblem("a", "x" * 501)], "sub-problem 'a': 'statement' is longer than 500 characters"),
    ([SubProblem("a", "x", ["b"])], "sub-problem 'a': 'depends_on' must be a list of"),
    ([SubProblem(1, "x")], f"{ID_RULE} 1"),
    ([("a", "x", ())], "sub-problem 1 is not a SubProblem"),
]


@pytest.mark.parametrize(("nodes", "reason"), BAD)
def test_malformed_decompositions_are_rejected_with_a_one_line_reason(
    nodes: list[Any], reason: str
) -> None:
    with pytest.raises(DecompositionError) as caught:
        to_graph(nodes)
    assert str(caught.value).startswith(reason)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_decomposition_larger_than_the_bound_is_rejected_before_it_is_read() -> None:
    nodes = [SubProblem(f"s{i}", "x") for i in range(MAX_SUBPROBLEMS)]
    assert len(to_graph(nodes)) == MAX_SUBPROBLEMS
    with pytest.raises(DecompositionError, match=r"^a plan has at most 12 sub-problems$"):
        to_graph([*nodes, SubProblem("last", "x")])
    with pytest.raises(DecompositionError, match="at most 3 sub-problems"):
        to_graph(nodes, max_subproblems=3)

    def endless() -> Any:
        while True:
            yield SubProblem("s", "x")

    with pytest.raises(DecompositionError, match="at most 12"):
        to_graph(endless())


def test_from_graph_reads_graphs_built_with_networkx() -> None:
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_node("total", statement="Ava's total?")
    graph.add_node("pens", statement="Ava's pens?")
    graph.add_node("books", statement="Ava's books?")
    graph.add_edges_from([("pens", "total"), ("books", "total")])
    assert from_graph(graph) == (
        SubProblem("pens", "Ava's pens?"),
        SubProblem("books", "Ava's books?"),
        SubProblem("total", "Ava's total?", ("pens", "books")),
    )
    graph.add_node("orphan")
    with pytest.raises(DecompositionError, match=r"^node 'orphan' has no 'statement' string$"):
        from_graph(graph)
    graph.remove_node("orphan")
    graph.add_edge("total", "pens")
    with pytest.raises(DecompositionError, match="cycle: "):
        from_graph(graph)


def _spec(seed: int, difficulty: int) -> ProblemSpec:
    rng = np.random.default_rng(seed)
    return MultiStepFamily(MultiStepConfig()).generate(rng, difficulty)


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_the_scripted_decomposer_plans_every_multistep_spec(difficulty: int) -> None:
    decomposer = ScriptedDecomposer()
    for seed in range(200):
        spec = _spec(seed, difficulty)
        plan = decomposer.plan(spec)
        assert plan == spec.subproblems  # the family lists its DAG in a topological order
        graph = decomposer.graph(spec)
        assert nx.is_directed_acyclic_graph(graph)
        assert list(nx.topological_sort(graph))[-1] == plan[-1].id  # the question comes last
        assert [n for n in graph if graph.out_degree(n) == 0] == [plan[-1].id]


def test_the_scripted_decomposer_reads_any_family_with_a_decomposition() -> None:
    spec = draw("reasoning", 3, 2, config={"kinds": ["arithmetic"]})
    chain = ScriptedDecomposer().plan(spec)
    assert [n.depends_on for n in chain] == [(), ("s1",), ("s2",)]
    no_dag = draw("knapsack", 0, 1)
    with pytest.raises(DecompositionError, match="optimization/knapsack problem carries no"):
        ScriptedDecomposer().plan(no_dag)
    with pytest.raises(DecompositionError, match="at most 2 sub-problems"):
        ScriptedDecomposer(max_subproblems=2).plan(spec)


def test_a_decomposer_is_one_method_and_a_bound() -> None:
    class Halves(ProblemDecomposer):
        def decompose(self, spec: ProblemSpec) -> tuple[SubProblem, ...]:
            return (SubProblem("b", "second", ("a",)), SubProblem("a", "first"))

    spec = ProblemEnv("reasoning").family.generate(np.random.default_rng(0), 1)
    assert [n.id for n in Halves().plan(spec)] == ["a", "b"]
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_subproblems must be >= 1"):
            Halves(max_subproblems=bad)
    with pytest.raises(TypeError, match="max_subproblems must be an int"):
        Halves(max_subproblems=True)
    with pytest.raises(TypeError):
        ProblemDecomposer()  # type: ignore[abstract]


def test_importing_and_answering_directly_does_not_import_networkx() -> None:
    code = """
import sys
import llm_trainer
from llm_trainer.agents import OracleAgent
env = llm_trainer.make("LLMTrainer/Decompose-v0")
env.reset(seed=0)
env.step("<answer>1</answer>")
assert "networkx" not in sys.modules, "networkx imported"
env.reset(seed=0)
env.step('<plan>[{"id": "s1", "statement": "x"}]</plan>')
assert "networkx" in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True)
