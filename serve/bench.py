"""Steps per second of a served env over loopback against the same env in-process.

The episodes are the oracle's (a tool call or several, then the answer), recorded once
in-process and replayed, action for action, on every target: the env in-process, a
:class:`~llm_trainer.serve.client.RemoteEnv` over WebSocket and over HTTP (one client), and
``clients`` WebSocket clients at once (threads of this process). The server runs in its own
process (``llm-trainer serve --port 0``), as a trainer would reach it. Each replay's
transitions are hashed, and the hashes must be equal: the benchmark checks determinism too.
Times include the resets, as a training loop's do.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from llm_trainer.agents.baselines import OracleAgent
from llm_trainer.envs.registration import make
from llm_trainer.serve.client import RemoteEnv

Episode = tuple[int, list[str]]


@dataclass(frozen=True)
class ServeBenchResult:
    """One target's throughput."""

    target: str
    clients: int
    steps: int
    resets: int
    seconds: float
    digest: str

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds


def record_episodes(env_id: str, episodes: int, seed: int = 0) -> list[Episode]:
    """The oracle's actions on seeds ``seed``, ``seed + 1``... (played in-process)."""
    env = make(env_id)
    oracle = OracleAgent(env)
    recorded = []
    for s in range(seed, seed + episodes):
        observation, info = env.reset(seed=s)
        actions, done = [], False
        while not done:
            actions.append(oracle.act(observation, info))
            observation, _, terminated, truncated, info = env.step(actions[-1])
            done = terminated or truncated
        recorded.append((s, actions))
    env.close()
    return recorded


def replay(env: gym.Env[Any, Any], episodes: list[Episode]) -> tuple[int, int, str]:
    """Play the recorded episodes; (steps, resets, a digest of every transition)."""
    digest = hashlib.sha256()
    steps = 0
    for seed, actions in episodes:
        observation, _ = env.reset(seed=seed)
        digest.update(observation.encode("utf-8", "surrogatepass"))
        for action in actions:
            observation, reward, terminated, truncated, _ = env.step(action)
            digest.update(f"{observation}|{float(reward)!r}|{terminated}|{truncated}".encode())
            steps += 1
    return steps, len(episodes), digest.hexdigest()[:16]


def _timed(
    target: str, clients: int, make_env: Callable[[], gym.Env[Any, Any]], episodes: list[Episode]
) -> ServeBenchResult:
    """``clients`` envs replaying ``episodes`` at once (one thread each); the wall time."""
    envs = [make_env() for _ in range(clients)]
    outcomes: list[tuple[int, int, str]] = [(0, 0, "")] * clients
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            outcomes[i] = replay(envs[i], episodes)
        except BaseException as exc:  # reported below, in the caller's thread
            errors.append(exc)

    # One warm-up episode per env (connections, first-call costs) before the clock starts.
    for env in envs:
        replay(env, episodes[:1])
    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    for env in envs:
        env.close()
    if errors:
        raise errors[0]
    digests = {digest for _, _, digest in outcomes}
    if len(digests) != 1:
        raise AssertionError(f"{target}: clients saw different transitions: {digests}")
    return ServeBenchResult(
        target,
        clients,
        sum(o[0] for o in outcomes),
        sum(o[1] for o in outcomes),
        seconds,
        outcomes[0][2],
    )


@contextmanager
def served(env_id: str, max_sessions: int = 64) -> Iterator[str]:
    """``llm-trainer serve --env env_id --port 0`` in a subprocess; its URL."""
    command = [sys.executable, "-m", "llm_trainer.cli", "serve", "--env", env_id, "--port", "0"]
    command += ["--max-sessions", str(max_sessions)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if " at " not in line:
            process.kill()
            raise RuntimeError(f"the server did not start: {line}{process.communicate()[1]}")
        yield line.split(" at ", 1)[1].split()[0]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(env_id: str, episodes: int, clients: int, seed: int = 0) -> dict[str, Any]:
    """The whole comparison as a JSON-ready dict (``ratio``: remote steps/s / in-process)."""
    recorded = record_episodes(env_id, episodes, seed)
    results = [_timed("in-process", 1, lambda: make(env_id), recorded)]
    with served(env_id) as url:
        results.append(_timed("websocket", 1, lambda: RemoteEnv(url, transport="ws"), recorded))
        results.append(_timed("http", 1, lambda: RemoteEnv(url, transport="http"), recorded))
        if clients > 1:
            results.append(
                _timed("websocket", clients, lambda: RemoteEnv(url, transport="ws"), recorded)
            )
    baseline = results[0].steps_per_s
    digests = {r.digest for r in results}
    return {
        "env_id": env_id,
        "episodes": episodes,
        "same_transitions": len(digests) == 1,
        "results": [
            {
                "target": r.target,
                "clients": r.clients,
                "steps": r.steps,
                "resets": r.resets,
                "seconds": round(r.seconds, 4),
                "steps_per_s": round(r.steps_per_s, 1),
                "ratio": round(r.steps_per_s / baseline, 4),
                "digest": r.digest,
            }
            for r in results
        ],
    }


def format_table(summary: dict[str, Any]) -> str:
    lines = [
        f"{summary['env_id']}: {summary['episodes']} oracle episodes per client; same "
        f"transitions everywhere: {summary['same_transitions']}",
        f"{'target':12} {'clients':>7} {'steps':>8} {'seconds':>8} {'steps/s':>10} "
        f"{'vs in-proc':>10}",
    ]
    for r in summary["results"]:
        lines.append(
            f"{r['target']:12} {r['clients']:7d} {r['steps']:8d} {r['seconds']:8.2f} "
            f"{r['steps_per_s']:10,.0f} {r['ratio']:10.4f}"
        )
    return "\n".join(lines)


__all__ = ["ServeBenchResult", "format_table", "record_episodes", "replay", "run", "served"]
