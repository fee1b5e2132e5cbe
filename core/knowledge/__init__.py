"""The knowledge graph: problems, solutions, agents, models, datasets, experiments, failure
modes and tools, and how they relate, in one persistent graph (see DESIGN.md, "Problems and the
knowledge graph").

* :mod:`.schema`: the node and edge kinds, their typed records and their ids;
* :mod:`.graph`: :class:`KnowledgeGraph`, the SQLite file (atomic, safe with concurrent
  writers) and the queries (related solved problems, solutions, failures, lineage, genealogy)
  over a networkx ``MultiDiGraph``;
* :mod:`.recording`: episodes, agents and models as records (what the writers call);
* :mod:`.export`: GraphML, PNG and HTML.

Importing this package does not import networkx: the first query does.
"""

from llm_trainer.core.knowledge.graph import (
    Batch,
    Counts,
    Edge,
    KnowledgeGraph,
    Lineage,
    Node,
    RelatedProblem,
    Score,
)
from llm_trainer.core.knowledge.schema import (
    EDGE_KINDS,
    NODE_KINDS,
    Agent,
    Attempt,
    Dataset,
    Derivation,
    Evaluation,
    Experiment,
    Failure,
    FailureMode,
    Model,
    Problem,
    Solution,
    Tool,
    Training,
    Use,
)

__all__ = [
    "EDGE_KINDS",
    "NODE_KINDS",
    "Agent",
    "Attempt",
    "Batch",
    "Counts",
    "Dataset",
    "Derivation",
    "Edge",
    "Evaluation",
    "Experiment",
    "Failure",
    "FailureMode",
    "KnowledgeGraph",
    "Lineage",
    "Model",
    "Node",
    "Problem",
    "RelatedProblem",
    "Score",
    "Solution",
    "Tool",
    "Training",
    "Use",
]
