"""The policy protocol: what acts in an env.

A policy maps the current observation and ``info`` to the model's raw completion. LLM agents,
scripted baselines and planners all implement it; algorithms and benchmarks accept any of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Policy(Protocol):
    """``reset(seed=...)`` at episode start, then ``act(observation, info) -> action text``."""

    def reset(self, *, seed: int | None = None) -> None:
        """Start a new episode; a policy with randomness re-seeds from ``seed`` when given."""
        ...

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        """The next action (a completion in the env's text format)."""
        ...

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """One action per env of a lockstep batch (LLM agents do one batched generation)."""
        ...
