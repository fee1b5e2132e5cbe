"""The conformance checks of tests/envs/test_conformance.py, run on RemoteEnv over loopback for
every single-agent id: a served env passes what the env passes in-process, and plays the same
episodes for the same seeds."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import llm_trainer
from llm_trainer.agents import OracleAgent, RandomAgent
from llm_trainer.core.records import METRIC_KEYS, to_plain
from llm_trainer.serve.client import (
    RemoteCapacityError,
    RemoteEnv,
    RemoteResetNeededError,
    RemoteSessionError,
    RemoteValidationError,
    _WebSocketTransport,
)
from tests.conftest import ENV_IDS
from tests.envs.test_conformance import INFO_KEYS, _difficulties, _play
from tests.serve.conftest import ServerFactory

TRANSPORTS = ("ws", "http")


def _remote(
    serve_env: ServerFactory, env_id: str, transport: str = "ws", **config: Any
) -> RemoteEnv:
    return RemoteEnv(serve_env(env_id, **config), transport=transport)  # type: ignore[arg-type]


@pytest.fixture
def remote(serve_env: ServerFactory, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``remote(env_id, transport="ws", **config)``: RemoteEnvs closed after the test."""
    made: list[RemoteEnv] = []

    def factory(env_id: str, transport: str = "ws", **config: Any) -> RemoteEnv:
        made.append(_remote(serve_env, env_id, transport, **config))
        return made[-1]

    yield factory
    for env in made:
        env.close()


def _plain(trajectory: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(to_plain(x) for x in step) for step in trajectory]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_check_env_passes_over_the_wire(env_id: str, remote: Any) -> None:
    env = remote(env_id)
    check_env(env, skip_render_check=True)
    assert env.spec.id == env_id
    assert env.spec.max_episode_steps == llm_trainer.spec(env_id).max_episode_steps


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reset_info_carries_prompt_tools_difficulty_and_metrics(
    env_id: str, transport: str, remote: Any
) -> None:
    env = remote(env_id, transport)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert obs
    assert set(info) >= INFO_KEYS
    assert info["system_prompt"]
    declared = llm_trainer.spec(env_id).capabilities.tools
    assert [t["function"]["name"] for t in info["tools"]] == list(declared)
    assert not any(info[k] for k in METRIC_KEYS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seeds_give_the_in_process_episodes_on_both_transports(
    env_id: str, remote: Any
) -> None:
    local = gym.make(env_id)
    ws, http = remote(env_id, "ws"), remote(env_id, "http")
    for seed in range(3):
        expected = _plain(_play(local, RandomAgent(), seed))
        assert _plain(_play(ws, RandomAgent(), seed)) == expected
        assert _plain(_play(http, RandomAgent(), seed)) == expected
    # ... and reset() without a seed continues the seed stream as in-process
    assert [ws.reset()[0] for _ in range(5)] == [local.reset()[0] for _ in range(5)]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_different_seeds_give_different_tasks(env_id: str, remote: Any) -> None:
    env = remote(env_id)
    prompts = {env.reset(seed=seed)[0] for seed in range(50)}
    assert len(prompts) >= 40


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_the_oracles_actions_reach_the_maximum_reward_over_the_wire(
    env_id: str, remote: Any
) -> None:
    """The oracle reads the task in-process; its actions, replayed on the served env with the
    same seed, earn the same rewards and the reward threshold."""
    threshold = llm_trainer.spec(env_id).reward_threshold
    env = remote(env_id)
    for difficulty in _difficulties(env_id):
        local = gym.make(env_id, difficulty=difficulty)
        oracle = OracleAgent(local)
        for seed in range(2):
            options = {"difficulty": difficulty}
            obs, info = local.reset(seed=seed)
            assert env.reset(seed=seed, options=options) == (obs, to_plain(info))
            total, done = 0.0, False
            while not done:
                action = oracle.act(obs, info)
                obs, reward, terminated, truncated, info = local.step(action)
                got = env.step(action)
                assert got == (obs, reward, terminated, truncated, to_plain(info))
                total += got[1]
                done = terminated or truncated
            assert total == pytest.approx(threshold), (difficulty, seed)
            assert all(got[4][k] for k in METRIC_KEYS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_difficulty_is_a_reset_option(env_id: str, remote: Any) -> None:
    env = remote(env_id)
    for difficulty in _difficulties(env_id):
        _, info = env.reset(seed=0, options={"difficulty": difficulty})
        assert info["difficulty"] == difficulty
    with pytest.raises(ValueError, match="difficulty") as error:
        env.reset(seed=0, options={"difficulty": 99})
    assert isinstance(error.value, RemoteValidationError)
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(seed=0, options={"dificulty": 2})


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_malformed_tool_calls_are_invalid_actions_not_exceptions(
    env_id: str, transport: str, remote: Any
) -> None:
    env = remote(env_id, transport)
    env.reset(seed=0)
    for action in (
        '<tool_call>{"name": "calculator"}</tool_call>',
        "<tool_call>{oops",
        "<answer>1</answer><answer>2</answer>",
        "x" * 9000,
        "",
        "\x00\udcff",
    ):
        _, reward, terminated, _, info = env.step(action)
        assert info["invalid_action"]
        assert reward == pytest.approx(-0.1)
        assert not terminated
        assert info["format_ok"] is False


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stepping_a_finished_episode_raises_reset_needed(
    env_id: str, transport: str, remote: Any
) -> None:
    env = remote(env_id, transport)
    with pytest.raises(gym.error.ResetNeeded):
        env.step("<answer>0</answer>")  # before the first reset
    env.reset(seed=0)
    for _ in range(20):  # a problem env asks for revisions first (up to max_revisions)
        if env.step("<answer>0</answer>")[2]:
            break
    with pytest.raises(gym.error.ResetNeeded) as error:
        env.step("<answer>0</answer>")
    assert isinstance(error.value, RemoteResetNeededError)
    assert error.value.code == "RESET_NEEDED"
    env.reset(seed=0)
    with pytest.raises(TypeError, match="action must be a str"):
        env.step(42)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_interleaving_two_sessions_does_not_change_either_stream(env_id: str, remote: Any) -> None:
    alone = remote(env_id)
    alone_prompts = [alone.reset(seed=1)[0]] + [alone.reset()[0] for _ in range(10)]
    a, b = remote(env_id), remote(env_id, "http")
    prompts = [a.reset(seed=1)[0]]
    b.reset(seed=2)
    for _ in range(10):
        b.reset()
        prompts.append(a.reset()[0])
        b.step("<answer>0</answer>")
    assert prompts == alone_prompts


def test_a_closed_session_is_gone_and_the_client_says_so(serve_env: ServerFactory) -> None:
    env_id = "LLMTrainer/Calculator-v0"
    env = _remote(serve_env, env_id, "http")
    env.reset(seed=0)
    session = env.session_id
    env.close()
    again = _remote(serve_env, env_id, "http")
    again._session_id = session  # a client holding a closed session's id
    with pytest.raises(RemoteSessionError, match="was closed") as error:
        again.step("<answer>1</answer>")
    assert (error.value.code, error.value.status) == ("SESSION_ERROR", 404)
    again._session_id = None
    full = [_remote(serve_env, env_id, "ws", max_sessions=1)]
    full[0].reset(seed=0)
    refused = _remote(serve_env, env_id, "ws", max_sessions=1)
    with pytest.raises(RemoteCapacityError, match="1/1 sessions open"):
        refused.reset(seed=0)
    # the server's refusal arrives, and the connection closes, before the client says anything
    late = _remote(serve_env, env_id, "ws", max_sessions=1)
    late._ws = _WebSocketTransport(late._ws_url, True, 30)
    time.sleep(0.3)
    with pytest.raises(RemoteCapacityError, match="1/1 sessions open"):
        late.reset(seed=0)
    for env in full:
        env.close()


def test_the_http_client_reconnects_once_when_its_kept_alive_connection_died(
    serve_env: ServerFactory,
) -> None:
    env = _remote(serve_env, "LLMTrainer/Calculator-v0", "http")
    local = gym.make("LLMTrainer/Calculator-v0")
    assert env.reset(seed=4)[0] == local.reset(seed=4)[0]
    connection = env._http._connection
    assert connection is not None
    assert connection.sock is not None
    connection.sock.shutdown(socket.SHUT_RDWR)  # as when the server drops an idle connection
    assert env.step("<answer>7</answer>") == _plain_step(local.step("<answer>7</answer>"))
    assert env._http._connection is not connection
    env.close()


def _plain_step(result: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(to_plain(x) for x in result)


def test_bad_client_arguments_are_refused(serve_env: ServerFactory) -> None:
    with pytest.raises(ValueError, match="transport must be one of"):
        RemoteEnv(serve_env("LLMTrainer/Calculator-v0"), transport="grpc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="base_url must look like"):
        RemoteEnv("localhost:8000")
    with pytest.raises(ConnectionRefusedError):
        RemoteEnv("http://127.0.0.1:9", timeout_s=5)  # nothing listens on the discard port
