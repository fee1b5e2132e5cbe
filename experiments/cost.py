"""What a run used: seconds, CPU- and GPU-seconds, tokens, and money for priced API backends.

:class:`RunUsage` is the record of one run (the runs index stores it; :meth:`RunUsage.total`
sums a sweep's or a cycle's). Tokens come from where they are counted:

* training tokens: the trainers' own count in ``metrics.jsonl`` (Hugging Face trainers log
  ``num_input_tokens_seen``, non-padding tokens; self-play logs ``selfplay/trained_tokens``);
* generated tokens: ``rollout/generated_tokens`` of PPO's rollouts;
* API tokens: what an OpenAI-compatible server reports in each reply's ``usage`` object
  (:func:`usage_from_openai_reply`), recorded by backend spec in the process-wide
  :data:`METER`. A run's API tokens are what the meter recorded while it ran.

Money is API tokens times a :class:`PriceTable` (USD per 1,000 prompt and completion tokens,
by backend spec: a YAML file, see :meth:`PriceTable.load`). Local backends (``transformers``,
``vllm``) cost no money per token; their price is their GPU-seconds.

>>> prices = PriceTable.from_dict({"openai:*#gpt-4o-mini": {"prompt_per_1k": 0.15,
...                                                        "completion_per_1k": 0.6}})
>>> report = prices.cost({"openai:https://api.example.com/v1#gpt-4o-mini": TokenUsage(2000, 500)})
>>> round(report.usd, 4), report.unpriced
(0.6, ())
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from llm_trainer.core.config import NON_NEGATIVE, build, check_ranges, read_yaml_mapping
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.usage import TokenUsage

#: Environment variable naming a price table file (YAML) for the runs of this process.
PRICES_ENV = "LLM_TRAINER_PRICES"


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """The price of an API backend's tokens."""

    prompt_per_1k: Annotated[float, NON_NEGATIVE] = 0.0
    """USD per 1,000 prompt tokens."""
    completion_per_1k: Annotated[float, NON_NEGATIVE] = 0.0
    """USD per 1,000 completion tokens."""

    def __post_init__(self) -> None:
        check_ranges(self)

    def cost(self, usage: TokenUsage) -> float:
        """USD of ``usage``.

        >>> TokenPrice(1.0, 2.0).cost(TokenUsage(500, 1000))
        2.5
        """
        return (
            usage.prompt_tokens * self.prompt_per_1k
            + usage.completion_tokens * self.completion_per_1k
        ) / 1000


@dataclass(frozen=True, slots=True)
class CostReport:
    """The money of some API usage, and the backends it could not price."""

    usd: float | None
    """USD of the priced backends' tokens; ``None`` when no backend used was priced."""
    unpriced: tuple[str, ...]
    """Backend specs that used tokens but match no price."""


@dataclass(frozen=True)
class PriceTable:
    """Prices by backend spec: ``(pattern, price)`` pairs, the first ``fnmatch`` match wins."""

    entries: tuple[tuple[str, TokenPrice], ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "prices") -> PriceTable:
        """From ``{spec pattern: {prompt_per_1k, completion_per_1k}}`` (in order).

        Raises:
            ConfigError: naming the pattern and field for a bad entry.
        """
        entries = []
        for pattern, fields in data.items():
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(f"{source}: a price's key must be a backend spec pattern")
            try:
                price = build(TokenPrice, fields, f"{source}[{pattern!r}]")
            except ConfigError as exc:
                where = f"{source}[{pattern!r}]"
                message = str(exc)
                raise ConfigError(
                    message if message.startswith(where) else f"{where}.{message}"
                ) from None
            entries.append((pattern, price))
        return cls(tuple(entries))

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        """A price table file::

        # USD per 1,000 tokens, by backend spec (fnmatch patterns; the first match wins)
        "openai:https://api.openai.com/v1#gpt-4o-mini": {prompt_per_1k: 0.15,
                                                         completion_per_1k: 0.6}
        "openai:http://127.0.0.1:*": {}        # a local server: free
        """
        return cls.from_dict(read_yaml_mapping(path), str(path))

    def price(self, spec: str) -> TokenPrice | None:
        """The price of backend ``spec`` (``None`` when no pattern matches)."""
        for pattern, price in self.entries:
            if fnmatch.fnmatchcase(spec, pattern):
                return price
        return None

    def cost(self, usage: Mapping[str, TokenUsage]) -> CostReport:
        """The money of ``usage`` (tokens by backend spec)."""
        total: float | None = None
        unpriced = []
        for spec, tokens in sorted(usage.items()):
            if not tokens.total:
                continue
            price = self.price(spec)
            if price is None:
                unpriced.append(spec)
            else:
                total = (total or 0.0) + price.cost(tokens)
        return CostReport(total, tuple(unpriced))


def default_prices(index_dir: Path) -> PriceTable:
    """The price table of runs indexed in ``index_dir``: the file named by
    ``$LLM_TRAINER_PRICES``, else ``index_dir/prices.yaml``, else none (no money counted)."""
    import os

    named = os.environ.get(PRICES_ENV)
    if named:
        return PriceTable.load(named)
    beside = index_dir / "prices.yaml"
    return PriceTable.load(beside) if beside.is_file() else PriceTable()


def usage_from_openai_reply(body: Any) -> TokenUsage | None:
    """The tokens an OpenAI-compatible reply reports in its ``usage`` object (``None`` when
    it reports none, as some servers do for streamed or failed replies).

    >>> usage_from_openai_reply({"usage": {"prompt_tokens": 12, "completion_tokens": 3}})
    TokenUsage(prompt_tokens=12, completion_tokens=3)
    """
    usage = body.get("usage") if isinstance(body, Mapping) else None
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return TokenUsage(prompt, completion)


class UsageMeter:
    """API tokens by backend spec, summed in this process (thread-safe).

    >>> meter = UsageMeter()
    >>> before = meter.snapshot()
    >>> meter.record("openai:http://x/v1#m", TokenUsage(10, 2))
    >>> meter.since(before)
    {'openai:http://x/v1#m': TokenUsage(prompt_tokens=10, completion_tokens=2)}
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, TokenUsage] = {}

    def record(self, spec: str, usage: TokenUsage) -> None:
        """Add ``usage`` to the tokens of backend ``spec``."""
        with self._lock:
            old = self._totals.get(spec, TokenUsage(0, 0))
            self._totals[spec] = TokenUsage(
                old.prompt_tokens + usage.prompt_tokens,
                old.completion_tokens + usage.completion_tokens,
            )

    def snapshot(self) -> dict[str, TokenUsage]:
        """The totals so far (a copy)."""
        with self._lock:
            return dict(self._totals)

    def since(self, snapshot: Mapping[str, TokenUsage]) -> dict[str, TokenUsage]:
        """The tokens recorded after ``snapshot`` was taken, by spec (specs with none left
        out)."""
        out = {}
        for spec, now in self.snapshot().items():
            old = snapshot.get(spec, TokenUsage(0, 0))
            used = TokenUsage(
                now.prompt_tokens - old.prompt_tokens, now.completion_tokens - old.completion_tokens
            )
            if used.total:
                out[spec] = used
        return out


#: The process-wide meter that API backends record their replies' tokens in.
METER = UsageMeter()


def _add_int(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else a + b


@dataclass(frozen=True, slots=True)
class RunUsage:
    """What one run (or, summed, a sweep or a cycle) used. ``None``: not counted."""

    seconds: float = 0.0
    """Wall-clock seconds."""
    cpu_seconds: float = 0.0
    """CPU time of the run's process (all its threads)."""
    gpu_seconds: float = 0.0
    """Wall-clock seconds on a GPU (the run's wall time when it trained on one, else 0)."""
    train_tokens: int | None = None
    """Tokens trained on (as the trainer counted them)."""
    generated_tokens: int | None = None
    """Tokens the policy generated in online-RL rollouts."""
    api_prompt_tokens: int | None = None
    """Prompt tokens of API backends (OpenAI-compatible servers)."""
    api_completion_tokens: int | None = None
    """Completion tokens of API backends."""
    cost_usd: float | None = None
    """Money of the API tokens (see :class:`PriceTable`); ``None``: nothing priced."""

    @classmethod
    def total(cls, usages: Iterable[RunUsage]) -> RunUsage:
        """The sum of ``usages`` (a field stays ``None`` when it is ``None`` in all).

        >>> RunUsage.total([RunUsage(1.0, train_tokens=5), RunUsage(2.0)])
        RunUsage(seconds=3.0, cpu_seconds=0.0, gpu_seconds=0.0, train_tokens=5, ...)
        """
        out = cls()
        for u in usages:
            out = cls(
                seconds=out.seconds + u.seconds,
                cpu_seconds=out.cpu_seconds + u.cpu_seconds,
                gpu_seconds=out.gpu_seconds + u.gpu_seconds,
                train_tokens=_add_int(out.train_tokens, u.train_tokens),
                generated_tokens=_add_int(out.generated_tokens, u.generated_tokens),
                api_prompt_tokens=_add_int(out.api_prompt_tokens, u.api_prompt_tokens),
                api_completion_tokens=_add_int(out.api_completion_tokens, u.api_completion_tokens),
                cost_usd=None if out.cost_usd is None and u.cost_usd is None
                else (out.cost_usd or 0.0) + (u.cost_usd or 0.0),
            )  # fmt: skip
        return out

    def as_dict(self) -> dict[str, float | int | None]:
        return dataclasses.asdict(self)

    @property
    def tokens(self) -> int | None:
        """Every token counted (trained, generated and API), ``None`` when none was."""
        counted = [
            v
            for v in (
                self.train_tokens,
                self.generated_tokens,
                self.api_prompt_tokens,
                self.api_completion_tokens,
            )
            if v is not None
        ]
        return sum(counted) if counted else None


def tokens_from_metrics(path: Path) -> tuple[int | None, int | None]:
    """``(trained, generated)`` tokens of a run from its ``metrics.jsonl`` (``None`` where the
    trainer logs no count).

    Trained: every ``...num_input_tokens_seen`` key (a Hugging Face trainer's running total,
    under a prefix when a run trains several: its last value, and the value before each drop
    when a new trainer starts the count again), plus every ``selfplay/trained_tokens``.
    Generated: the sum of ``rollout/generated_tokens``.
    """
    if not path.is_file():
        return None, None
    banked: dict[str, int] = {}
    last: dict[str, int] = {}
    trained: int | None = None
    generated: int | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            point = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill: the rest still counts
        if not isinstance(point, dict):
            continue
        for key, value in point.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if key.endswith("num_input_tokens_seen"):
                if value < last.get(key, 0):  # a new trainer counts from 0 again
                    banked[key] = banked.get(key, 0) + last[key]
                last[key] = int(value)
            elif key == "selfplay/trained_tokens":
                trained = (trained or 0) + int(value)
            elif key == "rollout/generated_tokens":
                generated = (generated or 0) + int(value)
    if last:
        trained = (trained or 0) + sum(last.values()) + sum(banked.values())
    return trained, generated
