"""Env throughput, memory growth and snapshot cost, measured in one run against CartPole.

Used by ``scripts/bench_envs.py``. Figures are medians of several repetitions, each at least
``seconds`` long, on one pinned core where the OS allows it. Every registered id is measured
with the oracle acting: the tool-use envs and the problem envs (whose resets solve their
instance exactly, so they are slower; their RSS run is bounded in time, see :func:`run_all`).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym

from llm_trainer.agents import OracleAgent
from llm_trainer.envs.problems import ProblemEnv
from llm_trainer.envs.registration import single_agent_ids
from llm_trainer.envs.tooluse.base import ToolUseEnv


@dataclass(frozen=True, slots=True)
class Throughput:
    env_id: str
    episodes_per_s: float
    steps_per_s: float
    steps_per_episode: float


def pin_to_one_core() -> int | None:
    """Pin this process to one CPU (Linux); return the core, or None if unsupported."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def _repeat(
    run: Callable[[float], tuple[int, int, float]], seconds: float, repeats: int
) -> tuple[float, float]:
    """Median episodes/s and steps/s over ``repeats`` runs of at least ``seconds`` each."""
    eps, steps = [], []
    for _ in range(repeats):
        n_episodes, n_steps, elapsed = run(seconds)
        eps.append(n_episodes / elapsed)
        steps.append(n_steps / elapsed)
    return statistics.median(eps), statistics.median(steps)


def oracle_throughput(env_id: str, seconds: float = 2.0, repeats: int = 5) -> Throughput:
    """Episodes/s and steps/s of ``env_id`` through ``gym.make`` with the oracle acting."""
    env = gym.make(env_id)
    oracle = OracleAgent(env)
    env.reset(seed=0)

    def run(budget: float) -> tuple[int, int, float]:
        n_episodes = n_steps = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < budget:
            for _ in range(200):
                obs, info = env.reset()
                done = False
                while not done:
                    obs, _, terminated, truncated, info = env.step(oracle.act(obs, info))
                    n_steps += 1
                    done = terminated or truncated
                n_episodes += 1
        return n_episodes, n_steps, elapsed

    eps, steps = _repeat(run, seconds, repeats)
    return Throughput(env_id, eps, steps, steps / eps)


def cartpole_throughput(seconds: float = 2.0, repeats: int = 5) -> Throughput:
    """The reference: CartPole-v1 through ``gym.make`` with a constant action."""
    env = gym.make("CartPole-v1")
    env.reset(seed=0)

    def run(budget: float) -> tuple[int, int, float]:
        n_episodes = n_steps = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < budget:
            env.reset()
            done = False
            while not done:
                _, _, terminated, truncated, _ = env.step(n_steps % 2)
                n_steps += 1
                done = terminated or truncated
            n_episodes += 1
        return n_episodes, n_steps, elapsed

    eps, steps = _repeat(run, seconds, repeats)
    return Throughput("CartPole-v1", eps, steps, steps / eps)


def rss_bytes() -> int:
    """Current resident set size (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def rss_growth(env_id: str, episodes: int = 100_000) -> tuple[float, float]:
    """RSS growth in MB over ``episodes`` oracle episodes on one instance, after a warm-up of
    1,000 episodes; also returns the growth over the second half (a leak keeps growing)."""
    env = gym.make(env_id)
    oracle = OracleAgent(env)
    env.reset(seed=0)

    def play(n: int) -> None:
        for _ in range(n):
            obs, info = env.reset()
            done = False
            while not done:
                obs, _, terminated, truncated, info = env.step(oracle.act(obs, info))
                done = terminated or truncated

    play(1_000)
    before = rss_bytes()
    play(episodes // 2)
    middle = rss_bytes()
    play(episodes - episodes // 2)
    after = rss_bytes()
    return (after - before) / 2**20, (after - middle) / 2**20


def snapshot_cost(env_id: str, n: int = 100_000) -> tuple[float, float]:
    """Mean microseconds of ``get_state()`` and of ``set_state()`` on the unwrapped env."""
    base = gym.make(env_id).unwrapped
    if not isinstance(base, ToolUseEnv | ProblemEnv):
        raise TypeError(f"{env_id} does not support snapshots")
    env: Any = base  # set_state takes what this env's own get_state returned
    env.reset(seed=0)
    plan = env.task.plan
    # mid-episode: after a tool call, or (a problem without one) a wrong answer to revise
    env.step(plan[0].to_text() if plan else "<answer>0</answer>")
    get_state, set_state = env.get_state, env.set_state
    start = time.perf_counter()
    for _ in range(n):
        state = get_state()
    get_us = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(n):
        set_state(state)
    set_us = (time.perf_counter() - start) / n * 1e6
    return get_us, set_us


def run_all(
    seconds: float = 2.0,
    repeats: int = 5,
    rss_episodes: int = 100_000,
    env_ids: list[str] | None = None,
    rss_seconds: float = 20.0,
) -> dict[str, Any]:
    """Every measurement of ``scripts/bench_envs.py``, as one JSON-ready dict.

    The RSS growth of an env is measured over ``rss_episodes`` episodes, or over as many as
    its measured throughput plays in about ``rss_seconds`` when that is fewer (at least 1,000:
    the problem envs play a few thousand episodes a second, not tens of thousands); each row
    records its count.
    """
    core = pin_to_one_core()
    env_ids = env_ids or single_agent_ids()  # the gymnasium envs (not the PettingZoo ones)
    reference = cartpole_throughput(seconds, repeats)
    rows = []
    for env_id in env_ids:
        tp = oracle_throughput(env_id, seconds, repeats)
        episodes = min(rss_episodes, max(1_000, int(tp.episodes_per_s * rss_seconds)))
        growth, growth_late = rss_growth(env_id, episodes)
        get_us, set_us = snapshot_cost(env_id)
        rows.append(
            {
                **asdict(tp),
                "steps_vs_cartpole": tp.steps_per_s / reference.steps_per_s,
                "episodes_vs_cartpole": tp.episodes_per_s / reference.episodes_per_s,
                "rss_episodes": episodes,
                "rss_growth_mb": growth,
                "rss_growth_second_half_mb": growth_late,
                "get_state_us": get_us,
                "set_state_us": set_us,
            }
        )
    return {
        "pinned_core": core,
        "seconds": seconds,
        "repeats": repeats,
        "rss_episodes": rss_episodes,
        "cartpole": asdict(reference),
        "envs": rows,
    }
