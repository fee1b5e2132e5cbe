"""Hypothesis strategies for the decomposition tests."""

from __future__ import annotations

from hypothesis import strategies as st

from llm_trainer.envs.problems import SubProblem
from llm_trainer.envs.problems.decompose import MAX_SUBPROBLEMS

ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."
ids = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=32)
statements = st.text(min_size=1, max_size=60).filter(lambda t: t.strip())


@st.composite
def dags(draw: st.DrawFn, min_size: int = 1, max_size: int = MAX_SUBPROBLEMS) -> list[SubProblem]:
    """A random DAG listed in a topological order: each node depends on earlier ones only."""
    names = draw(st.lists(ids, min_size=min_size, max_size=max_size, unique=True))
    nodes = []
    for i, name in enumerate(names):
        depends = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        nodes.append(SubProblem(name, draw(statements), tuple(depends)))
    return nodes
