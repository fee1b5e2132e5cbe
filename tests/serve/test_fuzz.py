"""Fuzzing the server: any action text gets, over the wire, exactly what the env answers
in-process; any JSON body or WebSocket message gets a reply (an error naming the problem, never
an internal error), and the server goes on serving."""

from __future__ import annotations

import functools
import json
from typing import Any

import gymnasium as gym
import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.sync.client import connect

from llm_trainer.core.records import to_plain
from llm_trainer.serve.client import RemoteEnv
from tests.conftest import ENV_IDS
from tests.serve.conftest import ServerFactory, http_json

FRAGMENTS = (
    "<tool_call>",
    "</tool_call>",
    "<answer>",
    "</answer>",
    "<think>",
    "</think>",
    "<plan>",
    "</plan>",
    '{"name": "calculator", "arguments": {"expression": "',
    '{"name": "weather", "arguments": {"city": "Paris", "date": "2024-01-0',
    '{"name": "search", "arguments": {"query": "',
    '"}}',
    "9" * 5000,
    "1e308",
    "\\ud800",
    "```python\ndef f(x):\n    return x\n```",
)
#: Any code point, lone surrogates and control characters included (hypothesis leaves
#: surrogates out of text() by default).
CHARACTERS = st.one_of(st.characters(), st.characters(categories=["Cs", "Cc"]))
ACTIONS = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(CHARACTERS, max_size=40)), max_size=6
).map("".join)


@functools.cache
def _local(env_id: str) -> gym.Env[str, str]:
    return gym.make(env_id)


@pytest.fixture(scope="module")
def remotes(serve_env: ServerFactory) -> Any:
    """One WebSocket RemoteEnv per env id for the whole module (each example resets it)."""
    made: dict[str, RemoteEnv] = {}

    def remote(env_id: str) -> RemoteEnv:
        if env_id not in made:
            made[env_id] = RemoteEnv(serve_env(env_id), transport="ws")
        return made[env_id]

    yield remote
    for env in made.values():
        env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
@given(actions=st.lists(ACTIONS, min_size=1, max_size=6), seed=st.integers(0, 2**32 - 1))
def test_any_action_text_gets_the_in_process_answer_over_the_wire(
    env_id: str, remotes: Any, actions: list[str], seed: int
) -> None:
    local, remote = _local(env_id), remotes(env_id)
    assert remote.reset(seed=seed) == _plain(local.reset(seed=seed))
    for action in actions:
        expected = local.step(action)
        assert remote.step(action) == _plain(expected), action
        if expected[2] or expected[3]:
            assert remote.reset() == _plain(local.reset())


def _plain(result: tuple[Any, ...]) -> tuple[Any, ...]:
    """A gymnasium result as it travels (info's tuples and read-only dicts as lists and dicts)."""
    return tuple(to_plain(x) for x in result)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(CHARACTERS),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    ["seed", "options", "episode_id", "session_id", "action", "message", "type", "data"]
)
BODIES = st.one_of(JSON, st.dictionaries(FIELDS, JSON, max_size=4))


@given(body=BODIES, path=st.sampled_from(["/reset", "/step", "/close"]), real_session=st.booleans())
def test_any_json_body_gets_a_reply_and_never_an_internal_error(
    serve_env: ServerFactory, body: Any, path: str, real_session: bool
) -> None:
    url = serve_env("LLMTrainer/Calculator-v0", max_sessions=256, session_timeout_s=5)
    if real_session and isinstance(body, dict):
        body["session_id"] = http_json(url, "POST", "/reset", {"seed": 0})[1]["session_id"]
    status, reply = http_json(url, "POST", path, body)
    assert status in (200, 400, 404, 409, 422), (status, reply)
    if status != 200:
        assert reply["code"] in {
            "INVALID_JSON",
            "VALIDATION_ERROR",
            "SESSION_ERROR",
            "RESET_NEEDED",
        }
        assert reply["detail"]
    if real_session and isinstance(body, dict):
        http_json(url, "POST", "/close", {"session_id": body["session_id"]})


@given(messages=st.lists(st.one_of(BODIES, st.text(CHARACTERS, max_size=20)), max_size=5))
def test_any_websocket_message_gets_a_reply_and_the_connection_lives_on(
    serve_env: ServerFactory, messages: list[Any]
) -> None:
    url = serve_env("LLMTrainer/Calculator-v0")
    with connect(url.replace("http://", "ws://") + "/ws", proxy=None) as ws:
        for message in messages:
            if isinstance(message, dict) and message.get("type") == "close":
                continue  # the one message that ends the connection on purpose
            ws.send(
                message
                if isinstance(message, str) and not _is_json(message)
                else json.dumps(message)
            )
            reply = json.loads(ws.recv(timeout=30))
            assert reply["type"] in {"observation", "state", "error"}, reply
            if reply["type"] == "error":
                assert reply["data"]["code"] != "EXECUTION_ERROR", reply
                assert reply["data"]["message"]
        ws.send(json.dumps({"type": "reset", "data": {"seed": 0}}))
        assert json.loads(ws.recv(timeout=30))["type"] == "observation"
    assert http_json(url, "GET", "/health") == (200, {"status": "healthy"})


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
