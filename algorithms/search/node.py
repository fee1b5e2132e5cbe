"""The search tree: :class:`MCTSNode` holds an env snapshot and the statistics of a subtree.

A node is the state reached by the action on the edge from its parent. It keeps:

* the env's **snapshot** after that action (``state``), with the observation and ``info`` the
  player to move sees there, so any node can be stepped from again (the snapshots are
  immutable values; see :mod:`llm_trainer.algorithms.search.env`);
* the **edge**: the action text, the log-probability the proposer gave it (the source of the
  PUCT prior, normalised over the siblings by :class:`~llm_trainer.algorithms.search.policy.
  SearchPolicy`) and the reward the step paid;
* the **statistics**: visits and the sum of the returns backed up through it, *from the point
  of view of the player who moved into it* (``player``). A parent picks among its children by
  their mean, so in a two-player zero-sum game each player picks what is best for itself: the
  negamax convention, with the values negated at the opponent's nodes (:meth:`MCTSNode.backup`);
* the **candidates** the proposer sampled that are not children yet (progressive widening adds
  them one at a time, best prior first).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Candidate:
    """An action a proposer suggests at a node.

    Attributes:
        action: The action text (the completion the env receives).
        logprob: Its log-probability under the proposer (the sum over its tokens for an LLM,
            or its mean per token: :attr:`~llm_trainer.algorithms.search.mcts.MCTSConfig.
            prior`); 0 for a proposer without probabilities (uniform priors).
        count: How many of the proposer's samples gave this text (duplicates are merged).
    """

    action: str
    logprob: float = 0.0
    count: int = 1


@dataclass(eq=False)
class MCTSNode:
    """One node of the tree (see the module docstring).

    Attributes:
        state: The env snapshot at this node.
        observation: What the player to move sees here.
        info: The env's ``info`` for that player.
        parent: The parent node (``None`` at the root).
        action: The action that led here from the parent.
        logprob: That action's log-probability under the proposer.
        reward: The step's reward to each player (in the search env's player order).
        terminal: Whether the episode ended here (the env ended it, or the search horizon).
        player: The index of the player who moved into this node; at the root, the player
            to move there (the search takes its point of view).
        to_move: The index of the player to move at this node.
        depth: Steps from the root.
        children: The expanded children, in the order they were added (best prior first).
        pending: Sampled candidates not yet made children, best prior first.
        expanded: Whether the proposer has sampled this node's candidates.
        visits: Simulations through this node.
        value_sum: Sum of the returns backed up through it, for ``player``.
        virtual: Pending simulations of the current batch through this node (virtual loss).
    """

    state: Any
    observation: str
    info: Mapping[str, Any]
    parent: MCTSNode | None = None
    action: str | None = None
    logprob: float = 0.0
    reward: tuple[float, ...] = (0.0,)
    terminal: bool = False
    player: int = 0
    to_move: int = 0
    depth: int = 0
    children: list[MCTSNode] = field(default_factory=list)
    pending: list[Candidate] = field(default_factory=list)
    expanded: bool = False
    visits: int = 0
    value_sum: float = 0.0
    virtual: int = 0

    @property
    def value(self) -> float:
        """The mean return through this node for :attr:`player` (0 before any visit)."""
        return self.value_sum / self.visits if self.visits else 0.0

    def path(self) -> list[MCTSNode]:
        """The nodes from the root down to this one."""
        nodes: list[MCTSNode] = []
        node: MCTSNode | None = self
        while node is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]

    def actions(self) -> list[str]:
        """The actions from the root to this node."""
        return [n.action for n in self.path()[1:] if n.action is not None]

    def walk(self) -> Iterator[MCTSNode]:
        """This node and every node below it, depth first."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def child(self, action: str) -> MCTSNode | None:
        """The child reached by ``action``, if it was expanded."""
        return next((c for c in self.children if c.action == action), None)

    def backup(self, returns: tuple[float, ...], gamma: float = 1.0) -> None:
        """Add one simulation's result to this node and its ancestors.

        ``returns`` is what each player gains from this node on (the leaf's value estimate,
        or zeros at a terminal node). Going up, each node adds its own step reward
        (discounted by ``gamma``), and records the return of the player who moved into it:
        in a two-player zero-sum game that is the opponent's loss, the negated value.

        >>> root = MCTSNode(None, "", {}, reward=(0.0, 0.0))
        >>> child = MCTSNode(None, "", {}, parent=root, reward=(1.0, -1.0), player=0)
        >>> root.children.append(child)
        >>> child.backup((0.5, -0.5))
        >>> child.value, root.value, root.visits
        (1.5, 1.5, 1)
        """
        node: MCTSNode | None = self
        total = tuple(returns)
        while node is not None:
            total = tuple(r + gamma * t for r, t in zip(node.reward, total, strict=True))
            node.visits += 1
            node.value_sum += total[node.player]
            node = node.parent

    def summary(self) -> dict[str, Any]:
        """A compact, JSON-ready view of this node and its children (for logs and the
        knowledge graph): visits, mean value, and per child its action, visits, value and
        log-prob."""
        return {
            "visits": self.visits,
            "value": _round(self.value),
            "children": [
                {
                    "action": c.action,
                    "visits": c.visits,
                    "value": _round(c.value),
                    "logprob": _round(c.logprob),
                }
                for c in self.children
            ],
        }


def _round(x: float) -> float:
    return round(x, 6) if math.isfinite(x) else x
