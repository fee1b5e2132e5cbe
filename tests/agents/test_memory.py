"""Memory: the per-episode token budget, and long-term memory across processes and kills."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_trainer.agents.memory import (
    TRUNCATION_MARK,
    ConversationMemory,
    LongTermMemory,
    memory_search_tool,
)
from llm_trainer.core.records import ToolCall
from llm_trainer.envs.tools import ToolRegistry


def chars(messages: list[dict[str, str]]) -> int:
    """A length function: characters plus a per-message overhead (like a chat template)."""
    return sum(len(m["content"]) + 4 for m in messages)


@given(
    st.lists(st.tuples(st.text(max_size=80), st.text(max_size=300)), max_size=30),
    st.integers(min_value=40, max_value=600),
)
def test_window_respects_the_budget_and_keeps_system_task_and_latest_turn(
    turns: list[tuple[str, str]], budget: int
) -> None:
    memory = ConversationMemory("system prompt", "the task")
    for action, observation in turns:
        memory.add("assistant", action)
        memory.add("tool", observation)
    window = memory.window(budget, chars)
    assert chars(window) <= budget or all(
        m["content"].endswith(TRUNCATION_MARK) or len(m["content"]) <= 1 for m in window
    )
    assert window[0]["role"] == "system"
    assert window[1]["role"] == "user"
    assert window[0]["content"].startswith("system prompt"[: len(window[0]["content"]) - 6])
    if turns:  # the latest turn is kept (shortened if need be): the model answers to it
        assert [m["role"] for m in window[-2:]] == ["assistant", "tool"]
    # Kept turns are the newest ones, in order, whole (a result never loses its call).
    roles = [m["role"] for m in window[2:]]
    assert roles == ["assistant", "tool"] * (len(roles) // 2)


def test_oldest_turns_are_dropped_first_on_a_long_episode() -> None:
    memory = ConversationMemory("S" * 50, "T" * 50)
    for i in range(100):
        memory.add("assistant", f"call {i}")
        memory.add("tool", f"result {i} " + "x" * 40)
    window = memory.window(400, chars)
    assert chars(window) <= 400
    kept = [m["content"] for m in window if m["role"] == "assistant"]
    assert kept == [f"call {i}" for i in range(100 - len(kept), 100)]
    assert window[0]["content"] == "S" * 50
    assert window[1]["content"] == "T" * 50


def test_a_huge_observation_is_shortened_to_fit() -> None:
    memory = ConversationMemory("system", "task")
    memory.add("assistant", "<tool_call>{}</tool_call>")
    memory.add("tool", "y" * 10_000)
    window = memory.window(200, chars)
    assert chars(window) <= 200
    assert window[-1]["content"].startswith("yyy")
    assert window[-1]["content"].endswith(TRUNCATION_MARK)


def test_a_fact_stored_in_one_process_is_retrieved_in_another(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite"
    write = textwrap.dedent(f"""
        from llm_trainer.agents.memory import LongTermMemory
        memory = LongTermMemory({str(path)!r})
        memory.add("What is the capital of Veloria?", success=True, outcome="Ostrava",
                   summary="search Veloria -> capital Ostrava -> <answer>Ostrava</answer>",
                   env_id="LLMTrainer/Search-v0")
        memory.add("Compute 3 * 4.", success=False, outcome="13")
    """)
    read = textwrap.dedent(f"""
        from llm_trainer.agents.memory import LongTermMemory
        [(record, score)] = LongTermMemory({str(path)!r}).search("capital of Veloria", k=3)
        print(record.outcome, record.success, record.env_id)
    """)
    subprocess.run([sys.executable, "-c", write], check=True)
    out = subprocess.run([sys.executable, "-c", read], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["Ostrava", "True", "LLMTrainer/Search-v0"]


def test_search_ranks_by_relevance_and_filters(tmp_path: Path) -> None:
    memory = LongTermMemory(tmp_path / "m.sqlite")
    memory.add("Weather in Paris tomorrow?", success=True, env_id="W")
    memory.add("Weather in Oslo on 2026-03-02?", success=False, env_id="W")
    memory.add("Who founded Zentrix Corp?", success=True, env_id="S")
    assert (
        next(r.task for r, _ in memory.search("weather oslo")) == "Weather in Oslo on 2026-03-02?"
    )
    assert [r.task for r, _ in memory.search("weather oslo", only_success=True)] == [
        "Weather in Paris tomorrow?"
    ]
    assert [r.env_id for r, _ in memory.search("founded", env_id="S")] == ["S"]
    assert memory.search("unrelated words entirely") == []
    assert len(memory) == 3
    assert [r.id for r in memory.records()] == [1, 2, 3]
    memory.add("Weather in Oslo tomorrow?", success=True)  # the index sees new rows
    assert memory.search("oslo tomorrow")[0][0].id == 4


def test_a_kill_mid_write_leaves_a_consistent_store(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite"
    LongTermMemory(path)  # created before the writer starts
    writer = textwrap.dedent(f"""
        from llm_trainer.agents.memory import LongTermMemory
        memory = LongTermMemory({str(path)!r})
        i = 0
        while True:
            memory.add(f"task {{i}} " + "words " * 200, success=i % 2 == 0, summary="s" * 5000)
            i += 1
    """)
    process = subprocess.Popen([sys.executable, "-c", writer])
    try:
        deadline = time.monotonic() + 60
        while len(LongTermMemory(path)) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    records = LongTermMemory(path).records()
    assert len(records) >= 50
    assert [r.id for r in records] == list(range(1, len(records) + 1))  # no torn rows
    assert all(r.summary == "s" * 5000 for r in records)


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite"
    LongTermMemory(path)
    writer = textwrap.dedent("""
        import sys
        from llm_trainer.agents.memory import LongTermMemory
        memory = LongTermMemory(sys.argv[1])
        for i in range(40):
            memory.add(f"writer {sys.argv[2]} task {i}", success=True)
    """)
    processes = [
        subprocess.Popen([sys.executable, "-c", writer, str(path), str(k)]) for k in range(3)
    ]
    assert [p.wait() for p in processes] == [0, 0, 0]
    assert len(LongTermMemory(path)) == 120


def test_memory_search_tool_runs_in_a_tool_registry(tmp_path: Path) -> None:
    memory = LongTermMemory(tmp_path / "m.sqlite")
    memory.add("Compute 12 * 3.", success=True, outcome="36")
    tools = ToolRegistry([memory_search_tool(memory)])
    result = tools.call(ToolCall("memory_search", {"query": "compute 12 times 3"}))
    assert result.ok
    assert '"outcome": "36"' in result.content
    bad = tools.call(ToolCall("memory_search", {}))
    assert not bad.ok
    assert "query" in bad.content


def test_window_rejects_a_zero_budget() -> None:
    with pytest.raises(ValueError, match="budget"):
        ConversationMemory(None, "task").window(0, chars)
