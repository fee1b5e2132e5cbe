"""The experience buffer: what searches decided, and the episodes they played.

Every decision of an :class:`~llm_trainer.algorithms.search.agent.MCTSAgent` is a
:class:`SearchRecord`: the chat at the root (what the model is prompted with there), the
action chosen, and the root children's visits and values (AlphaZero's policy target, the
search's value estimate). Finished episodes are kept as
:class:`~llm_trainer.core.trajectory.Trajectory` records. Search-distilled SFT
(:mod:`~llm_trainer.algorithms.search.distill`) trains the base policy on them;
:meth:`ExperienceBuffer.save` writes JSON Lines that :meth:`ExperienceBuffer.load` reads back.

The buffer is bounded (``capacity``: the oldest records go first) and samples with a
generator the caller seeds, never the global one.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llm_trainer.core.records import to_plain
from llm_trainer.core.rundir import atomic_write
from llm_trainer.core.trajectory import Trajectory


@dataclass(frozen=True)
class SearchRecord:
    """One decision of a search.

    Attributes:
        env_id: The env.
        seed: The episode's reset seed (``None`` when unknown).
        turn: The agent's decision number in the episode (0 first).
        player: The index of the player who decided.
        system_prompt: The episode's system prompt.
        tools: Its tool specs.
        messages: The chat at the root (the task first, the root's observation last).
        action: The action the search chose.
        visits: Visits of each root child, by action.
        values: Mean return of each root child, by action.
        simulations: Simulations spent.
        best_return: The best return a tree reached, if any reached an end.
        best_success: Whether a tree reached a successful end.
    """

    env_id: str
    seed: int | None
    turn: int
    player: int
    system_prompt: str
    tools: tuple[Mapping[str, Any], ...]
    messages: tuple[Mapping[str, Any], ...]
    action: str
    visits: Mapping[str, int] = field(default_factory=dict)
    values: Mapping[str, float] = field(default_factory=dict)
    simulations: int = 0
    best_return: float | None = None
    best_success: bool = False

    def policy_target(self) -> dict[str, float]:
        """The visit distribution over the root's actions."""
        total = sum(self.visits.values())
        return {a: v / total for a, v in self.visits.items()} if total else {}

    def chat(self, system_prompt: str | None = None) -> list[dict[str, Any]]:
        """The decision as a chat to train on: the system prompt (``system_prompt`` replaces
        the env's), the root's chat, and the chosen action as the assistant's turn."""
        system = self.system_prompt if system_prompt is None else system_prompt
        return [
            {"role": "system", "content": system},
            *(dict(m) for m in self.messages),
            {"role": "assistant", "content": self.action},
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "seed": self.seed,
            "turn": self.turn,
            "player": self.player,
            "system_prompt": self.system_prompt,
            "tools": to_plain(self.tools),
            "messages": [dict(m) for m in self.messages],
            "action": self.action,
            "visits": dict(self.visits),
            "values": dict(self.values),
            "simulations": self.simulations,
            "best_return": self.best_return,
            "best_success": self.best_success,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchRecord:
        return cls(
            env_id=str(data["env_id"]),
            seed=data.get("seed"),
            turn=int(data["turn"]),
            player=int(data.get("player", 0)),
            system_prompt=str(data.get("system_prompt", "")),
            tools=tuple(data.get("tools", ())),
            messages=tuple(data["messages"]),
            action=str(data["action"]),
            visits={str(k): int(v) for k, v in data.get("visits", {}).items()},
            values={str(k): float(v) for k, v in data.get("values", {}).items()},
            simulations=int(data.get("simulations", 0)),
            best_return=data.get("best_return"),
            best_success=bool(data.get("best_success", False)),
        )


class ExperienceBuffer:
    """Search decisions and episodes, bounded (see the module docstring).

    Args:
        capacity: Most decisions (and, separately, episodes) kept; ``None``: unbounded.

    >>> buffer = ExperienceBuffer(capacity=2)
    >>> for turn in range(3):
    ...     buffer.add(SearchRecord("env", 0, turn, 0, "", (), (), "<answer>1</answer>"))
    >>> [r.turn for r in buffer.records], len(buffer)
    ([1, 2], 2)
    """

    def __init__(self, capacity: int | None = None) -> None:
        if capacity is not None and (isinstance(capacity, bool) or capacity < 1):
            raise ValueError(f"capacity must be an int >= 1 or None, got {capacity!r}")
        self.capacity = capacity
        self._records: deque[SearchRecord] = deque(maxlen=capacity)
        self._episodes: deque[Trajectory] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._records)

    @property
    def records(self) -> list[SearchRecord]:
        """The decisions, oldest first."""
        return list(self._records)

    @property
    def episodes(self) -> list[Trajectory]:
        """The finished episodes, oldest first."""
        return list(self._episodes)

    def add(self, record: SearchRecord) -> None:
        """Keep a decision (the oldest one goes when the buffer is full)."""
        self._records.append(record)

    def add_episode(self, trajectory: Trajectory) -> None:
        """Keep a finished episode."""
        self._episodes.append(trajectory)

    def extend(self, records: Iterable[SearchRecord]) -> None:
        for record in records:
            self.add(record)

    def sample(self, n: int, rng: np.random.Generator) -> list[SearchRecord]:
        """``n`` decisions drawn uniformly without replacement (all of them if fewer) with
        ``rng``."""
        records = self.records
        if n >= len(records):
            return records
        picks = rng.choice(len(records), size=n, replace=False)
        return [records[int(i)] for i in sorted(picks)]

    def chat_rows(
        self, records: Sequence[SearchRecord] | None = None, system_prompt: str | None = None
    ) -> list[dict[str, Any]]:
        """SFT rows (``messages`` and ``tools`` JSON, as
        :func:`~llm_trainer.algorithms.sft.chat_rows` makes them) that teach each decision's
        chosen action at its root."""
        return [
            {"messages": r.chat(system_prompt), "tools": json.dumps(to_plain(r.tools))}
            for r in (self.records if records is None else records)
        ]

    def save(self, path: str | Path) -> Path:
        """Write the decisions as JSON Lines (atomically)."""
        text = "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in self.records)
        return atomic_write(Path(path), text.encode())

    @classmethod
    def load(cls, path: str | Path, capacity: int | None = None) -> ExperienceBuffer:
        """The decisions written by :meth:`save`."""
        buffer = cls(capacity)
        with Path(path).open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    buffer.add(SearchRecord.from_dict(json.loads(line)))
        return buffer
