"""Independent trees, merged at the root: root parallelism, in this process or in a pool.

Root parallelism (Chaslot, Winands & van den Herik, 2008) grows ``trees`` independent trees
from the same root, each with its own seed derived from the search's seed, and merges them by
the root children's statistics: visits and returns add up per action. It needs no locks and
no shared tree, so the trees may run elsewhere with exactly the result of running them one
after the other here: in worker processes (a ``spawn`` pool: no state leaks in from the
parent) or as Ray tasks on a cluster, both through an :class:`~llm_trainer.distributed.
Executor` (:func:`~llm_trainer.distributed.make_executor`), which hands each tree's statistics
back keyed by its index, whichever worker grew it.

In a game of imperfect information each tree searches its own **determinization** instead of
the live state: a state built from what the player to move sees (its ``info``), with the
hidden part drawn at random (Kuhn poker: the opponent's card), so the merged statistics
average over the worlds the player may be in (perfect-information Monte Carlo, Long et al.,
2010) and the search never reads what the player cannot see. A determinization sets the env
it is given to that state: the agent searches a private copy of the game, never the live one
(which, in the arena, it does not even hold: :func:`~llm_trainer.algorithms.search.agent.
build_agent` makes the copy).

:class:`TreeRunner` runs the trees; :class:`MergedSearch` is what they found together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_trainer.algorithms.search.env import SearchEnv, search_env
from llm_trainer.algorithms.search.mcts import MCTS, MCTSConfig, SearchResult
from llm_trainer.algorithms.search.proposers import Proposer
from llm_trainer.algorithms.search.reflection import Reflector
from llm_trainer.algorithms.search.values import RewardEstimator
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.seeding import derive_seed
from llm_trainer.distributed.executor import Executor, LocalExecutor

#: ``determinize(env, info, rng) -> state``: put ``env`` (a private copy of the game) into a
#: state consistent with what the player to move sees (``info``), the hidden part drawn from
#: ``rng``, and return its snapshot.
Determinize = Callable[[Any, Mapping[str, Any], np.random.Generator], Any]


@dataclass(frozen=True, slots=True)
class ChildStats:
    """One root child of one or more trees."""

    action: str
    visits: int
    value_sum: float
    logprob: float

    @property
    def value(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0


@dataclass(frozen=True)
class TreeStats:
    """What one tree sends back (small, picklable): its root children and its counters."""

    children: tuple[ChildStats, ...]
    summary: Mapping[str, Any]
    reflections: tuple[str, ...]
    best_return: float | None
    best_actions: tuple[str, ...]
    best_success: bool

    @classmethod
    def of(cls, result: SearchResult) -> TreeStats:
        best = result.best
        return cls(
            children=tuple(
                ChildStats(str(c.action), c.visits, c.value_sum, c.logprob)
                for c in result.root.children
            ),
            summary=result.summary(),
            reflections=result.reflections,
            best_return=result.best_return,
            best_actions=tuple(best.actions()) if best is not None else (),
            best_success=bool(best is not None and best.info.get("success", False)),
        )


@dataclass(frozen=True)
class MergedSearch:
    """The trees of one decision, merged by root child (see the module docstring).

    Attributes:
        action: The chosen action (by merged visits or merged mean value: ``MCTSConfig.
            choose``).
        children: The merged root children, in order of first appearance.
        trees: Each tree's statistics.
        seconds: Wall time of the whole decision.
    """

    action: str
    children: tuple[ChildStats, ...]
    trees: tuple[TreeStats, ...]
    seconds: float

    @classmethod
    def merge(cls, trees: Sequence[TreeStats], choose: str, seconds: float) -> MergedSearch:
        merged: dict[str, ChildStats] = {}
        for tree in trees:
            for c in tree.children:
                seen = merged.get(c.action)
                merged[c.action] = (
                    c
                    if seen is None
                    else ChildStats(
                        c.action,
                        seen.visits + c.visits,
                        seen.value_sum + c.value_sum,
                        max(seen.logprob, c.logprob),
                    )
                )
        children = tuple(merged.values())
        visited = [c for c in children if c.visits] or list(children)
        if not visited:
            raise ConfigError("no tree stepped any action: raise mcts.simulations")
        if choose == "value":
            best = max(range(len(visited)), key=lambda i: (visited[i].value, -i))
        else:
            best = max(range(len(visited)), key=lambda i: (visited[i].visits, visited[i].value, -i))
        return cls(visited[best].action, children, tuple(trees), seconds)

    @property
    def simulations(self) -> int:
        return sum(int(t.summary["simulations"]) for t in self.trees)

    @property
    def best_success(self) -> bool:
        """Whether some tree reached a successful end of the episode."""
        return any(t.best_success for t in self.trees)

    @property
    def best(self) -> TreeStats | None:
        """The tree whose best terminal node pays the most (``None`` if none reached one)."""
        found = [t for t in self.trees if t.best_return is not None]
        return max(found, key=lambda t: t.best_return or 0.0) if found else None

    @property
    def reflections(self) -> tuple[str, ...]:
        """Every tree's reflections, without repeats, in order."""
        return tuple(dict.fromkeys(r for t in self.trees for r in t.reflections))

    def visit_distribution(self) -> dict[str, float]:
        """The merged root children's share of the visits, by action."""
        total = sum(c.visits for c in self.children)
        return {c.action: (c.visits / total if total else 0.0) for c in self.children}

    def summary(self) -> dict[str, Any]:
        """A compact, JSON-ready record of the decision."""
        best = self.best
        return {
            "action": self.action,
            "trees": len(self.trees),
            "simulations": self.simulations,
            "nodes": sum(int(t.summary["nodes"]) for t in self.trees),
            "depth": max(int(t.summary["depth"]) for t in self.trees),
            "proposer_calls": sum(int(t.summary["proposer_calls"]) for t in self.trees),
            "estimator_calls": sum(int(t.summary["estimator_calls"]) for t in self.trees),
            "root_children": [
                {
                    "action": c.action,
                    "visits": c.visits,
                    "value": round(c.value, 6),
                    "logprob": round(c.logprob, 6),
                }
                for c in self.children
            ],
            "best_return": None
            if best is None or best.best_return is None
            else round(best.best_return, 6),
            "best_actions": list(best.best_actions) if best is not None else [],
            "best_success": self.best_success,
            "reflections": list(self.reflections),
            "seconds": round(self.seconds, 4),
        }


@dataclass(frozen=True)
class _Job:
    """One tree's work: everything a worker needs (pickled when the tree grows elsewhere)."""

    env: Any
    state: Any
    observation: str
    info: Mapping[str, Any]
    history: tuple[Mapping[str, Any], ...]
    reflections: tuple[str, ...]
    proposer: Proposer
    estimator: RewardEstimator | None
    reflector: Reflector | None
    config: MCTSConfig
    seed: int


def _grow(job: _Job, env: SearchEnv) -> SearchResult:
    """One tree: ``env`` put into the job's (determinized) state, then one search."""
    env.restore(job.state)
    search = MCTS(env, job.proposer, job.estimator, job.config, reflector=job.reflector)
    return search.search(
        job.observation,
        job.info,
        history=job.history,
        reflections=job.reflections,
        seed=job.seed,
    )


def _run_job(job: _Job) -> TreeStats:
    """A worker's tree (a pool process or a Ray task): its statistics."""
    return TreeStats.of(_grow(job, search_env(job.env)))


class TreeRunner:
    """Runs the trees of each decision (see the module docstring).

    Args:
        proposer: Samples candidates.
        estimator: Values leaves (``None``: the env's rewards only).
        config: The search's settings (``choose`` also picks the merged action).
        reflector: Writes reflections on failed leaves.
        trees: Independent trees per decision.
        processes: Worker processes (1: every tree here, one after the other). Each job
            pickles the env, the proposer and the estimator: cheap for scripted proposers and
            HTTP backends, a copy of the model for a local one.
        determinize: Builds each tree's root from what the player sees, the hidden part
            drawn at random (``None``: every tree searches the live state).
        executor: Where the trees grow instead of ``processes``: a
            :class:`~llm_trainer.distributed.RayExecutor` (each tree a Ray task, its job
            pickled as for a pool), with the same merged result. The runner owns it: it is
            closed with the runner.

    Use it as a context manager, or call :meth:`close`, to stop the workers.
    """

    def __init__(
        self,
        proposer: Proposer,
        estimator: RewardEstimator | None = None,
        config: MCTSConfig | None = None,
        *,
        reflector: Reflector | None = None,
        trees: int = 1,
        processes: int = 1,
        determinize: Determinize | None = None,
        executor: Executor | None = None,
    ) -> None:
        for name, value in (("trees", trees), ("processes", processes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"TreeRunner.{name} must be an int >= 1, got {value!r}")
        self.proposer = proposer
        self.estimator = estimator
        self.config = config if config is not None else MCTSConfig()
        self.reflector = reflector
        self.trees = trees
        self.processes = processes
        self.determinize = determinize
        self.executor: Executor = (
            executor if executor is not None else LocalExecutor(min(processes, trees))
        )
        """Where the trees grow: this process (a :class:`~llm_trainer.distributed.
        LocalExecutor` of one worker), a ``spawn`` pool of ``min(processes, trees)`` (started
        at the first search, kept until :meth:`close`) or the executor given."""
        self.last_result: SearchResult | None = None
        """The latest in-process tree (with its nodes), for inspection."""

    @property
    def in_process(self) -> bool:
        """Whether the trees grow here, in the live env's adapter (no pickling)."""
        return isinstance(self.executor, LocalExecutor) and self.executor.workers == 1

    def __enter__(self) -> TreeRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (a pool, or the executor given; idempotent)."""
        self.executor.close()

    def search(
        self,
        env: Any,
        observation: str,
        info: Mapping[str, Any],
        *,
        history: Sequence[Mapping[str, Any]] = (),
        reflections: Sequence[str] = (),
        seed: int = 0,
    ) -> MergedSearch:
        """Search from ``env``'s live state (or, with ``determinize``, from states built from
        ``info``) with every tree and merge them; the live env is left as it was.

        Raises:
            RolloutError: when a worker died (and, on Ray, its retries were spent).
        """
        started = time.perf_counter()
        adapter = search_env(env)
        seeds = [derive_seed(seed, "tree", i) for i in range(self.trees)]
        if self.trees == 1:
            seeds = [seed]  # one tree is exactly one plain search with the decision's seed
        live: Any = None
        if self.determinize is None:
            live = adapter.root(observation, info).state
            states = [live] * self.trees
        else:
            states = [self.determinize(env, info, np.random.default_rng(s)) for s in seeds]
        jobs = [
            _Job(
                env,
                state,
                observation,
                dict(info),
                tuple(history),
                tuple(reflections),
                self.proposer,
                self.estimator,
                self.reflector,
                self.config,
                tree_seed,
            )
            for state, tree_seed in zip(states, seeds, strict=True)
        ]

        def here(job: _Job) -> TreeStats:  # in this process: the live env's adapter
            self.last_result = _grow(job, adapter)
            return TreeStats.of(self.last_result)

        try:
            stats = self.executor.map(here if self.in_process else _run_job, jobs)
        finally:
            if live is not None:
                adapter.restore(live)
        return MergedSearch.merge(stats, self.config.choose, time.perf_counter() - started)
