"""Turning what the framework does into graph records: episodes, agents, models, datasets.

The writers of the project (``run_bench``, ``run_experiment``, the algorithm context) call
these, so an episode or a model is described the same way wherever it is recorded:

* an **episode** (:func:`add_episode`): its problem (env id, reset seed, difficulty and the
  task text) and the tools it offers; an ``attempted_by`` edge to the agent with the episode's
  metrics; if it succeeded, a solution node (what the agent did, as in its long-term memory),
  ``solved_by`` edges to the solution and to the agent, and a ``derived_from`` edge from the
  solution to the agent; if not, a ``fails_with`` edge to its failure mode (:func:`failure_mode`);
* an **agent** (:func:`add_agent`): its spec and fingerprint, and the model it runs
  (``derived_from``) when that is a local directory;
* a **model** (:func:`model_record`): named by the digest of its directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llm_trainer.core.digest import tree_digest
from llm_trainer.core.knowledge.graph import Batch, KnowledgeGraph
from llm_trainer.core.knowledge.schema import (
    Agent,
    Attempt,
    Derivation,
    Failure,
    FailureMode,
    Model,
    Problem,
    Solution,
    Tool,
)
from llm_trainer.core.knowledge.text import summarize_messages
from llm_trainer.core.trajectory import Trajectory

#: The failure modes an episode is classified into, in the order they are checked.
FAILURE_MODES: Mapping[str, str] = {
    "episode_error": "the agent or the env raised during the episode",
    "malformed_action": "an action broke the tool-call format",
    "wrong_tool": "the tools called were not the right ones",
    "tool_error": "a tool call failed to run",
    "wrong_answer": "the final answer was wrong, or none came within the step limit",
    "unsolved": "the episode did not succeed, and no metric says why",
}


def failure_mode(trajectory: Trajectory) -> str | None:
    """How an episode failed (a :data:`FAILURE_MODES` name), or ``None`` for a success: an
    exception first, then the first false metric of format, tool choice, tool execution and
    answer."""
    if trajectory.success:
        return None
    if trajectory.error is not None:
        return "episode_error"
    metrics = trajectory.metrics
    for metric, mode in (
        ("format_ok", "malformed_action"),
        ("tool_correct", "wrong_tool"),
        ("exec_ok", "tool_error"),
        ("answer_correct", "wrong_answer"),
    ):
        if not metrics[metric]:
            return mode
    return "unsolved"


def problem_record(trajectory: Trajectory) -> Problem:
    """The problem an episode posed: env id, reset seed, difficulty, task text, tools."""
    return Problem(
        trajectory.prompt,
        env_id=trajectory.env_id,
        seed=trajectory.seed,
        difficulty=trajectory.difficulty,
        tools=tuple(_tool_name(spec) for spec in trajectory.tools),
    )


def _tool_name(spec: Mapping[str, Any]) -> str:
    function = spec.get("function")
    return str(function.get("name", "")) if isinstance(function, Mapping) else ""


def solution_text(trajectory: Trajectory) -> str:
    """What the agent did: each action and observation after the task, as an agent's long-term
    memory summarises an episode."""
    return summarize_messages(trajectory.messages()[2:])


def add_episode(
    batch: Batch,
    trajectory: Trajectory,
    *,
    agent: str,
    run: str,
    attempt: str = "",
    seconds: float | None = None,
) -> str:
    """Add an episode of ``agent`` (a node id) to ``batch`` (see the module docstring).

    ``run`` names the benchmark run or experiment, ``attempt`` the episode within it (several
    attempts at one problem are several edges); together they key the edges, so recording
    the same episode of the same run again changes nothing. Returns the problem's id."""
    problem = batch.add(problem_record(trajectory))
    for spec in trajectory.tools:
        name = _tool_name(spec)
        if name:
            function = spec["function"]
            tool = batch.add(Tool(name, str(function.get("description", ""))))
            batch.add_edge(problem, "uses", tool)
    metrics = trajectory.metrics
    reward = round(trajectory.total_reward, 10)  # sums of -0.1 penalties, without float noise
    outcome = Attempt(
        metrics=metrics, reward=reward, turns=len(trajectory.steps), seconds=seconds, run=run
    )
    key = f"{run} {attempt}".strip()
    batch.add_edge(problem, "attempted_by", agent, outcome, key=key)
    mode = failure_mode(trajectory)
    if mode is None:
        solution = batch.add(
            Solution(
                solution_text(trajectory),
                problem=problem,
                reward=reward,
                turns=len(trajectory.steps),
            )
        )
        solved = Attempt(
            metrics=metrics,
            reward=reward,
            turns=len(trajectory.steps),
            seconds=seconds,
            agent=agent,
            run=run,
        )
        batch.add_edge(problem, "solved_by", solution, solved, key=f"{agent} {key}")
        batch.add_edge(problem, "solved_by", agent, outcome, key=key)
        batch.add_edge(solution, "derived_from", agent, Derivation(relation="found by"))
    else:
        failure = batch.add(FailureMode(mode, FAILURE_MODES[mode]))
        batch.add_edge(
            problem,
            "fails_with",
            failure,
            Failure(agent=agent, run=run, metrics=metrics, error=trajectory.error or ""),
            key=f"{agent} {key}",
        )
    return problem


def model_record(path: str | Path, origin: str = "") -> Model:
    """A model directory as a node record (its digest read from its files)."""
    path = Path(path)
    return Model(tree_digest(path), path=str(path), origin=origin)


def add_agent(
    batch: Batch,
    spec: str,
    *,
    name: str = "",
    fingerprint: str | None = None,
    model_dir: Path | None = None,
) -> str:
    """Add an agent, and the model it runs (``derived_from``) when ``model_dir`` is given;
    returns the agent's id."""
    agent = batch.add(Agent(spec, name=name, fingerprint=fingerprint))
    if model_dir is not None:
        model = batch.add(model_record(model_dir, "given"))
        batch.add_edge(agent, "derived_from", model, Derivation(relation="runs"))
    return agent


class EpisodeRecorder:
    """Records finished episodes of one agent and run in a graph file, from any process (the
    graph is opened on first use in each process; picklable, for worker processes).

    Args:
        path: The graph file.
        agent: The agent's node id (already in the graph).
        run: The run's key (see :func:`add_episode`).
    """

    def __init__(self, path: str | Path, agent: str, run: str) -> None:
        self.path = Path(path)
        self.agent = agent
        self.run = run
        self._graph: KnowledgeGraph | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "agent": self.agent, "run": self.run}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["agent"], state["run"])  # type: ignore[misc]

    def record(
        self, trajectory: Trajectory, seconds: float | None = None, *, attempt: str = ""
    ) -> None:
        """Write one episode (one transaction); ``attempt`` names it within the run."""
        if self._graph is None:
            self._graph = KnowledgeGraph(self.path)
        with self._graph.batch() as batch:
            add_episode(
                batch,
                trajectory,
                agent=self.agent,
                run=self.run,
                attempt=attempt,
                seconds=seconds,
            )
