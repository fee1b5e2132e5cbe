"""Search inside evolution: a new genome improved by a short MCTS before it joins the population.

With ``evolution.search_refine.simulations`` above 0, every genome a generation makes (and the
initial population's) is *refined* before selection sees it, a memetic (Lamarckian) step:

* a **solution** genome (``Knapsack-v0``, ``TSP-v0``) is played, then a tree search
  (:class:`~llm_trainer.algorithms.search.mcts.MCTS`, the env's rewards as values) continues
  the episode from its answer, with the env allowing ``depth`` revisions and the problem's
  scripted local-search proposer (:func:`~llm_trainer.algorithms.search.scripted.
  proposer_for`: knapsack item swaps, TSP 2-opt moves) suggesting them. The best final answer
  the tree found becomes the refined genome when its fitness, measured as any genome's, is
  higher, and no lower on any seed; else the genome is kept as it was;
* a genome an **LLM** plays (prompt, few-shot, sampling) keeps its text; each fitness episode
  it did not solve is searched from the start, the genome's agent sampling the candidates
  (:class:`~llm_trainer.algorithms.search.proposers.LLMProposer`: the genome's system prompt
  conditions every proposal and prior), and the episode's score becomes the better of the
  played one and the best complete episode in the tree. Fitness then measures how well the
  genome guides a search (evolving the prompt of an MCTS agent); the tokens the searches
  generated are counted in the episode's :attr:`~llm_trainer.algorithms.evolution.fitness.
  Fitness.tokens`.

Either way a refined genome is never worse than its unrefined version on any of its seeds.
The engine records both: the unrefined child with the operator that made it, and the refined
one as its child with the operator :data:`REFINE` (``mcts_refine``), which takes its place in
the population. Each search is seeded from the evaluation's sampling seed, the genome's digest
and the episode's seed, so the same genome is refined the same way in any process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from llm_trainer.algorithms.config import NonNegativeInt, PositiveInt
from llm_trainer.core.config import NON_NEGATIVE, Range, check_ranges

if TYPE_CHECKING:
    from llm_trainer.agents.backends import Backend
    from llm_trainer.algorithms.evolution.fitness import EvaluationSpec, Fitness
    from llm_trainer.algorithms.evolution.genome import Genome

#: The genealogy's operator of a refined individual (its parent: the unrefined one).
REFINE = "mcts_refine"
#: Most revisions a problem env allows (``ProblemEnv``'s ``MAX_REVISIONS``).
MAX_DEPTH = 10


@dataclass(frozen=True)
class SearchRefine:
    """A short tree search refining each new genome (``evolution.search_refine``; see the
    module docstring). ``simulations: 0`` (the default) turns it off."""

    simulations: NonNegativeInt = 0
    """Simulations per search (one search per solution genome, one per unsolved fitness
    episode of an LLM genome); 0: no refinement."""
    candidates: PositiveInt = 4
    """Candidates the proposer suggests at each expanded node."""
    batch_size: PositiveInt = 4
    """Leaves expanded together (one batched generation for an LLM)."""
    depth: Annotated[int, Range(ge=1, le=MAX_DEPTH)] = 3
    """Solution genomes: the answers the search may give after the genome's (the env's
    ``max_revisions`` during the search). LLM genomes: the deepest node (the env's time
    limit bounds it too)."""
    c: Annotated[float, NON_NEGATIVE] = 1.0
    """PUCT's exploration constant."""
    value: Literal["auto", "terminal", "rollout"] = "auto"
    """How leaves are valued: ``rollout`` plays on with the proposer's first candidate (for a
    scripted local search: keeping the answer, so a new answer is worth its score at once),
    ``terminal`` only counts episodes that end in the tree; ``auto``: rollouts for solution
    genomes (cheap), terminal values for LLM genomes (a rollout would cost a generation per
    step)."""
    temperature: Annotated[float, Range(gt=0)] = 1.0
    """Sampling temperature of an LLM's candidates."""
    max_new_tokens: PositiveInt | None = None
    """Longest LLM candidate (``None``: the evaluation's ``max_new_tokens``)."""

    def __post_init__(self) -> None:
        check_ranges(self, "evolution.search_refine")

    @property
    def enabled(self) -> bool:
        return self.simulations > 0


@dataclass(frozen=True, slots=True)
class Refinement:
    """A genome after its search: the refined genome (the same one when nothing better was
    found) and its fitness, with what the searches cost."""

    genome: Genome
    fitness: Fitness
    searches: int = 0
    simulations: int = 0
    tokens: int = 0
    seconds: float = 0.0


def _estimator(refine: SearchRefine, proposer: Any, *, rollout: bool) -> Any:
    """The leaves' value: rollouts or terminal rewards (``rollout``: ``auto``'s choice)."""
    from llm_trainer.algorithms.search import RolloutValue, TerminalValue

    if refine.value == "rollout" or (refine.value == "auto" and rollout):
        return RolloutValue(proposer, max_steps=refine.depth)
    return TerminalValue()


def _mcts_config(refine: SearchRefine, seed: int) -> Any:
    from llm_trainer.algorithms.search import MCTSConfig, SearchPolicy

    return MCTSConfig(
        simulations=refine.simulations,
        batch_size=refine.batch_size,
        candidates=refine.candidates,
        selection=SearchPolicy(c=refine.c),
        max_depth=refine.depth,
        choose="value",
        max_reflections=0,
        seed=seed,
    )


def refine_genome(
    spec: EvaluationSpec,
    genome: Genome,
    fitness: Fitness,
    backends: dict[str, Backend] | None = None,
) -> Refinement:
    """``genome`` (with its unrefined ``fitness`` under ``spec``) refined by ``spec.refine``'s
    search; unchanged when the refinement is off.

    Raises:
        ConfigError: for a solution genome of a problem without a scripted proposer.
    """
    refine = spec.refine
    if refine is None or not refine.enabled:
        return Refinement(genome, fitness)
    if genome.kind == "solution":
        return _refine_solution(spec, refine, genome, fitness)
    return _refine_episodes(spec, refine, genome, fitness, backends)


def _refine_solution(
    spec: EvaluationSpec, refine: SearchRefine, genome: Genome, fitness: Fitness
) -> Refinement:
    from llm_trainer.algorithms.evolution.engine import canonical
    from llm_trainer.algorithms.evolution.fitness import evaluate_genome
    from llm_trainer.algorithms.evolution.genome import Genome, solution_space
    from llm_trainer.algorithms.rollout import close_all, make_envs
    from llm_trainer.algorithms.search import MCTS, search_env
    from llm_trainer.algorithms.search.scripted import proposer_for
    from llm_trainer.core.errors import ConfigError
    from llm_trainer.core.seeding import derive_seed
    from llm_trainer.envs.tools import AnswerAction, format_answer, parse_action

    started = time.perf_counter()
    kwargs = {**spec.env_kwargs, "max_revisions": refine.depth}
    [env] = make_envs(spec.env_id, 1, difficulty=spec.difficulty, env_kwargs=kwargs)
    best: tuple[float, str] | None = None
    simulations = searches = 0
    try:
        for seed in spec.seeds:
            statement, _ = env.reset(seed=seed)
            proposer = proposer_for(str(statement))
            if proposer is None:
                raise ConfigError(
                    "evolution.search_refine: solution genomes are refined with a scripted "
                    f"local search, for Knapsack-v0 and TSP-v0 problems; {spec.env_id} has none"
                )
            action = format_answer(genome.text)
            observation, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:  # a perfect answer: nothing to improve
                continue
            history = [
                {"role": "user", "content": str(statement)},
                {"role": "assistant", "content": action},
            ]
            search_seed = derive_seed(spec.sampling_seed, "refine", genome.digest, seed)
            config = _mcts_config(refine, search_seed)
            estimator = _estimator(refine, proposer, rollout=True)
            result = MCTS(search_env(env), proposer, estimator, config=config).search(
                str(observation), info, history=history
            )
            searches += 1
            simulations += result.simulations
            if result.best is None or result.best_return is None:
                continue
            parsed = [parse_action(a) for a in result.best.actions()]
            texts = [p.text for p in parsed if isinstance(p, AnswerAction)]
            if texts and (best is None or result.best_return > best[0]):
                best = (result.best_return, texts[-1])
    finally:
        close_all([env])
    refined = genome
    refined_fitness = fitness
    if best is not None:
        space = solution_space(str(statement))
        candidate = Genome("solution", canonical(space, best[1]))
        if candidate != genome:
            candidate_fitness = evaluate_genome(spec, candidate)
            if _better(candidate_fitness, fitness):
                refined, refined_fitness = candidate, candidate_fitness
    return Refinement(
        refined,
        refined_fitness,
        searches=searches,
        simulations=simulations,
        seconds=time.perf_counter() - started,
    )


def _better(candidate: Fitness, fitness: Fitness) -> bool:
    """Higher mean and no seed worse."""
    pairs = list(zip(candidate.scores, fitness.scores, strict=True))
    return candidate.mean > fitness.mean and all(a >= b for a, b in pairs)


def _refine_episodes(
    spec: EvaluationSpec,
    refine: SearchRefine,
    genome: Genome,
    fitness: Fitness,
    backends: dict[str, Backend] | None,
) -> Refinement:
    from llm_trainer.agents.llm_agent import LLMAgent
    from llm_trainer.algorithms.evolution.fitness import Fitness, agent_config, backend_for
    from llm_trainer.algorithms.rollout import close_all, make_envs
    from llm_trainer.algorithms.search import MCTS, LLMProposer, search_env
    from llm_trainer.core.seeding import derive_seed

    started = time.perf_counter()
    backend = backend_for(spec, backends)
    agent = LLMAgent(agent_config(spec, genome), backend=backend)
    proposer = LLMProposer.from_agent(agent, temperature=refine.temperature)
    if refine.max_new_tokens is not None:
        proposer.sampling = _with_max_new_tokens(proposer.sampling, refine.max_new_tokens)
    scores, successes = list(fitness.scores), list(fitness.successes)
    steps = list(fitness.steps)
    tokens = list(fitness.tokens) or [0] * len(scores)
    searches = simulations = 0
    [env] = make_envs(spec.env_id, 1, difficulty=spec.difficulty, env_kwargs=spec.env_kwargs)
    try:
        for i, seed in enumerate(spec.seeds):
            if i < len(successes) and successes[i] and scores[i] >= 1.0:
                continue  # solved with the best score: nothing to improve
            observation, info = env.reset(seed=seed)
            search_seed = derive_seed(spec.sampling_seed, "refine", genome.digest, seed)
            config = _mcts_config(refine, search_seed)
            before = proposer.tokens
            estimator = _estimator(refine, proposer, rollout=False)
            result = MCTS(search_env(env), proposer, estimator, config=config).search(
                str(observation), info
            )
            searches += 1
            simulations += result.simulations
            tokens[i] += proposer.tokens - before
            best, best_return = result.best, result.best_return
            if best is not None and best_return is not None and best_return > scores[i]:
                scores[i] = best_return
                if i < len(successes):
                    successes[i] = bool(best.info.get("success", False))
                if i < len(steps):
                    steps[i] = best.depth
    finally:
        close_all([env])
    refined = Fitness(tuple(scores), tuple(successes), tuple(steps), fitness.errors, tuple(tokens))
    return Refinement(
        genome,
        refined,
        searches=searches,
        simulations=simulations,
        tokens=sum(tokens) - sum(fitness.tokens),
        seconds=time.perf_counter() - started,
    )


def _with_max_new_tokens(sampling: Any, max_new_tokens: int) -> Any:
    from dataclasses import replace

    return replace(sampling, max_new_tokens=max_new_tokens)
