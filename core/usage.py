"""Token usage: an optional protocol for policies that can count what they read and wrote.

The tool-use envs count no tokens (they see text). A policy that knows its token counts (an LLM
agent does) exposes ``last_usage``, the :class:`TokenUsage` of its latest ``act`` call;
benchmarks sum it over an episode. Policies without it are recorded with ``tokens = None``
(characters of actions and observations are recorded for every policy).

>>> class Counting:
...     last_usage = TokenUsage(prompt_tokens=12, completion_tokens=3)
>>> isinstance(Counting(), ReportsUsage), Counting.last_usage.total
(True, 15)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens of one ``act`` call (the names OpenAI-compatible servers report)."""

    prompt_tokens: int
    """Tokens of the prompt the model read (the whole context, not just the new turn)."""
    completion_tokens: int
    """Tokens the model generated."""

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@runtime_checkable
class ReportsUsage(Protocol):
    """A policy whose ``last_usage`` is the :class:`TokenUsage` of its latest ``act`` (or
    ``None`` when that call used no model, e.g. a cached or scripted step)."""

    @property
    def last_usage(self) -> TokenUsage | None: ...
