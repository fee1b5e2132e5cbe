"""Code-v0 throughput with the oracle, and where the time goes: the sandbox's share.

Used by ``scripts/bench_code.py``. Every oracle answer is one sandbox run (the harness and the
reference implementation on 8-12 hidden tests), so the env plays tens of episodes a second,
not thousands: the figure to watch is the sandbox's share of an episode and the floor one run
of ``print(1)`` costs in the same sandbox (interpreter start, bubblewrap, cgroups, tmpfs).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym

from llm_trainer.agents import OracleAgent
from llm_trainer.envs.problems.code import CodeEnv
from llm_trainer.envs.registration import make
from llm_trainer.sandbox import Sandbox, SandboxResult

ENV_ID = "LLMTrainer/Code-v0"


def _base(env: gym.Env[str, str]) -> CodeEnv:
    base = env.unwrapped
    assert isinstance(base, CodeEnv)
    return base


@dataclass(frozen=True, slots=True)
class CodeThroughput:
    """One difficulty's figures (medians over episodes where per episode)."""

    difficulty: int
    episodes: int
    episodes_per_s: float
    episode_ms: float
    """Mean wall time of an episode (reset, the oracle's answer, judging)."""
    sandbox_ms: float
    """Mean time inside ``Sandbox.run`` per episode."""
    sandbox_share: float
    """``sandbox_ms / episode_ms``."""
    run_median_ms: float
    """Median of one ``Sandbox.run``."""
    reset_ms: float
    """Mean time of a reset (drawing the task and computing the expected outputs)."""
    isolation_level: str


class _TimedRuns:
    """Wraps a sandbox's ``run`` to add up the time spent in it (the benchmark's only probe)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.times: list[float] = []
        self.level = sandbox.level
        run: Callable[..., SandboxResult] = sandbox.run

        def timed(*args: Any, **kwargs: Any) -> SandboxResult:
            start = time.perf_counter()
            try:
                return run(*args, **kwargs)
            finally:
                self.times.append(time.perf_counter() - start)

        sandbox.run = timed  # type: ignore[method-assign]


def oracle_throughput(difficulty: int, episodes: int) -> CodeThroughput:
    """Play ``episodes`` oracle episodes of Code-v0 at ``difficulty`` (seeds 0, 1, ...)."""
    env = make(ENV_ID, difficulty=difficulty)
    oracle = OracleAgent(env)
    probe = _TimedRuns(_base(env).family.sandbox())
    env.reset(seed=0)  # warm-up: the first judged answer pays for imports and caches
    env.step(oracle.act("", {}))
    probe.times.clear()
    resets: list[float] = []
    start = time.perf_counter()
    for seed in range(episodes):
        t = time.perf_counter()
        obs, info = env.reset(seed=seed)
        resets.append(time.perf_counter() - t)
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(oracle.act(obs, info))
            done = terminated or truncated
        if reward != 1.0:
            raise AssertionError(f"the oracle scored {reward} at seed {seed}: {obs}")
    elapsed = time.perf_counter() - start
    env.close()
    in_sandbox = sum(probe.times)
    return CodeThroughput(
        difficulty=difficulty,
        episodes=episodes,
        episodes_per_s=episodes / elapsed,
        episode_ms=1000 * elapsed / episodes,
        sandbox_ms=1000 * in_sandbox / episodes,
        sandbox_share=in_sandbox / elapsed,
        run_median_ms=1000 * statistics.median(probe.times),
        reset_ms=1000 * statistics.fmean(resets),
        isolation_level=probe.level,
    )


def floor_ms(runs: int = 20) -> float:
    """Median wall time of the cheapest run (``python -S -c pass``) in a sandbox like the
    env's: what any answer costs before the harness does anything."""
    env = make(ENV_ID)
    sandbox = _base(env).family.sandbox()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sandbox.run(files={}, argv=("-S", "-c", "pass"))
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def run_all(episodes: int = 100, floor_runs: int = 20) -> dict[str, Any]:
    """Every difficulty's :class:`CodeThroughput` and the sandbox floor, as plain data."""
    rows = [oracle_throughput(d, episodes) for d in (1, 2, 3)]
    total_episodes = sum(r.episodes for r in rows)
    total_s = sum(r.episodes / r.episodes_per_s for r in rows)
    return {
        "env_id": ENV_ID,
        "difficulties": [asdict(r) for r in rows],
        "episodes_per_s": total_episodes / total_s,
        "sandbox_share": sum(r.sandbox_share * r.episodes / r.episodes_per_s for r in rows)
        / total_s,
        "floor_ms": floor_ms(floor_runs),
    }
