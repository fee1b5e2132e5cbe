"""Sub-problems as a directed acyclic graph: :class:`ProblemDecomposer` checks a decomposition,
turns it into a ``networkx.DiGraph`` and back, and orders it topologically.

A decomposition is the plain data of :class:`~llm_trainer.envs.problems.spec.SubProblem`
nodes (``id``, ``statement``, ``depends_on``), as a :class:`ProblemSpec` carries it and as an
agent proposes it. As a graph, each id is a node with its ``statement`` as an attribute and
each dependency an edge ``dependency -> id``. A valid decomposition has 1 to
``max_subproblems`` nodes, ids of 1-32 letters, digits, ``_``, ``-`` or ``.``, unique;
non-empty statements of at most :data:`MAX_STATEMENT_LENGTH` characters; dependencies that
exist, each named once; and no cycle. Anything else is a :class:`DecompositionError` whose
message is one line (an env shows it to the agent as the reason of an invalid action).

The topological order breaks ties by position: a list already in topological order comes
back unchanged.

networkx is imported by the first call, not with this module (``import llm_trainer`` stays
light).

>>> from llm_trainer.envs.problems.spec import SubProblem
>>> nodes = (SubProblem("a", "Ava's total?"), SubProblem("b", "Ben's total?"),
...          SubProblem("d", "The difference?", ("b", "a")))
>>> graph = to_graph(nodes)
>>> sorted(graph.edges), graph.nodes["d"]["statement"]
([('a', 'd'), ('b', 'd')], 'The difference?')
>>> from_graph(graph) == nodes
True
>>> [n.id for n in topological_order(reversed(nodes))]
['b', 'a', 'd']
>>> to_graph([SubProblem("a", "x", ("b",)), SubProblem("b", "y", ("a",))])
Traceback (most recent call last):
...
llm_trainer.envs.problems.decompose.graph.DecompositionError: the plan has a cycle: a -> b -> a
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from llm_trainer.core.errors import UserError
from llm_trainer.envs.common import short_repr
from llm_trainer.envs.problems.spec import ProblemSpec, SubProblem

if TYPE_CHECKING:
    import networkx as nx

#: Most sub-problems in a decomposition, by default (an env's ``max_subproblems``).
MAX_SUBPROBLEMS = 12
#: Longest sub-problem statement, in characters.
MAX_STATEMENT_LENGTH = 500
#: Longest sub-problem id, in characters.
MAX_ID_LENGTH = 32

_ID = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MAX_ID_LENGTH}}}")


class DecompositionError(UserError):
    """A decomposition that is not a valid DAG of sub-problems; the message is one line."""


def _check_node(node: Any, position: int) -> SubProblem:
    """``node`` if it is a well-formed :class:`SubProblem` (``position`` counts from 1)."""
    if not isinstance(node, SubProblem):
        raise DecompositionError(f"sub-problem {position} is not a SubProblem")
    if not isinstance(node.id, str) or _ID.fullmatch(node.id) is None:
        raise DecompositionError(
            f"sub-problem {position}: 'id' must be 1-{MAX_ID_LENGTH} letters, digits, '_', '-' "
            f"or '.', got {short_repr(node.id, 40)}"
        )
    statement = node.statement
    if not isinstance(statement, str) or not statement.strip():
        raise DecompositionError(f"sub-problem {node.id!r}: 'statement' must be a non-empty string")
    if len(statement) > MAX_STATEMENT_LENGTH:
        raise DecompositionError(
            f"sub-problem {node.id!r}: 'statement' is longer than {MAX_STATEMENT_LENGTH} characters"
        )
    depends_on = node.depends_on
    if not isinstance(depends_on, tuple) or not all(isinstance(d, str) for d in depends_on):
        raise DecompositionError(
            f"sub-problem {node.id!r}: 'depends_on' must be a list of sub-problem ids"
        )
    return node


def to_graph(
    subproblems: Iterable[SubProblem], max_subproblems: int = MAX_SUBPROBLEMS
) -> nx.DiGraph[str]:
    """The decomposition as a validated ``networkx.DiGraph`` (see the module docstring).

    Raises:
        DecompositionError: naming the first rule broken, in one line.
    """
    import networkx as nx

    nodes: list[SubProblem] = []
    for position, node in enumerate(subproblems, 1):
        if position > max_subproblems:
            raise DecompositionError(f"a plan has at most {max_subproblems} sub-problems")
        nodes.append(_check_node(node, position))
    if not nodes:
        raise DecompositionError("a plan needs at least one sub-problem")
    graph: nx.DiGraph[str] = nx.DiGraph()
    for node in nodes:
        if node.id in graph:
            raise DecompositionError(f"duplicate sub-problem id {node.id!r}")
        graph.add_node(node.id, statement=node.statement)
    for node in nodes:
        for dependency in node.depends_on:
            if dependency not in graph:
                raise DecompositionError(
                    f"sub-problem {node.id!r} depends on unknown {short_repr(dependency, 40)}"
                )
            if graph.has_edge(dependency, node.id):
                raise DecompositionError(f"sub-problem {node.id!r} depends on {dependency!r} twice")
            graph.add_edge(dependency, node.id)
    _check_acyclic(graph)
    return graph


def _check_acyclic(graph: nx.DiGraph[str]) -> None:
    import networkx as nx

    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return
    path = " -> ".join([str(cycle[0][0]), *(str(edge[1]) for edge in cycle)])
    raise DecompositionError(f"the plan has a cycle: {path}")


def from_graph(graph: nx.DiGraph[str]) -> tuple[SubProblem, ...]:
    """The sub-problems of ``graph`` in topological order (ties: the graph's node order), each
    depending on its predecessors (in the order their edges were added).

    Raises:
        DecompositionError: if ``graph`` has a cycle or a node without a string statement.
    """
    import networkx as nx

    _check_acyclic(graph)
    position = {node: i for i, node in enumerate(graph)}
    order = nx.lexicographical_topological_sort(graph, key=position.__getitem__)
    nodes = []
    for node in order:
        statement = graph.nodes[node].get("statement")
        if not isinstance(statement, str):
            raise DecompositionError(f"node {short_repr(node, 40)} has no 'statement' string")
        nodes.append(SubProblem(node, statement, tuple(graph.predecessors(node))))
    return tuple(nodes)


def topological_order(
    subproblems: Iterable[SubProblem], max_subproblems: int = MAX_SUBPROBLEMS
) -> tuple[SubProblem, ...]:
    """The validated sub-problems in topological order: every node after its dependencies,
    ties broken by position.

    Raises:
        DecompositionError: as :func:`to_graph`.
    """
    return from_graph(to_graph(subproblems, max_subproblems))


class ProblemDecomposer(abc.ABC):
    """Breaks a problem into sub-problems: a DAG checked and ordered by networkx.

    A decomposer implements one method, :meth:`decompose`; :meth:`plan` returns its
    decomposition validated and in topological order, :meth:`graph` as a ``networkx.DiGraph``.
    The rules of a valid decomposition are the module's (:func:`to_graph`).

    Args:
        max_subproblems: Most sub-problems a decomposition may have.
    """

    def __init__(self, max_subproblems: int = MAX_SUBPROBLEMS) -> None:
        if isinstance(max_subproblems, bool) or not isinstance(max_subproblems, int):
            raise TypeError(f"max_subproblems must be an int, got {short_repr(max_subproblems)}")
        if max_subproblems < 1:
            raise ValueError(f"max_subproblems must be >= 1, got {max_subproblems}")
        self.max_subproblems = max_subproblems

    @abc.abstractmethod
    def decompose(self, spec: ProblemSpec) -> tuple[SubProblem, ...]:
        """The sub-problems of ``spec`` (any order in which it is valid)."""

    def graph(self, spec: ProblemSpec) -> nx.DiGraph[str]:
        """:meth:`decompose` as a validated graph.

        Raises:
            DecompositionError: if the decomposition is not a valid DAG.
        """
        return to_graph(self.decompose(spec), self.max_subproblems)

    def plan(self, spec: ProblemSpec) -> tuple[SubProblem, ...]:
        """:meth:`decompose`, validated, in topological order.

        Raises:
            DecompositionError: if the decomposition is not a valid DAG.
        """
        return topological_order(self.decompose(spec), self.max_subproblems)


class ScriptedDecomposer(ProblemDecomposer):
    """The decomposition the family wrote into the spec (``spec.subproblems``): the oracle's.

    >>> from llm_trainer.envs.problems.spec import SubProblem
    >>> spec = ProblemSpec(domain="d", statement="?", answer="3", difficulty=1,
    ...                    subproblems=(SubProblem("s1", "2 + 1?"),))
    >>> ScriptedDecomposer().plan(spec)
    (SubProblem(id='s1', statement='2 + 1?', depends_on=()),)
    """

    def decompose(self, spec: ProblemSpec) -> tuple[SubProblem, ...]:
        """``spec.subproblems``.

        Raises:
            DecompositionError: if the spec carries no decomposition.
        """
        if not spec.subproblems:
            raise DecompositionError(f"a {spec.domain} problem carries no decomposition")
        return spec.subproblems
