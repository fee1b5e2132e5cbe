"""Searches in the knowledge graph: each decision's tree as a compact record.

A tree of an LLM search holds thousands of tokens of candidates; the graph keeps what later
work reads (:mod:`llm_trainer.core.knowledge`, typed nodes and edges only):

* the **problem** the episode posed (env id, reset seed, difficulty, the task), the searching
  **agent** (its spec), and an ``attempted_by`` edge per decision, keyed by run and turn,
  whose metrics are the tree's summary: simulations, nodes, depth, calls, the root children's
  visits, values and log-probs, the chosen action, the best end reached and the reflections;
* when a tree reached a successful end of the episode, that path as a **solution** (its actions
  joined by `` -> ``) with ``solved_by`` edges from the problem and a ``derived_from`` edge to
  the agent ("found by search"), so agents that read related solved problems see it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_trainer.core.knowledge import (
    Agent,
    Attempt,
    Derivation,
    KnowledgeGraph,
    Problem,
    Solution,
)


def record_search(
    graph: KnowledgeGraph,
    summary: Mapping[str, Any],
    *,
    env_id: str,
    task: str,
    agent: str,
    seed: int | None = None,
    difficulty: int | None = None,
    run: str = "",
    turn: int = 0,
) -> str:
    """Write one decision's tree (``summary``: :meth:`~llm_trainer.algorithms.search.
    parallel.MergedSearch.summary`) in one transaction; returns the problem's id.

    Args:
        graph: The knowledge graph.
        summary: The decision's summary.
        env_id: The env of the episode.
        task: The episode's task (its first observation).
        agent: The searching agent's spec (``mcts:...``).
        seed: The episode's reset seed.
        difficulty: Its difficulty.
        run: The run the decision belongs to (keys the edges with ``turn``: recording the same
            decision again changes nothing).
        turn: The decision's number in the episode.
    """
    metrics = {key: summary[key] for key in _METRICS if key in summary}
    key = f"{run} turn {turn}".strip()
    best_return = summary.get("best_return")
    with graph.batch() as batch:
        problem = batch.add(Problem(task, env_id=env_id, seed=seed, difficulty=difficulty))
        searcher = batch.add(Agent(agent, name="mcts"))
        attempt = Attempt(
            metrics=metrics,
            reward=best_return,
            turns=int(summary.get("depth", 0)),
            seconds=summary.get("seconds"),
            run=run,
        )
        batch.add_edge(problem, "attempted_by", searcher, attempt, key=key)
        actions = list(summary.get("best_actions") or ())
        if summary.get("best_success") and actions:
            solution = batch.add(
                Solution(
                    " -> ".join(actions), problem=problem, reward=best_return, turns=len(actions)
                )
            )
            found = Attempt(
                metrics=metrics,
                reward=best_return,
                turns=len(actions),
                agent=searcher,
                run=run,
            )
            batch.add_edge(problem, "solved_by", solution, found, key=f"{searcher} {key}")
            batch.add_edge(solution, "derived_from", searcher, Derivation("found by search"))
    return problem


#: The summary keys recorded on the ``attempted_by`` edge.
_METRICS = (
    "action",
    "trees",
    "simulations",
    "nodes",
    "depth",
    "proposer_calls",
    "estimator_calls",
    "root_children",
    "best_return",
    "best_success",
    "reflections",
)
