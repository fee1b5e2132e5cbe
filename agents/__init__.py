"""Agents are policies: ``act(observation, info) -> action text``."""

from llm_trainer.agents.baselines import MALTOracle, OracleAgent, RandomAgent, ReplayPolicy
from llm_trainer.agents.coordinator import (
    MultiAgentCoordinator,
    MultiAgentEpisode,
    TranscriptEntry,
    play_multiagent,
)
from llm_trainer.agents.policy import Policy

__all__ = [
    "MALTOracle",
    "MultiAgentCoordinator",
    "MultiAgentEpisode",
    "OracleAgent",
    "Policy",
    "RandomAgent",
    "ReplayPolicy",
    "TranscriptEntry",
    "play_multiagent",
]
