"""Best-of-n: sample n episodes of each task, keep one the env verified (rejection sampling).

An llm-trainer algorithm written outside the package; it makes a dataset, not a policy:
    llm-trainer train --config examples/best_of_n.yaml --set model.path=AGENT_DIR
"""

from dataclasses import dataclass

from llm_trainer.algorithms.base import Algorithm, AlgorithmContext, AlgorithmResult


@dataclass(frozen=True)
class BestOfNConfig:
    env_id: str = "LLMTrainer/Calculator-v0"
    difficulty: int = 1
    tasks: int = 100
    """Tasks: the env's seeds first_seed, first_seed + 1, ..."""
    samples: int = 4
    """Episodes sampled per task (the n)."""
    temperature: float = 0.5
    first_seed: int = 0


class BestOfN(Algorithm):
    """Keep one env-verified success among n samples of each task."""

    name = "best_of_n"
    config_class = BestOfNConfig
    produces_policy = False

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        c, (model, tokenizer) = self.config, context.load_model()
        agent = context.agent(model, tokenizer, temperature=c.temperature)
        tasks = range(c.first_seed, c.first_seed + c.tasks)
        seeds = [s for s in tasks for _ in range(c.samples)]
        episodes = context.collect(agent, c.env_id, seeds, difficulty=c.difficulty)
        solved = {t.seed for t in episodes if t.success}
        # one clean success per task: no malformed action on the way, no duplicates
        clean = [t for t in episodes if t.success and t.metrics["format_ok"]]
        wins = list({t.seed: t for t in clean}.values())
        version = context.store_dataset("best_of_n", wins)
        context.log(f"best_of_n: {len(solved)} of {c.tasks} tasks solved, {len(wins)} kept")
        metrics = {
            "tasks": c.tasks,
            "solved": len(solved),
            "kept": len(wins),
            "pass_at_n": len(solved) / c.tasks,
        }
        return AlgorithmResult(metrics=metrics, dataset_version=version)
