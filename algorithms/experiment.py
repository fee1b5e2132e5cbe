"""One experiment, end to end, for any algorithm: context -> evaluate -> run -> evaluate.

:func:`run_experiment` is what ``llm-trainer train --config FILE`` and ``llm-trainer
quickstart`` run. It never names an algorithm: it creates the run directory, looks the
algorithm up (:mod:`llm_trainer.algorithms.registry`), measures the starting model on the
held-out episodes, runs the algorithm with an :class:`~llm_trainer.algorithms.base.
AlgorithmContext`, measures what it returned, saves it atomically as ``final_model``, draws the
learning curve and writes ``summary.json``. A policy that must be prompted in a set way (its
``AlgorithmResult.task_template``: an instruction it was trained to follow) is measured so, and
its ``final_model`` is also a saved agent carrying the template (``llm_agent.json``:
``llm-trainer evaluate --agent runs/<run>/final_model`` and ``transformers:runs/<run>/
final_model`` prompt it the same way).

With ``knowledge_path`` set, it records the run in the knowledge graph: the experiment (from
the start, ``status: running``; ``finished`` with its headline numbers at the end), the starting
model, the datasets the algorithm stored (by :meth:`~llm_trainer.algorithms.base.
AlgorithmContext.store_dataset`), the trained model (``trained_on`` its datasets,
``derived_from`` the starting model and the experiment) and the held-out scores of both
(``evaluated_on`` the experiment, phase ``before``/``after``, the metrics as attributes).

Every run also runs inside :func:`~llm_trainer.experiments.tracking.track_run`: it is registered
in the runs index (``OUTPUT_DIR/index.sqlite``, ``llm-trainer runs``) with its outcome, metrics
and usage, keeps a ``status.json``, and logs an alert when it regressed past the noise floor.

**Several processes.** Launched by ``torchrun`` or ``accelerate launch`` (``WORLD_SIZE`` > 1),
it is still one run. Every process joins the process group first (gloo on CPU, NCCL on GPUs:
see :mod:`llm_trainer.core.processes`); an algorithm that declares no ``multi_process``
support is refused with a :class:`~llm_trainer.core.errors.ConfigError` before anything is
written. The main process (rank 0) creates the run directory (and builds the tiny starting
model into it) and shares its path; it alone indexes and tracks the run, records it in the
knowledge graph, evaluates before and after training, saves ``final_model`` and writes
``summary.json``, the learning curve and the trajectory store. Every process runs the
algorithm, so TRL trains data-parallel on the same data (built once by the main process, see
:meth:`~llm_trainer.algorithms.base.AlgorithmContext.training_data`). Every process returns
the main process's summary (it has ``processes``: their number); the other processes log one
line and are quiet after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from llm_trainer.algorithms.base import AlgorithmContext, AlgorithmResult
from llm_trainer.algorithms.config import ExperimentConfig
from llm_trainer.core.config import to_dict
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.processes import Processes, launched
from llm_trainer.core.rundir import RunDir, atomic_directory
from llm_trainer.experiments.tracking import track_run

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
    """Run ``config``; returns the summary (also written to ``summary.json``).

    Under a multi-process launcher every process calls it and gets the main process's
    summary (see the module docstring).

    Raises:
        ConfigError: in a multi-process launch, for an algorithm without ``multi_process``.
    """
    start = time.perf_counter()
    algorithm = config.algorithm_class()(config.settings)
    processes = _join(config, algorithm)
    path = processes.on_main(lambda: _new_run(config, processes))
    if not processes.is_main:
        log(
            f"process {processes.rank} of {processes.world_size}: training in {path} "
            "(the main process writes it and reports the run)"
        )
        _run(config, algorithm, RunDir.follow(path), start, _quiet, processes)
        summary: dict[str, Any] = processes.broadcast({})
        return summary
    run = RunDir(path)
    log(f"run directory: {run.path}")
    with track_run(config, run, log=log) as tracked:  # runs index, status.json, usage, alerts
        summary = _run(config, algorithm, run, start, log, processes)
        tracked.finish(summary)
    return processes.broadcast(summary)


def _quiet(message: str) -> None:
    """The log of a non-main process (the main process reports the run)."""


def _join(config: ExperimentConfig, algorithm: Any) -> Processes:
    """This process's place in the run: alone, or in the process group a launcher's
    environment asks for (joined here, before anything is written)."""
    processes = launched()
    if not processes.multi:
        return processes
    if not getattr(algorithm, "multi_process", False):
        raise ConfigError(
            f"algorithm {algorithm.name!r} does not train in several processes, and this is "
            f"process {processes.rank} of {processes.world_size} (WORLD_SIZE={processes.world_size}"
            " from torchrun or accelerate launch): run it in one process, or use an algorithm "
            f"that does ({', '.join(_multi_process_algorithms())})"
        )
    from llm_trainer.algorithms.models import resolve_device

    return processes.start(resolve_device(config.train.device))


def _multi_process_algorithms() -> list[str]:
    """The registered algorithms that train in several processes."""
    from llm_trainer.algorithms.registry import algorithm_entries, get_algorithm

    names = []
    for name in sorted(algorithm_entries()):
        try:
            if getattr(get_algorithm(name), "multi_process", False):
                names.append(name)
        except Exception:  # a broken plug-in does not hide the others
            continue
    return names


def _new_run(config: ExperimentConfig, processes: Processes) -> Path:
    """The run directory (new, or the one to resume); in a multi-process run also the tiny
    starting model in it, which every process then loads."""
    run = RunDir.create(
        config.output_dir, config.name, to_dict(config), config.seed, resume=config.resume
    )
    if processes.multi and config.model.path == "tiny":
        model_dir = AlgorithmContext(config, run).model_dir
        if not (model_dir / "config.json").exists():
            from llm_trainer.agents.tinylm import create_tiny_model

            create_tiny_model(model_dir, config.model.tiny, seed=config.seed)
    return run.path


def _run(
    config: ExperimentConfig,
    algorithm: Any,
    run: RunDir,
    start: float,
    log: Log,
    processes: Processes,
) -> dict[str, Any]:
    """The experiment in its run directory (see :func:`run_experiment`): in a non-main
    process only the algorithm's run (its summary is empty)."""
    context = AlgorithmContext(config, run, log=log, processes=processes)
    _record_experiment(context, algorithm.name, "running")
    before: dict[str, float] | None = None
    if algorithm.produces_policy and processes.is_main:
        before = _evaluate_start(context)
    try:
        result: AlgorithmResult = algorithm.run(context)
    finally:
        context.close()  # its connection to a Ray cluster, if it made one
    if not processes.is_main:
        return {}
    summary: dict[str, Any] = {"algorithm": algorithm.name}
    if processes.multi:
        summary["processes"] = processes.world_size
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
    _record_results(context, algorithm.name, result, summary)
    return summary


def _episodes_before(experiment: ExperimentConfig) -> int:
    """Held-out episodes of the measurement before training (see :func:`_evaluate_start`)."""
    tiny = experiment.model.path == "tiny"
    return experiment.eval.episodes_before if tiny else experiment.eval.episodes


def _record_experiment(
    context: AlgorithmContext,
    algorithm: str,
    status: Literal["running", "finished"],
    summary: dict[str, Any] | None = None,
) -> str | None:
    """The experiment node (and, once it exists, the starting model); its id, or ``None``
    when the knowledge graph is off."""
    knowledge = context.knowledge
    if knowledge is None:
        return None
    from llm_trainer.core.knowledge import Experiment

    headline = {
        k: summary[k]
        for k in ("success_before", "success_after", "reward_before", "reward_after",
                  "wall_seconds", "train_steps", "dataset_version")
        if summary is not None and summary.get(k) is not None
    }  # fmt: skip
    experiment = knowledge.add(
        Experiment(
            context.experiment.name,
            algorithm=algorithm,
            seed=context.seed,
            run_dir=str(context.run.path.resolve()),
            status=status,
            summary=headline,
        )
    )
    context.starting_model_id()
    return experiment


def _record_results(
    context: AlgorithmContext, algorithm: str, result: AlgorithmResult, summary: dict[str, Any]
) -> None:
    """The trained model, its data and the held-out scores; the experiment as finished."""
    experiment = _record_experiment(context, algorithm, "finished", summary)
    knowledge = context.knowledge
    if experiment is None or knowledge is None:
        return
    from llm_trainer.core.knowledge import Derivation, Evaluation, Training
    from llm_trainer.core.knowledge.recording import model_record

    ev = context.experiment.eval
    start = context.starting_model_id()
    with knowledge.batch() as batch:
        if start is not None and summary.get("before") is not None:
            scores = Evaluation(
                summary["before"], "before", ev.env_id, ev.difficulty,
                _episodes_before(context.experiment), ev.first_seed,
            )  # fmt: skip
            batch.add_edge(start, "evaluated_on", experiment, scores, key="before")
        if summary.get("model_dir") is None:
            return
        model = batch.add(model_record(summary["model_dir"], "trained"))
        batch.add_edge(model, "derived_from", experiment, Derivation("trained in"))
        if (
            start is not None and start != model
        ):  # equal: the algorithm left the weights as they were
            batch.add_edge(model, "derived_from", start, Derivation("fine-tuned from"))
        datasets = [result.dataset_version] if result.dataset_version else context.datasets_stored
        steps = result.training.steps if result.training is not None else None
        for version in dict.fromkeys(datasets):
            dataset = f"dataset:{version}"
            batch.add_node(dataset, {"version": version})
            batch.add_edge(model, "trained_on", dataset, Training(algorithm, steps, experiment))
        if summary.get("after") is None:  # a model that is not a policy (a reward model)
            return
        scores = Evaluation(summary["after"], "after", ev.env_id, ev.difficulty, ev.episodes,
                            ev.first_seed)  # fmt: skip
        batch.add_edge(model, "evaluated_on", experiment, scores, key="after")


def _evaluate_start(context: AlgorithmContext) -> dict[str, float] | None:
    """Held-out metrics of the starting model. A model built from scratch runs every episode
    to its time limit, so it is measured on ``eval.episodes_before`` episodes (0: skipped); a
    trained starting model is measured like the result."""
    experiment = context.experiment
    episodes = _episodes_before(experiment)
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
    template = result.task_template
    context.log("evaluating after training")
    after = context.evaluate(model, tokenizer, task_template=template)
    steps = result.training.steps if result.training is not None else 0
    context.run.log_metrics(steps, {f"eval/{k}": v for k, v in after.items()})
    final = context.run.path / "final_model"

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if template is not None:  # the policy must be prompted so: the directory says how
            from llm_trainer.agents.llm_agent import LLMAgentConfig, save_agent_config

            save_agent_config(
                tmp,
                LLMAgentConfig(
                    backend="transformers:.",
                    system_prompt=context.system_prompt,
                    task_template=template,
                ),
            )

    atomic_directory(final, save)
    out: dict[str, Any] = {k: after[k] for k in HEADLINE_METRICS}
    if template is not None:
        out["task_template"] = template
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
