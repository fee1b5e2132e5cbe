"""Problems beyond tool use: :class:`ProblemSpec` data, exact evaluators and one generic env.

A family (one per file: :mod:`.reasoning`, :mod:`.knapsack`, :mod:`.tsp`, :mod:`.writing`)
generates :class:`ProblemSpec`\\ s and checks answers into named criterion scores;
:class:`EvaluationMetrics` combines them by weights into an :class:`Evaluation`;
:class:`ProblemEnv` plays any family as a registered env (``LLMTrainer/Reasoning-v0``,
``Knapsack-v0``, ``TSP-v0``, ``ConstrainedWriting-v0``).
"""

from llm_trainer.envs.problems.env import FAMILIES, ProblemEnv, ProblemEpisode
from llm_trainer.envs.problems.spec import (
    Check,
    Evaluation,
    EvaluationMetrics,
    ProblemFamily,
    ProblemSpec,
    SubProblem,
)

__all__ = [
    "FAMILIES",
    "Check",
    "Evaluation",
    "EvaluationMetrics",
    "ProblemEnv",
    "ProblemEpisode",
    "ProblemFamily",
    "ProblemSpec",
    "SubProblem",
]
