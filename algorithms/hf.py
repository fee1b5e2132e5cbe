"""Plumbing shared by the TRL-backed trainers: precision, arguments, callbacks, checkpoints.

* :func:`precision_kwargs`: bf16 only where the hardware has it (TRL configs default to
  ``bf16=True``, which fails on a CPU).
* :class:`AtomicCheckpoints`: a Trainer mixin that writes each ``checkpoint-N`` into a staging
  folder and renames it into place, so a run killed mid-save never leaves a half-written
  checkpoint for ``resume`` to pick up.
* :class:`RunLogCallback`: mirrors the Trainer's logs into the run's ``metrics.jsonl`` and
  runs the held-out evaluation every N steps.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from llm_trainer.algorithms.config import LoRAConfig, TrainConfig
from llm_trainer.core.rundir import RunDir


def precision_kwargs(precision: str) -> dict[str, bool]:
    """``bf16``/``fp16`` flags for TRL configs, chosen from the hardware when ``auto``."""
    import torch

    cuda = torch.cuda.is_available()
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if precision in ("bf16", "fp16") and not cuda:
        # Mixed precision gives no speed-up on these CPUs and TRL refuses bf16 without a GPU.
        raise ValueError(f"train.precision={precision!r} needs a GPU; use 'auto' or 'fp32'")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_kwargs(train: TrainConfig, output_dir: str, seed: int) -> dict[str, Any]:
    """Arguments common to every TRL config we build (TensorBoard goes through
    :func:`tensorboard_callback`, so ``report_to`` is off)."""
    import torch

    return {
        "output_dir": output_dir,
        "max_steps": train.max_steps,
        "per_device_train_batch_size": train.batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "learning_rate": train.learning_rate,
        "lr_scheduler_type": train.lr_scheduler,
        "warmup_steps": train.warmup_steps,
        "weight_decay": train.weight_decay,
        "max_grad_norm": train.max_grad_norm,
        "logging_steps": train.logging_steps,
        "save_strategy": "steps" if train.save_steps else "no",
        "save_steps": train.save_steps or 500,
        "save_total_limit": train.save_total_limit,
        "seed": seed,
        "data_seed": seed,
        "report_to": "none",
        "gradient_checkpointing": False,  # SFTConfig turns it on by default: slow for tiny models
        "dataloader_num_workers": 0,
        "use_cpu": not torch.cuda.is_available(),
        "disable_tqdm": True,
        "include_num_input_tokens_seen": "non_padding",
        **precision_kwargs(train.precision),
    }


def tensorboard_callback(log_dir: str) -> TrainerCallback:
    """TensorBoard event files in ``log_dir`` (transformers 5 reads the directory from an
    environment variable otherwise; we keep the process environment untouched)."""
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations.integration_utils import TensorBoardCallback

    callback: TrainerCallback = TensorBoardCallback(tb_writer=SummaryWriter(log_dir=log_dir))
    return callback


def apply_lora(model: Any, lora: LoRAConfig) -> Any:
    """Wrap ``model`` with peft LoRA adapters (only the adapters train)."""
    if not lora.enabled:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


class AtomicCheckpoints:
    """Trainer mixin: ``checkpoint-N`` appears whole or not at all.

    The base ``Trainer._save_checkpoint`` writes model, optimizer, scheduler, RNG and trainer
    state file by file into ``output_dir/checkpoint-N``. Here it writes them under a hidden
    staging folder, and the finished folder is renamed into place (an atomic ``rename`` on one
    filesystem). ``get_last_checkpoint`` only matches ``checkpoint-<digits>``, so a leftover
    staging folder from a killed run is ignored (and removed on the next save).
    """

    args: TrainingArguments
    state: TrainerState

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        output_dir = self.args.output_dir
        assert output_dir is not None
        os.makedirs(output_dir, exist_ok=True)
        for stale in os.listdir(output_dir):
            if stale.startswith(".staging-"):
                shutil.rmtree(os.path.join(output_dir, stale), ignore_errors=True)
        staging = tempfile.mkdtemp(dir=output_dir, prefix=".staging-")
        self.args.output_dir = staging
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
        finally:
            self.args.output_dir = output_dir
        name = f"checkpoint-{self.state.global_step}"
        final = os.path.join(output_dir, name)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(os.path.join(staging, name), final)
        shutil.rmtree(staging, ignore_errors=True)
        _rotate(output_dir, self.args.save_total_limit)


def _rotate(output_dir: str, limit: int | None) -> None:
    if not limit:
        return
    steps = sorted(
        (int(n.split("-")[1]), n)
        for n in os.listdir(output_dir)
        if n.startswith("checkpoint-") and n.split("-")[1].isdigit()
    )
    for _, name in steps[:-limit]:
        shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)


def per_second(amount: float, seconds: float) -> float:
    """``amount / seconds``, 0 when either is not positive."""
    return amount / seconds if seconds > 0 and amount > 0 else 0.0


def last_checkpoint(output_dir: str) -> str | None:
    """The newest complete checkpoint in ``output_dir`` (None if there is none)."""
    if not os.path.isdir(output_dir):
        return None
    found: str | None = get_last_checkpoint(output_dir)
    return found


class RunLogCallback(TrainerCallback):
    """Mirror Trainer logs into ``metrics.jsonl``; evaluate every ``every_steps`` steps."""

    def __init__(
        self,
        run: RunDir,
        evaluate: Callable[[Any], Mapping[str, float]] | None = None,
        every_steps: int = 0,
        prefix: str = "",
    ) -> None:
        self.run, self.evaluate, self.every_steps, self.prefix = run, evaluate, every_steps, prefix
        self.losses: list[tuple[int, float]] = []
        self.eval_seconds = 0.0
        """Time spent in held-out evaluations during training (not training throughput)."""

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs:
            return
        clean = {
            f"{self.prefix}{k}": v
            for k, v in logs.items()
            if isinstance(v, int | float) and k != "epoch"
        }
        if "loss" in logs:
            self.losses.append((state.global_step, float(logs["loss"])))
        if clean:
            self.run.log_metrics(state.global_step, clean)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if (
            self.evaluate is not None
            and self.every_steps
            and state.global_step % self.every_steps == 0
            and state.global_step < (state.max_steps or 0)
        ):
            model = kwargs["model"]
            was_training = model.training
            model.eval()
            start = time.perf_counter()
            metrics = self.evaluate(model)
            self.eval_seconds += time.perf_counter() - start
            if was_training:
                model.train()
            self.run.log_metrics(state.global_step, {f"eval/{k}": v for k, v in metrics.items()})
