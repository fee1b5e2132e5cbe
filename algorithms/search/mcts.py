"""Monte Carlo tree search over env snapshots, batched for LLM proposers.

Read it top to bottom. One search (:meth:`MCTS.search`) from the live state of an env:

1. **Root.** The env's snapshot becomes the root; the proposer samples its candidates.
2. **Select** up to ``batch_size`` leaves, one simulation each: from the root, while the node
   is expanded, either *widen* it (progressive widening allows one more child: the next
   candidate is stepped from the node's snapshot and becomes the leaf) or descend to the child
   that :class:`~llm_trainer.algorithms.search.policy.SearchPolicy` selects (UCT or PUCT). Each
   pending simulation puts a virtual loss on its path, so the batch spreads over the tree; a
   selection that reaches a leaf already waiting in the batch ends it early (a collision).
3. **Expand and evaluate** every new leaf of the batch at once: one proposer call samples the
   candidates of all of them (one batched generation for an LLM), one estimator call values
   them (:mod:`~llm_trainer.algorithms.search.values`). A terminal leaf is worth 0 from there
   on: the env's rewards on the path are what counts.
4. **Reflect** on the leaves whose episode ended without success (LATS): the reflections go into
   the prompts of later expansions (:mod:`~llm_trainer.algorithms.search.reflection`).
5. **Back up** each simulation's return, mean by mean, negated at the opponent's nodes in a
   two-player zero-sum game (:meth:`~llm_trainer.algorithms.search.node.MCTSNode.backup`).

After ``simulations`` simulations the root's most visited child is the action (or its best
mean, ``choose: value``); the live env is restored to the root's snapshot on every path.
Every random draw comes from seeds derived from the search's seed and a call counter, so the
same seed, env state and proposer give the same tree.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from llm_trainer.algorithms.config import NonNegativeInt, PositiveInt
from llm_trainer.algorithms.search.context import Request
from llm_trainer.algorithms.search.env import SearchEnv, Transition
from llm_trainer.algorithms.search.node import Candidate, MCTSNode
from llm_trainer.algorithms.search.policy import SearchPolicy
from llm_trainer.algorithms.search.proposers import Proposer, merge_duplicates
from llm_trainer.algorithms.search.reflection import Reflector
from llm_trainer.algorithms.search.values import RewardEstimator, TerminalValue
from llm_trainer.core.config import Range, check_ranges
from llm_trainer.core.errors import ConfigError, RolloutError
from llm_trainer.core.seeding import derive_seed


@dataclass(frozen=True)
class MCTSConfig:
    """One search's settings (the ``mcts`` section of a config, or an ``mcts:`` agent spec's
    ``key=value`` options).

    >>> MCTSConfig(simulations=0)
    Traceback (most recent call last):
    ...
    llm_trainer.core.errors.ConfigError: mcts.simulations must be >= 1, got 0
    """

    simulations: PositiveInt = 32
    """Simulations per search (per action of an agent)."""
    batch_size: PositiveInt = 8
    """Leaves selected, expanded and evaluated together (one proposer and one estimator call
    for all of them); 1 expands one leaf at a time."""
    candidates: PositiveInt = 4
    """Samples the proposer draws at each expanded node (duplicates merged)."""
    selection: SearchPolicy = field(default_factory=SearchPolicy)
    """Selection rule, exploration constant, progressive widening, virtual loss."""
    max_depth: PositiveInt = 8
    """Deepest node below the root; a node there is valued, not expanded."""
    gamma: Annotated[float, Range(gt=0, le=1)] = 1.0
    """Discount per step."""
    choose: Literal["visits", "value"] = "value"
    """The action: the root child with the best mean return (in a deterministic env, what the
    tree has seen it pay), or the most visited one (AlphaZero's robust child: better when
    returns are noisy, with budgets large enough for the visits to concentrate)."""
    max_reflections: NonNegativeInt = 3
    """Reflections on failed leaves kept for later prompts (the latest ones; 0: none)."""
    seed: int = 0
    """Base seed of the search (an agent derives each search's from it, its episode seed and
    the turn)."""

    def __post_init__(self) -> None:
        check_ranges(self, "mcts")
        if not isinstance(self.selection, SearchPolicy):
            raise ConfigError(f"mcts.selection must be a SearchPolicy, got {self.selection!r}")


@dataclass(frozen=True)
class SearchResult:
    """What one search found.

    Attributes:
        root: The tree.
        action: The chosen action.
        simulations: Simulations run.
        nodes: Nodes in the tree.
        depth: The deepest node below the root.
        expansions: Nodes whose candidates were sampled.
        proposer_calls: Proposer calls (generation calls for an LLM).
        estimator_calls: Estimator calls.
        reflections: Every reflection so far (the ones passed in, then the new ones).
        best: The terminal node with the best return for the root's player, if any was found.
        best_return: That return.
        seconds: Wall time.
    """

    root: MCTSNode
    action: str
    simulations: int
    nodes: int
    depth: int
    expansions: int
    proposer_calls: int
    estimator_calls: int
    reflections: tuple[str, ...]
    best: MCTSNode | None
    best_return: float | None
    seconds: float

    @property
    def simulations_per_second(self) -> float:
        return self.simulations / self.seconds if self.seconds > 0 else math.inf

    def visit_distribution(self) -> dict[str, float]:
        """The root children's share of the visits, by action (AlphaZero's policy target)."""
        total = sum(c.visits for c in self.root.children)
        return {str(c.action): (c.visits / total if total else 0.0) for c in self.root.children}

    def summary(self) -> dict[str, Any]:
        """A compact, JSON-ready record (logs, the experience buffer, the knowledge graph)."""
        best = self.best
        return {
            "action": self.action,
            "simulations": self.simulations,
            "nodes": self.nodes,
            "depth": self.depth,
            "expansions": self.expansions,
            "proposer_calls": self.proposer_calls,
            "estimator_calls": self.estimator_calls,
            "root_value": round(self.root.value, 6),
            "root_children": self.root.summary()["children"],
            "best_return": None if self.best_return is None else round(self.best_return, 6),
            "best_actions": best.actions() if best is not None else [],
            "best_success": bool(best is not None and best.info.get("success", False)),
            "reflections": list(self.reflections),
            "seconds": round(self.seconds, 4),
        }


class MCTS:
    """Tree search from the live state of an env (see the module docstring).

    Args:
        env: The env as search sees it (:func:`~llm_trainer.algorithms.search.env.search_env`).
        proposer: Samples candidate actions at expanded nodes.
        estimator: Values new leaves (default: :class:`~llm_trainer.algorithms.search.values.
            TerminalValue`, the env's rewards only).
        config: The search's settings.
        reflector: Writes reflections on failed leaves (``None``: none).
    """

    def __init__(
        self,
        env: SearchEnv,
        proposer: Proposer,
        estimator: RewardEstimator | None = None,
        config: MCTSConfig | None = None,
        *,
        reflector: Reflector | None = None,
    ) -> None:
        self.env = env
        self.proposer = proposer
        self.estimator = estimator if estimator is not None else TerminalValue()
        self.config = config if config is not None else MCTSConfig()
        self.policy = self.config.selection
        self.reflector = reflector
        self._memoryless = len(env.players) > 1
        self._requests: dict[int, Request] = {}
        self._estimates: dict[int, tuple[float, ...]] = {}
        self._reflected: set[int] = set()
        self._seed = 0
        self._counter = 0
        self._expansions = 0
        self._reflections: list[str] = []

    # -- the search ----------------------------------------------------------------------------

    def search(
        self,
        observation: str,
        info: Mapping[str, Any],
        *,
        history: Sequence[Mapping[str, Any]] = (),
        reflections: Sequence[str] = (),
        seed: int | None = None,
    ) -> SearchResult:
        """Search from the env's live state and return the chosen action with the tree.

        Args:
            observation: What the player to move sees now (the env's latest observation).
            info: The env's latest ``info``.
            history: The episode's chat before ``observation`` (the task first; see
                :meth:`~llm_trainer.algorithms.search.context.Request.start`).
            reflections: Reflections from earlier searches of the episode.
            seed: The search's seed (default: ``config.seed``).

        Raises:
            RolloutError: when the proposer suggests no action at the root.
        """
        started = time.perf_counter()
        cfg = self.config
        self._seed = cfg.seed if seed is None else seed
        self._counter = self._expansions = 0
        self._requests, self._estimates, self._reflected = {}, {}, set()
        self._reflections = list(reflections)[-cfg.max_reflections :] if cfg.max_reflections else []
        calls = (self.proposer.calls, self.estimator.calls)
        start = self.env.root(observation, info)
        zeros = (0.0,) * len(self.env.players)
        root = MCTSNode(
            start.state,
            start.observation,
            start.info,
            reward=zeros,
            player=start.to_move,
            to_move=start.to_move,
        )
        self._requests[id(root)] = Request.start(
            start.state,
            start.observation,
            start.info,
            history=history,
            to_move=start.to_move,
            memoryless=self._memoryless,
            steps_left=self.env.horizon,
        )
        simulations = 0
        try:
            self._expand([root])
            if not root.pending:
                raise RolloutError("the proposer suggested no action at the root")
            while simulations < cfg.simulations:
                leaves = self._select_batch(
                    root, min(cfg.batch_size, cfg.simulations - simulations)
                )
                self._evaluate(leaves)
                simulations += len(leaves)
        finally:
            self.env.restore(root.state)
        best, best_return = self._best_terminal(root)
        return SearchResult(
            root=root,
            action=self._choose(root),
            simulations=simulations,
            nodes=sum(1 for _ in root.walk()),
            depth=max(n.depth for n in root.walk()),
            expansions=self._expansions,
            proposer_calls=self.proposer.calls - calls[0],
            estimator_calls=self.estimator.calls - calls[1],
            reflections=tuple(self._reflections),
            best=best,
            best_return=best_return,
            seconds=time.perf_counter() - started,
        )

    # -- 2. selection --------------------------------------------------------------------------

    def _select_batch(self, root: MCTSNode, size: int) -> list[MCTSNode]:
        """Up to ``size`` leaves for one batch. A selection that reaches a leaf already
        waiting in the batch for its expansion (a collision) is undone and ends the batch:
        selection is deterministic, so trying again would collide again, and a leaf evaluated
        twice teaches nothing new."""
        leaves: list[MCTSNode] = []
        waiting: set[int] = set()
        while len(leaves) < size:
            leaf = self._select(root)
            needs_value = not leaf.terminal and id(leaf) not in self._estimates
            if needs_value and id(leaf) in waiting:
                for node in leaf.path():
                    node.virtual -= 1
                break
            if needs_value:
                waiting.add(id(leaf))
            leaves.append(leaf)
        return leaves

    def _select(self, root: MCTSNode) -> MCTSNode:
        """Descend to a leaf (a new child, an unexpanded node, a terminal node, or a node at
        the depth limit), putting a virtual loss on the path."""
        node = root
        while True:
            node.virtual += 1
            if node.terminal or not node.expanded:
                return node
            if self.policy.can_widen(node):
                child = self._add_child(node, node.pending.pop(0))
                child.virtual += 1
                return child
            if not node.children:  # nothing left to try here: value it again
                return node
            node = self.policy.select(node)

    def _add_child(self, node: MCTSNode, candidate: Candidate) -> MCTSNode:
        t: Transition = self.env.step(node.state, candidate.action)
        depth = node.depth + 1
        horizon = self.env.horizon
        terminal = t.terminal or (horizon is not None and depth >= horizon)
        child = MCTSNode(
            t.state,
            t.observation,
            t.info,
            parent=node,
            action=candidate.action,
            logprob=candidate.logprob,
            reward=t.rewards,
            terminal=terminal,
            player=node.to_move,
            to_move=t.to_move,
            depth=depth,
        )
        node.children.append(child)
        self._requests[id(child)] = self._requests[id(node)].after(
            candidate.action, t.state, t.observation, t.info, t.to_move
        )
        return child

    # -- 3-5. expansion, evaluation, reflection, backup ----------------------------------------

    def _evaluate(self, leaves: list[MCTSNode]) -> None:
        cfg = self.config
        unique = list({id(n): n for n in leaves}.values())
        fresh = [n for n in unique if not n.terminal and id(n) not in self._estimates]
        self._expand([n for n in fresh if n.depth < cfg.max_depth])
        if fresh:
            requests = [self._requests[id(n)] for n in fresh]
            values = self.estimator.estimate(requests, self.env, self._next_seed("estimate"))
            for node, value in zip(fresh, values, strict=True):
                self._estimates[id(node)] = self._returns(node.to_move, float(value))
        failed = [
            n
            for n in unique
            if n.terminal and id(n) not in self._reflected and not n.info.get("success", False)
        ]
        self._reflect(failed)
        zeros = (0.0,) * len(self.env.players)
        for leaf in leaves:
            for node in leaf.path():
                node.virtual -= 1
            leaf.backup(zeros if leaf.terminal else self._estimates[id(leaf)], cfg.gamma)

    def _returns(self, player: int, value: float) -> tuple[float, ...]:
        """A value for ``player`` as every player's return: the opponent's is its negation
        (two-player zero-sum)."""
        if len(self.env.players) == 1:
            return (value,)
        return tuple(value if p == player else -value for p in range(len(self.env.players)))

    def _expand(self, nodes: list[MCTSNode]) -> None:
        """Sample the candidates of ``nodes`` in one proposer call."""
        if not nodes:
            return
        requests = [self._with_reflections(self._requests[id(n)]) for n in nodes]
        proposals = self.proposer.propose(
            requests, self.config.candidates, self._next_seed("expand")
        )
        for node, candidates in zip(nodes, proposals, strict=True):
            merged = merge_duplicates(candidates)
            # best prior first (a stable sort keeps the proposer's order among equals)
            node.pending = sorted(merged, key=lambda c: -c.logprob)
            node.expanded = True
            self._expansions += 1

    def _with_reflections(self, request: Request) -> Request:
        if not self._reflections:
            return request
        return replace(request, reflections=tuple(self._reflections))

    def _reflect(self, failed: list[MCTSNode]) -> None:
        for node in failed:
            self._reflected.add(id(node))
        if self.reflector is None or not self.config.max_reflections or self._memoryless:
            return
        if not failed:
            return
        texts = self.reflector.reflect(
            [self._requests[id(n)] for n in failed], self._next_seed("reflect")
        )
        for text in texts:
            if text and text not in self._reflections:
                self._reflections.append(text)
        del self._reflections[: -self.config.max_reflections]

    # -- the result ----------------------------------------------------------------------------

    def _choose(self, root: MCTSNode) -> str:
        visited = [c for c in root.children if c.visits] or root.children
        if not visited:  # a search too short to step any candidate: the best prior
            return root.pending[0].action
        if self.config.choose == "value":
            best = max(range(len(visited)), key=lambda i: (visited[i].value, -i))
        else:
            best = max(range(len(visited)), key=lambda i: (visited[i].visits, visited[i].value, -i))
        action = visited[best].action
        assert action is not None
        return action

    def _best_terminal(self, root: MCTSNode) -> tuple[MCTSNode | None, float | None]:
        """The terminal node whose path pays the root's player the most (ties: the first)."""
        best: MCTSNode | None = None
        best_return: float | None = None
        player = root.to_move
        for node in root.walk():
            if not node.terminal:
                continue
            total, discount = 0.0, 1.0
            for step in node.path()[1:]:
                total += discount * step.reward[player]
                discount *= self.config.gamma
            if best_return is None or total > best_return:
                best, best_return = node, total
        return best, best_return

    def _next_seed(self, what: str) -> int:
        self._counter += 1
        return derive_seed(self._seed, what, self._counter)
