"""Typed, immutable records shared by envs, agents, algorithms and benchmarks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: The per-episode evaluation metrics every env reports in ``info`` (see DESIGN.md).
METRIC_KEYS: tuple[str, ...] = (
    "format_ok",
    "tool_correct",
    "exec_ok",
    "answer_correct",
    "success",
)


def _freeze(value: Any) -> Any:
    """Recursively turn dicts into read-only mappings and lists into tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Inverse of :func:`_freeze`: plain dicts and lists, ready for ``json.dumps``."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call of a named tool with JSON arguments.

    >>> ToolCall("calculator", {"expression": "2 + 3"}).to_text()
    '<tool_call>{"name": "calculator", "arguments": {"expression": "2 + 3"}}</tool_call>'
    """

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arguments", _freeze(self.arguments))

    def arguments_dict(self) -> dict[str, Any]:
        """The arguments as a plain (mutable, JSON-serialisable) dict."""
        return dict(_thaw(self.arguments))

    def to_text(self) -> str:
        """Render in the ``<tool_call>{...}</tool_call>`` format that open models emit."""
        payload = json.dumps(
            {"name": self.name, "arguments": self.arguments_dict()}, ensure_ascii=False
        )
        return f"<tool_call>{payload}</tool_call>"

    def __reduce__(self) -> tuple[Any, ...]:  # MappingProxyType does not pickle
        return (ToolCall, (self.name, self.arguments_dict()))


@dataclass(frozen=True, slots=True)
class EpisodeResult:
    """The outcome of one evaluated episode.

    A failed episode (the policy raised) is recorded with ``error`` set instead of being raised,
    so one bad episode never brings down a batch.
    """

    env_id: str
    seed: int
    difficulty: int
    total_reward: float
    steps: int
    metrics: Mapping[str, bool]
    error: str | None = None

    @property
    def success(self) -> bool:
        return bool(self.metrics.get("success", False))
