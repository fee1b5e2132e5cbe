"""Expert iteration: sample k episodes per task, keep the env-verified successes, fine-tune on
them, repeat (rejection-sampling fine-tuning: seed 000's learning from its own attempts).

An llm-trainer algorithm written outside the package:
    llm-trainer train --config examples/expert_iteration.yaml --set model.path=AGENT_DIR
"""

from dataclasses import dataclass

from llm_trainer.algorithms.base import Algorithm, AlgorithmContext, AlgorithmResult
from llm_trainer.algorithms.sft import SFTTrainer


@dataclass(frozen=True)
class ExpertIterationConfig:
    env_id: str = "LLMTrainer/Calculator-v0"
    difficulty: int = 1
    rounds: int = 2
    """Sample -> keep -> fine-tune rounds."""
    tasks_per_round: int = 256
    samples_per_task: int = 4
    temperature: float = 0.5
    first_seed: int = 500_000
    """Training tasks start here (held-out seeds are elsewhere)."""


class ExpertIteration(Algorithm):
    """Fine-tune on the policy's own env-verified successes, round after round."""

    name = "expert_iteration"
    config_class = ExpertIterationConfig

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        c, (model, tokenizer) = self.config, context.load_model()
        kept, result = [], None
        for r in range(c.rounds):
            seed = context.seed * 1000 + r  # sampling and data order differ per round and run
            agent = context.agent(model, tokenizer, temperature=c.temperature, seed=seed)
            first = c.first_seed + r * c.tasks_per_round
            tasks = list(range(first, first + c.tasks_per_round)) * c.samples_per_task
            episodes = context.collect(agent, c.env_id, tasks, difficulty=c.difficulty)
            # one clean env-verified success per task: a success after malformed attempts would
            # teach the malformed attempts, and duplicates would only be memorised
            clean = [t for t in episodes if t.success and t.metrics["format_ok"]]
            wins = list({t.seed: t for t in clean}.values())
            kept.append(len(wins))
            context.log(f"round {r}: {len(wins)} of {c.tasks_per_round} tasks solved")
            train, run = context.experiment.train, context.run
            sft = SFTTrainer(
                model, tokenizer, train, run, seed=seed, system_prompt=context.system_prompt
            )
            result = sft.train(wins)  # no success at all is a clear error
            model = sft.model
            context.store_dataset(f"round-{r}", wins)
        metrics = {"kept_per_round": kept}
        return AlgorithmResult(model=model, tokenizer=tokenizer, training=result, metrics=metrics)
