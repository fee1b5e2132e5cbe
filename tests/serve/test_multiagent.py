"""The multi-agent (PettingZoo AEC) envs served over loopback, for every multi-agent id:
PettingZoo's own checkers pass on ``RemoteAECEnv``, the same seed and actions play the
in-process episode, sessions do not interfere, and every bad request gets a clear error.

The actions are drawn (seeded) from texts that are valid moves of some role (Kuhn's moves,
MALT's answers, a validator's conclusion) and from random text, so episodes mix valid and
invalid actions. None holds a ```python block: a ResearchSprint coder's code would run in the
sandbox, which the env's own tests cover; here every id plays whole episodes in milliseconds.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pettingzoo import ParallelEnv
from pettingzoo.test import api_test, seed_test
from websockets.sync.client import connect

import llm_trainer
from llm_trainer.core.records import to_plain
from llm_trainer.envs.spaces import TextObservation, UnicodeText
from llm_trainer.serve import server as server_module
from llm_trainer.serve.client import (
    RemoteAECEnv,
    RemoteEnv,
    RemoteResetNeededError,
    RemoteText,
    RemoteValidationError,
)
from llm_trainer.serve.server import (
    AEC_SCHEMAS,
    AEC_WS_MESSAGE_TYPES,
    ServeConfig,
    ServerThread,
)
from tests.conftest import MULTIAGENT_ENV_IDS
from tests.envs.multiagent.test_conformance import pettingzoo_style_warnings
from tests.serve.conftest import ServerFactory, http_json
from tests.serve.test_fuzz import BODIES, CHARACTERS, JSON, _is_json

TRANSPORTS = ("ws", "http")
#: Texts that are valid actions of some role of some env (see the module docstring).
CANDIDATES = (
    "<answer>bet</answer>",
    "check",
    "<answer>call</answer>",
    "fold",
    "Two steps: 3 + 4 = 7. <answer>7</answer>",
    "The solution is right.",
    "<answer>Ava</answer>",
    "HYPOTHESIS: Adam wins. Plan: run both optimizers.",
    "CONCLUSION: yes",
    "",
)


@pytest.fixture
def remote(serve_env: ServerFactory) -> Iterator[Any]:
    """``remote(env_id, transport="ws")``: RemoteAECEnvs closed after the test."""
    made: list[RemoteAECEnv] = []

    def factory(env_id: str, transport: str = "ws") -> RemoteAECEnv:
        made.append(RemoteAECEnv(serve_env(env_id), transport=transport))  # type: ignore[arg-type]
        return made[-1]

    yield factory
    for env in made:
        env.close()


def _view(env: Any) -> list[Any]:
    """Everything an AEC player reads, comparable across in-process and remote envs."""
    agent = env.agent_selection
    view = [agent, list(env.agents), dict(env.rewards), dict(env.terminations)]
    view += [dict(env.truncations), to_plain(env.infos)]
    view.append({a: str(env.observe(a)) for a in env.agents})  # every agent's observation
    if agent in env.agents:
        observation, reward, terminated, truncated, info = env.last()
        view += [str(observation), reward, terminated, truncated, to_plain(info)]
    return view


def _play(env: Any, seed: int | None, actions_seed: int) -> tuple[list[str | None], list[Any]]:
    """Play one episode in-process with seeded actions: the actions and what was seen."""
    rng = np.random.default_rng(actions_seed)
    junk = UnicodeText(200, seed=actions_seed)
    env.reset(seed=seed)
    actions: list[str | None] = []
    seen = [_view(env)]
    for agent in env.agent_iter(100):
        if env.terminations[agent] or env.truncations[agent]:
            action = None
        else:
            pick = int(rng.integers(len(CANDIDATES) + 1))
            action = CANDIDATES[pick] if pick < len(CANDIDATES) else junk.sample()
        env.step(action)
        actions.append(action)
        seen.append(_view(env))
    return actions, seen


def _replay(env: Any, seed: int | None, actions: list[str | None]) -> list[Any]:
    env.reset(seed=seed)
    seen = [_view(env)]
    for action in actions:
        env.step(action)
        seen.append(_view(env))
    return seen


# -- PettingZoo's own checkers, over the wire ---------------------------------------------------


@pettingzoo_style_warnings
@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pettingzoo_api_test_and_seed_test_pass_on_the_remote_env(
    env_id: str, transport: str, remote: Any, serve_env: ServerFactory
) -> None:
    env = remote(env_id, transport)
    api_test(env, num_cycles=20)
    url = serve_env(env_id)
    seed_test(lambda: RemoteAECEnv(url, transport=transport), num_cycles=20)  # type: ignore[arg-type]
    local = llm_trainer.make_multiagent(env_id)
    assert env.possible_agents == local.possible_agents
    assert str(env) == str(local)  # metadata["name"], which api_test reads
    for agent in local.possible_agents:
        assert env.observation_space(agent).max_length == local.observation_space(agent).max_length
        assert env.action_space(agent).max_length == local.action_space(agent).max_length


# -- the same episodes as in-process ----------------------------------------------------------


@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
def test_same_seed_and_actions_give_the_in_process_episode(env_id: str, remote: Any) -> None:
    local = llm_trainer.make_multiagent(env_id)
    ws, http = remote(env_id, "ws"), remote(env_id, "http")
    for seed in range(3):
        actions, expected = _play(local, seed, actions_seed=seed)
        assert _replay(ws if seed % 2 else http, seed, actions) == expected
    # reset() without a seed continues the session's seed stream, as in-process
    actions, expected = _play(local, None, actions_seed=7)
    assert _replay(http, None, actions) == expected
    assert isinstance(ws.observe(ws.possible_agents[-1]), RemoteText)
    # the session's state: the episode's steps and seed, and each agent's rewards summed
    actions, expected = _play(local, 4, actions_seed=4)
    assert _replay(ws, 4, actions) == expected
    state = ws.session_state()
    assert (state["step_count"], state["seed"], state["done"]) == (len(actions), 4, True)
    assert (state["agent_selection"], state["agents"]) == (local.agent_selection, [])
    returns = {a: sum(view[2].get(a, 0.0) for view in expected) for a in local.possible_agents}
    assert state["episode_returns"] == pytest.approx(returns)


@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
def test_two_concurrent_sessions_do_not_interfere(env_id: str, serve_env: ServerFactory) -> None:
    url = serve_env(env_id)
    local = llm_trainer.make_multiagent(env_id)
    episodes = {c: [_play(local, 10 * c + i, 10 * c + i) for i in range(3)] for c in (1, 2)}
    start = threading.Barrier(2)

    def client(c: int) -> list[list[Any]]:
        env = RemoteAECEnv(url, transport="ws" if c == 1 else "http")
        try:
            start.wait()  # both sessions play at the same time
            return [_replay(env, 10 * c + i, a) for i, (a, _) in enumerate(episodes[c])]
        finally:
            env.close()

    with ThreadPoolExecutor(2) as pool:
        got = dict(zip((1, 2), pool.map(client, (1, 2)), strict=True))
    for c in (1, 2):
        assert got[c] == [seen for _, seen in episodes[c]], c


# -- the protocol: metadata, schema, observe, state -------------------------------------------


@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
def test_metadata_schema_and_the_reset_reply_describe_the_agents(
    env_id: str, serve_env: ServerFactory
) -> None:
    url = serve_env(env_id)
    local = llm_trainer.make_multiagent(env_id)
    status, meta = http_json(url, "GET", "/metadata")
    assert status == 200
    assert meta["multi_agent"] is True
    assert meta["api"] == "pettingzoo-aec"
    assert meta["possible_agents"] == local.possible_agents
    assert meta["env_metadata"]["name"] == local.metadata["name"]
    local.reset(seed=5)
    for agent in local.possible_agents:
        assert meta["observation_max_length"][agent] == local.observation_space(agent).max_length
        assert meta["action_max_length"][agent] == local.action_space(agent).max_length
        assert meta["system_prompts"][agent] == local.infos[agent]["system_prompt"]
    assert http_json(url, "GET", "/schema") == (200, json.loads(json.dumps(AEC_SCHEMAS)))

    status, reply = http_json(url, "POST", "/reset", {"seed": 5, "episode_id": "e5"})
    assert status == 200
    observation = reply["observation"]
    agent = local.agent_selection
    assert observation["agent"] == agent
    assert observation["text"] == local.observe(agent)
    assert observation["info"] == to_plain(local.infos[agent])
    assert (observation["terminated"], observation["truncated"]) == (False, False)
    assert observation["agents"] == local.agents
    assert observation["possible_agents"] == local.possible_agents
    assert observation["cumulative_rewards"] == local._cumulative_rewards
    assert observation["infos"] == to_plain(local.infos)
    assert (reply["reward"], reply["done"]) == (None, False)
    session = reply["session_id"]
    other = local.possible_agents[-1]
    status, seen = http_json(url, "GET", f"/observe?session_id={session}&agent={other}")
    assert (status, seen["agent"], seen["text"]) == (200, other, local.observe(other))
    status, state = http_json(url, "GET", f"/state?session_id={session}")
    assert status == 200
    assert state["episode_id"] == "e5"
    assert (state["agent_selection"], state["agents"]) == (agent, local.agents)
    assert state["episode_returns"] == dict.fromkeys(local.possible_agents, 0.0)
    http_json(url, "POST", "/close", {"session_id": session})


# -- errors: clear, and never the server's end -----------------------------------------------


def _ws(url: str) -> Any:
    return connect(url.replace("http://", "ws://") + "/ws", proxy=None)


def _ask(ws: Any, message: Any) -> dict[str, Any]:
    ws.send(message if isinstance(message, str | bytes) else json.dumps(message))
    reply: dict[str, Any] = json.loads(ws.recv(timeout=30))
    return reply


def _error(reply: dict[str, Any]) -> tuple[str, str]:
    assert reply["type"] == "error", reply
    return reply["data"]["code"], reply["data"]["message"]


@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
def test_bad_requests_get_clear_errors_and_the_session_plays_on(
    env_id: str, serve_env: ServerFactory
) -> None:
    url = serve_env(env_id)
    local = llm_trainer.make_multiagent(env_id)
    first, second = local.possible_agents[0], local.possible_agents[1]
    with _ws(url) as ws:
        code, _ = _error(_ask(ws, {"type": "step", "data": {"agent": first, "message": "x"}}))
        assert code == "RESET_NEEDED"
        assert _error(_ask(ws, "{not json"))[0] == "INVALID_JSON"
        code, message = _error(_ask(ws, {"type": "act"}))
        assert (code, "observe" in message) == ("UNKNOWN_TYPE", True)
        reply = _ask(ws, {"type": "reset", "data": {"seed": 3}})
        assert reply["data"]["observation"]["agent"] == first
        wrong = _ask(ws, {"type": "step", "data": {"agent": second, "message": "x"}})
        assert _error(wrong) == (
            "VALIDATION_ERROR",
            f"it is {first}'s turn (agent_selection), not {second}'s: send {first}'s action",
        )
        code, message = _error(_ask(ws, {"type": "step", "data": {"message": "x"}}))
        assert (code, 'needs "agent"' in message) == ("VALIDATION_ERROR", True)
        code, message = _error(
            _ask(ws, {"type": "step", "data": {"agent": first + "x", "message": "x"}})
        )
        assert (code, f"did you mean '{first}'" in message) == ("VALIDATION_ERROR", True)
        code, message = _error(
            _ask(ws, {"type": "step", "data": {"agent": first, "message": None}})
        )
        assert (code, "null is the action of an agent whose episode is over" in message) == (
            "VALIDATION_ERROR",
            True,
        )
        code, message = _error(_ask(ws, {"type": "step", "data": {"agent": first, "message": 7}}))
        assert (code, "must be a string" in message) == ("VALIDATION_ERROR", True)
        code, message = _error(_ask(ws, {"type": "observe", "data": {"agent": "nobody"}}))
        assert (code, "unknown agent 'nobody'" in message) == ("VALIDATION_ERROR", True)
        # none of it changed the episode: it plays on exactly as in-process
        local.reset(seed=3)
        for agent in local.agent_iter(100):
            finished = local.terminations[agent] or local.truncations[agent]
            if finished:
                code, message = _error(
                    _ask(ws, {"type": "step", "data": {"agent": agent, "message": "x"}})
                )
                assert (code, "its only action is null" in message) == ("VALIDATION_ERROR", True)
            action = None if finished else "<answer>check</answer>"
            local.step(action)
            reply = _ask(ws, {"type": "step", "data": {"agent": agent, "message": action}})
            assert reply["data"]["observation"]["infos"] == to_plain(local.infos)
        assert reply["data"]["done"] is True
        assert reply["data"]["observation"]["agents"] == []
        assert reply["data"]["observation"]["text"] is None
        code, message = _error(
            _ask(ws, {"type": "step", "data": {"agent": first, "message": None}})
        )
        assert (code, "every agent has left" in message) == ("RESET_NEEDED", True)
    # HTTP: the same checks answer with a status; an unknown session is named
    status, reply = http_json(url, "POST", "/step", raw=b'{"action": ')
    assert (status, reply["code"]) == (400, "INVALID_JSON")
    status, reply = http_json(url, "POST", "/reset", {"seed": 3})
    session = reply["session_id"]
    status, reply = http_json(
        url, "POST", "/step", {"action": {"agent": second, "message": "x"}, "session_id": session}
    )
    assert (status, reply["code"]) == (409, "VALIDATION_ERROR")
    assert f"it is {first}'s turn" in reply["detail"]
    status, reply = http_json(
        url, "POST", "/step", {"action": {"message": "x"}, "session_id": session}
    )
    assert (status, reply["code"]) == (422, "VALIDATION_ERROR")
    status, reply = http_json(
        url, "POST", "/step", {"action": {"agent": first, "message": "x"}, "session_id": "nope"}
    )
    assert (status, reply["code"]) == (404, "SESSION_ERROR")
    assert "'nope' is not an open session" in reply["detail"]
    status, reply = http_json(url, "GET", f"/observe?session_id={session}")
    assert (status, reply["code"]) == (422, "VALIDATION_ERROR")
    status, reply = http_json(url, "GET", f"/observe?session_id=nope&agent={first}")
    assert (status, reply["code"]) == (404, "SESSION_ERROR")
    status, reply = http_json(
        url, "POST", "/step", {"action": {"agent": first, "message": "x"}, "session_id": session}
    )
    assert status == 200
    assert http_json(url, "POST", "/close", {"session_id": session}) == (
        200,
        {"session_id": session, "closed": True},
    )
    assert http_json(url, "GET", "/health") == (200, {"status": "healthy"})


def test_the_clients_refuse_the_other_kind_of_server_and_bad_actions(
    serve_env: ServerFactory, remote: Any
) -> None:
    with pytest.raises(
        ValueError, match=r"multi-agent env LLMTrainer/KuhnPoker-v0: play it with RemoteAECEnv"
    ):
        RemoteEnv(serve_env("LLMTrainer/KuhnPoker-v0"))
    with pytest.raises(
        ValueError, match=r"single-agent env LLMTrainer/Calculator-v0: play it with RemoteEnv"
    ):
        RemoteAECEnv(serve_env("LLMTrainer/Calculator-v0"))
    status, reply = http_json(serve_env("LLMTrainer/Calculator-v0"), "GET", "/observe?agent=a")
    assert (status, reply["code"]) == (404, "VALIDATION_ERROR")
    assert "single-agent env: its observation comes with every reply" in reply["detail"]
    for transport in TRANSPORTS:
        env = remote("LLMTrainer/KuhnPoker-v0", transport)
        with pytest.raises(RemoteResetNeededError):
            env.step("<answer>bet</answer>")
        env.reset(seed=0)
        with pytest.raises(TypeError, match="action must be a str"):
            env.step(42)
        with pytest.raises(TypeError, match="action must be a str"):
            env.step(None)  # player_0 is live: None is a finished agent's action
        env.step("<answer>bet</answer>")
        env.step("<answer>fold</answer>")
        assert env.terminations == {"player_0": True, "player_1": True}
        with pytest.raises(ValueError, match="its only action is null") as error:
            env.step("<answer>bet</answer>")
        assert isinstance(error.value, RemoteValidationError)
        env.step(None)
        env.step(None)
        assert env.agents == []
        with pytest.raises(RemoteResetNeededError, match="every agent has left"):
            env.step(None)
        with pytest.raises(RemoteValidationError, match="deal must be two different cards"):
            env.reset(seed=0, options={"deal": ["K", "K"]})


class _Chorus(ParallelEnv[str, str, str]):
    """A Parallel text env for the test below (no Parallel id is registered yet): two singers
    sing at once for two rounds, each rewarded for an even-length line."""

    metadata = {"name": "chorus_v0", "render_modes": []}  # noqa: RUF012 - PettingZoo's API

    def __init__(self) -> None:
        self.possible_agents = ["singer_0", "singer_1"]
        self.agents: list[str] = []
        self._spaces = {a: UnicodeText(64) for a in self.possible_agents}
        self._round = 0

    def observation_space(self, agent: str) -> UnicodeText:
        return self._spaces[agent]

    def action_space(self, agent: str) -> UnicodeText:
        return self._spaces[agent]

    def reset(self, seed: int | None = None, options: Any = None) -> Any:
        self.agents, self._round = list(self.possible_agents), 0
        return {a: TextObservation(f"{a}, sing") for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, str]) -> Any:
        self._round += 1
        done = self._round >= 2
        lines = " / ".join(actions[a] for a in self.agents)
        observations = {a: TextObservation(f"{a} heard: {lines}"[:64]) for a in self.agents}
        rewards = {a: float(len(actions[a]) % 2 == 0) for a in self.agents}
        flags = dict.fromkeys(self.agents, done)
        infos: dict[str, dict[str, Any]] = {a: {"round": self._round} for a in self.agents}
        if done:
            self.agents = []
        return observations, rewards, flags, dict.fromkeys(flags, False), infos


@pettingzoo_style_warnings
def test_a_parallel_env_is_served_through_parallel_to_aec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "make_multiagent", lambda env_id, **kwargs: _Chorus())
    with ServerThread(ServeConfig("LLMTrainer/MALT-v0")) as server:  # any multi-agent id
        env = RemoteAECEnv(server.url)
        api_test(env, num_cycles=5)
        env.reset(seed=0)
        assert (env.agent_selection, str(env.observe("singer_1"))) == ("singer_0", "singer_1, sing")
        env.step("la")
        assert env.agent_selection == "singer_1"
        env.step("lalala")
        assert env.rewards == {"singer_0": 1.0, "singer_1": 1.0}
        assert str(env.observe("singer_0")) == "singer_0 heard: la / lalala"
        env.close()


# -- fuzzing: any message gets a reply, never an internal error -------------------------------


def _messages(agents: list[str]) -> Any:
    """WebSocket messages, well-formed or not, naming the env's agents often enough to reach
    deep states."""
    agent = st.one_of(st.sampled_from(agents), JSON)
    message = st.one_of(st.none(), st.text(CHARACTERS, max_size=30), JSON)
    data = st.one_of(
        JSON,
        st.fixed_dictionaries({"agent": agent, "message": message}),
        st.fixed_dictionaries({"agent": agent}),
        st.fixed_dictionaries({}, optional={"seed": st.integers(-1, 3) | JSON, "options": JSON}),
    )
    kind = st.one_of(st.sampled_from(AEC_WS_MESSAGE_TYPES[:-1]), JSON)  # "close" ends it
    return st.one_of(
        st.fixed_dictionaries({"type": kind, "data": data}),
        BODIES,
        st.text(CHARACTERS, max_size=20),
    )


@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
@given(data=st.data())
def test_any_websocket_message_gets_a_reply_and_never_an_internal_error(
    env_id: str, serve_env: ServerFactory, data: st.DataObject
) -> None:
    url = serve_env(env_id)
    agents = llm_trainer.make_multiagent(env_id).possible_agents
    messages = data.draw(st.lists(_messages(agents), max_size=8))
    with _ws(url) as ws:
        for message in messages:
            if isinstance(message, dict) and message.get("type") == "close":
                continue
            if isinstance(message, str):
                # a JSON text that is a string, not an object; or raw text, lone surrogates
                # and all, as a binary frame (a text frame must be valid UTF-8)
                message = (
                    json.dumps(message)
                    if _is_json(message)
                    else message.encode("utf-8", "surrogatepass")
                )
            reply = _ask(ws, message)
            assert reply["type"] in {"observation", "observe", "state", "error"}, reply
            if reply["type"] == "error":
                assert reply["data"]["code"] != "EXECUTION_ERROR", reply
                assert reply["data"]["message"]
        assert _ask(ws, {"type": "reset", "data": {"seed": 0}})["type"] == "observation"
