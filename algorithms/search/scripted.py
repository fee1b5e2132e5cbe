"""Scripted proposers: candidate actions without a model, for tests, benchmarks and baselines.

They read only what an agent sees (the observation and ``info``), never the env's internals:

* :class:`KnapsackProposer` (``LLMTrainer/Knapsack-v0``): local-search moves. It parses the
  items and the capacity from the task; its first answers are greedy fills by value per weight,
  and after each answer the candidates are keeping it and its neighbours (one item swapped out
  or in). Its priors follow the greedy heuristic, not the values: always taking its first
  candidate answers the greedy fill and keeps it, which misses the optimum of many instances;
  a search that reads the env's scores finds it (``tests/algorithms/search``).
* :class:`TourProposer` (``LLMTrainer/TSP-v0``): 2-opt moves. It reads the distances from the
  task; its first answers are nearest-neighbour tours (from each start city, written from city
  0), and after each answer the candidates are keeping it and its 2-opt neighbours (a segment
  reversed), the shortest first by the statement's distances. Keeping comes first, so always
  taking its first candidate answers the nearest-neighbour tour and keeps it.
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
_CITIES = re.compile(r"\bCities 0-(\d+);")
_DISTANCE = re.compile(r"\b(\d+)-(\d+): (\d+)")


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


def _last_answer_text(request: Request) -> str | None:
    """The text inside the latest ``<answer>`` of the assistant's turns (``None``: none yet)."""
    for message in reversed(request.messages):
        if message["role"] != "assistant":
            continue
        match = _ANSWER.search(str(message["content"]))
        if match is not None:
            return match.group(1)
    return None


def _last_answer(request: Request) -> frozenset[int] | None:
    text = _last_answer_text(request)
    return None if text is None else frozenset(int(i) for i in re.findall(r"\d+", text))


class _LocalSearchProposer:
    """A scripted proposer whose candidates at a request are a fixed order (``candidates``),
    the first ``n`` proposed with log-probs ``-decay * rank``."""

    def __init__(self, decay: float = 0.5) -> None:
        self.decay = decay
        self.calls = 0

    def propose(self, requests: Sequence[Request], n: int, seed: int) -> list[list[Candidate]]:
        self.calls += 1
        return [self.candidates(r)[:n] for r in requests]

    def candidates(self, request: Request) -> list[Candidate]:
        raise NotImplementedError


class KnapsackProposer(_LocalSearchProposer):
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


@dataclass(frozen=True, slots=True)
class TourTask:
    """A travelling-salesman task as its statement gives it: the symmetric distances."""

    distances: tuple[tuple[int, ...], ...]

    @classmethod
    def parse(cls, statement: str) -> TourTask | None:
        """The task of a ``TSP-v0`` statement; ``None`` for any other text.

        >>> TourTask.parse("Cities 0-2; distances 0-1: 5, 0-2: 7, 1-2: 4. Find ...").distances
        ((0, 5, 7), (5, 0, 4), (7, 4, 0))
        """
        cities = _CITIES.search(statement)
        if cities is None:
            return None
        n = int(cities.group(1)) + 1
        rows = [[0] * n for _ in range(n)]
        for a, b, d in _DISTANCE.findall(statement):
            i, j = int(a), int(b)
            if i < n and j < n:
                rows[i][j] = rows[j][i] = int(d)
        return cls(tuple(tuple(r) for r in rows))

    @property
    def n(self) -> int:
        return len(self.distances)

    def length(self, tour: Sequence[int]) -> int:
        """The closed tour's length (back to its first city)."""
        return sum(self.distances[a][b] for a, b in zip(tour, [*tour[1:], tour[0]], strict=True))

    def nearest_neighbour(self, start: int) -> tuple[int, ...]:
        """The nearest-neighbour tour from ``start`` (ties: the lower city), from city 0."""
        tour, left = [start], set(range(self.n)) - {start}
        while left:
            here = tour[-1]
            nearest = min(left, key=lambda c: (self.distances[here][c], c))
            tour.append(nearest)
            left.discard(nearest)
        zero = tour.index(0)
        return tuple(tour[zero:] + tour[:zero])

    def two_opt(self, tour: tuple[int, ...]) -> list[tuple[int, ...]]:
        """Every tour one 2-opt move away (a segment after city 0 reversed), shortest first
        (ties: in move order)."""
        moves = []
        for i in range(1, self.n - 1):
            for j in range(i + 1, self.n):
                moves.append(tour[:i] + tour[i : j + 1][::-1] + tour[j + 1 :])
        return sorted(moves, key=self.length)

    def read(self, text: str) -> tuple[int, ...] | None:
        """The tour an answer names (a permutation of the cities, a closing return allowed),
        from city 0; ``None`` when it is not one."""
        cities = [int(c) for c in re.findall(r"\d+", text)]
        if len(cities) == self.n + 1 and cities[0] == cities[-1]:
            cities.pop()
        if sorted(cities) != list(range(self.n)):
            return None
        zero = cities.index(0)
        return tuple(cities[zero:] + cities[:zero])


def _tour_text(tour: Sequence[int]) -> str:
    return format_answer(" ".join(str(c) for c in tour))


class TourProposer(_LocalSearchProposer):
    """2-opt local search on ``TSP-v0`` (see the module docstring).

    Candidates at the first answer: the nearest-neighbour tours from each start city (written
    from city 0; duplicates merged), city 0's first. After an answer: keeping it, then its
    2-opt neighbours, the shortest first. The log-probs follow that order, ``-decay * rank``.

    Args:
        decay: How fast the priors fall along the order.
    """

    def candidates(self, request: Request) -> list[Candidate]:
        """Every candidate at ``request``, first choice first."""
        task = TourTask.parse(request.task)
        if task is None or task.n < 2:
            return []
        text = _last_answer_text(request)
        last = task.read(text) if text is not None else None
        if last is None:
            tours = [task.nearest_neighbour(start) for start in range(task.n)]
        else:
            tours = [last, *task.two_opt(last)]
        unique = list(dict.fromkeys(_tour_text(t) for t in tours))
        return [Candidate(t, -self.decay * rank) for rank, t in enumerate(unique)]


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
    "tsp": TourProposer,
    "legal_moves": LegalMovesProposer,
}


def proposer_for(statement: str) -> Proposer | None:
    """The scripted local-search proposer of a problem, read from its statement (the env's
    first observation): :class:`KnapsackProposer` or :class:`TourProposer`; ``None`` for any
    other problem."""
    if KnapsackTask.parse(statement) is not None:
        return KnapsackProposer()
    if TourTask.parse(statement) is not None:
        return TourProposer()
    return None
