"""The server's wire protocol on loopback: OpenEnv's routes and messages, sessions, limits, and
a clear error for every bad request (spoken by raw HTTP and WebSocket clients, not RemoteEnv)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from websockets.sync.client import connect

import llm_trainer
from llm_trainer.agents import OracleAgent
from llm_trainer.core.errors import ConfigError, UnknownEnvError
from llm_trainer.core.records import to_plain
from llm_trainer.serve.server import EnvServer, ServeConfig, SessionStore, WireError
from tests.serve.conftest import ServerFactory, http_json

ENV = "LLMTrainer/Calculator-v0"
TOOL_CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "2 + 3"}}</tool_call>'


def _ws(url: str) -> Any:
    return connect(url.replace("http://", "ws://") + "/ws", proxy=None)


def _ask(ws: Any, message: Any) -> dict[str, Any]:
    ws.send(message if isinstance(message, str | bytes) else json.dumps(message))
    reply: dict[str, Any] = json.loads(ws.recv(timeout=30))
    return reply


def test_health_metadata_and_schema_answer_in_openenv_shape(serve_env: ServerFactory) -> None:
    url = serve_env(ENV)
    assert http_json(url, "GET", "/health") == (200, {"status": "healthy"})
    status, meta = http_json(url, "GET", "/metadata")
    assert status == 200
    assert meta["name"] == meta["env_id"] == ENV
    assert meta["description"] == llm_trainer.spec(ENV).description
    assert meta["version"] == llm_trainer.__version__
    assert [t["function"]["name"] for t in meta["tools"]] == ["calculator"]
    assert meta["max_episode_steps"] == 6
    assert meta["max_text_length"] == 8192
    status, schema = http_json(url, "GET", "/schema")
    assert status == 200
    assert set(schema) == {"action", "observation", "state"}
    assert schema["action"]["required"] == ["message"]


def test_http_session_plays_an_episode_exactly_as_in_process(serve_env: ServerFactory) -> None:
    url = serve_env(ENV)
    env = llm_trainer.make(ENV)
    oracle = OracleAgent(env)
    observation, info = env.reset(seed=3)
    status, reply = http_json(url, "POST", "/reset", {"seed": 3, "episode_id": "ep-3"})
    assert status == 200
    session = reply["session_id"]
    assert (reply["reward"], reply["done"]) == (None, False)
    assert reply["observation"] == {
        "text": observation,
        "info": to_plain(info),
        "terminated": False,
        "truncated": False,
    }
    done, steps = False, 0
    while not done:
        action = oracle.act(observation, info)
        observation, reward, terminated, truncated, info = env.step(action)
        status, reply = http_json(
            url, "POST", "/step", {"action": {"message": action}, "session_id": session}
        )
        steps += 1
        assert status == 200
        assert reply["observation"]["text"] == observation
        assert reply["observation"]["info"] == to_plain(info)
        assert (reply["reward"], reply["done"]) == (reward, terminated or truncated)
        done = terminated or truncated
    assert reply["reward"] == 1.0
    status, state = http_json(url, "GET", f"/state?session_id={session}")
    assert status == 200
    assert state["episode_id"] == "ep-3"
    assert state["step_count"] == steps
    assert (state["seed"], state["done"], state["episode_return"]) == (3, True, 1.0)
    assert "task" not in state
    assert "answer" not in json.dumps(state)
    status, reply = http_json(
        url, "POST", "/step", {"action": {"message": TOOL_CALL}, "session_id": session}
    )
    assert (status, reply["code"]) == (409, "RESET_NEEDED")
    assert "reset" in reply["detail"]
    # reset without a seed continues the session's stream, as in-process
    assert (
        http_json(url, "POST", "/reset", {"session_id": session})[1]["observation"]["text"]
        == (env.reset()[0])
    )
    assert http_json(url, "POST", "/close", {"session_id": session}) == (
        200,
        {"session_id": session, "closed": True},
    )
    status, reply = http_json(url, "GET", f"/state?session_id={session}")
    assert (status, reply["code"]) == (404, "SESSION_ERROR")
    assert "was closed" in reply["detail"]


def test_websocket_speaks_openenv_messages(serve_env: ServerFactory) -> None:
    url = serve_env(ENV)
    env = llm_trainer.make(ENV)
    observation, info = env.reset(seed=5, options={"difficulty": 2})
    with _ws(url) as ws:
        reply = _ask(ws, {"type": "step", "data": {"message": TOOL_CALL}})
        assert reply["type"] == "error"
        assert reply["data"]["code"] == "RESET_NEEDED"
        reply = _ask(ws, {"type": "reset", "data": {"seed": 5, "options": {"difficulty": 2}}})
        assert reply == {
            "type": "observation",
            "data": {
                "observation": {
                    "text": observation,
                    "info": to_plain(info),
                    "terminated": False,
                    "truncated": False,
                },
                "reward": None,
                "done": False,
            },
        }
        expected = env.step(TOOL_CALL)
        reply = _ask(ws, {"type": "step", "data": {"message": TOOL_CALL, "metadata": {}}})
        assert reply["type"] == "observation"
        assert reply["data"]["observation"]["text"] == expected[0]
        assert reply["data"]["reward"] == expected[1]
        state = _ask(ws, {"type": "state"})
        assert state["type"] == "state"
        assert (state["data"]["step_count"], state["data"]["seed"]) == (1, 5)
        # binary frames holding JSON are read too
        assert _ask(ws, json.dumps({"type": "state"}).encode())["type"] == "state"
        ws.send(json.dumps({"type": "close"}))
        with pytest.raises(Exception, match="1000"):  # the server closes normally, no reply
            ws.recv(timeout=10)


def _step(action: Any = None, session: str = "s", **fields: Any) -> dict[str, Any]:
    return {
        "action": {"message": "x"} if action is None else action,
        "session_id": session,
        **fields,
    }


V, S = "VALIDATION_ERROR", "SESSION_ERROR"
#: (method, path, body, status, code, a regex the message matches)
BAD_HTTP = [
    ("POST", "/reset", b"{not json", 400, "INVALID_JSON", "not valid JSON"),
    ("POST", "/reset", b"1" * 5000, 400, "INVALID_JSON", "not valid JSON"),
    ("POST", "/reset", b"[1, 2]", 422, V, "reset request must be a JSON object"),
    ("POST", "/reset", {"sed": 1}, 422, V, "unknown field 'sed' .did you mean 'seed'"),
    ("POST", "/reset", {"seed": -1}, 422, V, "seed must be a non-negative integer"),
    ("POST", "/reset", {"seed": "7"}, 422, V, "got string '7'"),
    ("POST", "/reset", {"seed": True}, 422, V, "got boolean True"),
    ("POST", "/reset", {"options": [2]}, 422, V, "options must be a JSON object"),
    ("POST", "/reset", {"options": {"difficulty": 9}}, 422, V, "difficulty 9 is not supported"),
    ("POST", "/reset", {"options": {"dificulty": 2}}, 422, V, "unknown reset option"),
    ("POST", "/reset", {"episode_id": "x" * 300}, 422, V, "episode_id must be"),
    ("POST", "/reset", {"session_id": "nope"}, 404, S, "session 'nope' is not an open session"),
    ("POST", "/reset", {"session_id": 7}, 422, V, "session_id must be a string"),
    ("POST", "/step", None, 422, V, "needs a JSON body"),
    ("POST", "/step", {"action": {"message": "x"}}, 422, V, "needs a session_id"),
    ("POST", "/step", {"session_id": "s"}, 422, V, 'needs "action"'),
    ("POST", "/step", _step("<answer>1</answer>"), 422, V, "action must be a JSON object"),
    ("POST", "/step", _step({}), 422, V, 'action needs "message"'),
    ("POST", "/step", _step({"message": 42}), 422, V, "action.message must be a string"),
    ("POST", "/step", _step({"mesage": "x"}), 422, V, "unknown field 'mesage'"),
    ("POST", "/step", _step(timeout_s=3), 422, V, "unknown field 'timeout_s'"),
    ("POST", "/step", _step(session="gone"), 404, S, "session 'gone' is not an open session"),
    ("GET", "/state", None, 422, V, r"needs \?session_id="),
    ("POST", "/close", {"session_id": "gone"}, 404, S, "'gone'"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "match"), BAD_HTTP)
def test_bad_http_requests_get_an_error_naming_what_was_wrong(
    serve_env: ServerFactory, method: str, path: str, body: Any, status: int, code: str, match: str
) -> None:
    url = serve_env(ENV)
    raw = body if isinstance(body, bytes) else None
    got_status, reply = http_json(url, method, path, None if raw else body, raw=raw)
    assert (got_status, reply["code"]) == (status, code), reply
    assert re.search(match, reply["detail"]), reply["detail"]


def test_bad_websocket_messages_get_errors_and_the_session_goes_on(
    serve_env: ServerFactory,
) -> None:
    url = serve_env(ENV)
    cases = [
        ("{oops", "INVALID_JSON", "not valid JSON"),
        ("[]", "VALIDATION_ERROR", "message must be a JSON object"),
        ({"type": "stp"}, "UNKNOWN_TYPE", "unknown message type 'stp'; expected one of reset"),
        ({"data": {}}, "UNKNOWN_TYPE", "unknown message type None"),
        ({"type": "step"}, "VALIDATION_ERROR", 'step message needs "data"'),
        ({"type": "step", "data": {"message": None}}, "VALIDATION_ERROR", "must be a string"),
        ({"type": "reset", "data": {"seed": 1.5}}, "VALIDATION_ERROR", "seed must be"),
        (
            {"type": "reset", "data": {"seed": 1}, "extra": 1},
            "VALIDATION_ERROR",
            "unknown field 'extra'",
        ),
        (
            {"type": "reset", "data": {"session_id": "x"}},
            "VALIDATION_ERROR",
            "unknown field 'session_id'",
        ),
    ]
    with _ws(url) as ws:
        for message, code, match in cases:
            reply = _ask(ws, message)
            assert reply["type"] == "error", (message, reply)
            assert reply["data"]["code"] == code, (message, reply)
            assert match in reply["data"]["message"], (message, reply)
        assert _ask(ws, {"type": "reset", "data": {"seed": 0}})["type"] == "observation"


def test_the_session_cap_refuses_one_more_session_with_a_clear_error(
    serve_env: ServerFactory,
) -> None:
    url = serve_env(ENV, max_sessions=2)
    first = http_json(url, "POST", "/reset", {"seed": 0})[1]["session_id"]
    with _ws(url) as ws:
        assert _ask(ws, {"type": "reset"})["type"] == "observation"
        status, reply = http_json(url, "POST", "/reset", {"seed": 0})
        assert (status, reply["code"]) == (503, "CAPACITY_REACHED")
        assert "2/2 sessions open" in reply["detail"]
        with _ws(url) as refused:
            reply = json.loads(refused.recv(timeout=30))
            assert reply["data"]["code"] == "CAPACITY_REACHED"
    # the WebSocket's session ended with its connection; closing the HTTP one frees a slot too
    assert http_json(url, "POST", "/close", {"session_id": first})[0] == 200
    for _ in range(2):
        assert http_json(url, "POST", "/reset", {"seed": 0})[0] == 200


def test_an_idle_http_session_expires_and_frees_its_slot(serve_env: ServerFactory) -> None:
    url = serve_env(ENV, max_sessions=1, session_timeout_s=0.3)
    session = http_json(url, "POST", "/reset", {"seed": 0})[1]["session_id"]
    time.sleep(1.0)
    status, reply = http_json(
        url, "POST", "/step", {"action": {"message": "x"}, "session_id": session}
    )
    assert (status, reply["code"]) == (404, "SESSION_ERROR")
    assert "expired after 0.3 s idle" in reply["detail"]
    assert http_json(url, "POST", "/reset", {"seed": 0})[0] == 200  # the slot is free again


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_session_store_expires_idle_http_sessions_only_and_says_what_became_of_an_id() -> None:
    clock = _Clock()
    store = SessionStore(lambda: llm_trainer.make(ENV), max_sessions=3, timeout_s=10, clock=clock)
    idle, active, ws = store.open("http"), store.open("http"), store.open("ws")
    with pytest.raises(WireError, match="server at capacity: 3/3 sessions open") as full:
        store.open("http")
    assert full.value.code == "CAPACITY_REACHED"
    clock.now = 8.0
    store.get(active.id)  # activity restarts its idle clock
    clock.now = 12.0
    with active.lock:  # a session in a call is busy, not idle, however long the call
        clock.now = 30.0
        assert store.expire() == 1  # the idle one only
    assert store.expire() == 1  # the active one, idle since 8.0, once its call ended
    assert len(store) == 1  # the WebSocket session lives as long as its connection
    with pytest.raises(WireError, match="expired after 10 s idle"):
        store.get(idle.id)
    with pytest.raises(WireError, match="belongs to a WebSocket connection"):
        store.get(ws.id)
    assert store.close(ws.id)
    assert not store.close(ws.id)
    with pytest.raises(WireError, match="was closed"):
        store.get(ws.id)
    with pytest.raises(WireError, match="is not an open session"):
        store.get("never")
    # freed slots are reusable
    assert len({store.open("http").id for _ in range(3)}) == 3


def test_bodies_over_the_limit_are_refused_and_long_actions_are_invalid_actions(
    serve_env: ServerFactory,
) -> None:
    small = serve_env(ENV, max_message_bytes=1024)
    session = http_json(small, "POST", "/reset", {"seed": 0})[1]["session_id"]
    body = {"action": {"message": "x" * 2000}, "session_id": session}
    status, reply = http_json(small, "POST", "/step", body)
    assert (status, reply["code"]) == (413, "VALIDATION_ERROR")
    assert "larger than 1024 bytes" in reply["detail"]
    # under the transport limit, an action longer than max_text_length is the env's business
    url = serve_env(ENV)
    session = http_json(url, "POST", "/reset", {"seed": 0})[1]["session_id"]
    status, reply = http_json(
        url, "POST", "/step", {"action": {"message": "x" * 9000}, "session_id": session}
    )
    assert status == 200
    assert reply["reward"] == pytest.approx(-0.1)
    assert "longer than 8192 characters" in reply["observation"]["info"]["invalid_reason"]


def test_lone_surrogates_and_any_unicode_travel_intact(serve_env: ServerFactory) -> None:
    url = serve_env(ENV)
    env = llm_trainer.make(ENV)
    actions = [
        "\x00\udcff",
        '<tool_call>{"name": "calculator", "arguments": {"expression": "٣ + ４"}}</tool_call>',
        '<tool_call>{"name": "calculatör\ud800", "arguments": {}}</tool_call>',
        "<answer>😀\udfff</answer>",
    ]
    with _ws(url) as ws:
        _ask(ws, {"type": "reset", "data": {"seed": 9}})
        env.reset(seed=9)
        for action in actions:
            expected = env.step(action)
            reply = _ask(ws, {"type": "step", "data": {"message": action}})
            assert reply["data"]["observation"]["text"] == expected[0]
            assert reply["data"]["observation"]["info"] == to_plain(expected[4])


def test_bad_server_configurations_fail_at_start_naming_the_problem() -> None:
    with pytest.raises(UnknownEnvError, match=r"Did you mean 'LLMTrainer/Calculator-v0'"):
        EnvServer(ServeConfig("LLMTrainer/Calculatr-v0"))
    with pytest.raises(ConfigError, match="max_cycles must be an int"):  # multi-agent ids too
        EnvServer(ServeConfig("LLMTrainer/MALT-v0", {"max_cycles": 0}))
    with pytest.raises(ConfigError, match="dificulty"):
        EnvServer(ServeConfig(ENV, {"dificulty": 2}))
    with pytest.raises(ConfigError, match="difficulty 7 is not supported"):
        EnvServer(ServeConfig(ENV, {"difficulty": 7}))
    with pytest.raises(ConfigError, match="session_timeout_s must be a number > 0"):
        ServeConfig(ENV, session_timeout_s=0)
    with pytest.raises(ConfigError, match="max_message_bytes must be an int >= 1"):
        ServeConfig(ENV, max_message_bytes=True)


def test_the_serve_command_serves_and_refuses_unknown_ids() -> None:
    command = [sys.executable, "-m", "llm_trainer.cli", "serve"]
    process = subprocess.Popen(
        [*command, "--env", ENV, "--port", "0", "--kwargs", '{"difficulty": 2}'],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(f"serving {ENV} at http://127.0.0.1:"), line
        url = line.split(" at ", 1)[1].split()[0]
        assert http_json(url, "GET", "/health") == (200, {"status": "healthy"})
        reply = http_json(url, "POST", "/reset", {"seed": 1})[1]
        assert reply["observation"]["info"]["difficulty"] == 2
    finally:
        process.terminate()
        process.wait(timeout=30)
    bad = subprocess.run(
        [*command, "--env", "LLMTrainer/Calculatr-v0"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2
    assert "Did you mean 'LLMTrainer/Calculator-v0'?" in bad.stderr
    bad = subprocess.run(
        [*command, "--env", ENV, "--kwargs", "[1]"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2
    assert "--kwargs must be a JSON object" in bad.stderr


def test_importing_the_package_and_the_client_loads_no_server_library() -> None:
    code = (
        "import sys, llm_trainer, llm_trainer.serve, llm_trainer.serve.client; "
        "print(sorted(m for m in ('uvicorn', 'starlette', 'websockets', 'trl', 'torch', "
        "'transformers', 'datasets') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert loaded.stdout.strip() == "[]"
