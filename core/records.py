"""Typed, immutable records shared by envs, agents, algorithms and benchmarks."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: The per-episode evaluation metrics every env reports in ``info`` (see DESIGN.md).
METRIC_KEYS: tuple[str, ...] = (
    "format_ok",
    "tool_correct",
    "exec_ok",
    "answer_correct",
    "success",
)


class FrozenDict(Mapping[str, Any]):
    """A read-only, hashable-if-its-values-are, picklable mapping.

    Used for data that many owners share (tool specs in every ``info``, tool-call arguments):
    nobody can mutate it by accident, and gymnasium's checker does not treat it as shared
    mutable data. ``to_plain`` turns it back into a dict for ``json.dumps``.

    >>> d = FrozenDict({"a": 1}); d["a"], dict(d), d == {"a": 1}
    (1, {'a': 1}, True)
    """

    __slots__ = ("_data",)
    _data: dict[str, Any]

    def __init__(self, data: Mapping[str, Any] = ()) -> None:  # type: ignore[assignment]
        object.__setattr__(self, "_data", dict(data))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:  # faster than Mapping.get
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and self._data == dict(other)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenDict is read-only")

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (self._data,))


_SCALARS = (str, int, float, bool, type(None))


def freeze(value: Any) -> Any:
    """Recursively turn dicts into :class:`FrozenDict` and lists into tuples."""
    if type(value) is dict and all(type(v) in _SCALARS for v in value.values()):
        return FrozenDict(value)  # the common flat case, without recursion
    if isinstance(value, Mapping):
        return FrozenDict({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def to_plain(value: Any) -> Any:
    """Inverse of :func:`freeze`: plain dicts and lists, ready for ``json.dumps`` or a chat
    template's ``tools=`` (``to_plain(info["tools"])``)."""
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call of a named tool with JSON arguments.

    >>> ToolCall("calculator", {"expression": "2 + 3"}).to_text()
    '<tool_call>{"name": "calculator", "arguments": {"expression": "2 + 3"}}</tool_call>'
    """

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arguments", freeze(self.arguments))

    def arguments_dict(self) -> dict[str, Any]:
        """The arguments as a plain (mutable, JSON-serialisable) dict."""
        return dict(to_plain(self.arguments))

    def to_text(self) -> str:
        """Render in the ``<tool_call>{...}</tool_call>`` format that open models emit."""
        if self._text is None:  # rendered once: oracles and data generators call this often
            payload = json.dumps(
                {"name": self.name, "arguments": self.arguments_dict()}, ensure_ascii=False
            )
            object.__setattr__(self, "_text", f"<tool_call>{payload}</tool_call>")
        assert self._text is not None
        return self._text


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


FinishReason = Literal["stop", "length", "eos"]
"""Why a generation ended: a stop string (``</tool_call>``, ``</answer>``), the token limit, or
the model's end-of-sequence token."""


@dataclass(frozen=True, slots=True)
class Generation:
    """One sampled completion, token-faithful: what a trainer learns from is what was sampled.

    Attributes:
        text: The completion as the env receives it. It ends with the stop string when one
            stopped it (the env needs the closing tag); an end-of-sequence token is not part of
            the text.
        prompt_token_ids: The exact prompt the model saw (empty when an HTTP server does not
            report it).
        token_ids: The sampled tokens, in order, including the stop or end-of-sequence token
            that ended the completion (empty when an HTTP server does not report them).
        logprobs: One log-probability per sampled token: the model's log-softmax of the
            *unmodified* logits (temperature 1, no top-p) at the sampled token, which is what
            PPO/GRPO ratios need. Empty when the backend cannot report them.
        finish_reason: ``"stop"`` (a stop string), ``"length"`` (``max_new_tokens``) or
            ``"eos"`` (the end-of-sequence token).

    >>> g = Generation("<answer>4</answer>", (1, 2), (7, 8), (-0.1, -0.2), "stop")
    >>> g.num_tokens, round(g.logprob_sum, 2)
    (2, -0.3)
    """

    text: str
    prompt_token_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: FinishReason

    def __post_init__(self) -> None:
        if self.finish_reason not in ("stop", "length", "eos"):
            raise ValueError(
                f"finish_reason must be 'stop', 'length' or 'eos', got {self.finish_reason!r}"
            )
        if self.logprobs and self.token_ids and len(self.logprobs) != len(self.token_ids):
            raise ValueError(
                f"one log-prob per token: {len(self.logprobs)} log-probs for "
                f"{len(self.token_ids)} tokens"
            )

    @property
    def num_tokens(self) -> int:
        """Number of generated tokens (0 when the backend did not report token ids)."""
        return len(self.token_ids)

    @property
    def logprob_sum(self) -> float:
        """Log-probability of the whole completion under the model (sum over its tokens)."""
        return float(sum(self.logprobs))
