"""Serve a registered env over HTTP and WebSocket, in the wire shape of OpenEnv.

Any trainer that speaks OpenEnv (TRL's ``environment_factory`` examples, OpenEnv's own
``GenericEnvClient``) can then train on an llm-trainer env without importing this package.
The shape is the one of OpenEnv's ``openenv.core.env_server.http_server`` and ``types``
(meta-pytorch/OpenEnv): the same routes, message types, field names and error codes.

WebSocket ``/ws`` (what OpenEnv's ``EnvClient`` speaks): one connection is one session with its
own env, closed with the connection. Client messages and server replies are JSON text frames::

    {"type": "reset", "data": {"seed": 7, "options": {"difficulty": 2}, "episode_id": "e1"}}
    {"type": "step",  "data": {"message": "<tool_call>{...}</tool_call>"}}
    {"type": "state"}
    {"type": "close"}                                    (no reply; the server closes)
    -> {"type": "observation", "data": RESULT}
    -> {"type": "state", "data": {"episode_id": ..., "step_count": ..., ...}}
    -> {"type": "error", "data": {"message": "...", "code": "VALIDATION_ERROR"}}

HTTP: ``POST /reset`` (body: ``seed``, ``options``, ``episode_id``, ``session_id``; all
optional), ``POST /step`` (``{"action": {"message": ...}, "session_id": ...}``),
``GET /state?session_id=...``, ``POST /close`` (``{"session_id": ...}``), ``GET /health``
(``{"status": "healthy"}``), ``GET /metadata``, ``GET /schema``. OpenEnv's HTTP routes build a
fresh env for every request, which cannot play a multi-step episode; here ``/reset`` without a
``session_id`` opens a session and returns its id, and ``/step`` and ``/state`` name it. An HTTP
session idle for ``session_timeout_s`` is closed. Errors answer with an HTTP status and
``{"detail": "...", "code": "..."}``.

``RESULT`` is OpenEnv's ``{"observation": {...}, "reward": float | null, "done": bool}``; the
observation holds what gymnasium returns::

    {"text": "What is 3 + 4?", "info": {...}, "terminated": false, "truncated": false}

``done`` is ``terminated or truncated``; ``reward`` is ``null`` after a reset. The action is
OpenEnv's text action (``message``, as in its Echo and TextArena envs): the model's raw
completion, judged by the env exactly as in-process (malformed text is an invalid action with
its penalty, never an error). The same seed gives the same episode as ``llm_trainer.make``,
and ``reset`` without a seed continues the session's seed stream, as in-process.

Error codes are OpenEnv's (``INVALID_JSON``, ``UNKNOWN_TYPE``, ``VALIDATION_ERROR``,
``EXECUTION_ERROR``, ``CAPACITY_REACHED``, ``FACTORY_ERROR``, ``SESSION_ERROR``) plus
``RESET_NEEDED`` (a step before ``reset`` or after the episode ended; gymnasium's
``ResetNeeded``). JSON replies escape non-ASCII (``\\uXXXX``), so any string the env returns,
lone surrogates included, travels as valid UTF-8.

Multi-agent ids (PettingZoo AEC envs, ``llm_trainer.make_multiagent``; a Parallel env would be
served through PettingZoo's ``parallel_to_aec``): a session holds one AEC env, and the verbs,
routes, error codes and reply envelope stay the ones above. What AEC adds:

- ``/metadata`` says ``"multi_agent": true`` and gives ``possible_agents``, each agent's
  ``observation_max_length`` and ``action_max_length`` (its text spaces' bounds, as the
  single-agent ``max_text_length``), ``system_prompts``, ``agent_tools`` and the env's own
  ``env_metadata`` (PettingZoo's ``metadata``: ``name``, ``is_parallelizable``...).
- A step names the agent it acts for, which must be ``agent_selection``; ``message`` is its
  completion, or ``null`` (PettingZoo's ``None``) for an agent whose episode is over, which
  then leaves ``agents``::

    {"type": "step", "data": {"agent": "player_0", "message": "<answer>bet</answer>"}}
    POST /step {"action": {"agent": "player_0", "message": null}, "session_id": ...}

- ``RESULT`` (after ``reset`` and every ``step``) describes the agent to act and every agent::

    {"observation": {"agent": "player_1",          agent_selection
                     "text": "You are player_1...", observe(agent_selection)
                     "info": {...}, "terminated": false, "truncated": false,
                                                    infos/terminations/truncations[agent]
                     "agents": [...], "possible_agents": [...],
                     "rewards": {agent: float},     the last step's (env.rewards)
                     "cumulative_rewards": {agent: float},  what last() returns as reward
                     "terminations": {...}, "truncations": {...}, "infos": {agent: {...}}},
     "reward": float | null,   last()'s reward for the agent to act; null after a reset
     "done": bool}             every agent left, terminated or truncated

  ``text``, ``info``, ``terminated``, ``truncated`` and ``reward`` are ``null`` once every
  agent has left (``agents`` empty; PettingZoo's ``last()`` has nothing to return then).
- ``observe`` reads any agent's observation: ``{"type": "observe", "data": {"agent": "a"}}``
  (WebSocket) or ``GET /observe?session_id=...&agent=a``, answered with
  ``{"agent": "a", "text": "..."}`` (WebSocket: ``{"type": "observe", "data": {...}}``).
- ``state`` adds ``agent_selection``, ``agents``, ``possible_agents`` and
  ``episode_returns`` (each agent's rewards summed over the episode) to the single-agent
  fields, in place of ``episode_return``.

A step for another agent than ``agent_selection`` is a ``VALIDATION_ERROR`` (HTTP 409) naming
both; an unknown agent, a missing ``agent``, a ``null`` message for a live agent or a text for
a finished one are ``VALIDATION_ERROR`` (422); a step before ``reset`` or after every agent
left is ``RESET_NEEDED``. The same seed and actions give the same episode as in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketState

import llm_trainer
from llm_trainer.core.errors import ConfigError, LLMTrainerError, UserError, suggest
from llm_trainer.core.records import to_plain
from llm_trainer.envs.common import short_repr
from llm_trainer.envs.registration import make, make_multiagent, spec

#: The error codes of OpenEnv's ``WSErrorCode``, and ours (``RESET_NEEDED``).
INVALID_JSON = "INVALID_JSON"
UNKNOWN_TYPE = "UNKNOWN_TYPE"
VALIDATION_ERROR = "VALIDATION_ERROR"
EXECUTION_ERROR = "EXECUTION_ERROR"
CAPACITY_REACHED = "CAPACITY_REACHED"
FACTORY_ERROR = "FACTORY_ERROR"
SESSION_ERROR = "SESSION_ERROR"
RESET_NEEDED = "RESET_NEEDED"

WS_MESSAGE_TYPES = ("reset", "step", "state", "close")
#: A multi-agent server's WebSocket messages: ``observe`` reads any agent's observation.
AEC_WS_MESSAGE_TYPES = ("reset", "step", "observe", "state", "close")
_RESET_FIELDS = ("seed", "options", "episode_id")
_ACTION_FIELDS = ("message", "metadata")
_AEC_ACTION_FIELDS = ("agent", "message", "metadata")
_MAX_EPISODE_ID = 255
_SCALARS = frozenset({str, int, float, bool, type(None)})
# How many closed or expired session ids are remembered, to say "expired" rather than "unknown".
_FORGOTTEN = 4096

#: JSON schemas served at ``/schema`` (OpenEnv's ``SchemaResponse``: action, observation, state).
SCHEMAS: Mapping[str, Any] = {
    "action": {
        "title": "TextAction",
        "type": "object",
        "properties": {
            "message": {"type": "string", "description": "The model's raw completion."},
            "metadata": {"type": "object", "description": "Ignored; accepted as OpenEnv's."},
        },
        "required": ["message"],
        "additionalProperties": False,
    },
    "observation": {
        "title": "TextObservation",
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "The observation gymnasium returns."},
            "info": {"type": "object", "description": "The env's info dict."},
            "terminated": {"type": "boolean"},
            "truncated": {"type": "boolean"},
        },
        "required": ["text", "info", "terminated", "truncated"],
    },
    "state": {
        "title": "SessionState",
        "type": "object",
        "properties": {
            "episode_id": {"type": ["string", "null"]},
            "step_count": {"type": "integer", "minimum": 0},
            "session_id": {"type": "string"},
            "env_id": {"type": "string"},
            "seed": {"type": ["integer", "null"]},
            "done": {"type": "boolean"},
            "episode_return": {"type": "number"},
        },
    },
}

_AGENT_MAP = {"type": "object", "additionalProperties": {"type": "number"}}
_AGENT_FLAGS = {"type": "object", "additionalProperties": {"type": "boolean"}}
_AGENT_LIST = {"type": "array", "items": {"type": "string"}}

#: The JSON schemas of a multi-agent (PettingZoo AEC) server's ``/schema``.
AEC_SCHEMAS: Mapping[str, Any] = {
    "action": {
        "title": "AgentTextAction",
        "type": "object",
        "properties": {
            "agent": {"type": "string", "description": "The agent to act: agent_selection."},
            "message": {
                "type": ["string", "null"],
                "description": "The agent's raw completion; null for an agent whose episode "
                "is over (PettingZoo's None).",
            },
            "metadata": {"type": "object", "description": "Ignored; accepted as OpenEnv's."},
        },
        "required": ["agent", "message"],
        "additionalProperties": False,
    },
    "observation": {
        "title": "AECObservation",
        "type": "object",
        "properties": {
            "agent": {"type": ["string", "null"], "description": "agent_selection."},
            "text": {"type": ["string", "null"], "description": "observe(agent_selection)."},
            "info": {"type": ["object", "null"]},
            "terminated": {"type": ["boolean", "null"]},
            "truncated": {"type": ["boolean", "null"]},
            "agents": _AGENT_LIST,
            "possible_agents": _AGENT_LIST,
            "rewards": _AGENT_MAP,
            "cumulative_rewards": _AGENT_MAP,
            "terminations": _AGENT_FLAGS,
            "truncations": _AGENT_FLAGS,
            "infos": {"type": "object", "additionalProperties": {"type": "object"}},
        },
        "required": [
            "agent",
            "text",
            "info",
            "terminated",
            "truncated",
            "agents",
            "possible_agents",
            "rewards",
            "cumulative_rewards",
            "terminations",
            "truncations",
            "infos",
        ],
    },
    "state": {
        "title": "AECSessionState",
        "type": "object",
        "properties": {
            "episode_id": {"type": ["string", "null"]},
            "step_count": {"type": "integer", "minimum": 0},
            "session_id": {"type": "string"},
            "env_id": {"type": "string"},
            "seed": {"type": ["integer", "null"]},
            "done": {"type": "boolean"},
            "agent_selection": {"type": ["string", "null"]},
            "agents": _AGENT_LIST,
            "possible_agents": _AGENT_LIST,
            "episode_returns": _AGENT_MAP,
        },
    },
}


@dataclass(frozen=True)
class ServeConfig:
    """What to serve, and the server's limits.

    >>> ServeConfig("LLMTrainer/Calculator-v0", max_sessions=0)
    Traceback (most recent call last):
    ...
    llm_trainer.core.errors.ConfigError: max_sessions must be an int >= 1, got 0
    """

    env_id: str
    """An id of registry.yaml, single-agent or multi-agent."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Overrides of the registry's kwargs: each session's env is
    ``llm_trainer.make(env_id, **env_kwargs)`` (``make_multiagent`` for a multi-agent id)."""
    max_sessions: int = 64
    """Sessions open at once, HTTP and WebSocket together; one more is refused with
    ``CAPACITY_REACHED``."""
    session_timeout_s: float = 600.0
    """An HTTP session idle this long is closed (a WebSocket session ends with its connection)."""
    max_message_bytes: int = 4 * 2**20
    """Largest request body or WebSocket message. Actions longer than the env's
    ``max_text_length`` but under this bound are the env's invalid actions, as in-process."""

    def __post_init__(self) -> None:
        if not isinstance(self.env_id, str):
            raise ConfigError(f"env_id must be a registered env id (str), got {self.env_id!r}")
        if not isinstance(self.env_kwargs, Mapping):
            raise ConfigError(f"env_kwargs must be a mapping, got {short_repr(self.env_kwargs)}")
        for name in ("max_sessions", "max_message_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {short_repr(value)}")
        timeout = self.session_timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ConfigError(f"session_timeout_s must be a number > 0, got {short_repr(timeout)}")


class WireError(LLMTrainerError):
    """A request the server refuses (or an env call that failed): sent back as an error reply.

    Attributes:
        code: One of the error codes above.
        status: The HTTP status of the reply.
    """

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code, self.status = code, status


class _PlainTools:
    """``to_plain(info["tools"])``, converted once per specs object: an env hands out the same
    read-only specs in every ``info`` (the env contract), and converting them was most of a
    step's cost on the server."""

    def __init__(self) -> None:
        self._specs: Any = None
        self._plain: Any = None

    def __call__(self, specs: Any) -> Any:
        if specs is not self._specs:
            self._specs, self._plain = specs, to_plain(specs)  # holds ``specs``: ids stay unique
        return self._plain


# -- sessions ------------------------------------------------------------------------------


@dataclass(eq=False)
class Session:
    """One client's env and its episode bookkeeping; ``lock`` serialises calls on it."""

    id: str
    env: Any
    """A ``gymnasium.Env``, or a PettingZoo ``AECEnv`` on a multi-agent server."""
    transport: str
    clock: Callable[[], float]
    """The store's clock; a call's end restarts the idle time (under ``lock``: no reaper sees
    the session idle between the two)."""
    last_active: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    episode_id: str | None = None
    seed: int | None = None
    step_count: int = 0
    done: bool = False
    episode_return: float = 0.0
    episode_returns: dict[str, float] = field(default_factory=dict)
    """Multi-agent: each agent's rewards summed over the episode."""
    started: bool = False
    """Whether the env was reset (a multi-agent env cannot say so itself)."""
    tools: _PlainTools = field(default_factory=lambda: _PlainTools())


class SessionStore:
    """The open sessions: at most ``max_sessions``, HTTP ones closed after ``timeout_s`` idle.

    Thread-safe: the store's lock guards the table only; env calls hold the session's own lock,
    so sessions run concurrently and one session's calls run one at a time.
    """

    def __init__(
        self,
        make_env: Callable[[], Any],
        max_sessions: int,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make_env, self.max_sessions, self.timeout_s = make_env, max_sessions, timeout_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._reserved = 0  # slots held while an env is being made, outside the lock
        self._gone: OrderedDict[str, str] = OrderedDict()  # id -> "closed" or "expired"
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, transport: str) -> Session:
        """A new session with a fresh env.

        Raises:
            WireError: ``CAPACITY_REACHED`` when ``max_sessions`` are open; ``FACTORY_ERROR``
                when the env cannot be made.
        """
        with self._lock:
            expired = self._expire_locked()
            in_use = len(self._sessions) + self._reserved
            full = in_use >= self.max_sessions
            if not full:
                self._reserved += 1
        _close_envs(expired)
        if full:
            raise WireError(
                CAPACITY_REACHED,
                503,
                f"server at capacity: {in_use}/{self.max_sessions} sessions open; close one "
                f"(POST /close, or end its WebSocket), let an idle HTTP session expire "
                f"({self.timeout_s:g} s), or serve with a larger --max-sessions",
            )
        try:
            env = self._make_env()
        except Exception as exc:
            raise WireError(FACTORY_ERROR, 500, f"cannot make the env: {exc}") from exc
        finally:
            with self._lock:
                self._reserved -= 1
        session = Session(uuid.uuid4().hex, env, transport, self._clock, self._clock())
        with self._lock:
            self._sessions[session.id] = session
        return session

    def get(self, session_id: Any) -> Session:
        """The open HTTP session ``session_id`` (its idle clock restarts).

        Raises:
            WireError: ``SESSION_ERROR`` naming the id, and whether it expired, was closed, or
                never existed.
        """
        if not isinstance(session_id, str):
            raise WireError(
                VALIDATION_ERROR,
                422,
                f"session_id must be a string (from the reply to POST /reset), got "
                f"{_json_type(session_id)} {short_repr(session_id)}",
            )
        expired: list[Session] = []
        with self._lock:
            session = self._sessions.get(session_id)
            now = self._clock()
            if session is not None and self._is_idle(session, now):
                expired = [self._forget_locked(session, "expired")]
                session = None
            if session is not None:
                session.last_active = now
            gone = self._gone.get(session_id)
        _close_envs(expired)
        if session is None:
            if gone == "expired":
                detail = f"expired after {self.timeout_s:g} s idle"
            elif gone == "closed":
                detail = "was closed"
            else:
                detail = "is not an open session (never opened, or closed long ago)"
            raise WireError(
                SESSION_ERROR,
                404,
                f"session {short_repr(session_id)} {detail}; POST /reset without a session_id "
                "to open a new one",
            )
        if session.transport != "http":
            raise WireError(
                SESSION_ERROR,
                409,
                f"session {session_id!r} belongs to a WebSocket connection; send its messages "
                "on that connection",
            )
        return session

    def close(self, session_id: str) -> bool:
        """Close a session and its env; whether it was open."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None:
                self._forget_locked(session, "closed")
        _close_envs([session] if session is not None else [])
        return session is not None

    def expire(self) -> int:
        """Close the HTTP sessions idle for longer than ``timeout_s``; how many."""
        with self._lock:
            expired = self._expire_locked()
        _close_envs(expired)
        return len(expired)

    def close_all(self) -> None:
        with self._lock:
            sessions = [self._forget_locked(s, "closed") for s in list(self._sessions.values())]
        _close_envs(sessions)

    def _is_idle(self, session: Session, now: float) -> bool:
        # A session whose lock is held is in a call right now: busy, not idle.
        return (
            session.transport == "http"
            and now - session.last_active > self.timeout_s
            and not session.lock.locked()
        )

    def _expire_locked(self) -> list[Session]:
        now = self._clock()
        idle = [s for s in self._sessions.values() if self._is_idle(s, now)]
        return [self._forget_locked(s, "expired") for s in idle]

    def _forget_locked(self, session: Session, why: str) -> Session:
        del self._sessions[session.id]
        self._gone[session.id] = why
        if len(self._gone) > _FORGOTTEN:
            self._gone.popitem(last=False)
        return session


def _close_envs(sessions: list[Session]) -> None:
    for session in sessions:
        with contextlib.suppress(Exception):  # closing is best effort; the session is gone
            session.env.close()


# -- the env calls -------------------------------------------------------------------------


def plain_info(info: Mapping[str, Any], tools: _PlainTools | None = None) -> dict[str, Any]:
    """``info`` with plain dicts and lists only (JSON-ready)."""
    if tools is None or "tools" not in info:
        return dict(to_plain(info))
    plain = {k: v if type(v) in _SCALARS else to_plain(v) for k, v in info.items() if k != "tools"}
    plain["tools"] = tools(info["tools"])
    return plain


def result_payload(
    observation: Any,
    reward: Any,
    terminated: Any,
    truncated: Any,
    info: Mapping[str, Any],
    tools: _PlainTools | None = None,
) -> dict[str, Any]:
    """OpenEnv's ``{"observation", "reward", "done"}`` for one gymnasium result."""
    terminated, truncated = bool(terminated), bool(truncated)
    return {
        "observation": {
            "text": observation,
            "info": plain_info(info, tools),
            "terminated": terminated,
            "truncated": truncated,
        },
        "reward": None if reward is None else float(reward),
        "done": terminated or truncated,
    }


def reset_session(session: Session, request: Mapping[str, Any]) -> dict[str, Any]:
    """Reset the session's env from a checked reset request; the result payload."""
    seed, options = request.get("seed"), request.get("options")
    with session.lock:
        try:
            observation, info = session.env.reset(seed=seed, options=options)
        except (UserError, TypeError, ValueError) as exc:
            raise WireError(VALIDATION_ERROR, 422, f"reset: {_one_line(exc)}") from exc
        except Exception as exc:
            raise WireError(EXECUTION_ERROR, 500, f"reset failed: {_describe(exc)}") from exc
        session.episode_id = request.get("episode_id") or uuid.uuid4().hex
        session.seed, session.step_count, session.done, session.episode_return = seed, 0, False, 0.0
        session.last_active = session.clock()
        return result_payload(observation, None, False, False, info, session.tools)


def step_session(session: Session, message: str) -> dict[str, Any]:
    """Step the session's env with the action text; the result payload."""
    with session.lock:
        try:
            observation, reward, terminated, truncated, info = session.env.step(message)
        except gym.error.ResetNeeded as exc:
            raise WireError(
                RESET_NEEDED, 409, f"step needs a reset first: {_one_line(exc)}"
            ) from exc
        except Exception as exc:
            raise WireError(EXECUTION_ERROR, 500, f"step failed: {_describe(exc)}") from exc
        session.step_count += 1
        session.done = bool(terminated or truncated)
        session.episode_return += float(reward)
        session.last_active = session.clock()
        return result_payload(observation, reward, terminated, truncated, info, session.tools)


def session_state(session: Session, env_id: str) -> dict[str, Any]:
    """OpenEnv's ``State`` (``episode_id``, ``step_count``) and what else a client may want.
    The task itself (its answer) is never part of it."""
    with session.lock:
        return {
            "episode_id": session.episode_id,
            "step_count": session.step_count,
            "session_id": session.id,
            "env_id": env_id,
            "seed": session.seed,
            "done": session.done,
            "episode_return": session.episode_return,
        }


# -- the multi-agent (PettingZoo AEC) env calls ---------------------------------------------


def _text(observation: Any) -> Any:
    """An observation as JSON: text as ``str`` (a ``TextObservation`` is a ``numpy.str_``)."""
    if observation is None or isinstance(observation, str):
        return None if observation is None else str(observation)
    return to_plain(observation)


def aec_payload(session: Session, *, after_reset: bool) -> dict[str, Any]:
    """The result payload of an AEC env (see the module docstring): ``last()`` of the agent to
    act, and every agent's dicts. Called under the session's lock."""
    env = session.env
    agents = [str(a) for a in env.agents]
    agent = getattr(env, "agent_selection", None)
    rewards = {a: float(r) for a, r in env.rewards.items()}
    cumulative = {a: float(r) for a, r in getattr(env, "_cumulative_rewards", rewards).items()}
    terminations = {a: bool(t) for a, t in env.terminations.items()}
    truncations = {a: bool(t) for a, t in env.truncations.items()}
    infos = {a: plain_info(info, session.tools) for a, info in env.infos.items()}
    live = agent in agents
    return {
        "observation": {
            "agent": agent,
            "text": _text(env.observe(agent)) if live else None,
            "info": infos.get(agent) if live else None,
            "terminated": terminations.get(agent) if live else None,
            "truncated": truncations.get(agent) if live else None,
            "agents": agents,
            "possible_agents": [str(a) for a in env.possible_agents],
            "rewards": rewards,
            "cumulative_rewards": cumulative,
            "terminations": terminations,
            "truncations": truncations,
            "infos": infos,
        },
        "reward": None if after_reset or not live else cumulative.get(agent),
        "done": _aec_done(env),
    }


def _aec_done(env: Any) -> bool:
    return all(env.terminations.get(a) or env.truncations.get(a) for a in env.agents)


def reset_aec_session(session: Session, request: Mapping[str, Any]) -> dict[str, Any]:
    """Reset the session's AEC env from a checked reset request; the result payload."""
    seed, options = request.get("seed"), request.get("options")
    with session.lock:
        try:
            session.env.reset(seed=seed, options=options)
            payload = aec_payload(session, after_reset=True)
        except (UserError, TypeError, ValueError) as exc:
            raise WireError(VALIDATION_ERROR, 422, f"reset: {_one_line(exc)}") from exc
        except Exception as exc:
            raise WireError(EXECUTION_ERROR, 500, f"reset failed: {_describe(exc)}") from exc
        session.episode_id = request.get("episode_id") or uuid.uuid4().hex
        session.seed, session.step_count, session.started = seed, 0, True
        session.done = payload["done"]
        session.episode_returns = dict.fromkeys(payload["observation"]["possible_agents"], 0.0)
        session.last_active = session.clock()
        return payload


def _check_agent(env: Any, agent: str) -> None:
    possible = [str(a) for a in env.possible_agents]
    if agent not in possible:
        raise WireError(
            VALIDATION_ERROR,
            422,
            f"unknown agent {short_repr(agent)}{suggest(agent, possible)}; the agents are "
            f"{', '.join(possible)}",
        )


def step_aec_session(session: Session, agent: str, message: str | None) -> dict[str, Any]:
    """Step the session's AEC env with ``agent``'s action (``None``: a finished agent leaves);
    the result payload."""
    with session.lock:
        env = session.env
        if not session.started:
            raise WireError(RESET_NEEDED, 409, "step needs a reset first: no episode has begun")
        _check_agent(env, agent)
        if not env.agents:
            raise WireError(
                RESET_NEEDED,
                409,
                "the episode is over: every agent has left; reset to play another",
            )
        acting = env.agent_selection
        if agent != acting:
            raise WireError(
                VALIDATION_ERROR,
                409,
                f"it is {acting}'s turn (agent_selection), not {agent}'s: send {acting}'s action",
            )
        finished = bool(env.terminations[acting] or env.truncations[acting])
        if finished and message is not None:
            raise WireError(
                VALIDATION_ERROR,
                422,
                f"{acting}'s episode is over: its only action is null (PettingZoo's None), "
                "which lets it leave",
            )
        if not finished and message is None:
            raise WireError(
                VALIDATION_ERROR,
                422,
                f"action.message must be a string ({acting}'s completion); null is the "
                "action of an agent whose episode is over",
            )
        try:
            env.step(message)
            payload = aec_payload(session, after_reset=False)
        except Exception as exc:
            raise WireError(EXECUTION_ERROR, 500, f"step failed: {_describe(exc)}") from exc
        session.step_count += 1
        session.done = payload["done"]
        for name, reward in payload["observation"]["rewards"].items():
            session.episode_returns[name] = session.episode_returns.get(name, 0.0) + reward
        session.last_active = session.clock()
        return payload


def observe_aec_session(session: Session, agent: str) -> dict[str, Any]:
    """``observe(agent)`` of the session's AEC env, for any agent."""
    with session.lock:
        if not session.started:
            raise WireError(RESET_NEEDED, 409, "observe needs a reset first: no episode has begun")
        _check_agent(session.env, agent)
        try:
            text = _text(session.env.observe(agent))
        except Exception as exc:
            raise WireError(EXECUTION_ERROR, 500, f"observe failed: {_describe(exc)}") from exc
        session.last_active = session.clock()
        return {"agent": agent, "text": text}


def aec_state(session: Session, env_id: str) -> dict[str, Any]:
    """The single-agent state's fields (``episode_returns`` for ``episode_return``) and the
    AEC env's turn: ``agent_selection``, ``agents``, ``possible_agents``."""
    with session.lock:
        env = session.env
        return {
            "episode_id": session.episode_id,
            "step_count": session.step_count,
            "session_id": session.id,
            "env_id": env_id,
            "seed": session.seed,
            "done": session.done,
            "agent_selection": getattr(env, "agent_selection", None) if session.started else None,
            "agents": [str(a) for a in env.agents] if session.started else [],
            "possible_agents": [str(a) for a in env.possible_agents],
            "episode_returns": dict(session.episode_returns),
        }


# -- request checking ----------------------------------------------------------------------


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_one_line(exc)}"


def parse_json(raw: str | bytes) -> Any:
    """Decode a request; ``INVALID_JSON`` naming the problem otherwise."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, a 5,000-digit int
        raise WireError(INVALID_JSON, 400, f"not valid JSON: {_one_line(exc)}") from None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WireError(
            VALIDATION_ERROR, 422, f"{what} must be a JSON object, got {_json_type(value)}"
        )
    return value


def _known_fields(value: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    for key in value:
        if key not in allowed:
            raise WireError(
                VALIDATION_ERROR,
                422,
                f"{what}: unknown field {short_repr(key)}{suggest(key, allowed)}; "
                f"allowed: {', '.join(allowed)}",
            )


def check_reset_request(data: Any, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The checked fields of a reset request (``extra``: more allowed fields, unchecked)."""
    request = _object(data, "reset request")
    _known_fields(request, _RESET_FIELDS + extra, "reset request")
    seed = request.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise WireError(
            VALIDATION_ERROR,
            422,
            f"seed must be a non-negative integer or null, got {_json_type(seed)} "
            f"{short_repr(seed)}",
        )
    options = request.get("options")
    if options is not None and not isinstance(options, dict):
        raise WireError(
            VALIDATION_ERROR,
            422,
            f'options must be a JSON object or null (e.g. {{"difficulty": 2}}), got '
            f"{_json_type(options)}",
        )
    episode_id = request.get("episode_id")
    if episode_id is not None and (
        not isinstance(episode_id, str) or len(episode_id) > _MAX_EPISODE_ID
    ):
        raise WireError(
            VALIDATION_ERROR,
            422,
            f"episode_id must be a string of at most {_MAX_EPISODE_ID} characters or null",
        )
    return request


def check_action(data: Any) -> str:
    """The action text of a step (OpenEnv's action object: ``{"message": str}``)."""
    action = _object(data, "action")
    _known_fields(action, _ACTION_FIELDS, "action")
    if "message" not in action:
        raise WireError(
            VALIDATION_ERROR,
            422,
            'action needs "message": the model\'s completion, e.g. '
            '{"message": "<answer>42</answer>"}',
        )
    message = action["message"]
    if not isinstance(message, str):
        raise WireError(
            VALIDATION_ERROR,
            422,
            f"action.message must be a string (the model's completion), got {_json_type(message)}",
        )
    if not isinstance(action.get("metadata", {}), dict):
        raise WireError(VALIDATION_ERROR, 422, "action.metadata must be a JSON object")
    return message


def check_aec_action(data: Any) -> tuple[str, str | None]:
    """The agent and action text of a multi-agent step (``{"agent": str, "message": str |
    null}``)."""
    action = _object(data, "action")
    _known_fields(action, _AEC_ACTION_FIELDS, "action")
    if "agent" not in action:
        raise WireError(
            VALIDATION_ERROR,
            422,
            'action needs "agent": the agent to act (agent_selection of the last reply), e.g. '
            '{"agent": "player_0", "message": "<answer>bet</answer>"}',
        )
    agent = action["agent"]
    if not isinstance(agent, str):
        raise WireError(
            VALIDATION_ERROR,
            422,
            f"action.agent must be a string (an agent's name), got {_json_type(agent)}",
        )
    if "message" not in action:
        raise WireError(
            VALIDATION_ERROR,
            422,
            'action needs "message": the agent\'s completion, or null for an agent whose '
            "episode is over",
        )
    message = action["message"]
    if message is not None and not isinstance(message, str):
        raise WireError(
            VALIDATION_ERROR,
            422,
            f"action.message must be a string (the agent's completion) or null, got "
            f"{_json_type(message)}",
        )
    if not isinstance(action.get("metadata", {}), dict):
        raise WireError(VALIDATION_ERROR, 422, "action.metadata must be a JSON object")
    return agent, message


def _json_default(value: Any) -> Any:
    """What ``json.dumps`` cannot write itself: numpy values and sets; anything else as text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return str(value)


def dumps(payload: Any) -> str:
    """Compact, ASCII-only JSON: valid UTF-8 whatever the strings hold (lone surrogates too)."""
    return json.dumps(payload, separators=(",", ":"), default=_json_default)


# -- the application -----------------------------------------------------------------------


class EnvServer:
    """The sessions and handlers of one served env id; :meth:`app` is the ASGI application.

    The env is made once at construction (a bad id or argument fails here, not at the first
    request) to read what ``/metadata`` reports: its tools, spaces and time limit. A
    multi-agent id is served in the AEC shape of the module docstring.

    Raises:
        UnknownEnvError: for an id that is not registered (with a "did you mean").
        ConfigError: for an ``env_kwargs`` entry the env does not take, or a bad value.
    """

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        env_spec = spec(config.env_id)  # UnknownEnvError with a "did you mean"
        self.env_id = config.env_id
        self.multi_agent = env_spec.capabilities.multi_agent
        self.schemas = AEC_SCHEMAS if self.multi_agent else SCHEMAS
        self.ws_message_types = AEC_WS_MESSAGE_TYPES if self.multi_agent else WS_MESSAGE_TYPES
        probe = self.make_env()
        try:
            if self.multi_agent:
                probe.reset(seed=0)
                agents = [str(a) for a in probe.possible_agents]
                infos = {a: probe.infos.get(a, {}) for a in agents}
                described: dict[str, Any] = {
                    "multi_agent": True,
                    "api": env_spec.capabilities.api,
                    "possible_agents": agents,
                    "observation_max_length": {
                        a: getattr(probe.observation_space(a), "max_length", None) for a in agents
                    },
                    "action_max_length": {
                        a: getattr(probe.action_space(a), "max_length", None) for a in agents
                    },
                    "env_metadata": to_plain(dict(getattr(probe, "metadata", {}) or {})),
                    "system_prompts": {a: infos[a].get("system_prompt") for a in agents},
                    "agent_tools": {a: to_plain(infos[a].get("tools", ())) for a in agents},
                }
            else:
                _, info = probe.reset(seed=0)
                space = probe.observation_space
                described = {
                    "multi_agent": False,
                    "api": env_spec.capabilities.api,
                    "max_text_length": getattr(space, "max_length", None),
                    "tools": to_plain(info.get("tools", ())),
                    "system_prompt": info.get("system_prompt"),
                }
        finally:
            probe.close()
        self.metadata: dict[str, Any] = {
            # OpenEnv's EnvironmentMetadata fields ...
            "name": self.env_id,
            "description": env_spec.description,
            "version": llm_trainer.__version__,
            "readme_content": None,
            "author": "llm-trainer",
            "documentation_url": None,
            # ... and what a gymnasium client needs to build its spaces and spec.
            "env_id": self.env_id,
            "env_kwargs": dict(config.env_kwargs),
            **described,
            "max_episode_steps": env_spec.max_episode_steps,
            "reward_threshold": env_spec.reward_threshold,
            "difficulties": list(env_spec.capabilities.difficulties),
            "max_sessions": config.max_sessions,
            "session_timeout_s": config.session_timeout_s,
            "max_message_bytes": config.max_message_bytes,
        }
        self.sessions = SessionStore(self.make_env, config.max_sessions, config.session_timeout_s)

    def make_env(self) -> Any:
        """A session's env: ``llm_trainer.make``'s, or ``make_multiagent``'s as an AEC env."""
        try:
            if not self.multi_agent:
                return make(self.env_id, **self.config.env_kwargs)
            env = make_multiagent(self.env_id, **self.config.env_kwargs)
        except TypeError as exc:  # gymnasium's "unexpected keyword argument", naming it
            raise ConfigError(f"{self.env_id}: {_one_line(exc)}") from exc
        from pettingzoo import ParallelEnv

        if isinstance(env, ParallelEnv):
            from pettingzoo.utils.conversions import parallel_to_aec

            return parallel_to_aec(env)
        return env

    # -- the calls, single-agent or multi-agent ------------------------------------------------

    def _reset(self, session: Session, request: Mapping[str, Any]) -> dict[str, Any]:
        if self.multi_agent:
            return reset_aec_session(session, request)
        return reset_session(session, request)

    def _step(self, session: Session, action: Any) -> dict[str, Any]:
        """Step with a checked action (``check_action``'s or ``check_aec_action``'s)."""
        if self.multi_agent:
            agent, message = action
            return step_aec_session(session, agent, message)
        return step_session(session, action)

    def _check_action(self, data: Any) -> Any:
        return check_aec_action(data) if self.multi_agent else check_action(data)

    def _state(self, session: Session) -> dict[str, Any]:
        if self.multi_agent:
            return aec_state(session, self.env_id)
        return session_state(session, self.env_id)

    def _require_multi_agent(self) -> None:
        if not self.multi_agent:
            raise WireError(
                VALIDATION_ERROR,
                404,
                f"{self.env_id} is a single-agent env: its observation comes with every reply "
                "(observe is for multi-agent envs)",
            )

    def _observe(self, session: Session, agent: Any) -> dict[str, Any]:
        self._require_multi_agent()
        if not isinstance(agent, str):
            raise WireError(
                VALIDATION_ERROR,
                422,
                f"observe needs the agent's name (a string), got {_json_type(agent)} "
                f"{short_repr(agent)}",
            )
        return observe_aec_session(session, agent)

    # -- HTTP ------------------------------------------------------------------------------

    def http_reset(self, body: Any) -> dict[str, Any]:
        request = check_reset_request({} if body is None else body, extra=("session_id",))
        if request.get("session_id") is None:
            session = self.sessions.open("http")
        else:
            session = self.sessions.get(request["session_id"])
        try:
            payload = self._reset(session, request)
        except WireError:
            if request.get("session_id") is None:  # the session was opened for this reset
                self.sessions.close(session.id)
            raise
        return {**payload, "session_id": session.id}

    def http_step(self, body: Any) -> dict[str, Any]:
        request = _object(body, "step request")
        _known_fields(request, ("action", "session_id", "request_id"), "step request")
        if "session_id" not in request:
            raise WireError(
                VALIDATION_ERROR,
                422,
                "step request needs a session_id: POST /reset returns one (or use the "
                "WebSocket /ws, one session per connection)",
            )
        if "action" not in request:
            raise WireError(VALIDATION_ERROR, 422, f"step request needs {self._action_example}")
        action = self._check_action(request["action"])
        session = self.sessions.get(request["session_id"])
        payload = self._step(session, action)
        return {**payload, "session_id": session.id}

    @property
    def _action_example(self) -> str:
        if self.multi_agent:
            return '"action": {"agent": "<agent_selection>", "message": "..."}'
        return '"action": {"message": "..."}'

    def http_state(self, session_id: str | None) -> dict[str, Any]:
        if session_id is None:
            raise WireError(
                VALIDATION_ERROR, 422, "GET /state needs ?session_id=... (from POST /reset)"
            )
        return self._state(self.sessions.get(session_id))

    def http_observe(self, session_id: str | None, agent: str | None) -> dict[str, Any]:
        self._require_multi_agent()
        if session_id is None or agent is None:
            raise WireError(
                VALIDATION_ERROR,
                422,
                "GET /observe needs ?session_id=...&agent=... (the session from POST /reset)",
            )
        session = self.sessions.get(session_id)
        return {**self._observe(session, agent), "session_id": session.id}

    def http_close(self, body: Any) -> dict[str, Any]:
        request = _object(body, "close request")
        _known_fields(request, ("session_id",), "close request")
        session = self.sessions.get(request.get("session_id"))  # 404 for an unknown id
        return {"session_id": session.id, "closed": self.sessions.close(session.id)}

    # -- WebSocket -------------------------------------------------------------------------

    def ws_message(self, session: Session, raw: str | bytes) -> tuple[str | None, bool]:
        """The reply to one WebSocket message (``None`` for ``close``) and whether to close."""
        try:
            message = _object(parse_json(raw), "message")
            kind = message.get("type")
            if kind not in self.ws_message_types:
                raise WireError(
                    UNKNOWN_TYPE,
                    400,
                    f"unknown message type {short_repr(kind)}; expected one of "
                    f"{', '.join(self.ws_message_types)}",
                )
            _known_fields(message, ("type", "data"), f"{kind} message")
            if kind == "close":
                return None, True
            if kind == "state":
                reply = {"type": "state", "data": self._state(session)}
            elif kind == "reset":
                request = check_reset_request(message.get("data") or {})
                reply = {"type": "observation", "data": self._reset(session, request)}
            elif kind == "observe":
                data = _object(message.get("data"), "observe message's data")
                _known_fields(data, ("agent",), "observe message's data")
                reply = {"type": "observe", "data": self._observe(session, data.get("agent"))}
            else:
                if "data" not in message:
                    raise WireError(
                        VALIDATION_ERROR,
                        422,
                        'step message needs "data": ' + self._action_example.split(": ", 1)[1],
                    )
                action = self._check_action(message["data"])
                reply = {"type": "observation", "data": self._step(session, action)}
        except WireError as exc:
            return dumps(_ws_error(exc)), False
        return dumps(reply), False

    # -- ASGI ------------------------------------------------------------------------------

    def app(self) -> Starlette:
        """The Starlette application: the routes above, and a task expiring idle sessions."""

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            reaper = asyncio.create_task(self._expire_periodically())
            try:
                yield
            finally:
                reaper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reaper
                self.sessions.close_all()

        return Starlette(
            routes=[
                Route("/reset", self._post(self.http_reset, allow_empty=True), methods=["POST"]),
                Route("/step", self._post(self.http_step), methods=["POST"]),
                Route("/close", self._post(self.http_close), methods=["POST"]),
                Route("/state", self._get_state, methods=["GET"]),
                Route("/observe", self._get_observe, methods=["GET"]),
                Route("/health", self._get({"status": "healthy"}), methods=["GET"]),
                Route("/metadata", self._get(self.metadata), methods=["GET"]),
                Route("/schema", self._get(self.schemas), methods=["GET"]),
                WebSocketRoute("/ws", self._websocket),
            ],
            lifespan=lifespan,
        )

    async def _expire_periodically(self) -> None:
        interval = min(max(self.config.session_timeout_s / 4, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            self.sessions.expire()

    def _post(
        self, handler: Callable[[Any], dict[str, Any]], *, allow_empty: bool = False
    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                raw = await self._read_body(request)
                if not raw.strip():
                    if not allow_empty:
                        raise WireError(VALIDATION_ERROR, 422, "the request needs a JSON body")
                    body: Any = None
                else:
                    body = parse_json(raw)
                return _json_response(await run_in_threadpool(handler, body))
            except WireError as exc:
                return _error_response(exc)

        return endpoint

    async def _get_state(self, request: Request) -> Response:
        try:
            session_id = request.query_params.get("session_id")
            return _json_response(await run_in_threadpool(self.http_state, session_id))
        except WireError as exc:
            return _error_response(exc)

    async def _get_observe(self, request: Request) -> Response:
        try:
            query = request.query_params
            observe = self.http_observe
            return _json_response(
                await run_in_threadpool(observe, query.get("session_id"), query.get("agent"))
            )
        except WireError as exc:
            return _error_response(exc)

    @staticmethod
    def _get(payload: Any) -> Callable[[Request], Any]:
        body = dumps(payload).encode()

        async def endpoint(request: Request) -> Response:
            return Response(body, media_type="application/json")

        return endpoint

    async def _read_body(self, request: Request) -> bytes:
        limit = self.config.max_message_bytes
        too_large = WireError(
            VALIDATION_ERROR, 413, f"request body larger than {limit} bytes (max_message_bytes)"
        )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def _websocket(self, websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            session = await run_in_threadpool(self.sessions.open, "ws")
        except WireError as exc:  # capacity or a failed env: say so, then close
            await websocket.send_text(dumps(_ws_error(exc)))
            await websocket.close(code=1013 if exc.code == CAPACITY_REACHED else 1011)
            return
        try:
            while True:
                frame = await websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                raw = frame.get("text")
                if raw is None:
                    raw = frame.get("bytes") or b""
                if len(raw) > self.config.max_message_bytes:
                    reply: str | None = dumps(
                        _ws_error(
                            WireError(
                                VALIDATION_ERROR,
                                413,
                                f"message larger than {self.config.max_message_bytes} bytes",
                            )
                        )
                    )
                    close = False
                else:
                    reply, close = await run_in_threadpool(self.ws_message, session, raw)
                if reply is not None:
                    await websocket.send_text(reply)
                if close:
                    break
        finally:
            self.sessions.close(session.id)
            if websocket.application_state != WebSocketState.DISCONNECTED:
                with contextlib.suppress(Exception):  # the peer may be gone already
                    await websocket.close()


def _ws_error(exc: WireError) -> dict[str, Any]:
    return {"type": "error", "data": {"message": str(exc), "code": exc.code}}


def _json_response(payload: Any, status: int = 200) -> Response:
    return Response(dumps(payload).encode(), status_code=status, media_type="application/json")


def _error_response(exc: WireError) -> Response:
    return _json_response({"detail": str(exc), "code": exc.code}, exc.status)


def create_app(config: ServeConfig) -> Starlette:
    """The ASGI application serving ``config.env_id`` (run it with any ASGI server)."""
    return EnvServer(config).app()


# -- running it ----------------------------------------------------------------------------


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one, chosen by the OS)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def _uvicorn(app: Starlette, config: ServeConfig, log_level: str) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            ws_max_size=config.max_message_bytes + 1024,  # our own limit answers first
            # A trainer's client idles while its model generates: keep its connection (uvicorn's
            # default closes it after 5 s, and every next step then reconnects).
            timeout_keep_alive=75,
        )
    )


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    config: ServeConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "warning",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C). ``on_ready(url)`` is called once the socket listens
    (with ``port=0``, the URL names the port the OS chose)."""
    app = create_app(config)
    sock = _bind(host, port)
    with sock:
        if on_ready is not None:
            on_ready(_url(sock))
        _uvicorn(app, config, log_level).run(sockets=[sock])


class ServerThread:
    """A server running in a background thread, for tests, benchmarks and notebooks.

    >>> with ServerThread(ServeConfig("LLMTrainer/Calculator-v0")) as server:
    ...     server.url.startswith("http://127.0.0.1:")
    True
    """

    def __init__(
        self,
        config: ServeConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
        startup_timeout_s: float = 30.0,
    ) -> None:
        self.server = EnvServer(config)
        self._socket = _bind(host, port)
        self.url = _url(self._socket)
        self._uvicorn = _uvicorn(self.server.app(), config, log_level)
        self._thread = threading.Thread(
            target=self._uvicorn.run,
            kwargs={"sockets": [self._socket]},
            name=f"llm-trainer-serve-{secrets.token_hex(2)}",
            daemon=True,
        )
        self._startup_timeout_s = startup_timeout_s

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout_s
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


__all__ = [
    "SCHEMAS",
    "EnvServer",
    "ServeConfig",
    "ServerThread",
    "Session",
    "SessionStore",
    "WireError",
    "create_app",
    "serve",
]
