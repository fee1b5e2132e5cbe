"""Evolutionary search over text genomes (``algorithm: evolution``; issue 16, item 2).

A genome is text: a system prompt, few-shot examples, sampling settings or a problem's
candidate solution (:mod:`.genome`). Its fitness is measured through the env on a fixed, seeded
episode set, parents and children on the same seeds, in parallel processes
(:mod:`.fitness`); a held-out seed set makes the final choice. The modules, in the order a
search uses them:

* :mod:`.genome`: :class:`Genome` and the structure read from each kind of text;
* :mod:`.fitness`: :class:`FitnessEvaluator` (in-process or a ``spawn`` pool, the same results
  either way), :class:`EvaluationSpec`, :class:`Fitness`;
* :mod:`.selection`: :class:`SelectionStrategy`: tournament, roulette, rank, and GEPA's
  per-instance Pareto front;
* :mod:`.operators`: :class:`MutationOperator` / :class:`CrossoverOperator`: programmatic ones
  for structured genomes, EvoPrompt's GA and DE prompts for LLM-driven ones;
* :mod:`.population`: :class:`Individual`, :class:`Population` (islands, migration),
  :class:`MAPElitesArchive` over declared features;
* :mod:`.engine`: :class:`EvolutionEngine`, the generational loop (elitism, checkpoint and
  resume per generation, the held-out final choice);
* :mod:`.refine`: :class:`SearchRefine`, a short MCTS improving each new genome before
  selection (``evolution.search_refine``; the refined individual's operator: ``mcts_refine``);
* :mod:`.genealogy`: parents, operator, generation, island and per-instance scores of every
  individual, in the knowledge graph and as a family-tree picture;
* :mod:`.config` and :mod:`.algorithm`: :class:`EvolutionSettings` and the registered
  :class:`EvolutionAlgorithm`.

Importing it imports neither torch nor a model: they load when an LLM genome is played.
"""

from llm_trainer.algorithms.evolution.algorithm import EvolutionAlgorithm
from llm_trainer.algorithms.evolution.config import EvolutionSettings
from llm_trainer.algorithms.evolution.engine import (
    EvolutionEngine,
    EvolutionResult,
    Search,
    prepare_search,
)
from llm_trainer.algorithms.evolution.fitness import (
    EvaluationSpec,
    Fitness,
    FitnessEvaluator,
)
from llm_trainer.algorithms.evolution.genealogy import (
    Genealogy,
    GenealogyRecorder,
    draw_family_tree,
)
from llm_trainer.algorithms.evolution.genome import Genome, GenomeKind
from llm_trainer.algorithms.evolution.operators import (
    ChildRequest,
    CrossoverOperator,
    LLMVariation,
    MutationOperator,
    ProgrammaticVariation,
    Variation,
)
from llm_trainer.algorithms.evolution.population import (
    FeatureSpec,
    Individual,
    MAPElitesArchive,
    Population,
)
from llm_trainer.algorithms.evolution.refine import REFINE, Refinement, SearchRefine
from llm_trainer.algorithms.evolution.selection import (
    ParetoSelection,
    RankSelection,
    RouletteSelection,
    SelectionStrategy,
    TournamentSelection,
)

__all__ = [
    "REFINE",
    "ChildRequest",
    "CrossoverOperator",
    "EvaluationSpec",
    "EvolutionAlgorithm",
    "EvolutionEngine",
    "EvolutionResult",
    "EvolutionSettings",
    "FeatureSpec",
    "Fitness",
    "FitnessEvaluator",
    "Genealogy",
    "GenealogyRecorder",
    "Genome",
    "GenomeKind",
    "Individual",
    "LLMVariation",
    "MAPElitesArchive",
    "MutationOperator",
    "ParetoSelection",
    "Population",
    "ProgrammaticVariation",
    "RankSelection",
    "Refinement",
    "RouletteSelection",
    "Search",
    "SearchRefine",
    "SelectionStrategy",
    "TournamentSelection",
    "Variation",
    "draw_family_tree",
    "prepare_search",
]
