"""Scripted proposers: candidate actions without a model, for tests, benchmarks and baselines.

They read only what an agent sees (the observation and ``info``), never the env's internals:

* :class:`KnapsackProposer` (``LLMTrainer/Knapsack-v0``): local-search moves. It parses the
  items and the capacity from the task; its first answers are greedy fills by value per weight,
  and after each answer the candidates are keeping it and its neighbours (one item swapped out
  or in). Its priors follow the greedy heuristic, not the values: always taking its first
  candidate answers the greedy fill and keeps it, which misses the optimum of many instances;
  a search that reads the env's scores finds it (``tests/algorithms/search``).
* :class:`LegalMovesProposer`: every move of ``info["legal_moves"]`` (Kuhn poker), uniform.

:data:`SCRIPTED_PROPOSERS` names them for ``mcts:`` agent specs and configs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llm_trainer.algorithms.search.context import Request
from llm_trainer.algorithms.search.node import Candidate
from llm_trainer.algorithms.search.proposers import Proposer
from llm_trainer.envs.tools import format_answer

_CAPACITY = re.compile(r"capacity (\d+)")
_ITEM = re.compile(r"#(\d+) \((\d+), (\d+)\)")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@dataclass(frozen=True, slots=True)
class KnapsackTask:
    """A knapsack as its statement gives it: weights and values by item id (1-based)."""

    capacity: int
    weights: dict[int, int]
    values: dict[int, int]

    @classmethod
    def parse(cls, statement: str) -> KnapsackTask | None:
        """The task of a ``Knapsack-v0`` statement; ``None`` for any other text.

        >>> KnapsackTask.parse("Knapsack of capacity 9. Items #id (weight, value): #1 (4, 10), "
        ...                    "#2 (5, 7).").weights
        {1: 4, 2: 5}
        """
        capacity = _CAPACITY.search(statement)
        items = _ITEM.findall(statement)
        if capacity is None or not items:
            return None
        return cls(
            int(capacity.group(1)),
            {int(i): int(w) for i, w, _ in items},
            {int(i): int(v) for i, _, v in items},
        )

    def weight(self, chosen: frozenset[int]) -> int:
        return sum(self.weights[i] for i in chosen)

    def value(self, chosen: frozenset[int]) -> int:
        return sum(self.values[i] for i in chosen)

    def fill(self, chosen: frozenset[int], banned: frozenset[int] = frozenset()) -> frozenset[int]:
        """``chosen`` plus items by value per weight (best first, ties by id) while they fit,
        never one of ``banned``."""
        out, room = set(chosen), self.capacity - self.weight(chosen)
        order = sorted(self.weights, key=lambda i: (-self.values[i] / self.weights[i], i))
        for i in order:
            if i not in out and i not in banned and self.weights[i] <= room:
                out.add(i)
                room -= self.weights[i]
        return frozenset(out)

    def repair(self, chosen: frozenset[int], keep: int) -> frozenset[int]:
        """``chosen`` with its worst items by value per weight dropped (never ``keep``) until
        it fits."""
        out = set(chosen)
        order = sorted(out - {keep}, key=lambda i: (self.values[i] / self.weights[i], i))
        for i in order:
            if self.weight(frozenset(out)) <= self.capacity:
                break
            out.discard(i)
        return frozenset(out)


def _answer_text(chosen: frozenset[int]) -> str:
    return format_answer(", ".join(str(i) for i in sorted(chosen)) if chosen else "none")


def _last_answer(request: Request) -> frozenset[int] | None:
    for message in reversed(request.messages):
        if message["role"] != "assistant":
            continue
        match = _ANSWER.search(str(message["content"]))
        if match is None:
            continue
        ids = re.findall(r"\d+", match.group(1))
        return frozenset(int(i) for i in ids)
    return None


class KnapsackProposer:
    """Local search on ``Knapsack-v0`` (see the module docstring).

    Candidates at the first answer: the greedy fill by value per weight (the classic greedy
    heuristic), then that fill with each of its items left out. After an answer: keeping it,
    then its neighbours: one of its items swapped out (the rest refilled greedily without it),
    then one other item swapped in (the worst items by value per weight dropped until it fits).
    Only feasible selections are proposed. The log-probs follow that order,
    ``-decay * rank``: the proposer does not compare values (judging answers is the env's job),
    so playing its first candidate is the greedy heuristic, which keeps its first answer.

    Args:
        decay: How fast the priors fall along the order.
    """

    def __init__(self, decay: float = 0.5) -> None:
        self.decay = decay
        self.calls = 0

    def propose(self, requests: Sequence[Request], n: int, seed: int) -> list[list[Candidate]]:
        self.calls += 1
        return [self.candidates(r)[:n] for r in requests]

    def candidates(self, request: Request) -> list[Candidate]:
        """Every candidate at ``request``, first choice first."""
        task = KnapsackTask.parse(request.task)
        if task is None:
            return []
        last = _last_answer(request)
        if last is None or not last <= set(task.weights) or task.weight(last) > task.capacity:
            greedy = task.fill(frozenset())
            options = [greedy] + [task.fill(frozenset(), frozenset({i})) for i in sorted(greedy)]
        else:
            options = [last]
            options += [task.fill(last - {i}, frozenset({i})) for i in sorted(last)]
            options += [
                task.fill(task.repair(last | {j}, keep=j)) for j in sorted(set(task.weights) - last)
            ]
        feasible = [_answer_text(o) for o in options if task.weight(o) <= task.capacity]
        unique = list(dict.fromkeys(feasible))
        return [Candidate(text, -self.decay * rank) for rank, text in enumerate(unique)]


class LegalMovesProposer:
    """Every legal move of ``info["legal_moves"]`` as ``<answer>MOVE</answer>``, uniform priors
    (Kuhn poker), whatever ``n``. A node without legal moves gets none."""

    def __init__(self) -> None:
        self.calls = 0

    def propose(self, requests: Sequence[Request], n: int, seed: int) -> list[list[Candidate]]:
        self.calls += 1
        # all of them, whatever ``n``: a game's few legal moves are the whole action space
        return [
            [Candidate(format_answer(str(m))) for m in r.info.get("legal_moves", ())]
            for r in requests
        ]


#: The scripted proposers by name (for ``mcts:NAME`` agent specs and configs).
SCRIPTED_PROPOSERS: dict[str, Callable[[], Proposer]] = {
    "knapsack": KnapsackProposer,
    "legal_moves": LegalMovesProposer,
}
