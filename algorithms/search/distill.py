"""Search-distilled SFT (``algorithm: search_distill``): train the policy on what MCTS chose.

Expert iteration with tree search as the expert (Anthony, Tian & Barber, 2017; AlphaZero's
policy improvement): an :class:`~llm_trainer.algorithms.search.agent.MCTSAgent` plays
``episodes`` tasks of ``env_id`` with a budget of simulations per step, its candidates sampled
from the policy being trained (``proposer: policy``) or from a scripted proposer; the episodes
it plays are made of the actions the search chose. The successful ones (or all,
``keep: all``) become SFT data, trained exactly as ``algorithm: sft`` trains
(:class:`~llm_trainer.algorithms.sft.SFTTrainer`, loss on the assistant turns only), so the
policy learns to act as the search did, without searching.

The episodes are stored as a versioned dataset (``<name>-search``), every decision as JSON
Lines in the run directory (``search_buffer.jsonl``, an :class:`~llm_trainer.algorithms.
search.buffer.ExperienceBuffer`), and, with ``knowledge_path`` set, every tree in the
knowledge graph (:mod:`~llm_trainer.algorithms.search.record`).

``trees: K`` grows K independent trees per decision, merged at the root (root parallelism,
:mod:`~llm_trainer.algorithms.search.parallel`), in this process or ``processes`` spawned ones;
with the experiment's ``ray: {address: ...}`` section each tree is a Ray task on that cluster
instead, with the same merged decisions for the same seeds.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from llm_trainer.algorithms.base import Algorithm, AlgorithmContext, AlgorithmResult
from llm_trainer.algorithms.config import NonNegativeInt, PositiveInt, check_env
from llm_trainer.algorithms.search.buffer import ExperienceBuffer
from llm_trainer.algorithms.search.mcts import MCTSConfig
from llm_trainer.core.config import Range, check_ranges
from llm_trainer.core.errors import ConfigError, UserError, suggest
from llm_trainer.core.seeding import derive_seed
from llm_trainer.distributed import Executor, ray_executor

BUFFER_FILE = "search_buffer.jsonl"


@dataclass(frozen=True)
class SearchDistillSettings:
    """Search-distilled SFT (``algorithm: search_distill``; see the module docstring)."""

    env_id: str = "LLMTrainer/Knapsack-v0"
    """The env the search plays."""
    difficulty: int | None = None
    """Its difficulty (``None``: the env's default)."""
    episodes: PositiveInt = 64
    """Episodes the search plays (one per seed)."""
    first_seed: NonNegativeInt = 0
    """Their seeds are ``first_seed .. first_seed + episodes - 1``."""
    proposer: str = "policy"
    """Where candidates come from: ``policy`` (sampled from the model being trained) or a
    scripted proposer (``knapsack``, ``legal_moves``)."""
    value: Literal["terminal", "rollout", "self_eval"] = "terminal"
    """How leaves are valued (``self_eval`` asks the policy)."""
    reflect: Literal["none", "feedback", "llm"] = "feedback"
    """Reflections on failed leaves (``llm``: written by the policy)."""
    temperature: Annotated[float, Range(gt=0)] = 1.0
    """Sampling temperature of the policy's candidates."""
    max_new_tokens: PositiveInt = 64
    """Longest candidate in tokens."""
    num_envs: PositiveInt = 4
    """Episodes played side by side (each search batches its own leaves)."""
    keep: Literal["success", "all"] = "success"
    """Train on the successful searched episodes, or on all of them."""
    mcts: MCTSConfig = field(default_factory=MCTSConfig)
    """The search's settings."""
    trees: PositiveInt = 1
    """Independent trees per decision, merged at the root (root parallelism); with
    ``ray.address`` set, each is a Ray task on that cluster."""
    processes: PositiveInt = 1
    """Worker processes for the trees (1: in this process; ignored with ``ray.address``). Each
    tree's job pickles the proposer: a copy of the model for ``proposer: policy``."""

    def __post_init__(self) -> None:
        check_ranges(self, "search_distill")
        check_env(self.env_id, self.difficulty, "search_distill")
        from llm_trainer.algorithms.search.scripted import SCRIPTED_PROPOSERS

        allowed = ["policy", *SCRIPTED_PROPOSERS]
        if self.proposer not in allowed:
            raise ConfigError(
                f"search_distill.proposer: {self.proposer!r} is not one of {allowed}"
                f"{suggest(self.proposer, allowed)}"
            )
        if self.proposer != "policy" and (self.value == "self_eval" or self.reflect == "llm"):
            raise ConfigError(
                "search_distill: value 'self_eval' and reflect 'llm' need proposer 'policy' "
                "(the model that answers them)"
            )


class SearchDistillAlgorithm(Algorithm):
    """Search-distilled SFT: MCTS plays the tasks, the policy is fine-tuned on the actions the
    search chose."""

    name = "search_distill"
    config_class = SearchDistillSettings
    sections = ("ray",)  # ray.address: the trees grown as Ray tasks

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        from llm_trainer.agents.backends.transformers_backend import TransformersBackend
        from llm_trainer.algorithms.rollout import collect
        from llm_trainer.algorithms.sft import SFTTrainer, chat_rows

        s: SearchDistillSettings = self.config
        executor = ray_executor(context.experiment.ray)  # before the model: fail fast
        model, tokenizer = context.load_model()
        backend = TransformersBackend(model, tokenizer)
        buffer = ExperienceBuffer()
        seeds = list(range(s.first_seed, s.first_seed + s.episodes))
        where = executor.describe() if executor is not None else f"{s.processes} process(es)"
        context.log(
            f"search_distill: MCTS ({s.mcts.simulations} simulations per step, {s.trees} "
            f"tree(s) in {where}, proposer {s.proposer}) plays {len(seeds)} episodes of "
            f"{s.env_id}"
        )
        agents: list[Any] = []

        def make_agent(envs: list[Any]) -> Any:
            agent = self._agent(context, envs, backend, buffer, executor)
            agents.append(agent)
            return agent

        start = time.perf_counter()
        bar = _progress(len(seeds))
        model.eval()
        try:
            episodes = collect(
                s.env_id,
                make_agent,
                seeds,
                num_envs=s.num_envs,
                difficulty=s.difficulty,
                source="mcts",
                on_episode=lambda _: bar.update(1),
            )
        finally:
            bar.close()
            model.train()
            for agent in agents:
                agent.close()
            if executor is not None:
                executor.close()  # when no agent was made (idempotent)
        search_seconds = time.perf_counter() - start
        for trajectory in episodes:
            buffer.add_episode(trajectory)
        buffer.save(context.run.path / BUFFER_FILE)
        version = context.store_dataset("search", episodes)
        successes = [t for t in episodes if t.success]
        kept = successes if s.keep == "success" else [t for t in episodes if t.error is None]
        context.log(
            f"search_distill: {len(successes)}/{len(episodes)} searched episodes succeeded "
            f"({search_seconds:.0f} s); training on {len(kept)}"
        )
        if not kept:
            raise UserError(
                f"search_distill: the search solved none of the {len(episodes)} tasks, so there "
                "is nothing to distill; raise mcts.simulations, use a stronger starting model, "
                "or keep: all"
            )
        trainer = SFTTrainer(
            model, tokenizer, context.experiment.train, context.run,
            **context.trainer_options(tokenizer),
        )  # fmt: skip
        training = trainer.train_rows(chat_rows(kept, context.system_prompt), resume=context.resume)
        return AlgorithmResult(
            model=trainer.model,
            tokenizer=tokenizer,
            training=training,
            dataset_version=version,
            metrics={
                "search_success": len(successes) / len(episodes),
                "search_episodes": len(episodes),
                "search_decisions": len(buffer),
                "search_seconds": round(search_seconds, 2),
                "distilled_episodes": len(kept),
            },
            artifacts={"search_buffer": str(context.run.path / BUFFER_FILE)},
        )

    def _agent(
        self,
        context: AlgorithmContext,
        envs: list[Any],
        backend: Any,
        buffer: ExperienceBuffer,
        executor: Executor | None,
    ) -> Any:
        from llm_trainer.algorithms.search.agent import MCTSAgent
        from llm_trainer.algorithms.search.proposers import LLMProposer, Proposer
        from llm_trainer.algorithms.search.reflection import (
            FeedbackReflector,
            LLMReflector,
            Reflector,
        )
        from llm_trainer.algorithms.search.scripted import SCRIPTED_PROPOSERS
        from llm_trainer.algorithms.search.values import (
            RewardEstimator,
            RolloutValue,
            SelfEvaluation,
            TerminalValue,
        )

        s: SearchDistillSettings = self.config
        proposer: Proposer
        if s.proposer == "policy":
            proposer = LLMProposer(
                backend,
                temperature=s.temperature,
                max_new_tokens=s.max_new_tokens,
                system_prompt=context.system_prompt,
            )
        else:
            proposer = SCRIPTED_PROPOSERS[s.proposer]()
        estimator: RewardEstimator = TerminalValue()
        if s.value == "rollout":
            estimator = RolloutValue(proposer, gamma=s.mcts.gamma)
        elif s.value == "self_eval":
            estimator = SelfEvaluation(backend, system_prompt=context.system_prompt)
        reflector: Reflector | None = None
        if s.reflect == "feedback":
            reflector = FeedbackReflector()
        elif s.reflect == "llm":
            reflector = LLMReflector(backend)
        knowledge = context.knowledge
        return MCTSAgent(
            envs,
            proposer,
            estimator=estimator,
            config=replace(s.mcts, seed=derive_seed(s.mcts.seed, context.seed)),
            reflector=reflector,
            trees=s.trees,
            processes=s.processes,
            executor=executor,
            buffer=buffer,
            knowledge=knowledge,
            name=f"mcts:{s.proposer}",
            run=context.experiment_id if knowledge is not None else "",
        )


def _progress(total: int) -> Any:
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    return tqdm(
        total=total,
        desc="MCTS episodes",
        unit="episode",
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
    )
