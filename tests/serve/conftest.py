"""Servers on free loopback ports, started once per configuration and shared by the tests."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llm_trainer.serve.server import ServeConfig, ServerThread

ServerFactory = Callable[..., str]


@pytest.fixture(scope="session")
def serve_env() -> Iterator[ServerFactory]:
    """``serve_env(env_id, **config)``: the URL of a server of ``ServeConfig(env_id,
    **config)`` running in a thread of this process (one per distinct configuration)."""
    running: dict[str, ServerThread] = {}

    def url(env_id: str, **config: Any) -> str:
        key = json.dumps([env_id, config], sort_keys=True)
        if key not in running:
            running[key] = ServerThread(ServeConfig(env_id, **config)).start()
        return running[key].url

    yield url
    for server in running.values():
        server.stop()


def http_json(
    url: str, method: str, path: str, body: Any = None, *, raw: bytes | None = None
) -> tuple[int, Any]:
    """One raw HTTP request (no RemoteEnv in the way): the status and the decoded JSON."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Content-Type": "application/json"} if data is not None else {}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()
