"""Memory across research sprints, in a knowledge graph (:mod:`llm_trainer.core.knowledge`).

Each finished sprint of ``LLMTrainer/ResearchSprint-v0`` is recorded as

* a **problem** node: the research question (domain ``research-sprint``; sprints on the same
  question share it, and related-problem search reads its statement);
* an **experiment** node, ``derived_from`` the problem: the sprint's hypothesis, plan, code,
  result, conclusion and verdict (its ``summary``), keyed by the goal and the sprint's seeds,
  so recording the same sprint again (a resumed run) changes nothing;
* when the sprint succeeded, a **solution** node (the code, with its result), ``solved_by``
  from the problem and ``derived_from`` the experiment; when it failed, a ``fails_with`` edge
  from the problem to the failure mode ``research_not_reproduced`` or ``wrong_conclusion``.

:meth:`SprintMemory.recall` finds the problems most related to a new goal (BM25 over the
questions) and returns their sprints, newest first, as one-paragraph texts for the team's
observations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_trainer.core.knowledge import (
    Attempt,
    Derivation,
    Experiment,
    Failure,
    FailureMode,
    KnowledgeGraph,
    Problem,
    Solution,
)
from llm_trainer.core.knowledge.schema import content_id

if TYPE_CHECKING:
    from llm_trainer.envs.multiagent.research import SprintEpisode
    from llm_trainer.envs.multiagent.research_goals import ResearchGoal

#: The problem domain of research questions in the graph.
DOMAIN = "research-sprint"
#: The algorithm name of sprint experiments.
ALGORITHM = "research-sprint"
#: How a failed sprint is classified.
FAILURE_MODES: Mapping[str, str] = {
    "research_not_reproduced": "the experiment did not run, or its re-runs did not reproduce it",
    "wrong_conclusion": "the evidence was reproduced, but the conclusion or the answer was wrong",
}
#: Characters of code and of texts kept in a sprint's record.
CODE_CHARS = 6000
TEXT_CHARS = 1500
#: Characters of one recalled sprint in a view.
RECALL_CHARS = 800


def clean(text: str, chars: int | None = None) -> str:
    """``text`` as storable UTF-8 (lone surrogates replaced), cut at ``chars``."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if chars is None or len(text) <= chars else text[:chars] + "[...]"


def _json(value: Any) -> Any:
    """Frozen JSON data as plain data whose strings are storable."""
    if isinstance(value, Mapping):
        return {clean(str(k)): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, str):
        return clean(value, TEXT_CHARS)
    if isinstance(value, float) and value != value:  # NaN (the records hold no others)
        return "nan"
    return value


def sprint_key(goal: ResearchGoal, seeds: tuple[int, ...]) -> str:
    """The identity of a sprint: its question and seeds (the same sprint replayed is one)."""
    return content_id("sprint", clean(goal.question), list(seeds))


def _answer(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "none" if value is None else str(value)


class SprintMemory:
    """Sprint records in the knowledge graph file ``path`` (created on first use).

    Args:
        path: The graph's SQLite file (e.g. ``results/knowledge.sqlite``).
    """

    def __init__(self, path: str | Path) -> None:
        self.graph = KnowledgeGraph(path)

    def close(self) -> None:
        self.graph.close()

    def record(self, episode: SprintEpisode) -> str:
        """Write a finished sprint (one transaction); returns its experiment's id."""
        outcome = episode.outcome
        if outcome is None:
            raise ValueError("only a finished sprint can be recorded")
        goal = episode.goal
        key = sprint_key(goal, episode.seeds)
        execution = episode.execution
        reproduction = episode.reproduction
        summary = {
            "sprint_id": clean(episode.label),
            "goal": clean(goal.text or goal.question, TEXT_CHARS),
            "checking": goal.checking,
            "hypothesis": clean(episode.hypothesis, TEXT_CHARS),
            "plan": clean(episode.plan, TEXT_CHARS),
            "code": clean(episode.code or "", CODE_CHARS),
            "result": _json(execution.result) if execution is not None else None,
            "execution_error": clean(execution.error or "") if execution is not None else "",
            "reproduced": outcome.reproduced,
            "reproduction_error": clean(reproduction.reason or "") if reproduction else "",
            "conclusion": _answer(outcome.conclusion),
            "reference": _answer(outcome.truth) if outcome.truth is not None else None,
            "verdict_correct": outcome.verdict_correct,
            "success": outcome.success,
            "role_rewards": dict(outcome.role_rewards),
        }
        metrics = {
            "execution_ok": outcome.execution_ok,
            "reproduced": outcome.reproduced,
            "verdict_correct": outcome.verdict_correct,
            "success": outcome.success,
        }
        with self.graph.batch() as batch:
            problem = batch.add(Problem(clean(goal.question), domain=DOMAIN))
            experiment = batch.add(
                Experiment(
                    f"research sprint {clean(episode.label)}".strip(),
                    algorithm=ALGORITHM,
                    seed=episode.seeds[0],
                    run_dir=key,
                    status="finished",
                    summary=summary,
                )
            )
            batch.add_edge(experiment, "derived_from", problem, Derivation(relation="investigates"))
            if outcome.success:
                text = f"{summary['code']}\n# RESULT {json.dumps(summary['result'])}"
                solution = batch.add(Solution(text, problem=problem, reward=1.0))
                attempt = Attempt(metrics=metrics, reward=1.0, run=key)
                batch.add_edge(problem, "solved_by", solution, attempt, key=key)
                batch.add_edge(solution, "derived_from", experiment, Derivation(relation="made in"))
            else:
                mode = "wrong_conclusion" if outcome.reproduced else "research_not_reproduced"
                failure = batch.add(FailureMode(mode, FAILURE_MODES[mode]))
                error = summary["execution_error"] or summary["reproduction_error"]
                batch.add_edge(
                    problem,
                    "fails_with",
                    failure,
                    Failure(run=key, metrics=metrics, error=str(error)),
                    key=key,
                )
        return experiment

    def recall(
        self,
        goal: ResearchGoal,
        k: int,
        *,
        exclude: tuple[ResearchGoal, tuple[int, ...], str] | None = None,
    ) -> list[str]:
        """The ``k`` past sprints most relevant to ``goal`` as texts: sprints on the most
        related questions first (BM25), newest first within a question. ``exclude`` (the
        goal, seeds and label of the sprint being played) leaves its own earlier record out,
        so a sprint redone after a kill sees what it saw the first time."""
        if k < 1:
            return []
        own = content_id("experiment", sprint_key(exclude[0], exclude[1])) if exclude else None
        texts: list[str] = []
        for hit in self.graph.related_problems(clean(goal.question), k, solved=False):
            sprints = [
                edge
                for edge in self.graph.edges(hit.problem.id, "derived_from", incoming=True)
                if edge.source.startswith("experiment:") and edge.source != own
            ]
            nodes = [self.graph.node(edge.source) for edge in sprints]
            nodes.sort(key=lambda n: str(n.attrs.get("summary", {}).get("sprint_id", "")))
            for node in reversed(nodes):
                texts.append(self._describe(hit.problem.attrs.get("statement", ""), node.attrs))
                if len(texts) >= k:
                    return texts
        return texts

    @staticmethod
    def _describe(question: str, attrs: Mapping[str, Any]) -> str:
        s = attrs.get("summary", {})
        name = f"sprint {s['sprint_id']}" if s.get("sprint_id") else "a sprint"
        result = json.dumps(s.get("result"), sort_keys=True) if s.get("result") else "none"
        verdict = "succeeded" if s.get("success") else "failed"
        text = (
            f"{name} on: {clean(question, 200)} | hypothesis: {s.get('hypothesis') or 'none'} | "
            f"result: {result[:300]} | reproduced: {'yes' if s.get('reproduced') else 'no'} | "
            f"conclusion: {s.get('conclusion')} "
            f"({'correct' if s.get('verdict_correct') else 'wrong'}) | the sprint {verdict}"
        )
        error = s.get("execution_error") or s.get("reproduction_error")
        if error:
            text += f" | error: {error}"
        return text[:RECALL_CHARS]
