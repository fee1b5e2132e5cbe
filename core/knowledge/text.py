"""Text helpers shared by the knowledge graph and the agents' memory: BM25 tokens and episode
summaries (one definition each, so a graph's solutions read like a memory's)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_WORD = re.compile(r"\w+")
#: How many characters of each action and observation an episode summary keeps.
SUMMARY_CHARS = 200


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased word tokens for BM25 (numbers included: they often name the task).

    >>> bm25_tokens("Weather in Paris, 2026-03-02?")
    ['weather', 'in', 'paris', '2026', '03', '02']
    """
    return _WORD.findall(text.casefold())


def summarize_messages(messages: Iterable[Mapping[str, Any]], chars: int = SUMMARY_CHARS) -> str:
    """What an agent did in an episode, in one line: each message's content (actions, tool
    results) cut at ``chars`` characters, joined by ``" -> "``.

    >>> summarize_messages([{"role": "assistant", "content": "<tool_call>...</tool_call>"},
    ...                     {"role": "tool", "content": "36"}])
    '<tool_call>...</tool_call> -> 36'
    """
    return " -> ".join(str(m["content"])[:chars] for m in messages)
