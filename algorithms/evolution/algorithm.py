"""``algorithm: evolution``: the registered algorithm around :class:`~.engine.EvolutionEngine`.

It builds the search from the experiment (the model directory that plays the genomes, the
held-out seeds of the ``eval`` section, the knowledge graph), runs it (resuming with
``resume: true``) and writes into the run directory:

* ``evolution/generations/NNNNN.json``: one checkpoint per generation;
* ``evolution/genealogy.json``: every individual (parents, operator, generation, island,
  per-instance scores) and ``evolution/final.json``: the finalists' held-out scores;
* ``family_tree.png``: the genealogy drawn (when matplotlib is installed);
* ``best_genome.txt``: the chosen genome's text, and for genomes an LLM plays,
  ``best_agent/``: a saved agent (``llm-trainer evaluate --agent runs/<run>/best_agent``) with
  the chosen system prompt, examples or sampling settings.
"""

from __future__ import annotations

from pathlib import Path

from llm_trainer.algorithms.base import Algorithm, AlgorithmContext, AlgorithmResult
from llm_trainer.algorithms.config import EvalConfig
from llm_trainer.algorithms.evolution.config import EvolutionSettings
from llm_trainer.algorithms.evolution.engine import EvolutionEngine, prepare_search
from llm_trainer.algorithms.evolution.fitness import (
    EvaluationSpec,
    FitnessEvaluator,
    agent_config,
)
from llm_trainer.algorithms.evolution.genealogy import GenealogyRecorder, draw_family_tree
from llm_trainer.algorithms.evolution.genome import Genome
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.rundir import atomic_write
from llm_trainer.distributed import ray_executor


class EvolutionAlgorithm(Algorithm):
    """Evolutionary search over text genomes (prompts, few-shot examples, sampling settings or
    a problem's solution), scored through the env on fixed seeds, chosen on held-out seeds.

    Genetic algorithms and differential evolution, with tournament, roulette, rank or GEPA's
    per-instance Pareto selection, programmatic or EvoPrompt LLM operators, elitism, MAP-Elites
    and islands, fitness in parallel processes, genealogy in the knowledge graph, and a
    checkpoint per generation. See :mod:`llm_trainer.algorithms.evolution`.
    """

    name = "evolution"
    config_class = EvolutionSettings
    produces_policy = False
    sections = ("ray",)  # ray.address: fitness evaluated as Ray tasks

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        s: EvolutionSettings = self.config
        ev = context.experiment.eval
        if ev.env_id not in (EvalConfig().env_id, s.env_id):
            raise ConfigError(
                f"eval.env_id: evolution plays its held-out seeds in evolution.env_id "
                f"({s.env_id}); eval.env_id {ev.env_id!r} would do nothing (remove it)"
            )
        held_out = tuple(range(ev.first_seed, ev.first_seed + ev.episodes))
        model_dir: Path | None = None
        backend = operator_backend = None
        if s.uses_model:
            model, _ = context.load_model()  # builds the tiny model into the run directory
            del model
            model_dir = context.model_dir.resolve()
            backend = f"transformers:{model_dir}"
        directory = context.run.path / "evolution"
        knowledge = context.knowledge
        evaluator = FitnessEvaluator(s.workers, executor=ray_executor(context.experiment.ray))
        try:
            if s.operators == "llm":
                from llm_trainer.agents.backends import make_backend

                operator_dir = Path(s.operator_model) if s.operator_model else model_dir
                operator_backend = make_backend(f"transformers:{operator_dir}")
            search = prepare_search(
                s,
                seed=context.seed,
                held_out_seeds=held_out,
                backend=backend,
                system_prompt=context.system_prompt,
                operator_backend=operator_backend,
            )
            recorder = None
            if knowledge is not None:
                from llm_trainer.core.knowledge import Experiment

                experiment = knowledge.add(
                    Experiment(context.experiment.name, run_dir=str(context.run.path.resolve()))
                )
                recorder = GenealogyRecorder(
                    knowledge,
                    experiment,
                    s.env_id,
                    search.tasks,
                    model_dir if s.genome != "solution" else None,
                )
            context.log(
                f"evolution: {s.genome} genomes, {s.strategy} with {s.operators} operators, "
                f"{s.islands} x {s.population} individuals, {s.generations} generations, "
                f"{s.episodes} fitness seeds, {evaluator.workers} worker(s)"
            )
            engine = EvolutionEngine(
                s,
                search,
                seed=context.seed,
                directory=directory,
                evaluator=evaluator,
                recorder=recorder,
                log=context.log,
                log_metrics=context.run.log_metrics,
            )
            result = engine.run(resume=context.resume)
        finally:
            evaluator.close()
            if operator_backend is not None:
                operator_backend.close()
        artifacts = {
            "genealogy": str(directory / "genealogy.json"),
            "best_genome": str(
                atomic_write(
                    context.run.path / "best_genome.txt", result.chosen.genome.text.encode()
                )
            ),
        }
        try:
            tree = draw_family_tree(
                result.genealogy,
                context.run.path / "family_tree.png",
                highlight=result.chosen.id,
                title=f"{context.experiment.name}: {s.genome} genomes on {s.env_id}",
            )
            artifacts["family_tree"] = str(tree)
        except ImportError:
            context.log("evolution: no family tree picture (matplotlib is not installed)")
        if search.held_out is not None:
            agent_dir = save_best_agent(
                context.run.path / "best_agent", search.held_out, result.chosen.genome
            )
            artifacts["best_agent"] = str(agent_dir)
        summary = result.summary()
        summary["evolution_seconds"] = round(result.seconds, 2)
        context.log(
            f"evolution: chose {result.chosen.id} ({result.chosen.operator}), fitness "
            f"{result.chosen.value:.4f}"
            + (
                f", held-out mean {result.held_out.mean:.4f} (initial best "
                f"{summary['initial_best_held_out_mean']:.4f})"
                if result.held_out is not None
                else ""
            )
        )
        return AlgorithmResult(metrics=summary, artifacts=artifacts)


def save_best_agent(path: Path, spec: EvaluationSpec, genome: Genome) -> Path:
    """Save the agent that plays ``genome`` as ``spec`` does (an LLM agent's directory without
    a copy of the model: its backend names the model directory by its absolute path)."""
    from llm_trainer.agents.llm_agent import save_agent_pointer

    return save_agent_pointer(path, agent_config(spec, genome))
