"""Run episodes of any policy in any registered env, and summarise them.

A failed episode (the policy raised) is recorded on its :class:`EpisodeResult` with ``error``
set; its siblings go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from llm_trainer.agents.policy import Policy
from llm_trainer.core.records import METRIC_KEYS, EpisodeResult
from llm_trainer.envs.registration import make


def run_episode(
    env: gym.Env[Any, Any],
    policy: Policy,
    seed: int,
    *,
    options: dict[str, Any] | None = None,
    env_id: str | None = None,
) -> EpisodeResult:
    """Play one episode; never raises for a failing policy (the error is recorded)."""
    env_id = env_id or (env.spec.id if env.spec is not None else type(env.unwrapped).__name__)
    observation, info = env.reset(seed=seed, options=options)
    difficulty = int(info.get("difficulty", 0))
    total, steps = 0.0, 0
    try:
        policy.reset(seed=seed)
        while True:
            action = policy.act(observation, info)
            observation, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            steps += 1
            if terminated or truncated:
                break
    except Exception as exc:  # recorded on the result: one bad episode never stops a batch
        return EpisodeResult(
            env_id,
            seed,
            difficulty,
            total,
            steps,
            dict.fromkeys(METRIC_KEYS, False),
            f"{type(exc).__name__}: {exc}",
        )
    return EpisodeResult(
        env_id, seed, difficulty, total, steps, {k: bool(info.get(k, False)) for k in METRIC_KEYS}
    )


@dataclass(frozen=True, slots=True)
class EvalSummary:
    """Means over a set of episodes of one env."""

    env_id: str
    episodes: int
    mean_reward: float
    mean_steps: float
    rates: Mapping[str, float]
    errors: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "episodes": self.episodes,
            "mean_reward": self.mean_reward,
            "mean_steps": self.mean_steps,
            **self.rates,
            "errors": self.errors,
            "seconds": self.seconds,
        }


def summarize(env_id: str, results: Sequence[EpisodeResult], seconds: float = 0.0) -> EvalSummary:
    n = len(results)
    if n == 0:
        raise ValueError("cannot summarise zero episodes")
    return EvalSummary(
        env_id=env_id,
        episodes=n,
        mean_reward=sum(r.total_reward for r in results) / n,
        mean_steps=sum(r.steps for r in results) / n,
        rates={k: sum(r.metrics[k] for r in results) / n for k in METRIC_KEYS},
        errors=sum(r.error is not None for r in results),
        seconds=seconds,
    )


def evaluate(
    env_id: str,
    policy_factory: Callable[[gym.Env[Any, Any]], Policy],
    seeds: Iterable[int],
    *,
    difficulty: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
) -> tuple[EvalSummary, list[EpisodeResult]]:
    """Evaluate a policy on ``env_id`` over ``seeds`` (one episode per seed, one env instance).

    ``policy_factory(env)`` builds the policy for the env (the oracle needs the env; most
    policies ignore it).
    """
    kwargs = dict(env_kwargs or {})
    if difficulty is not None:
        kwargs["difficulty"] = difficulty
    env = make(env_id, **kwargs)
    policy = policy_factory(env)
    start = time.perf_counter()
    results = [run_episode(env, policy, seed, env_id=env_id) for seed in seeds]
    env.close()
    return summarize(env_id, results, time.perf_counter() - start), results
