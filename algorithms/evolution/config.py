"""The settings of ``algorithm: evolution`` (the ``evolution:`` section of an experiment)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from llm_trainer.algorithms.config import NonNegativeInt, PositiveInt, check_env
from llm_trainer.algorithms.evolution.genome import GenomeKind, parse_sampling
from llm_trainer.algorithms.evolution.population import FeatureSpec, check_features
from llm_trainer.algorithms.evolution.refine import SearchRefine
from llm_trainer.core.config import NON_NEGATIVE, POSITIVE, PROBABILITY, Range, check_ranges
from llm_trainer.core.errors import ConfigError

#: Strategies each (genome kind, operators) pair supports (TSP solutions: ``ga`` only, which
#: is checked once the problem is known).
STRATEGIES: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("solution", "programmatic"): ("ga", "de"),
    ("sampling", "programmatic"): ("ga", "de"),
    ("few_shot", "programmatic"): ("ga",),
    ("prompt", "programmatic"): ("ga",),
    ("prompt", "llm"): ("ga", "de"),
}


@dataclass(frozen=True)
class EvolutionSettings:
    """Evolutionary search over text genomes (``algorithm: evolution``).

    The fitness seeds are ``first_seed .. first_seed + episodes - 1``; the held-out seeds of the
    final choice are the ``eval`` section's (``eval.first_seed``, ``eval.episodes``), played in
    this section's env. ``model`` is the LLM that plays prompt, few-shot and sampling genomes
    (and answers LLM operators unless ``operator_model`` is set); solution genomes with
    programmatic operators need no model at all.
    """

    env_id: str = "LLMTrainer/Calculator-v0"
    """The env every genome is played in."""
    difficulty: int | None = None
    """Its difficulty (``None``: the env's default)."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Extra env constructor arguments (e.g. ``{config: {items: [30, 30, 30]}}`` for larger
    knapsacks)."""
    genome: GenomeKind = "prompt"
    """What evolves: ``prompt`` (the system prompt), ``few_shot`` (solved examples added to
    it), ``sampling`` (temperature and top_p) or ``solution`` (an answer to the problem of
    seed ``first_seed``, for Knapsack-v0 and TSP-v0)."""
    operators: Literal["programmatic", "llm"] = "programmatic"
    """``programmatic`` (edits of the genome's structure, no model) or ``llm`` (EvoPrompt's
    prompts to the operator model; prompt genomes only)."""
    strategy: Literal["ga", "de"] = "ga"
    """``ga``: elitism, then children by selection, crossover and mutation. ``de``:
    differential evolution, one trial per member (base: the island's best; donors: two
    others), kept when at least as fit as the member it would replace."""
    population: PositiveInt = 16
    """Individuals per island."""
    generations: NonNegativeInt = 10
    """Generations after the initial population (each is checkpointed)."""
    islands: PositiveInt = 1
    """Islands (populations evolving apart, with ring migration)."""
    migration_every: NonNegativeInt = 5
    """Generations between migrations (0: never)."""
    migrants: PositiveInt = 1
    """Best individuals of each island copied to the next, replacing its worst."""
    selection: Literal["tournament", "roulette", "rank", "pareto"] = "tournament"
    """GA parent selection: ``pareto`` is GEPA's per-instance Pareto front (a genome best on
    any one seed may breed)."""
    tournament_size: PositiveInt = 3
    """Entrants per tournament."""
    rank_pressure: Annotated[float, Range(ge=1, le=2)] = 1.5
    """Linear ranking's selection pressure (1: uniform; 2: the worst never breeds)."""
    elitism: NonNegativeInt = 1
    """GA: the best of each island carried into the next generation unchanged (DE keeps a
    member unless its trial is at least as fit, so it never loses its best)."""
    crossover_rate: Annotated[float, PROBABILITY] = 0.8
    """GA: share of children made by crossover (then mutated); the others by mutation."""
    mutation_rate: Annotated[float, PROBABILITY] | None = None
    """Knapsack flip probability per item (``None``: 1/items)."""
    mutation_scale: Annotated[float, POSITIVE] = 0.1
    """Sampling genomes: mutation's standard deviation, as a share of each setting's range."""
    de_factor: Annotated[float, Range(gt=0, le=2)] = 0.5
    """DE's differential weight F."""
    de_crossover_rate: Annotated[float, PROBABILITY] = 0.9
    """DE's crossover rate CR."""
    features: tuple[FeatureSpec, ...] = ()
    """MAP-Elites axes (``{name, low, high, bins}``; names: length, words, sentences,
    examples, temperature, top_p, items, success, steps). Empty: no archive."""
    archive_rate: Annotated[float, PROBABILITY] = 0.5
    """With an archive: GA parents drawn from it (a uniform occupied cell) with this
    probability, else by ``selection``; DE's second donor is drawn from the island and the
    archive (JADE's external archive)."""
    first_seed: NonNegativeInt = 0
    """Fitness seeds start here (a solution genome's problem is this seed's)."""
    episodes: PositiveInt = 8
    """Fitness seeds: every genome plays each once (1 for solution genomes)."""
    finalists: PositiveInt = 3
    """The fittest distinct genomes played on the held-out seeds; the best there is chosen."""
    initial: tuple[str, ...] = ()
    """Genome texts in the initial population (prompts: default the env's system prompt;
    the rest of each island is their variations)."""
    examples_pool: PositiveInt = 16
    """Few-shot genomes: solved examples (oracle episodes of seeds ``pool_first_seed``...)
    the genomes choose from."""
    pool_first_seed: NonNegativeInt = 500_000
    """Seeds of the few-shot pool (apart from fitness and held-out seeds)."""
    examples: PositiveInt = 2
    """Examples in an initial few-shot genome."""
    max_examples: PositiveInt = 4
    """Most examples a few-shot genome may hold."""
    temperature: Annotated[float, NON_NEGATIVE] = 0.0
    """Sampling temperature of prompt and few-shot genomes' agents (0: greedy)."""
    max_new_tokens: PositiveInt = 64
    """Generation budget per action of the genomes' agents."""
    batch_size: PositiveInt = 8
    """Envs a genome plays in lockstep (one batched generation per step)."""
    workers: NonNegativeInt = 1
    """Processes evaluating fitness (1: this one; 0: every core); results do not depend on it."""
    operator_model: str | None = None
    """A Hugging Face model directory answering the LLM operators (``None``: ``model``)."""
    operator_temperature: Annotated[float, NON_NEGATIVE] = 1.0
    """Sampling temperature of the LLM operators."""
    operator_max_new_tokens: PositiveInt = 128
    """Budget of an LLM operator's answer."""
    search_refine: SearchRefine = field(default_factory=SearchRefine)
    """A short MCTS refining every new genome before selection (``{simulations: 16, ...}``;
    off by default): a solution genome's answer is improved by a local search from it, an LLM
    genome's unsolved fitness episodes are searched with its agent proposing the candidates
    (:mod:`~llm_trainer.algorithms.evolution.refine`). The refined individual is recorded as
    the unrefined one's child, operator ``mcts_refine``."""

    def __post_init__(self) -> None:
        check_ranges(self, "evolution")
        check_env(self.env_id, self.difficulty, "evolution")
        pair = (self.genome, self.operators)
        if pair not in STRATEGIES:
            raise ConfigError(
                f"evolution.operators: 'llm' operators rewrite prompts (genome: prompt), not "
                f"{self.genome} genomes; use operators: programmatic"
            )
        if self.strategy not in STRATEGIES[pair]:
            raise ConfigError(
                f"evolution.strategy: {self.genome} genomes with {self.operators} operators "
                f"support {list(STRATEGIES[pair])}, not {self.strategy!r}"
            )
        if self.strategy == "de":
            if self.selection != "tournament":
                raise ConfigError(
                    "evolution.selection: differential evolution draws its donors uniformly; "
                    "selection is the GA's (remove it or set strategy: ga)"
                )
            if self.population < 3:
                raise ConfigError(
                    "evolution.population: differential evolution needs at least 3 "
                    f"individuals (a target and two donors), got {self.population}"
                )
        elif self.elitism >= self.population:
            raise ConfigError(
                f"evolution.elitism ({self.elitism}) must be below population "
                f"({self.population}): no room is left for children"
            )
        if self.genome == "solution" and self.episodes != 1:
            raise ConfigError(
                "evolution.episodes: a solution genome answers one problem (the one of seed "
                f"first_seed); set episodes: 1, got {self.episodes}"
            )
        if self.islands > 1 and self.migrants >= self.population:
            raise ConfigError(
                f"evolution.migrants ({self.migrants}) must be below population ({self.population})"
            )
        if self.max_examples < self.examples:
            raise ConfigError(
                f"evolution.max_examples ({self.max_examples}) must be at least examples "
                f"({self.examples})"
            )
        if self.genome == "few_shot" and self.examples_pool < self.examples:
            raise ConfigError(
                f"evolution.examples_pool ({self.examples_pool}) must be at least examples "
                f"({self.examples})"
            )
        if not isinstance(self.search_refine, SearchRefine):
            raise ConfigError(
                f"evolution.search_refine must be a mapping of its settings, got "
                f"{self.search_refine!r}"
            )
        check_features(self.features, self.genome, "evolution.features")
        if len(self.initial) > self.population:
            raise ConfigError(
                f"evolution.initial: {len(self.initial)} genomes for a population of "
                f"{self.population}"
            )
        for i, text in enumerate(self.initial):
            self._check_initial(i, text)
        if self.operator_model is not None:
            if self.operators != "llm":
                raise ConfigError("evolution.operator_model is read by operators: llm only")
            if not (Path(self.operator_model) / "config.json").is_file():
                raise ConfigError(
                    f"evolution.operator_model: {self.operator_model} is not a Hugging Face "
                    "model directory (no config.json)"
                )

    def _check_initial(self, i: int, text: str) -> None:
        where = f"evolution.initial[{i}]"
        if not text.strip():
            raise ConfigError(f"{where}: an initial genome must not be empty")
        if self.genome == "sampling":
            try:
                parse_sampling(text)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        if self.genome == "few_shot":
            from llm_trainer.algorithms.evolution.genome import parse_examples

            try:
                parse_examples(text)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        if self.genome == "solution":
            from llm_trainer.envs.tools import format_answer

            try:
                format_answer(text)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None

    @property
    def uses_model(self) -> bool:
        """Whether genomes or operators need the LLM."""
        return self.genome != "solution" or self.operators == "llm"
