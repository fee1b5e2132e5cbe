"""``RemoteEnv``: a ``gymnasium.Env`` that plays an env served in the OpenEnv shape, and
``RemoteAECEnv``: a ``pettingzoo.AECEnv`` that plays a served multi-agent env.

This file stands alone: it imports the standard library, gymnasium (and its numpy), PettingZoo
and (for the WebSocket transport only) ``websockets``, never the rest of llm-trainer, so
another framework can copy it to talk to ``llm-trainer serve``. The wire protocol is
documented in :mod:`llm_trainer.serve.server`.

Two transports, one session each:

- ``"ws"`` (the default, as OpenEnv's ``EnvClient``): one WebSocket connection to ``/ws`` is
  the session; it opens at the first call and ends with :meth:`RemoteEnv.close`.
- ``"http"``: ``POST /reset`` opens a session and returns its id, which later requests name;
  a keep-alive ``http.client`` connection carries them. Nothing but the standard library.

Server errors become exceptions of the kind the in-process env raises: a bad reset option is a
:class:`RemoteValidationError` (a ``ValueError``), a step before ``reset`` or after the episode
ended a :class:`RemoteResetNeededError` (gymnasium's ``ResetNeeded``), a non-``str`` action a
``TypeError`` (checked here, before sending); a closed, expired or refused session is a
:class:`RemoteSessionError`. Each carries the server's one-line message and error code.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import operator
import urllib.parse
from collections.abc import Mapping
from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec
from gymnasium.spaces import Text
from pettingzoo import AECEnv

Transport = Literal["ws", "http"]
TRANSPORTS: tuple[Transport, ...] = ("ws", "http")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_DEFAULT_MAX_TEXT_LENGTH = 8192


class RemoteEnvError(RuntimeError):
    """The server refused a request or failed; ``code`` is its error code (OpenEnv's
    ``WSErrorCode`` values, or ``RESET_NEEDED``), ``status`` the HTTP status (HTTP only)."""

    def __init__(self, message: str, code: str = "UNKNOWN", status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.status = code, status


class RemoteValidationError(RemoteEnvError, ValueError):
    """A request the server found malformed: a bad seed, reset option, field or JSON."""


class RemoteResetNeededError(RemoteEnvError, gym.error.ResetNeeded):
    """A step before ``reset()``, or after the episode ended."""


class RemoteSessionError(RemoteEnvError):
    """The session is gone (closed, expired, its connection lost) or could not be opened."""


class RemoteCapacityError(RemoteSessionError):
    """The server already holds its maximum number of sessions; retry later."""


_ERRORS: dict[str, type[RemoteEnvError]] = {
    "INVALID_JSON": RemoteValidationError,
    "UNKNOWN_TYPE": RemoteValidationError,
    "VALIDATION_ERROR": RemoteValidationError,
    "RESET_NEEDED": RemoteResetNeededError,
    "SESSION_ERROR": RemoteSessionError,
    "FACTORY_ERROR": RemoteSessionError,
    "CAPACITY_REACHED": RemoteCapacityError,
}


def _error(message: Any, code: Any, status: int | None = None) -> RemoteEnvError:
    code = str(code or "UNKNOWN")
    return _ERRORS.get(code, RemoteEnvError)(str(message or "unknown error"), code, status)


class AnyText(Text):
    """A text space holding any ``str`` of at most ``max_length`` characters (gymnasium's
    ``Text`` accepts only its charset, alphanumerics by default; this file must not import
    llm-trainer's ``UnicodeText``, which it mirrors)."""

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length


class _HttpTransport:
    """JSON over one keep-alive HTTP/1.1 connection (reopened when the server dropped it)."""

    def __init__(self, host: str, port: int, https: bool, prefix: str, timeout_s: float) -> None:
        self._host, self._port, self._https, self._prefix = host, port, https, prefix
        self._timeout_s = timeout_s
        self._connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            reused = self._connection is not None
            connection = self._connection or self._connect()
            try:
                connection.request(method, self._prefix + path, body=data, headers=headers)
                response = connection.getresponse()
                raw = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server closed while idle: open a new one, once.
                # (A fresh connection failing is a real failure and is raised.)
                self.close()
                if reused and attempt == 1:
                    continue
                raise
            except (OSError, http.client.HTTPException):
                self.close()
                raise
            if response.will_close:
                self.close()
            break
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            raise RemoteEnvError(
                f"{method} {path}: the server answered HTTP {response.status} with a body that "
                f"is not JSON: {raw[:200]!r}",
                "INVALID_RESPONSE",
                response.status,
            ) from None
        if response.status >= 400:
            detail = payload if isinstance(payload, dict) else {}
            raise _error(
                detail.get("detail", f"HTTP {response.status}"), detail.get("code"), response.status
            )
        return payload

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        self._connection = cls(self._host, self._port, timeout=self._timeout_s)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class _WebSocketTransport:
    """OpenEnv's ``/ws`` messages over one connection (``websockets``' synchronous client)."""

    def __init__(self, url: str, loopback: bool, timeout_s: float) -> None:
        try:
            from websockets.sync.client import connect
        except ImportError:  # pragma: no cover - websockets is in the serve extra
            raise ImportError(
                "RemoteEnv(transport='ws') needs the websockets package (pip install "
                "websockets); transport='http' needs only the standard library"
            ) from None
        options: dict[str, Any] = {"open_timeout": timeout_s, "max_size": None}
        if loopback:
            options["proxy"] = None  # an HTTP(S)_PROXY setting must not catch loopback traffic
            options["compression"] = None  # deflating each message costs more than it saves here
        try:
            # Entered as a context manager (websockets >= 17 deprecates using connect() bare);
            # close() below ends it.
            self._socket = connect(url, **options).__enter__()
        except Exception as exc:
            raise RemoteSessionError(
                f"cannot open a WebSocket to {url}: {exc}", "SESSION_ERROR"
            ) from exc
        self._timeout_s = timeout_s

    def request(self, kind: str, data: Mapping[str, Any] | None = None) -> Any:
        from websockets.exceptions import ConnectionClosed

        message: dict[str, Any] = {"type": kind}
        if data is not None:
            message["data"] = data
        try:
            self._socket.send(json.dumps(message))
            reply = json.loads(self._socket.recv(timeout=self._timeout_s))
        except ConnectionClosed as exc:
            # A server that refuses the session (at capacity) says why, then closes: that reply
            # may be waiting unread when the send fails.
            reply = self._last_words()
            if reply is None:
                raise RemoteSessionError(
                    f"the server closed the WebSocket ({exc}); the session is gone: make a new "
                    "RemoteEnv",
                    "SESSION_ERROR",
                ) from exc
        except TimeoutError as exc:
            raise RemoteEnvError(
                f"no reply to {kind!r} within {self._timeout_s:g} s", "TIMEOUT"
            ) from exc
        if not isinstance(reply, dict):
            raise RemoteEnvError(
                f"unexpected reply to {kind!r}: {reply!r:.200}", "INVALID_RESPONSE"
            )
        if reply.get("type") == "error":
            data = reply.get("data")
            detail: dict[str, Any] = data if isinstance(data, dict) else {}
            raise _error(detail.get("message"), detail.get("code"))
        return reply.get("data")

    def _last_words(self) -> Any:
        """A message the server sent before closing, if one is still unread."""
        try:
            return json.loads(self._socket.recv(timeout=0))
        except Exception:  # closed with nothing left, or not JSON: there are none
            return None

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the connection may be gone already
            self._socket.send(json.dumps({"type": "close"}))
        self._socket.close()


class _Wire:
    """One session on a server, over either transport: what :class:`RemoteEnv` and
    :class:`RemoteAECEnv` share. It lives on the env object itself (``_http``, ``_ws``,
    ``_session_id``), so a client's connection state is plain to inspect."""

    base_url: str
    transport: Transport
    timeout_s: float
    server_metadata: dict[str, Any]

    def _open_wire(self, base_url: str, transport: Transport, timeout_s: float) -> dict[str, Any]:
        """Check the arguments, set up the transports and read the server's ``/metadata``."""
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {list(TRANSPORTS)}, got {transport!r}")
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https", "ws", "wss") or not url.hostname:
            raise ValueError(
                f"base_url must look like http://host:port (or https, ws, wss), got {base_url!r}"
            )
        secure = url.scheme in ("https", "wss")
        host, port = url.hostname, url.port or (443 if secure else 80)
        prefix = url.path.rstrip("/")
        self.base_url, self.transport, self.timeout_s = base_url, transport, timeout_s
        self._http = _HttpTransport(host, port, secure, prefix, timeout_s)
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._ws_url = f"{'wss' if secure else 'ws'}://{netloc}{prefix}/ws"
        self._loopback = host in _LOOPBACK
        self._ws: _WebSocketTransport | None = None
        self._session_id: str | None = None
        self.server_metadata = self._http.request("GET", "/metadata")
        return self.server_metadata

    @property
    def session_id(self) -> str | None:
        """The server's id of this env's session (HTTP: after the first ``reset``)."""
        if self.transport == "ws" and self._ws is not None:
            return str(self._request("state")["session_id"])
        return self._session_id

    def _request(self, kind: str, data: dict[str, Any] | None = None) -> Any:
        if self.transport == "ws":
            if self._ws is None:
                self._ws = _WebSocketTransport(self._ws_url, self._loopback, self.timeout_s)
            return self._ws.request(kind, data)
        if kind == "reset":
            if self._session_id is not None:
                data = {**(data or {}), "session_id": self._session_id}
            result = self._http.request("POST", "/reset", data or {})
            self._session_id = result["session_id"]
            return result
        if self._session_id is None:
            raise RemoteResetNeededError(
                f"call reset() before {kind}(): no session is open yet", "RESET_NEEDED"
            )
        if kind == "step":
            return self._http.request(
                "POST", "/step", {"action": data, "session_id": self._session_id}
            )
        query = {"session_id": self._session_id, **(data or {})}
        return self._http.request("GET", f"/{kind}?{urllib.parse.urlencode(query)}")

    def _close_wire(self) -> None:
        """End the session (the server closes its env) and the connection."""
        if self._ws is not None:
            ws, self._ws = self._ws, None
            ws.close()
        if self._session_id is not None:
            session_id, self._session_id = self._session_id, None
            # Expired or unreachable: nothing is left to close.
            with contextlib.suppress(RemoteEnvError, OSError, http.client.HTTPException):
                self._http.request("POST", "/close", {"session_id": session_id})
        self._http.close()


class RemoteEnv(_Wire, gym.Env[str, str]):
    """A served env (``llm-trainer serve --env ID``) as a local ``gymnasium.Env``.

    ``reset``/``step`` return what the env returns in-process (the same observation, reward,
    flags and ``info`` for the same seed and actions; ``info``'s tuples arrive as lists).
    The episode's randomness is the server env's; ``reset(seed=...)`` also seeds this object's
    own ``np_random``, as every gymnasium env does (``check_env`` reads it), but nothing here
    draws from it. A multi-agent id is played with :class:`RemoteAECEnv`.

    Args:
        base_url: The server, ``http://host:port`` (``https``, ``ws`` and ``wss`` work too; a
            path is a prefix of every route).
        transport: ``"ws"`` (one WebSocket per env, as OpenEnv's client) or ``"http"``.
        timeout_s: Per-request timeout.

    Raises:
        ValueError: for a bad ``base_url`` or ``transport``, or a server of a multi-agent env.
        OSError: when the server cannot be reached (its ``/metadata`` is read at construction).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's API

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        transport: Transport = "ws",
        timeout_s: float = 60.0,
    ) -> None:
        meta = self._open_wire(base_url, transport, timeout_s)
        self.env_id: str = str(meta.get("env_id") or meta.get("name"))
        if meta.get("multi_agent"):
            self._http.close()
            raise ValueError(
                f"{base_url} serves the multi-agent env {self.env_id}: play it with RemoteAECEnv"
            )
        max_length = int(meta.get("max_text_length") or _DEFAULT_MAX_TEXT_LENGTH)
        self.observation_space = AnyText(max_length)
        self.action_space = AnyText(max_length)
        self.spec = EnvSpec(
            id=self.env_id,
            entry_point=f"{__name__}:RemoteEnv",
            reward_threshold=meta.get("reward_threshold"),
            nondeterministic=False,
            max_episode_steps=meta.get("max_episode_steps"),
            kwargs={"base_url": base_url, "transport": transport},
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        result = self._request("reset", _reset_data(seed, options))
        observation = result["observation"]
        return observation["text"], observation["info"]

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        if not isinstance(action, str):
            raise TypeError(f"action must be a str (the model's completion), got {type(action)}")
        result = self._request("step", {"message": action})
        observation = result["observation"]
        return (
            observation["text"],
            float(result["reward"]),
            bool(observation["terminated"]),
            bool(observation["truncated"]),
            observation["info"],
        )

    def state(self) -> dict[str, Any]:
        """The session's state: OpenEnv's ``episode_id`` and ``step_count``, the seed, whether
        the episode is done and its return so far."""
        return dict(self._request("state"))

    def close(self) -> None:
        """End the session (the server closes its env) and the connection."""
        self._close_wire()
        super().close()

    def __repr__(self) -> str:
        return f"RemoteEnv({self.env_id!r} at {self.base_url}, transport={self.transport!r})"


def _reset_data(seed: int | None, options: Mapping[str, Any] | None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if seed is not None:
        data["seed"] = operator.index(seed)  # numpy integers too
    if options is not None:
        data["options"] = dict(options)
    return data


_UNICODE = np.dtype(str)


class RemoteText(np.str_):
    """A text observation of :class:`RemoteAECEnv`: a ``str`` whose ``dtype`` is its text
    space's (``<U``), as PettingZoo's ``api_test`` checks (llm-trainer's ``TextObservation``,
    mirrored here so that this file imports nothing of llm-trainer).

    >>> RemoteText("Your card: K.").dtype == AnyText(16).dtype
    True
    """

    __slots__ = ()

    @property
    def dtype(self) -> np.dtype[np.str_]:  # type: ignore[override]
        """The variable-length Unicode dtype (``<U``) of every text space."""
        return _UNICODE


class RemoteAECEnv(_Wire, AECEnv[str, str, str | None]):
    """A served multi-agent env (``llm-trainer serve --env ID`` of a PettingZoo AEC id) as a
    local ``pettingzoo.AECEnv``.

    After ``reset`` and each ``step`` it holds what the env holds in-process: ``agents``,
    ``agent_selection``, ``rewards``, ``terminations``, ``truncations``, ``infos`` (tuples
    arrive as lists) and the rewards ``last()`` returns; observations are ``str``\\ s (a
    ``numpy.str_`` whose ``dtype`` is the text space's). ``observe(agent_selection)`` comes
    with every reply; ``observe`` of another agent asks the server. ``possible_agents``, the
    spaces (:class:`AnyText`, bounded as the env's) and ``metadata`` are read at construction.
    PettingZoo's ``api_test`` and ``seed_test`` pass on it (tests/serve/).

    ``step`` sends the action for ``agent_selection``: a ``str``, or ``None`` for an agent
    whose episode is over; anything else raises ``TypeError`` here, as in-process. The
    session's bookkeeping (episode id, step count, seed, returns) is :meth:`session_state`
    (PettingZoo's ``state()`` is a global observation, which text envs do not have).

    Args:
        base_url: The server, as for :class:`RemoteEnv`.
        transport: ``"ws"`` or ``"http"``.
        timeout_s: Per-request timeout.

    Raises:
        ValueError: for a bad ``base_url`` or ``transport``, or a server of a single-agent env.
        OSError: when the server cannot be reached.
    """

    metadata: dict[str, Any] = {"render_modes": [], "name": "remote_aec"}  # noqa: RUF012

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        transport: Transport = "ws",
        timeout_s: float = 60.0,
    ) -> None:
        # AECEnv.__init__ is unannotated (and reached through _Wire, which has none).
        super().__init__()  # type: ignore[no-untyped-call]
        meta = self._open_wire(base_url, transport, timeout_s)
        self.env_id: str = str(meta.get("env_id") or meta.get("name"))
        if not meta.get("multi_agent"):
            self._http.close()
            raise ValueError(
                f"{base_url} serves the single-agent env {self.env_id}: play it with RemoteEnv"
            )
        env_metadata = meta.get("env_metadata")
        self.metadata = {**(env_metadata if isinstance(env_metadata, dict) else {})}
        self.metadata["render_modes"] = []  # the server's env renders on the server only
        self.render_mode = None
        self.possible_agents = [str(a) for a in meta["possible_agents"]]
        lengths = (meta.get("observation_max_length") or {}, meta.get("action_max_length") or {})
        # One space object per agent, the same at every call (api_test checks it).
        self._observation_spaces = {
            a: AnyText(int(lengths[0].get(a) or _DEFAULT_MAX_TEXT_LENGTH))
            for a in self.possible_agents
        }
        self._action_spaces = {
            a: AnyText(int(lengths[1].get(a) or _DEFAULT_MAX_TEXT_LENGTH))
            for a in self.possible_agents
        }
        self.observation_spaces = dict(self._observation_spaces)
        self.action_spaces = dict(self._action_spaces)
        self.agents: list[str] = []
        self.rewards: dict[str, float] = {}
        self._cumulative_rewards: dict[str, float] = {}
        self.terminations: dict[str, bool] = {}
        self.truncations: dict[str, bool] = {}
        self.infos: dict[str, dict[str, Any]] = {}
        self._observation: RemoteText | None = None  # observe(agent_selection), from the reply
        self._started = False

    def observation_space(self, agent: str) -> AnyText:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> AnyText:
        return self._action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        self._apply(self._request("reset", _reset_data(seed, options)))
        self._started = True

    def step(self, action: str | None) -> None:
        if not self._started:
            raise RemoteResetNeededError("call reset() before step()", "RESET_NEEDED")
        agent = self.agent_selection
        finished = self.terminations.get(agent, True) or self.truncations.get(agent, False)
        if not (isinstance(action, str) or (action is None and finished)):
            raise TypeError(
                f"action must be a str ({agent}'s completion; None once its episode is over), "
                f"got {type(action)}"
            )
        self._apply(self._request("step", {"agent": agent, "message": action}))

    def observe(self, agent: str) -> RemoteText | None:
        if agent == getattr(self, "agent_selection", None) and self._observation is not None:
            return self._observation
        if not self._started:
            raise RemoteResetNeededError("call reset() before observe()", "RESET_NEEDED")
        return _remote_text(self._request("observe", {"agent": agent})["text"])

    def session_state(self) -> dict[str, Any]:
        """The session's state: OpenEnv's ``episode_id`` and ``step_count``, the seed, whether
        the episode is done, ``agent_selection``, ``agents`` and each agent's return so far."""
        return dict(self._request("state"))

    def close(self) -> None:
        """End the session (the server closes its env) and the connection."""
        self._close_wire()

    def _apply(self, result: Mapping[str, Any]) -> None:
        """Take the env's AEC bookkeeping from a reset or step reply."""
        observation = result["observation"]
        self.agents = [str(a) for a in observation["agents"]]
        self.agent_selection = str(observation["agent"])
        self.rewards = {a: float(r) for a, r in observation["rewards"].items()}
        self._cumulative_rewards = {
            a: float(r) for a, r in observation["cumulative_rewards"].items()
        }
        self.terminations = {a: bool(t) for a, t in observation["terminations"].items()}
        self.truncations = {a: bool(t) for a, t in observation["truncations"].items()}
        self.infos = dict(observation["infos"])
        self._observation = _remote_text(observation["text"])

    def __repr__(self) -> str:
        return f"RemoteAECEnv({self.env_id!r} at {self.base_url}, transport={self.transport!r})"


def _remote_text(text: Any) -> RemoteText | None:
    return None if text is None else RemoteText(text)


__all__ = [
    "AnyText",
    "RemoteAECEnv",
    "RemoteCapacityError",
    "RemoteEnv",
    "RemoteEnvError",
    "RemoteResetNeededError",
    "RemoteSessionError",
    "RemoteText",
    "RemoteValidationError",
]
