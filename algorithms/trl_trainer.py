"""The base of the TRL-backed trainers (SFT, DPO, GRPO, the reward model): their shared state
and the one call into :func:`~llm_trainer.algorithms.hf.train_with_trl`.

Importing it is light (transformers and TRL are imported when training starts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llm_trainer.algorithms.base import TrainResult
from llm_trainer.algorithms.config import TrainConfig
from llm_trainer.core.rundir import RunDir


class TRLTrainer:
    """Shared state of a TRL-backed trainer.

    Args:
        model: The model (wrapped with LoRA adapters when ``config.lora.enabled`` and
            ``lora`` is true).
        tokenizer: Its tokenizer (with a chat template).
        config: Optimisation settings.
        run: The run directory (checkpoints, TensorBoard, ``metrics.jsonl``).
        seed: Seeds data order and new weights.
        system_prompt: Replaces the trajectories' system prompt (``None`` keeps it).
        evaluate: Called with the model every ``eval_every`` steps; its metrics are logged.
        eval_every: Steps between evaluations (0: never during training).
        callbacks: Extra ``transformers.TrainerCallback`` objects.
        lora: Whether to apply ``config.lora`` here (a subclass may wrap the model itself).
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
        lora: bool = True,
    ) -> None:
        from llm_trainer.algorithms.hf import RunLogCallback, apply_lora

        self.model = apply_lora(model, config.lora) if lora else model
        self.tokenizer, self.config, self.run = tokenizer, config, run
        self.seed, self.system_prompt = seed, system_prompt
        self.extra_callbacks = list(callbacks)
        self.callback = RunLogCallback(run, evaluate, eval_every)
        self.trainer: Any = None
        """The TRL trainer of the latest :meth:`_fit`."""

    def _fit(
        self,
        trainer_class: type[Any],
        config_class: type[Any],
        *,
        resume: bool,
        config_kwargs: Mapping[str, Any],
        before_train: Callable[[Any], None] | None = None,
        **trainer_kwargs: Any,
    ) -> TrainResult:
        """Train ``self.model`` with ``trainer_class`` (see ``train_with_trl``)."""
        from llm_trainer.algorithms.hf import train_with_trl

        self.trainer, result = train_with_trl(
            trainer_class,
            config_class,
            train=self.config,
            run=self.run,
            seed=self.seed,
            callback=self.callback,
            callbacks=self.extra_callbacks,
            resume=resume,
            config_kwargs=config_kwargs,
            before_train=before_train,
            model=self.model,
            processing_class=self.tokenizer,
            **trainer_kwargs,
        )
        self.model = self.trainer.model
        return result
