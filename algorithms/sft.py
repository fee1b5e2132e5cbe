"""Supervised fine-tuning on trajectories: TRL's ``SFTTrainer`` with the loss on the assistant
turns only (tool results and prompts are context, never targets).

A trajectory becomes one chat (``system``, ``user``, then assistant / tool turns) rendered by
the tokenizer's chat template with the env's tools; the template's ``{% generation %}`` markers
tell TRL which tokens are the assistant's. Checkpoints are atomic and a run resumes from its
last one with the same losses as an uninterrupted run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from llm_trainer.agents.llm_agent import render_task
from llm_trainer.algorithms.base import (
    Algorithm,
    AlgorithmContext,
    AlgorithmResult,
    TrainResult,
)
from llm_trainer.algorithms.config import NonNegativeInt, PositiveInt, check_env
from llm_trainer.algorithms.trl_trainer import TRLTrainer
from llm_trainer.core.config import Range, check_ranges
from llm_trainer.core.errors import UserError
from llm_trainer.core.records import to_plain
from llm_trainer.core.trajectory import Trajectory

__all__ = ["SFTAlgorithm", "SFTSettings", "SFTTrainer", "TrainResult", "chat_rows"]


@dataclass(frozen=True)
class SFTSettings:
    """Supervised fine-tuning (``algorithm: sft``) on the ``data`` section's successful
    trajectories; optionally stopped early once a validation success rate is reached."""

    stop_at_success: Annotated[float, Range(gt=0, le=1)] | None = None
    """Stop training when greedy success on the validation episodes reaches this (checked every
    ``eval.every_steps`` steps); ``None`` trains for ``train.max_steps``."""
    validation_episodes: PositiveInt = 100
    """Validation episodes (of ``eval.env_id`` at ``eval.difficulty``) for ``stop_at_success``."""
    validation_first_seed: NonNegativeInt = 2_000_000
    """Their seeds start here (disjoint from training and held-out seeds)."""

    def __post_init__(self) -> None:
        check_ranges(self, "sft")


def chat_rows(
    trajectories: Sequence[Trajectory],
    system_prompt: str | None,
    task_template: str | None = None,
) -> list[dict[str, Any]]:
    """Rows for TRL: ``messages`` and ``tools`` (JSON: tool schemas differ in shape).

    ``task_template`` puts the task (the first user message) through it, as an agent with
    the same ``LLMAgentConfig.task_template`` is prompted (NAT's instructions)."""
    rows = []
    for t in trajectories:
        messages = t.messages(system_prompt=system_prompt)
        if task_template is not None:
            messages[1] = {**messages[1], "content": render_task(task_template, t.prompt)}
        rows.append({"messages": messages, "tools": json.dumps(to_plain(t.tools))})
    return rows


class SFTTrainer(TRLTrainer):
    """Fine-tune ``model`` on successful trajectories (arguments: :class:`~llm_trainer.
    algorithms.trl_trainer.TRLTrainer`; the chat template must mark assistant turns)."""

    def train(
        self, trajectories: Sequence[Trajectory], *, resume: bool = False, in_order: bool = False
    ) -> TrainResult:
        """Train on the successful ``trajectories`` (failures are skipped); ``in_order``: one
        row per trained sequence, in the order given (a data schedule), rather than shuffled
        passes.

        Raises:
            UserError: when none of them succeeded.
        """
        successes = [t for t in trajectories if t.success]
        if not trajectories:
            raise UserError(
                "SFT needs successful trajectories and got none (the policy solved no task: "
                "start from a stronger agent or sample more)"
            )
        if not successes:
            sources = sorted({t.source for t in trajectories})
            raise UserError(
                f"SFT needs successful trajectories and none of the {len(trajectories)} given "
                f"(sources: {', '.join(sources) or 'none'}) succeeded; check the data strategy "
                "or collect from a stronger agent"
            )
        rows = chat_rows(successes, self.system_prompt)
        return self.train_rows(rows, resume=resume, in_order=in_order)

    def train_rows(
        self, rows: Sequence[Mapping[str, Any]], *, resume: bool = False, in_order: bool = False
    ) -> TrainResult:
        """Train on chat rows (``messages`` and ``tools``, as :func:`chat_rows` makes them),
        the loss on the assistant turns only (``in_order``: as in :meth:`train`)."""
        import datasets
        from trl.trainer.sft_config import SFTConfig as TRLSFTConfig
        from trl.trainer.sft_trainer import SFTTrainer as TRLSFTTrainer

        return self._fit(
            TRLSFTTrainer,
            TRLSFTConfig,
            resume=resume,
            config_kwargs={
                "assistant_only_loss": True,
                "max_length": self.config.max_length,
                "packing": False,
                "dataset_num_proc": None,
                **({"train_sampling_strategy": "sequential"} if in_order else {}),
            },
            train_dataset=datasets.Dataset.from_list([dict(row) for row in rows]),
        )


class SFTAlgorithm(Algorithm):
    """Supervised fine-tuning on env-verified trajectories (TRL, assistant-only loss)."""

    name = "sft"
    config_class = SFTSettings
    sections = ("data",)
    multi_process = True
    data_phases = True

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        settings: SFTSettings = self.config
        experiment = context.experiment
        model, tokenizer = context.load_model()
        trajectories, version = context.training_data(model, tokenizer)
        phased = context.phased_data(trajectories)
        callbacks = []
        if settings.stop_at_success is not None:
            ev = experiment.eval
            check_env(ev.env_id, ev.difficulty, "eval")
            callbacks.append(
                stop_on_success(
                    context,
                    tokenizer,
                    settings.stop_at_success,
                    seeds=range(
                        settings.validation_first_seed,
                        settings.validation_first_seed + settings.validation_episodes,
                    ),
                    every=ev.every_steps or 25,
                )
            )
        train, every = experiment.train, experiment.eval.every_steps
        context.log(
            f"SFT: {train.max_steps} steps, batch {train.batch_size}, lr {train.learning_rate}"
        )
        trainer = SFTTrainer(
            model,
            tokenizer,
            train,
            context.run,
            # with stop_at_success, validation takes the evaluation cadence
            **{**context.trainer_options(tokenizer), "eval_every": 0 if callbacks else every},
            callbacks=callbacks,
        )
        if phased is not None:
            result = trainer.train(phased, resume=context.resume, in_order=True)
        else:
            result = trainer.train(trajectories, resume=context.resume)
        return AlgorithmResult(
            model=trainer.model, tokenizer=tokenizer, training=result, dataset_version=version
        )


def stop_on_success(
    context: AlgorithmContext, tokenizer: Any, threshold: float, *, seeds: range, every: int
) -> Any:
    """A ``TrainerCallback`` that measures greedy success on ``seeds`` (``eval.env_id`` and
    ``eval.difficulty``) every ``every`` steps, logs it as ``validation/success`` and stops
    training once it reaches ``threshold``. Data-parallel, the main process measures and every
    process stops with it."""
    from transformers import TrainerCallback

    from llm_trainer.algorithms.evaluation import evaluate_model

    ev = context.experiment.eval

    def measure(model: Any, step: int) -> bool:
        """Whether greedy validation success reached ``threshold`` (logged)."""
        metrics, _ = evaluate_model(
            model,
            tokenizer,
            ev.env_id,
            seeds,
            difficulty=ev.difficulty,
            env_kwargs=ev.env_kwargs,
            system_prompt=context.system_prompt,
            max_new_tokens=ev.max_new_tokens,
            batch_size=ev.batch_size,
        )
        context.run.log_metrics(step, {"validation/success": metrics["success"]})
        if metrics["success"] < threshold:
            return False
        context.log(
            f"validation success {metrics['success']:.1%} >= {threshold:.1%} at step {step}: "
            "stopping"
        )
        return True

    class StopOnSuccess(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            step = state.global_step
            if step % every == 0 and context.processes.on_main(
                lambda: measure(kwargs["model"], step)
            ):
                control.should_training_stop = True
            return control

    return StopOnSuccess()
