"""Expert iteration (``algorithm: expert_iteration``): fine-tune on the policy's own successes.

Round after round, sample ``samples_per_task`` episodes of each of ``tasks_per_round`` tasks
from the current policy at ``temperature``, keep the ones the env verified as successes (the env
is the filter, so no reward model and no labels are needed), fine-tune the policy on them with
SFT (:class:`~llm_trainer.algorithms.sft.SFTTrainer`, loss on the assistant turns only, exactly
as ``algorithm: sft`` trains), and sample the next round from the fine-tuned policy. Each round
is rejection-sampling fine-tuning (RFT: Yuan et al., "Scaling Relationship on Learning
Mathematical Reasoning with Large Language Models", arXiv 2308.01825); the rounds are the
self-training loop of STaR (Zelikman et al., "STaR: Bootstrapping Reasoning With Reasoning",
NeurIPS 2022, arXiv 2203.14465; here without its rationalization step) and of ReST-EM (Singh et
al., "Beyond Human Data: Scaling Self-Training for Problem-Solving with Language Models", arXiv
2312.06585). The name comes from expert iteration (Anthony, Tian & Barber, "Thinking Fast and
Slow with Deep Learning and Tree Search", NeurIPS 2017), here with the sampled-and-verified
policy as its own expert (``algorithm: search_distill`` makes tree search the expert). Unlike
STaR and ReST-EM, which fine-tune the base model afresh each round, each round here continues
from the previous round's model.

* **What is kept**: one clean success per task: an episode that succeeded with every action
  well-formed (``format_ok``). A success reached after malformed attempts would teach the
  malformed attempts, and several successes of one task would only be memorised.
* **Seeding**: round ``r`` of a run with seed ``s`` samples and orders its data with seed
  ``s * 1000 + r``, and draws the tasks ``first_seed + r * tasks_per_round`` onwards, so every
  round sees new tasks (the held-out seeds, ``eval.first_seed``, are elsewhere).
* **Data**: each round's successes are stored as a versioned dataset (``<name>-round-<r>``) in
  the run's trajectory store; the summary's ``kept_per_round`` counts them. A round in which the
  policy solves no task is an error (SFT has nothing to learn from): start from a trained agent
  (e.g. ``configs/calculator_weak_sft.yaml``'s), not from scratch.

Measured in the README (``configs/expert_iteration.yaml``): from a weak calculator agent, two
rounds raise greedy held-out success by about 20 points. The learning rate matters most: at
``train.learning_rate`` 1e-3 the call format broke in the second round; at 2e-4 it held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from llm_trainer.algorithms.base import Algorithm, AlgorithmContext, AlgorithmResult, TrainResult
from llm_trainer.algorithms.config import NonNegativeInt, PositiveInt, check_env
from llm_trainer.core.config import NON_NEGATIVE, check_ranges


@dataclass(frozen=True)
class ExpertIterationConfig:
    """Expert iteration (``algorithm: expert_iteration``; see the module docstring)."""

    env_id: str = "LLMTrainer/Calculator-v0"
    """The env the policy is sampled in and whose verified successes it learns from."""
    difficulty: int | None = 1
    """Its difficulty (``None``: the env's default)."""
    rounds: PositiveInt = 2
    """Sample -> keep -> fine-tune rounds (each fine-tunes for ``train.max_steps`` steps)."""
    tasks_per_round: PositiveInt = 256
    """Tasks sampled per round (new ones each round)."""
    samples_per_task: PositiveInt = 4
    """Episodes sampled per task (one clean success per task is kept)."""
    temperature: Annotated[float, NON_NEGATIVE] = 0.5
    """Sampling temperature (0: greedy, and one sample per task is then enough)."""
    first_seed: NonNegativeInt = 500_000
    """Round r's tasks are the seeds ``first_seed + r * tasks_per_round`` onwards (held-out
    seeds start at ``eval.first_seed``)."""

    def __post_init__(self) -> None:
        check_ranges(self, "expert_iteration")
        check_env(self.env_id, self.difficulty, "expert_iteration")


class ExpertIteration(Algorithm):
    """Fine-tune on the policy's own env-verified successes, round after round
    (STaR-like rejection-sampling fine-tuning)."""

    name = "expert_iteration"
    config_class = ExpertIterationConfig
    multi_process = True
    sections = ("ray",)  # ray.address: the episodes sampled on Ray (remote_rollout)

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        from llm_trainer.algorithms.sft import SFTTrainer

        c: ExpertIterationConfig = self.config
        model, tokenizer = context.load_model()
        kept: list[int] = []
        result: TrainResult | None = None
        for r in range(c.rounds):
            seed = context.seed * 1000 + r  # sampling and data order differ per round and run
            agent = context.agent(model, tokenizer, temperature=c.temperature, seed=seed)
            first = c.first_seed + r * c.tasks_per_round
            tasks = list(range(first, first + c.tasks_per_round)) * c.samples_per_task
            context.log(
                f"expert_iteration round {r + 1}/{c.rounds}: sampling {c.tasks_per_round} tasks "
                f"x {c.samples_per_task} at temperature {c.temperature:g} ({c.env_id})"
            )
            episodes = context.collect(agent, c.env_id, tasks, difficulty=c.difficulty)
            # one clean env-verified success per task: a success after malformed attempts would
            # teach the malformed attempts, and duplicates would only be memorised
            clean = [t for t in episodes if t.success and t.metrics["format_ok"]]
            wins = list({t.seed: t for t in clean}.values())
            kept.append(len(wins))
            successes = sum(t.success for t in episodes)
            context.log(
                f"expert_iteration round {r + 1}/{c.rounds}: {len(wins)} of {c.tasks_per_round} "
                f"tasks solved cleanly ({successes} of {len(episodes)} episodes succeeded); "
                "fine-tuning on one clean success per task"
            )
            sft = SFTTrainer(
                model,
                tokenizer,
                context.experiment.train,
                context.run,
                seed=seed,
                system_prompt=context.system_prompt,
            )
            result = sft.train(wins)  # no success at all is a clear error
            model = sft.model
            context.store_dataset(f"round-{r}", wins)
        return AlgorithmResult(
            model=model, tokenizer=tokenizer, training=result, metrics={"kept_per_round": kept}
        )
