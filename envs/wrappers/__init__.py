"""Wrappers: envs seen through another interface (not envs of their own, so not in
registry.yaml). ``EncodeToolChoice`` turns a text tool-use env into a vector-observation,
discrete-action env that classic RL (stable-baselines3) can learn; ``CurriculumManager`` resets
an env at the level of a success-driven curriculum shared by a run's slots."""

from llm_trainer.envs.wrappers.curriculum import (
    Curriculum,
    CurriculumConfig,
    CurriculumManager,
)
from llm_trainer.envs.wrappers.encode_tool_choice import EncodeToolChoice, ToolChoiceCodec

__all__ = [
    "Curriculum",
    "CurriculumConfig",
    "CurriculumManager",
    "EncodeToolChoice",
    "ToolChoiceCodec",
]
