"""Build a policy from a short spec string (used by the CLI and benchmarks)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from llm_trainer.agents.baselines import OracleAgent, RandomAgent
from llm_trainer.agents.policy import Policy
from llm_trainer.core.errors import ConfigError, suggest

AGENT_SPECS = ("oracle", "random")


def make_agent(spec: str, env: gym.Env[Any, Any], *, seed: int = 0) -> Policy:
    """``"oracle"`` or ``"random"`` (later: backend specs such as ``transformers:DIR``).

    Raises:
        ConfigError: for an unknown spec, naming the allowed ones.
    """
    if spec == "oracle":
        return OracleAgent(env)
    if spec == "random":
        return RandomAgent(seed)
    raise ConfigError(
        f"unknown agent spec {spec!r}{suggest(spec, AGENT_SPECS)}; "
        f"allowed: {', '.join(AGENT_SPECS)}"
    )
