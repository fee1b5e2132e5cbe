"""llm-trainer: Gymnasium-style environments, agents and algorithms for LLM agents.

``import llm_trainer`` registers every env of ``registry.yaml`` with gymnasium, so
``gymnasium.make("LLMTrainer/Calculator-v0")`` works after it. The import stays light: no
torch and no vLLM until a backend is used.
"""

from __future__ import annotations

from llm_trainer.envs.registration import EnvSpec, make, register_all, registry, spec

__version__ = "0.1.0"

register_all()

__all__ = ["EnvSpec", "__version__", "make", "registry", "spec"]
