"""Expert iteration: sample k episodes per task, keep the env-verified successes, fine-tune on
them, repeat (rejection-sampling fine-tuning; seed 000's "learning from its own attempts").

A complete llm-trainer algorithm written outside the package:
    llm-trainer train --config examples/expert_iteration.yaml
"""

from dataclasses import dataclass

from llm_trainer.algorithms.base import Algorithm, AlgorithmContext, AlgorithmResult
from llm_trainer.algorithms.sft import SFTTrainer


@dataclass(frozen=True)
class ExpertIterationConfig:
    env_id: str = "LLMTrainer/Calculator-v0"
    """The env whose tasks are sampled and verified."""
    difficulty: int = 1
    rounds: int = 2
    """Sample -> filter -> fine-tune rounds."""
    tasks_per_round: int = 128
    samples_per_task: int = 4
    temperature: float = 0.7
    first_seed: int = 500_000
    """Training tasks start here (held-out evaluation seeds are elsewhere)."""


class ExpertIteration(Algorithm):
    """Expert iteration: fine-tune on the policy's own env-verified successes, round after round."""

    name = "expert_iteration"
    config_class = ExpertIterationConfig

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        c = self.config
        model, tokenizer = context.load_model()
        kept, result = [], None
        for r in range(c.rounds):
            agent = context.agent(
                model, tokenizer, temperature=c.temperature, seed=context.seed + r
            )
            first = c.first_seed + r * c.tasks_per_round
            tasks = [
                s
                for s in range(first, first + c.tasks_per_round)
                for _ in range(c.samples_per_task)
            ]
            episodes = context.collect(
                agent, c.env_id, tasks, difficulty=c.difficulty, source="policy:ei"
            )
            wins = [t for t in episodes if t.success]  # verified by the env, not by the model
            kept.append(len(wins))
            context.log(f"round {r}: kept {len(wins)} of {len(episodes)} sampled episodes")
            context.store_dataset(f"round-{r}", wins)
            trainer = SFTTrainer(
                model,
                tokenizer,
                context.experiment.train,
                context.run,
                seed=context.seed + r,
                system_prompt=context.system_prompt,
            )
            result = trainer.train(wins)
            model = trainer.model
        return AlgorithmResult(
            model=model, tokenizer=tokenizer, training=result, metrics={"kept_per_round": kept}
        )
