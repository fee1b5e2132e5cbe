"""The policy protocol: what acts in an env.

A policy maps the current observation and ``info`` to the model's raw completion. LLM agents,
scripted baselines and planners all implement it; algorithms and benchmarks accept any of them.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from llm_trainer.core.errors import BatchActError, UserError


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


def resets_slots(policy: Policy) -> bool:
    """Whether ``policy.reset`` takes ``slot=`` (a policy that keeps one episode per env of a
    lockstep batch, as LLM agents do) rather than only ``seed=``."""
    try:
        return "slot" in inspect.signature(policy.reset).parameters
    except (TypeError, ValueError):
        return False


def describe_error(exc: BaseException) -> str:
    """How an episode records a failure: ``"TypeName: message"``."""
    return f"{type(exc).__name__}: {exc}"


def act_on_slots(
    policy: Policy,
    observations: Sequence[str],
    infos: Sequence[Mapping[str, Any]],
    slots: Sequence[int],
) -> tuple[list[str | None], dict[int, str]]:
    """One lockstep round of ``policy``: ``act`` for a single slot (what a policy written for
    one env implements), one batched ``act_batch`` call for several.

    Returns one action per slot (``None`` where it failed) and the failure of each failed slot
    by slot id: a :class:`BatchActError` fails only the slots it names, any other exception
    (or a wrong number of actions) every slot of the call. A :class:`UserError` propagates:
    it stops the run.
    """
    failures: dict[int, str] = {}
    try:
        actions: list[str | None] = (
            [policy.act(observations[0], infos[0])]
            if len(slots) == 1
            else list(policy.act_batch(observations, infos))
        )
        if len(actions) != len(slots):
            raise RuntimeError(
                f"act_batch returned {len(actions)} actions for {len(slots)} observations"
            )
    except UserError:
        raise
    except BatchActError as exc:  # some slots failed: the others' actions are in it
        actions = list(exc.actions)
        if len(actions) != len(slots):
            actions = [None] * len(slots)
        for slot, action in zip(slots, actions, strict=True):
            if action is None:
                failures[slot] = describe_error(exc.errors.get(slot, exc))
    except Exception as exc:  # the whole call failed: recorded on every episode in it
        actions = [None] * len(slots)
        failures = dict.fromkeys(slots, describe_error(exc))
    return actions, failures
