"""Tree search over env snapshots (MCTS), guided by an LLM or a scripted proposer.

Read in this order:

* ``env.py``: the env as search sees it (:class:`SearchEnv`: snapshot, step from any
  snapshot, whose move it is), for Gymnasium envs and two-player zero-sum PettingZoo games;
* ``node.py``: :class:`MCTSNode` (a snapshot, the edge's action and prior, visit statistics,
  negamax backup of means);
* ``policy.py``: :class:`SearchPolicy` (UCT or PUCT, priors from the proposer's log-probs,
  progressive widening, virtual loss);
* ``context.py``, ``proposers.py``, ``scripted.py``: what a node is to a proposer, and the
  proposers (an LLM sampling every leaf of a batch in one call, any policy, scripted ones:
  knapsack and TSP local search, a game's legal moves);
* ``values.py``: :class:`RewardEstimator` (terminal reward, rollouts, LLM self-evaluation,
  PPO's value head); ``reflection.py``: reflections on failed leaves (LATS);
* ``mcts.py``: the search (:class:`MCTS`, :class:`MCTSConfig`);
* ``parallel.py``: independent trees merged at the root, in a process pool or as Ray tasks;
* ``agent.py``: :class:`MCTSAgent`, a policy that acts by searching (``mcts:`` agent specs);
* ``buffer.py``: :class:`ExperienceBuffer` of search decisions; ``record.py``: trees in the
  knowledge graph; ``distill.py``: search-distilled SFT (``algorithm: search_distill``).

Importing this package imports no torch.
"""

from llm_trainer.algorithms.search.agent import (
    GreedyPolicy,
    MCTSAgent,
    MCTSAgentConfig,
    build_agent,
    parse_agent_spec,
)
from llm_trainer.algorithms.search.buffer import ExperienceBuffer, SearchRecord
from llm_trainer.algorithms.search.context import Request
from llm_trainer.algorithms.search.env import AECSearchEnv, GymSearchEnv, SearchEnv, search_env
from llm_trainer.algorithms.search.mcts import MCTS, MCTSConfig, SearchResult
from llm_trainer.algorithms.search.node import Candidate, MCTSNode
from llm_trainer.algorithms.search.parallel import MergedSearch, TreeRunner
from llm_trainer.algorithms.search.policy import SearchPolicy
from llm_trainer.algorithms.search.proposers import LLMProposer, PolicyProposer, Proposer
from llm_trainer.algorithms.search.reflection import FeedbackReflector, LLMReflector, Reflector
from llm_trainer.algorithms.search.scripted import (
    SCRIPTED_PROPOSERS,
    KnapsackProposer,
    LegalMovesProposer,
    TourProposer,
)
from llm_trainer.algorithms.search.values import (
    RewardEstimator,
    RolloutValue,
    SelfEvaluation,
    TerminalValue,
    ValueModel,
)

__all__ = [
    "MCTS",
    "SCRIPTED_PROPOSERS",
    "AECSearchEnv",
    "Candidate",
    "ExperienceBuffer",
    "FeedbackReflector",
    "GreedyPolicy",
    "GymSearchEnv",
    "KnapsackProposer",
    "LLMProposer",
    "LLMReflector",
    "LegalMovesProposer",
    "MCTSAgent",
    "MCTSAgentConfig",
    "MCTSConfig",
    "MCTSNode",
    "MergedSearch",
    "PolicyProposer",
    "Proposer",
    "Reflector",
    "Request",
    "RewardEstimator",
    "RolloutValue",
    "SearchEnv",
    "SearchPolicy",
    "SearchRecord",
    "SearchResult",
    "SelfEvaluation",
    "TerminalValue",
    "TourProposer",
    "TreeRunner",
    "ValueModel",
    "build_agent",
    "parse_agent_spec",
    "search_env",
]
