"""Problems broken into sub-problems: :class:`ProblemDecomposer` (a decomposition as a
validated ``networkx.DiGraph`` and back, in topological order), the ``<plan>`` action, the
``multistep`` family whose specs carry their decomposition, and ``DecomposeEnv``
(``LLMTrainer/Decompose-v0``).

networkx is imported when a decomposition is first checked, not by this package.
"""

from llm_trainer.envs.problems.decompose.env import DecomposeEnv, DecomposeEpisode
from llm_trainer.envs.problems.decompose.graph import (
    MAX_SUBPROBLEMS,
    DecompositionError,
    ProblemDecomposer,
    ScriptedDecomposer,
    from_graph,
    to_graph,
    topological_order,
)
from llm_trainer.envs.problems.decompose.multistep import MultiStepConfig, MultiStepFamily
from llm_trainer.envs.problems.decompose.plan import (
    PlanAction,
    format_plan,
    parse_decompose_action,
)

__all__ = [
    "MAX_SUBPROBLEMS",
    "DecomposeEnv",
    "DecomposeEpisode",
    "DecompositionError",
    "MultiStepConfig",
    "MultiStepFamily",
    "PlanAction",
    "ProblemDecomposer",
    "ScriptedDecomposer",
    "format_plan",
    "from_graph",
    "parse_decompose_action",
    "to_graph",
    "topological_order",
]
