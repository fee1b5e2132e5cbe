"""``RemoteEnv``: a ``gymnasium.Env`` that plays an env served in the OpenEnv shape.

This file stands alone: it imports the standard library, gymnasium and (for the WebSocket
transport only) ``websockets``, never the rest of llm-trainer, so another framework can copy it
to talk to ``llm-trainer serve``. The wire protocol is documented in
:mod:`llm_trainer.serve.server`.

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
from gymnasium.envs.registration import EnvSpec
from gymnasium.spaces import Text

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


class RemoteEnv(gym.Env[str, str]):
    """A served env (``llm-trainer serve --env ID``) as a local ``gymnasium.Env``.

    ``reset``/``step`` return what the env returns in-process (the same observation, reward,
    flags and ``info`` for the same seed and actions; ``info``'s tuples arrive as lists).
    The episode's randomness is the server env's; ``reset(seed=...)`` also seeds this object's
    own ``np_random``, as every gymnasium env does (``check_env`` reads it), but nothing here
    draws from it.

    Args:
        base_url: The server, ``http://host:port`` (``https``, ``ws`` and ``wss`` work too; a
            path is a prefix of every route).
        transport: ``"ws"`` (one WebSocket per env, as OpenEnv's client) or ``"http"``.
        timeout_s: Per-request timeout.

    Raises:
        ValueError: for a bad ``base_url`` or ``transport``.
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

        self.server_metadata: dict[str, Any] = self._http.request("GET", "/metadata")
        meta = self.server_metadata
        self.env_id: str = str(meta.get("env_id") or meta.get("name"))
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

    @property
    def session_id(self) -> str | None:
        """The server's id of this env's session (HTTP: after the first ``reset``)."""
        if self.transport == "ws" and self._ws is not None:
            return str(self._request("state")["session_id"])
        return self._session_id

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        data: dict[str, Any] = {}
        if seed is not None:
            data["seed"] = operator.index(seed)  # numpy integers too
        if options is not None:
            data["options"] = dict(options)
        result = self._request("reset", data)
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
        if self._ws is not None:
            ws, self._ws = self._ws, None
            ws.close()
        if self._session_id is not None:
            session_id, self._session_id = self._session_id, None
            # Expired or unreachable: nothing is left to close.
            with contextlib.suppress(RemoteEnvError, OSError, http.client.HTTPException):
                self._http.request("POST", "/close", {"session_id": session_id})
        self._http.close()
        super().close()

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
        query = urllib.parse.urlencode({"session_id": self._session_id})
        return self._http.request("GET", f"/state?{query}")

    def __repr__(self) -> str:
        return f"RemoteEnv({self.env_id!r} at {self.base_url}, transport={self.transport!r})"


__all__ = [
    "AnyText",
    "RemoteCapacityError",
    "RemoteEnv",
    "RemoteEnvError",
    "RemoteResetNeededError",
    "RemoteSessionError",
    "RemoteValidationError",
]
