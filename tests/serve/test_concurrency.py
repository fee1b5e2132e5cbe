"""Concurrent sessions on one server give, seed for seed, the episodes of the env in-process;
concurrent requests on one session run one at a time."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gymnasium as gym
import pytest

from llm_trainer.agents import OracleAgent, RandomAgent
from llm_trainer.core.records import to_plain
from llm_trainer.serve.client import RemoteEnv
from tests.envs.test_conformance import _play
from tests.serve.conftest import ServerFactory, http_json

CLIENTS = 8
SEEDS_PER_CLIENT = 4


def _episodes(env: gym.Env[Any, Any], first_seed: int) -> list[Any]:
    """Random-agent episodes on seeds ``first_seed``, ``first_seed + 1``..."""
    played = []
    for seed in range(first_seed, first_seed + SEEDS_PER_CLIENT):
        played.append(
            [tuple(to_plain(x) for x in step) for step in _play(env, RandomAgent(), seed)]
        )
    return played


def _oracle_actions(env_id: str, seed: int) -> list[str]:
    env = gym.make(env_id)
    oracle, actions, done = OracleAgent(env), [], False
    obs, info = env.reset(seed=seed)
    while not done:
        actions.append(oracle.act(obs, info))
        obs, _, terminated, truncated, info = env.step(actions[-1])
        done = terminated or truncated
    return actions


def _replay(env: gym.Env[Any, Any], seed: int, actions: list[str]) -> list[Any]:
    steps: list[Any] = [to_plain(env.reset(seed=seed))]
    steps += [to_plain(env.step(action)) for action in actions]
    return steps


def test_concurrent_sessions_give_the_in_process_episodes_for_the_same_seeds(
    serve_env: ServerFactory,
) -> None:
    env_id = "LLMTrainer/MultiTool-v0"  # three tools, a simulated world bound per episode
    url = serve_env(env_id)
    expected = {c: _episodes(gym.make(env_id), 100 * c) for c in range(CLIENTS)}
    oracle = {c: _oracle_actions(env_id, 100 * c) for c in range(CLIENTS)}
    oracle_expected = {c: _replay(gym.make(env_id), 100 * c, oracle[c]) for c in range(CLIENTS)}
    start = threading.Barrier(CLIENTS)

    def client(c: int) -> tuple[list[Any], list[Any]]:
        env = RemoteEnv(url, transport="ws" if c % 2 else "http")
        try:
            start.wait()  # every session plays at the same time
            return _episodes(env, 100 * c), _replay(env, 100 * c, oracle[c])
        finally:
            env.close()

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(client, range(CLIENTS)))
    for c, (random_episodes, oracle_episode) in enumerate(results):
        assert random_episodes == expected[c], c
        assert oracle_episode == oracle_expected[c], c
        assert oracle_episode[-1][1] == 1.0  # the oracle's answer earns the reward


def test_concurrent_requests_on_one_session_run_one_at_a_time(serve_env: ServerFactory) -> None:
    env_id = "LLMTrainer/Calculator-v0"
    url = serve_env(env_id, max_sessions=4)
    session = http_json(url, "POST", "/reset", {"seed": 0})[1]["session_id"]
    threads, per_thread = 4, 25

    def hammer(_: int) -> list[int]:
        turns = []
        for _ in range(per_thread):
            status, reply = http_json(
                url, "POST", "/step", {"action": {"message": "garbage"}, "session_id": session}
            )
            assert status == 200, reply
            turns.append(reply["observation"]["info"]["turn"])
        return turns

    with ThreadPoolExecutor(threads) as pool:
        turns = [t for chunk in pool.map(hammer, range(threads)) for t in chunk]
    # every step saw a distinct turn: none was lost or applied twice
    assert sorted(turns) == list(range(1, threads * per_thread + 1))
    state = http_json(url, "GET", f"/state?session_id={session}")[1]
    assert state["step_count"] == threads * per_thread
    assert state["episode_return"] == pytest.approx(-0.1 * threads * per_thread)
