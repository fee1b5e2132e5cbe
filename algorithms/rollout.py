"""Run episodes of any policy in any registered env: one at a time, or many in lockstep.

:func:`collect` runs ``num_envs`` envs in lockstep: at each step one ``policy.act_batch`` call
serves every active env (one batched generation for LLM agents), and every step is recorded in
a :class:`~llm_trainer.core.trajectory.Trajectory`, with the token ids and log-probs the policy
sampled when it exposes them. Each ``info`` passed to ``act_batch`` carries ``info["slot"]``,
the index of its env, so policies with per-env state (the oracle, LLM agents' conversations)
know which env an entry belongs to.

A failed episode (the policy or the env raised) is recorded with ``error`` set; its siblings
go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from llm_trainer.agents.policy import Policy
from llm_trainer.core.records import METRIC_KEYS, EpisodeResult, to_plain
from llm_trainer.core.trajectory import Step, Trajectory
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


def _token_record(policy: Any, slot: int) -> dict[str, tuple[Any, ...]]:
    """The tokens behind a policy's last action in ``slot``, when it records them.

    A policy exposes them with ``last_generation(slot)`` returning an object with
    ``prompt_token_ids``, ``token_ids`` and ``logprobs`` (LLM agents do; scripted ones don't).
    """
    getter = getattr(policy, "last_generation", None)
    generation = getter(slot) if callable(getter) else None
    if generation is None:
        return {}
    return {
        "prompt_token_ids": tuple(generation.prompt_token_ids),
        "completion_token_ids": tuple(generation.token_ids),
        "logprobs": tuple(generation.logprobs),
    }


def collect(
    env_id: str,
    policy_factory: Callable[[list[gym.Env[Any, Any]]], Policy],
    seeds: Sequence[int],
    *,
    num_envs: int = 16,
    difficulty: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    source: str = "policy",
    on_episode: Callable[[Trajectory], None] | None = None,
) -> list[Trajectory]:
    """Play one episode per seed in ``num_envs`` lockstep envs; return them in seed order.

    Args:
        env_id: A registered env id.
        policy_factory: Builds the policy from the list of envs (the oracle binds to them).
        seeds: Reset seeds, one episode each.
        num_envs: Envs stepped in lockstep (the batch size of ``act_batch``).
        difficulty: Overrides the env's difficulty.
        env_kwargs: Extra constructor arguments.
        source: Recorded on each trajectory (``oracle``, ``policy:<name>``...).
        on_episode: Called with each finished trajectory (progress bars, streaming to a store).
    """
    kwargs = dict(env_kwargs or {})
    if difficulty is not None:
        kwargs["difficulty"] = difficulty
    num_envs = max(1, min(num_envs, len(seeds)))
    envs = [make(env_id, **kwargs) for _ in range(num_envs)]
    policy = policy_factory(envs)
    results: dict[int, Trajectory] = {}
    pending = list(enumerate(seeds))[::-1]  # (index, seed), popped from the end
    # Per slot: (index, seed, first observation, info at reset, steps so far, last obs, info)
    slots: list[dict[str, Any] | None] = [None] * num_envs

    def start(slot: int) -> None:
        if not pending:
            slots[slot] = None
            return
        index, seed = pending.pop()
        observation, info = envs[slot].reset(seed=seed)
        policy.reset(seed=seed, **({"slot": slot} if _accepts_slot(policy) else {}))
        slots[slot] = {
            "index": index,
            "seed": seed,
            "prompt": observation,
            "reset_info": info,
            "steps": [],
            "obs": observation,
            "info": info,
        }

    def finish(slot: int, error: str | None = None) -> None:
        state = slots[slot]
        assert state is not None
        info = state["reset_info"]
        trajectory = Trajectory(
            env_id=env_id,
            seed=state["seed"],
            difficulty=int(info.get("difficulty", 0)),
            system_prompt=str(info.get("system_prompt", "")),
            tools=tuple(to_plain(info.get("tools", ()))),
            prompt=state["prompt"],
            steps=tuple(state["steps"]),
            source=source,
            error=error,
        )
        results[state["index"]] = trajectory
        if on_episode is not None:
            on_episode(trajectory)
        start(slot)

    for slot in range(num_envs):
        start(slot)
    while any(s is not None for s in slots):
        active = [i for i, s in enumerate(slots) if s is not None]
        observations = [slots[i]["obs"] for i in active]  # type: ignore[index]
        infos = [{**slots[i]["info"], "slot": i} for i in active]  # type: ignore[index]
        try:
            actions = policy.act_batch(observations, infos)
            if len(actions) != len(active):
                raise RuntimeError(
                    f"act_batch returned {len(actions)} actions for {len(active)} observations"
                )
        except Exception as exc:  # the whole batch failed: record it on every episode in it
            for i in active:
                finish(i, f"{type(exc).__name__}: {exc}")
            continue
        for i, action in zip(active, actions, strict=True):
            state = slots[i]
            assert state is not None
            try:
                observation, reward, terminated, truncated, info = envs[i].step(action)
            except Exception as exc:  # an env bug must not take the batch down either
                finish(i, f"{type(exc).__name__}: {exc}")
                continue
            state["steps"].append(
                Step(
                    action=action,
                    observation=observation,
                    role=str(info.get("role", "user")),
                    reward=float(reward),
                    terminated=bool(terminated),
                    truncated=bool(truncated),
                    metrics={k: bool(info.get(k, False)) for k in METRIC_KEYS},
                    **_token_record(policy, i),
                )
            )
            state["obs"], state["info"] = observation, info
            if terminated or truncated:
                finish(i)
    for env in envs:
        env.close()
    return [results[i] for i in range(len(seeds))]


def _accepts_slot(policy: Any) -> bool:
    import inspect

    try:
        return "slot" in inspect.signature(policy.reset).parameters
    except (TypeError, ValueError):
        return False


def oracle_trajectories(
    env_id: str, seeds: Sequence[int], *, difficulty: int | None = None, num_envs: int = 32
) -> list[Trajectory]:
    """Oracle demonstrations: one solved episode per seed (the ``oracle`` data strategy)."""
    from llm_trainer.agents.baselines import OracleAgent

    return collect(
        env_id, OracleAgent, seeds, num_envs=num_envs, difficulty=difficulty, source="oracle"
    )
