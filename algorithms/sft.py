"""Supervised fine-tuning on trajectories: TRL's ``SFTTrainer`` with the loss on the assistant
turns only (tool results and prompts are context, never targets).

A trajectory becomes one chat (``system``, ``user``, then assistant / tool turns) rendered by
the tokenizer's chat template with the env's tools; the template's ``{% generation %}`` markers
tell TRL which tokens are the assistant's. Checkpoints are atomic and a run resumes from its
last one with the same losses as an uninterrupted run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm_trainer.algorithms.config import TrainConfig
from llm_trainer.algorithms.hf import (
    AtomicCheckpoints,
    RunLogCallback,
    apply_lora,
    last_checkpoint,
    per_second,
    tensorboard_callback,
    training_kwargs,
)
from llm_trainer.core.records import to_plain
from llm_trainer.core.rundir import RunDir
from llm_trainer.core.seeding import preserved_global_rngs
from llm_trainer.core.trajectory import Trajectory


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What a training run did."""

    steps: int
    losses: tuple[tuple[int, float], ...]
    """(step, loss) at every logging step."""
    seconds: float
    """Wall time of training, held-out evaluations during it included."""
    tokens_per_second: float
    """Training tokens per second, time spent in held-out evaluations excluded."""
    resumed_from: str | None


def chat_rows(
    trajectories: Sequence[Trajectory], system_prompt: str | None
) -> list[dict[str, Any]]:
    """Rows for TRL: ``messages`` and ``tools`` (JSON: tool schemas differ in shape)."""
    return [
        {
            "messages": t.messages(system_prompt=system_prompt),
            "tools": json.dumps(to_plain(t.tools)),
        }
        for t in trajectories
    ]


class SFTTrainer:
    """Fine-tune ``model`` on successful trajectories.

    Args:
        model: A causal LM (wrapped with LoRA adapters when ``config.lora.enabled``).
        tokenizer: Its tokenizer (with a chat template that marks assistant turns).
        config: Optimisation settings.
        run: The run directory (checkpoints, TensorBoard, metrics).
        seed: Seeds data order and initialisation of new weights.
        system_prompt: Replaces the trajectories' system prompt (``None`` keeps it).
        evaluate: Called with the model every ``eval_every`` steps; its metrics are logged.
        eval_every: Steps between evaluations (0: never during training).
        callbacks: Extra ``transformers.TrainerCallback`` objects.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: TrainConfig,
        run: RunDir,
        *,
        seed: int = 0,
        system_prompt: str | None = None,
        evaluate: Callable[[Any], Mapping[str, float]] | None = None,
        eval_every: int = 0,
        callbacks: Sequence[Any] = (),
    ) -> None:
        self.model = apply_lora(model, config.lora)
        self.extra_callbacks = list(callbacks)
        self.tokenizer, self.config, self.run = tokenizer, config, run
        self.seed, self.system_prompt = seed, system_prompt
        self.callback = RunLogCallback(run, evaluate, eval_every)

    def train(self, trajectories: Sequence[Trajectory], *, resume: bool = False) -> TrainResult:
        """Train on the successful ``trajectories`` (failures are skipped)."""
        import datasets
        import torch
        from trl.trainer.sft_config import SFTConfig as TRLSFTConfig
        from trl.trainer.sft_trainer import SFTTrainer as TRLSFTTrainer

        class _SFT(AtomicCheckpoints, TRLSFTTrainer):
            pass

        successes = [t for t in trajectories if t.success]
        if not successes:
            raise ValueError("SFT needs at least one successful trajectory")
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        output_dir = str(self.run.checkpoints)
        args = TRLSFTConfig(
            **training_kwargs(self.config, output_dir, self.seed),
            assistant_only_loss=True,
            max_length=self.config.max_length,
            packing=False,
            dataset_num_proc=None,
        )
        dataset = datasets.Dataset.from_list(chat_rows(successes, self.system_prompt))
        checkpoint = last_checkpoint(output_dir) if resume else None
        with preserved_global_rngs():
            trainer = _SFT(
                model=self.model,
                args=args,
                train_dataset=dataset,
                processing_class=self.tokenizer,
                callbacks=[
                    self.callback,
                    tensorboard_callback(str(self.run.tensorboard)),
                    *self.extra_callbacks,
                ],
            )
            start = time.perf_counter()
            output = trainer.train(resume_from_checkpoint=checkpoint)
            seconds = time.perf_counter() - start
        if self.config.save_steps:
            trainer._save_checkpoint(trainer.model, None)  # a final, atomic checkpoint
        trained_tokens = float(trainer.state.num_input_tokens_seen)
        self.model = trainer.model
        return TrainResult(
            steps=int(output.global_step),
            losses=tuple(self.callback.losses),
            seconds=seconds,
            tokens_per_second=per_second(trained_tokens, seconds - self.callback.eval_seconds),
            resumed_from=checkpoint,
        )
