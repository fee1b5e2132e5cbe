"""llm-trainer: Gymnasium-style environments, agents and algorithms for LLM agents.

``import llm_trainer`` registers every single-agent env of ``registry.yaml`` with gymnasium, so
``gymnasium.make("LLMTrainer/Calculator-v0")`` works after it; multi-agent ids (PettingZoo
envs) are made with ``make_multiagent``. The import stays light: no torch and no vLLM until a
backend is used, and no PettingZoo until a multi-agent env is made.
"""

from __future__ import annotations

from llm_trainer.envs.registration import (
    EnvSpec,
    make,
    make_multiagent,
    register_all,
    registry,
    spec,
)

__version__ = "0.1.0"

register_all()

__all__ = ["EnvSpec", "__version__", "make", "make_multiagent", "registry", "spec"]
