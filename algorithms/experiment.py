"""One experiment, end to end, for any algorithm: context -> evaluate -> run -> evaluate.

:func:`run_experiment` is what ``llm-trainer train --config FILE`` and ``llm-trainer
quickstart`` run. It never names an algorithm: it creates the run directory, looks the
algorithm up (:mod:`llm_trainer.algorithms.registry`), measures the starting model on the
held-out episodes, runs the algorithm with an :class:`~llm_trainer.algorithms.base.
AlgorithmContext`, measures what it returned, saves it atomically as ``final_model``, draws the
learning curve and writes ``summary.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_trainer.algorithms.base import AlgorithmContext, AlgorithmResult
from llm_trainer.algorithms.config import ExperimentConfig
from llm_trainer.core.config import to_dict
from llm_trainer.core.rundir import RunDir, atomic_directory

Log = Callable[[str], None]

#: The metrics of a policy the summary reports at its top level (after training).
HEADLINE_METRICS = (
    "success",
    "tool_accuracy",
    "format_correctness",
    "execution_success",
    "answer_correctness",
)


def run_experiment(config: ExperimentConfig, *, log: Log = print) -> dict[str, Any]:
    """Run ``config``; returns the summary (also written to ``summary.json``)."""
    start = time.perf_counter()
    algorithm = config.algorithm_class()(config.settings)
    run = RunDir.create(
        config.output_dir, config.name, to_dict(config), config.seed, resume=config.resume
    )
    log(f"run directory: {run.path}")
    context = AlgorithmContext(config, run, log=log)
    before: dict[str, float] | None = None
    if algorithm.produces_policy:
        before = _evaluate_start(context)
    result: AlgorithmResult = algorithm.run(context)
    summary: dict[str, Any] = {"algorithm": algorithm.name}
    if algorithm.produces_policy:
        if result.model is None:
            raise RuntimeError(
                f"algorithm {algorithm.name!r} declares produces_policy but returned no model"
            )
        summary.update(_evaluate_and_save(context, result, before))
    summary.update(result.metrics)
    training = result.training
    if training is not None:
        summary.update(
            {
                "train_steps": training.steps,
                "train_seconds": round(training.seconds, 2),
                "train_tokens_per_second": round(training.tokens_per_second, 1),
                "final_loss": training.losses[-1][1] if training.losses else None,
            }
        )
    png = run.plot_learning_curve()
    summary.update(
        {
            "dataset_version": result.dataset_version,
            **result.artifacts,
            "wall_seconds": round(time.perf_counter() - start, 2),
            "run_dir": str(run.path),
            "learning_curve": str(png) if png else None,
        }
    )
    run.write_json("summary.json", summary)
    return summary


def _evaluate_start(context: AlgorithmContext) -> dict[str, float] | None:
    """Held-out metrics of the starting model. A model built from scratch runs every episode
    to its time limit, so it is measured on ``eval.episodes_before`` episodes (0: skipped); a
    trained starting model is measured like the result."""
    experiment = context.experiment
    episodes = (
        experiment.eval.episodes_before
        if experiment.model.path == "tiny"
        else experiment.eval.episodes
    )
    if not episodes:
        return None
    model, tokenizer = context.load_model()
    context.log(
        f"evaluating on {episodes} held-out episodes of {experiment.eval.env_id} before training"
    )
    before = context.evaluate(model, tokenizer, episodes=episodes)
    context.run.log_metrics(0, {f"eval/{k}": v for k, v in before.items()})
    return before


def _evaluate_and_save(
    context: AlgorithmContext, result: AlgorithmResult, before: dict[str, float] | None
) -> dict[str, Any]:
    model = result.model
    tokenizer = result.tokenizer
    if tokenizer is None:
        _, tokenizer = context.load_model()
    context.log("evaluating after training")
    after = context.evaluate(model, tokenizer)
    steps = result.training.steps if result.training is not None else 0
    context.run.log_metrics(steps, {f"eval/{k}": v for k, v in after.items()})
    final = context.run.path / "final_model"

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    atomic_directory(final, save)
    out: dict[str, Any] = {k: after[k] for k in HEADLINE_METRICS}
    out.update(
        {
            "success_before": before["success"] if before else None,
            "success_after": after["success"],
            "reward_before": before["mean_reward"] if before else None,
            "reward_after": after["mean_reward"],
            "before": before,
            "after": after,
            "model_dir": str(final),
        }
    )
    return out
