"""The one scaffold of the TRL-backed trainers (SFT, DPO, GRPO, the reward model).

* :func:`train_with_trl`: builds the TRL trainer (with atomic checkpoints, the run's metrics and
  TensorBoard callbacks), resumes from the last checkpoint, trains with the process's RNGs and
  torch thread count restored afterwards, writes a final atomic checkpoint, and returns a
  :class:`~llm_trainer.algorithms.base.TrainResult` (steps, losses, seconds, tokens/s with
  held-out evaluation time left out).
* :func:`precision_kwargs`: bf16 only where the hardware has it (TRL configs default to
  ``bf16=True``, which fails on a CPU).
* :class:`AtomicCheckpoints`: a Trainer mixin that writes each ``checkpoint-N`` into a staging
  folder and renames it into place, so a run killed mid-save never leaves a half-written
  checkpoint for ``resume`` to pick up.
* :class:`RunLogCallback`: mirrors the Trainer's logs into the run's ``metrics.jsonl`` and
  runs the held-out evaluation every N steps.

Data-parallel (several processes, ``torchrun``/``accelerate launch``): TRL trains on every
process; the main process alone logs metrics, writes TensorBoard events, runs the held-out
evaluations during training and moves each checkpoint (written by all: the model and optimizer
by the main process, each process its RNG state) into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint

from llm_trainer.algorithms.base import TrainResult
from llm_trainer.algorithms.config import LoRAConfig, TrainConfig
from llm_trainer.algorithms.models import resolve_device
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.rundir import RunDir
from llm_trainer.core.seeding import preserved_global_rngs


def precision_kwargs(precision: str) -> dict[str, bool]:
    """``bf16``/``fp16`` flags for TRL configs, chosen from the hardware when ``auto``."""
    import torch

    cuda = torch.cuda.is_available()
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if precision in ("bf16", "fp16") and not cuda:
        # Mixed precision gives no speed-up on these CPUs and TRL refuses bf16 without a GPU.
        raise ConfigError(
            f"train.precision: {precision!r} needs a GPU and this machine has none; use 'auto' "
            "or 'fp32'"
        )
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_kwargs(train: TrainConfig, output_dir: str, seed: int) -> dict[str, Any]:
    """Arguments common to every TRL config we build (TensorBoard goes through
    :func:`tensorboard_callback`, so ``report_to`` is off)."""

    return {
        "output_dir": output_dir,
        "max_steps": train.max_steps,
        "per_device_train_batch_size": train.batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "learning_rate": train.learning_rate,
        "lr_scheduler_type": train.lr_scheduler,
        "lr_scheduler_kwargs": train.scheduler_kwargs(train.max_steps),
        "warmup_steps": train.warmup_steps,
        "weight_decay": train.weight_decay,
        "adam_beta2": train.adam_beta2,
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
        # train.device: TRL trains where this says (auto: the GPU when there is one)
        "use_cpu": resolve_device(train.device) == "cpu",
        "disable_tqdm": True,
        "include_num_input_tokens_seen": "non_padding",
        **precision_kwargs(train.precision),
    }


def lr_scheduler(train: TrainConfig, optimizer: Any, total_steps: int) -> Any:
    """``train``'s learning-rate schedule over ``total_steps`` scheduler steps, for trainers
    of our own (PPO, self-play); TRL trainers get it through :func:`training_kwargs`."""
    from transformers import get_scheduler

    return get_scheduler(
        train.lr_scheduler,
        optimizer,
        num_warmup_steps=train.warmup_steps,
        num_training_steps=total_steps,
        scheduler_specific_kwargs=train.scheduler_kwargs(total_steps),
    )


def tensorboard_callback(log_dir: str) -> TrainerCallback:
    """TensorBoard event files in ``log_dir`` (transformers 5 reads the directory from an
    environment variable otherwise; we keep the process environment untouched)."""
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations.integration_utils import TensorBoardCallback

    callback: TrainerCallback = TensorBoardCallback(tb_writer=SummaryWriter(log_dir=log_dir))
    return callback


def apply_lora(model: Any, lora: LoRAConfig, task_type: str = "CAUSAL_LM") -> Any:
    """Wrap ``model`` with peft LoRA adapters when ``lora.enabled`` (only the adapters train,
    and for ``SEQ_CLS`` the score head)."""
    if not lora.enabled:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type=task_type,
    )
    return get_peft_model(model, config)


class AtomicCheckpoints:
    """Trainer mixin: ``checkpoint-N`` appears whole or not at all.

    The base ``Trainer._save_checkpoint`` writes model, optimizer, scheduler, RNG and trainer
    state file by file into ``output_dir/checkpoint-N``. Here it writes them under a hidden
    staging folder, and the finished folder is renamed into place (an atomic ``rename`` on one
    filesystem). ``get_last_checkpoint`` only matches ``checkpoint-<digits>``, so a leftover
    staging folder from a killed run is ignored (and removed on the next save).

    With several processes (data-parallel) they all write into one staging folder, which the
    main process creates first and renames once every process has written its part.
    """

    args: TrainingArguments
    state: TrainerState
    accelerator: Any

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        output_dir = self.args.output_dir
        assert output_dir is not None
        name = f"checkpoint-{self.state.global_step}"
        several = self.args.world_size > 1
        main = self.args.process_index == 0
        if main:
            os.makedirs(output_dir, exist_ok=True)
            for stale in os.listdir(output_dir):
                if stale.startswith(".staging-"):
                    shutil.rmtree(os.path.join(output_dir, stale), ignore_errors=True)
        if several:  # one folder every process can name
            staging = os.path.join(output_dir, f".staging-{name}")
            if main:
                os.makedirs(staging)
            self.accelerator.wait_for_everyone()
        else:
            staging = tempfile.mkdtemp(dir=output_dir, prefix=".staging-")
        self.args.output_dir = staging
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
        finally:
            self.args.output_dir = output_dir
        if several:
            self.accelerator.wait_for_everyone()  # every process's part is written
        if main:
            final = os.path.join(output_dir, name)
            if os.path.exists(final):
                shutil.rmtree(final)
            os.replace(os.path.join(staging, name), final)
            shutil.rmtree(staging, ignore_errors=True)
            _rotate(output_dir, self.args.save_total_limit)
        if several:
            self.accelerator.wait_for_everyone()  # the checkpoint is in place for everyone


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
    """Mirror Trainer logs into ``metrics.jsonl``; evaluate every ``every_steps`` steps; show a
    progress bar (steps, loss) on stderr when it is a terminal (the Trainer's own printing of
    log dicts to stdout is removed by :func:`train_with_trl`: stdout is for results).

    Data-parallel, all of this happens in the main process only (the Trainer's logged loss is
    already the mean over the processes); the others wait for its evaluations at their next
    step."""

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
        self._bar: Any = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        import sys

        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        if not state.is_world_process_zero:
            return
        self._bar = tqdm(
            total=state.max_steps,
            initial=state.global_step,
            desc="training",
            unit="step",
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
        )

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs or not state.is_world_process_zero:
            return
        clean = {
            f"{self.prefix}{k}": v
            for k, v in logs.items()
            if isinstance(v, int | float) and k != "epoch"
        }
        if "loss" in logs:
            self.losses.append((state.global_step, float(logs["loss"])))
            if self._bar is not None:
                self._bar.set_postfix(loss=f"{float(logs['loss']):.4f}")
        if clean:
            self.run.log_metrics(state.global_step, clean)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._bar is not None:
            self._bar.update(state.global_step - self._bar.n)
        if (
            self.evaluate is not None
            and state.is_world_process_zero
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


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run with ``threads`` torch CPU threads (0: leave torch's setting) and restore the
    previous count afterwards, so a trainer never changes its caller's process."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_with_trl(
    trainer_class: type[Any],
    config_class: type[Any],
    *,
    train: TrainConfig,
    run: RunDir,
    seed: int,
    callback: RunLogCallback,
    callbacks: Sequence[Any] = (),
    resume: bool = False,
    config_kwargs: Mapping[str, Any] | None = None,
    before_train: Callable[[Any], None] | None = None,
    **trainer_kwargs: Any,
) -> tuple[Any, TrainResult]:
    """Train with a TRL trainer the way every llm-trainer algorithm does.

    Args:
        trainer_class: TRL's trainer (``trl.SFTTrainer``, ``DPOTrainer``, ``GRPOTrainer``...).
        config_class: Its config class; built from ``train`` (:func:`training_kwargs`), then
            ``config_kwargs`` (which win).
        train: Optimisation settings.
        run: The run directory (checkpoints, TensorBoard, ``metrics.jsonl``).
        seed: Seeds data order and new weights.
        callback: The run's log callback (its losses and evaluation time go into the result).
        callbacks: Extra ``transformers.TrainerCallback`` objects.
        resume: Continue from the last complete checkpoint.
        config_kwargs: The method's own config fields.
        before_train: Called with the built trainer before training (checks on its data).
        **trainer_kwargs: The trainer's arguments (``model``, ``train_dataset``,
            ``processing_class``, ``ref_model``, ``reward_funcs``...).

    Returns:
        The TRL trainer and what the training did.
    """

    class _Trainer(AtomicCheckpoints, trainer_class):  # type: ignore[misc]
        pass

    output_dir = str(run.checkpoints)
    args = config_class(**{**training_kwargs(train, output_dir, seed), **dict(config_kwargs or {})})
    checkpoint = last_checkpoint(output_dir) if resume else None
    with torch_threads(train.threads), preserved_global_rngs():
        # data-parallel: the main process alone writes TensorBoard events
        board = [tensorboard_callback(str(run.tensorboard))] if args.process_index == 0 else []
        trainer = _Trainer(
            args=args,
            callbacks=[callback, *board, *callbacks],
            **trainer_kwargs,
        )
        trainer.remove_callback(PrinterCallback)  # log dicts on stdout; RunLogCallback shows them
        if before_train is not None:
            before_train(trainer)
        start = time.perf_counter()
        output = trainer.train(resume_from_checkpoint=checkpoint)
        seconds = time.perf_counter() - start
        if train.save_steps:
            trainer._save_checkpoint(trainer.model, None)  # a final, atomic checkpoint
    tokens = float(trainer.state.num_input_tokens_seen)
    return trainer, TrainResult(
        steps=int(output.global_step),
        losses=tuple(callback.losses),
        seconds=seconds,
        tokens_per_second=per_second(tokens, seconds - callback.eval_seconds),
        resumed_from=checkpoint,
    )
