"""How the tree is walked: UCT or PUCT selection, priors from the proposer, progressive widening.

:class:`SearchPolicy` holds the exploration-exploitation trade-off, in one of two rules:

* **UCT** (Kocsis & Szepesvári, 2006): ``Q(c) + C * sqrt(ln N(parent) / N(c))``; an unvisited
  child is tried first.
* **PUCT** (AlphaZero, Silver et al., 2018): ``Q(c) + C * P(c) * sqrt(N(parent)) / (1 + N(c))``
  with the prior ``P`` from the policy: the log-probabilities of the sampled candidate actions,
  normalised over the siblings (a softmax over the children present). An unvisited child's
  ``Q`` is :attr:`SearchPolicy.unvisited_value`.

``Q`` is the child's mean return for the player who chose it (negamax: see
:mod:`~llm_trainer.algorithms.search.node`); ``C`` must suit the scale of the env's rewards
(1 for rewards in [0, 1]).

**Progressive widening** (Coulom, 2007; Couëtoux et al., 2011): an LLM's action space is
unbounded, so a node visited ``N`` times may have at most ``ceil(k * N^alpha)`` children; the
next candidate (best prior first) becomes a child only when the bound grows past the children
already there. ``alpha = 0`` gives a fixed width ``ceil(k)``.

**Virtual loss** (Chaslot et al., 2008): when a batch of leaves is selected before any of them
is evaluated, each pending simulation counts as a visit that returned ``virtual_value`` (a
loss), so the next selection of the batch goes elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from llm_trainer.algorithms.search.node import MCTSNode
from llm_trainer.core.config import Range, check_ranges


@dataclass(frozen=True)
class SearchPolicy:
    """Selection and widening (see the module docstring).

    >>> SearchPolicy(widen_k=2, widen_alpha=0.5).max_children(9)
    6
    """

    rule: Literal["uct", "puct"] = "puct"
    """``puct`` (priors from the proposer's log-probs) or ``uct`` (no priors)."""
    c: Annotated[float, Range(ge=0)] = 1.0
    """Exploration constant ``C`` (in units of the env's reward)."""
    widen_k: Annotated[float, Range(gt=0)] = 2.0
    """Progressive widening: at most ``ceil(widen_k * N^widen_alpha)`` children."""
    widen_alpha: Annotated[float, Range(ge=0, le=1)] = 0.5
    """Progressive widening exponent (0: a fixed width of ``ceil(widen_k)``)."""
    unvisited_value: float = 0.0
    """PUCT's ``Q`` of a child not yet visited (first-play urgency)."""
    virtual_value: float = 0.0
    """The return a pending simulation of a batch counts as until it is backed up (a loss:
    the env's worst return; see the module docstring)."""

    def __post_init__(self) -> None:
        check_ranges(self, "selection")

    def max_children(self, visits: int) -> int:
        """How many children a node visited ``visits`` times may have (at least 1)."""
        bound: float = self.widen_k * float(max(1, visits)) ** self.widen_alpha
        return max(1, math.ceil(bound - 1e-9))

    def priors(self, node: MCTSNode) -> list[float]:
        """The children's priors: a softmax of their log-probs over the siblings present.

        >>> root = MCTSNode(None, "", {})
        >>> root.children = [MCTSNode(None, "", {}, logprob=math.log(p)) for p in (0.6, 0.2)]
        >>> [round(p, 2) for p in SearchPolicy().priors(root)]
        [0.75, 0.25]
        """
        return softmax([c.logprob for c in node.children])

    def scores(self, node: MCTSNode) -> list[float]:
        """The selection score of each child of ``node`` (virtual losses included)."""
        parent_visits = node.visits + node.virtual
        if self.rule == "uct":
            log_n = math.log(parent_visits) if parent_visits > 0 else 0.0
            out = []
            for child in node.children:
                n = child.visits + child.virtual
                if n == 0:
                    out.append(math.inf)
                    continue
                q = (child.value_sum + self.virtual_value * child.virtual) / n
                out.append(q + self.c * math.sqrt(log_n / n))
            return out
        sqrt_n = math.sqrt(parent_visits)
        out = []
        for child, prior in zip(node.children, self.priors(node), strict=True):
            n = child.visits + child.virtual
            q = (
                (child.value_sum + self.virtual_value * child.virtual) / n
                if n
                else self.unvisited_value
            )
            out.append(q + self.c * prior * sqrt_n / (1 + n))
        return out

    def select(self, node: MCTSNode) -> MCTSNode:
        """The child with the highest score; ties go to the earliest child (the best prior,
        since children are added best prior first), so selection is deterministic.

        Raises:
            ValueError: when ``node`` has no children.
        """
        if not node.children:
            raise ValueError("select() needs a node with children")
        scores = self.scores(node)
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        return node.children[best]

    def can_widen(self, node: MCTSNode) -> bool:
        """Whether ``node`` may take its next pending candidate as a new child now. The
        simulations of the batch on their way through it count as visits: a batch of leaves
        widens a node as the same simulations one after the other would."""
        visits = node.visits + node.virtual
        return bool(node.pending) and len(node.children) < self.max_children(visits)


def softmax(logits: Sequence[float]) -> list[float]:
    """A numerically stable softmax (an empty list for no logits; ``-inf`` entries get 0).

    >>> softmax([0.0, 0.0])
    [0.5, 0.5]
    """
    if not logits:
        return []
    top = max(logits)
    if not math.isfinite(top):
        return [1.0 / len(logits)] * len(logits)
    weights = [math.exp(x - top) for x in logits]
    total = sum(weights)
    return [w / total for w in weights]
