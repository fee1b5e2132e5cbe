"""An agent's memory: the episode's conversation under a token budget, and a long-term store.

:class:`ConversationMemory` holds one episode's chat. :meth:`ConversationMemory.window` fits it
into a token budget by dropping the oldest turns first; the system prompt, the task (the first
user message) and the latest turn are always kept, and if those alone are too long, the longest
of them is shortened (its head kept) until the prompt fits.

:class:`LongTermMemory` persists past tasks and their outcomes across episodes and processes in
one SQLite file (WAL mode, one transaction per write: a process killed mid-write leaves the last
committed state, never a corrupt file) and retrieves the most relevant ones for a new task with
BM25 (``rank-bm25``). :func:`memory_search_tool` exposes it to the agent as a tool.
:class:`KnowledgeExamples` is a second source of examples: the solved problems of a knowledge
graph (:mod:`llm_trainer.core.knowledge`) most related to a task. Both are shown to the model
by :func:`format_solved_examples`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_trainer.core.errors import ToolError
from llm_trainer.core.knowledge.text import bm25_tokens

if TYPE_CHECKING:
    from llm_trainer.envs.tools import Tool

Message = dict[str, Any]
#: Tokens of a rendered list of messages (the chat template applied, tools included).
LengthFn = Callable[[list[Message]], int]

TRUNCATION_MARK = " [...]"


class ConversationMemory:
    """One episode's messages: the system prompt, the task, then turns.

    A *turn* is an assistant message with the observations that follow it (a tool result, or
    the env's user message). :meth:`window` drops whole turns, so a tool result never loses
    the call it answers.

    >>> memory = ConversationMemory("Be brief.", "What is 6 * 7?")
    >>> memory.add("assistant", "<tool_call>{}</tool_call>")
    >>> memory.add("tool", "error: missing arguments")
    >>> memory.add("assistant", "<answer>42</answer>")
    >>> [m["role"] for m in memory.messages]
    ['system', 'user', 'assistant', 'tool', 'assistant']
    >>> count = lambda messages: sum(len(m["content"]) for m in messages)
    >>> [m["role"] for m in memory.window(50, count)]  # the oldest turn is dropped
    ['system', 'user', 'assistant']
    """

    def __init__(self, system: str | None, task: str) -> None:
        self.messages: list[Message] = []
        if system is not None:  # an empty system prompt is still a message (as in training data)
            self.messages.append({"role": "system", "content": system})
        self.messages.append({"role": "user", "content": task})
        self._head = len(self.messages)  # system + task: always kept

    def add(self, role: str, content: str) -> None:
        """Append a message (``assistant``, ``tool`` or ``user``)."""
        if role not in ("assistant", "tool", "user"):
            raise ValueError(f"role must be 'assistant', 'tool' or 'user', got {role!r}")
        self.messages.append({"role": role, "content": content})

    def turns(self) -> list[list[Message]]:
        """The messages after the task, grouped into turns (each starts at an assistant)."""
        turns: list[list[Message]] = []
        for message in self.messages[self._head :]:
            if message["role"] == "assistant" or not turns:
                turns.append([message])
            else:
                turns[-1].append(message)
        return turns

    def window(self, budget: int, length: LengthFn) -> list[Message]:
        """The messages to send: within ``budget`` tokens by ``length``, oldest turns dropped.

        The head (system prompt and task) and the latest turn are always kept; when they alone
        exceed the budget, the longest of their messages is shortened (keeping its beginning,
        marked with ``[...]``) until the prompt fits or nothing is left to shorten.
        """
        if budget < 1:
            raise ValueError(f"budget must be >= 1 token, got {budget}")
        head = [dict(m) for m in self.messages[: self._head]]
        turns = self.turns()
        kept = turns
        while True:
            messages = head + [dict(m) for turn in kept for m in turn]
            if length(messages) <= budget:
                return messages
            if len(kept) <= 1:
                break
            kept = kept[1:]
        return _shorten_to_fit(messages, budget, length)


def _shorten_to_fit(messages: list[Message], budget: int, length: LengthFn) -> list[Message]:
    """Shorten the longest messages (keeping their heads) until ``length`` fits ``budget``."""
    shortened: set[int] = set()
    while length(messages) > budget:
        candidates = [i for i in range(len(messages)) if i not in shortened]
        if not candidates:
            break  # every message is already as short as it gets
        i = max(candidates, key=lambda j: len(str(messages[j]["content"])))
        content = str(messages[i]["content"])
        shortened.add(i)
        # Binary search the longest head of this message that fits.
        lo, hi = 0, len(content)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            messages[i] = {**messages[i], "content": content[:mid] + TRUNCATION_MARK}
            if length(messages) <= budget:
                lo = mid
            else:
                hi = mid - 1
        messages[i] = {**messages[i], "content": content[:lo] + TRUNCATION_MARK}
    return messages


# -- long-term memory ---------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    success INTEGER NOT NULL,
    reward REAL NOT NULL,
    outcome TEXT NOT NULL,
    summary TEXT NOT NULL,
    env_id TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    """One remembered episode."""

    id: int
    task: str
    """The task prompt."""
    success: bool
    reward: float
    outcome: str
    """A short description of the outcome (e.g. the final answer, or why it failed)."""
    summary: str
    """What the agent did (its actions and what they returned), used as an example."""
    env_id: str
    created_at: float
    """Unix time of the write."""


class LongTermMemory:
    """Past tasks and outcomes in a SQLite file, retrieved by BM25 relevance.

    Safe to use from several processes and threads at once: every operation opens its own
    connection, writes are single transactions, and the WAL journal lets readers run during a
    write. The BM25 index is rebuilt when the table has changed since the last search.

    Args:
        path: The SQLite file (created with its directory when missing).
        timeout_s: How long a write waits for another process's write to finish.

    >>> import tempfile, pathlib
    >>> memory = LongTermMemory(pathlib.Path(tempfile.mkdtemp()) / "memory.sqlite")
    >>> _ = memory.add("Compute 12 * 3.", success=True, summary="calculator -> 36")
    >>> _ = memory.add("Weather in Oslo tomorrow?", success=False)
    >>> [r.task for r, _ in memory.search("compute 7 * 3")]
    ['Compute 12 * 3.']
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._index_key: tuple[int, int] | None = None
        self._index: Any = None
        self._records: list[MemoryRecord] = []
        self._tokens: list[set[str]] = []
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=self.timeout_s)) as db:
            db.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            with db:  # one transaction: committed on success, rolled back on error
                yield db

    def add(
        self,
        task: str,
        *,
        success: bool,
        reward: float = 0.0,
        outcome: str = "",
        summary: str = "",
        env_id: str = "",
    ) -> int:
        """Remember one episode; returns its id."""
        if not isinstance(task, str) or not task.strip():
            raise ValueError("task must be a non-empty string")
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO memories (task, success, reward, outcome, summary, env_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (task, int(bool(success)), float(reward), outcome, summary, env_id, time.time()),
            )
            return int(cursor.lastrowid or 0)

    def __len__(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT count(*) FROM memories").fetchone()[0])

    def records(self) -> list[MemoryRecord]:
        """Every record, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, task, success, reward, outcome, summary, env_id, created_at "
                "FROM memories ORDER BY id"
            ).fetchall()
        return [
            MemoryRecord(int(r[0]), r[1], bool(r[2]), float(r[3]), r[4], r[5], r[6], float(r[7]))
            for r in rows
        ]

    def search(
        self,
        query: str,
        k: int = 3,
        *,
        only_success: bool = False,
        env_id: str | None = None,
    ) -> list[tuple[MemoryRecord, float]]:
        """The ``k`` records most relevant to ``query`` by BM25, with their scores.

        Only records sharing at least one word with the query are candidates (BM25's IDF is
        not a reliable relevance signal on its own in a small store); ties go to the newest.
        """
        if k < 1:
            return []
        words = bm25_tokens(query)
        if not words:
            return []
        with self._lock:
            index, records, tokens = self._current_index()
        if index is None:
            return []
        scores = index.get_scores(words)
        wanted = set(words)
        hits = [
            (records[i], float(scores[i]))
            for i in range(len(records))
            if tokens[i] & wanted
            and (not only_success or records[i].success)
            and (env_id is None or records[i].env_id == env_id)
        ]
        hits.sort(key=lambda hit: (-hit[1], -hit[0].id))
        return hits[:k]

    def _current_index(self) -> tuple[Any, list[MemoryRecord], list[set[str]]]:
        with self._connect() as db:
            key = db.execute("SELECT count(*), coalesce(max(id), 0) FROM memories").fetchone()
        key = (int(key[0]), int(key[1]))
        if key != self._index_key:
            from rank_bm25 import BM25Okapi

            self._records = self.records()
            corpus = [bm25_tokens(r.task) or [""] for r in self._records]
            self._tokens = [set(doc) for doc in corpus]
            self._index = BM25Okapi(corpus) if corpus else None
            self._index_key = key
        return self._index, self._records, self._tokens

    def copy_to(self, path: str | Path) -> Path:
        """Write a consistent copy of the store to ``path`` (SQLite's online backup)."""
        path = Path(path)
        with self._connect() as source, closing(sqlite3.connect(path)) as target:
            source.backup(target)
        return path


def format_solved_examples(examples: Iterable[tuple[str, str]]) -> str:
    """``(task, solution)`` pairs as the examples block of a system prompt (every example
    source of an agent is shown this way).

    >>> print(format_solved_examples([("Compute 2 + 2.", "calculator -> 4")]))
    Solved examples:
    Task: Compute 2 + 2.
    Solution: calculator -> 4
    """
    lines = ["Solved examples:"]
    for task, solution in examples:
        lines += [f"Task: {task}", f"Solution: {solution}"]
    return "\n".join(lines)


def memory_examples(hits: Sequence[tuple[MemoryRecord, float]]) -> list[tuple[str, str]]:
    """Retrieved memories as ``(task, solution)`` examples (the summary, else the outcome)."""
    return [(record.task, record.summary or record.outcome) for record, _ in hits]


def format_examples(hits: Sequence[tuple[MemoryRecord, float]]) -> str:
    """Retrieved successes as prompt examples.

    >>> record = MemoryRecord(1, "Compute 2 + 2.", True, 1.0, "4", "calculator -> 4", "", 0.0)
    >>> print(format_examples([(record, 1.0)]))
    Solved examples:
    Task: Compute 2 + 2.
    Solution: calculator -> 4
    """
    return format_solved_examples(memory_examples(hits))


class KnowledgeExamples:
    """Solved problems of a knowledge graph as examples: a memory source for an agent.

    :meth:`search` finds the problems whose statements are most related to a task (BM25, see
    :meth:`~llm_trainer.core.knowledge.KnowledgeGraph.related_problems`) among those with a
    solution, and returns each with its best solution. The graph is read as it grows (a
    benchmark run writing it while the agent plays sees its newest solutions).

    Args:
        path: The graph file (created empty when missing).
    """

    def __init__(self, path: str | Path) -> None:
        from llm_trainer.core.knowledge import KnowledgeGraph

        self.graph = KnowledgeGraph(path)

    def search(self, task: str, k: int) -> list[tuple[str, str]]:
        """Up to ``k`` ``(statement, solution)`` pairs, most related first."""
        return [
            (str(hit.problem.attrs["statement"]), str(hit.solutions[0].attrs["text"]))
            for hit in self.graph.related_problems(task, k)
        ]


MEMORY_TOOL_NAME = "memory_search"


def memory_search_tool(memory: LongTermMemory, *, k: int = 3) -> Tool:
    """A ``memory_search`` tool over ``memory``, for an agent's own tool registry.

    The model calls it like an env tool, ``<tool_call>{"name": "memory_search", "arguments":
    {"query": "..."}}</tool_call>``; the agent runs it without an env step and answers with the
    JSON list of the most relevant past tasks and their outcomes.
    """
    from llm_trainer.envs.tools import Tool

    spec = {
        "type": "function",
        "function": {
            "name": MEMORY_TOOL_NAME,
            "description": "Look up similar past tasks and how they turned out.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "What to look up."}},
                "required": ["query"],
            },
        },
    }

    def search(arguments: Mapping[str, Any]) -> str:
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ToolError("missing required string argument: query")
        hits = memory.search(query, k)
        return json.dumps(
            [
                {"task": r.task, "success": r.success, "outcome": r.outcome, "summary": r.summary}
                for r, _ in hits
            ],
            ensure_ascii=False,
        )

    return Tool(spec, search, time_limit_s=5.0)
