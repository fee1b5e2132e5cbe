"""Our envs for other trainers: an OpenEnv-shaped server, its client, and TRL's environment_factory.

- :mod:`llm_trainer.serve.server`: any id of registry.yaml served over HTTP and WebSocket in
  the wire shape of OpenEnv (``/reset``, ``/step``, ``/state``, ``/health``, ``/ws``), a
  multi-agent id as a PettingZoo AEC env (the step names its agent; ``/observe`` reads any
  agent's observation), with sessions (one env each), a cap on them and idle expiry
  (``llm-trainer serve --env ID``). It needs the ``serve`` extra (Starlette, uvicorn).
- :mod:`llm_trainer.serve.client`: :class:`RemoteEnv`, a ``gymnasium.Env`` that plays a served
  env over WebSocket or HTTP, and :class:`RemoteAECEnv`, a ``pettingzoo.AECEnv`` that plays a
  served multi-agent env, written against the standard library, gymnasium and PettingZoo (plus
  ``websockets`` for the WebSocket transport) so that other frameworks can copy the one file.
- :mod:`llm_trainer.serve.trl_factory`: :func:`environment_factory`, which turns an env into
  what TRL's ``GRPOTrainer(environment_factory=...)`` takes: its tools become methods with
  docstrings, the final answer is one more tool, and the env's reward is ``get_reward()``.

Importing this package imports neither the server libraries nor TRL: the server module is
imported by whoever starts a server.
"""

from __future__ import annotations

from llm_trainer.serve.client import RemoteAECEnv, RemoteEnv, RemoteEnvError
from llm_trainer.serve.trl_factory import ToolEnvironment, environment_factory

__all__ = ["RemoteAECEnv", "RemoteEnv", "RemoteEnvError", "ToolEnvironment", "environment_factory"]
