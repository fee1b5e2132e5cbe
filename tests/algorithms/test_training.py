"""SFT / DPO trainers on tiny budgets: determinism, resume, atomic checkpoints, LoRA, learning.

The models here are far smaller than the default (1 layer, 32 wide) so that each run takes
seconds; the learning test at the end uses the real quickstart pipeline on a reduced budget.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

import torch
from transformers import TrainerCallback

from llm_trainer.agents.tinylm import TinyLMConfig, build_model, build_tokenizer
from llm_trainer.algorithms.config import LoRAConfig, TrainConfig
from llm_trainer.algorithms.dpo import DPOSettings, DPOTrainer, corrupted_pairs
from llm_trainer.algorithms.hf import AtomicCheckpoints, last_checkpoint
from llm_trainer.algorithms.rollout import oracle_trajectories
from llm_trainer.algorithms.sft import SFTTrainer
from llm_trainer.core.rundir import RunDir

SMALL = TinyLMConfig(
    n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64, max_position_embeddings=256
)


@pytest.fixture(scope="module")
def demos() -> list[Any]:
    return oracle_trajectories("LLMTrainer/Calculator-v0", range(64), difficulty=1)


class _StopAt(TrainerCallback):
    """Simulates an interruption: training saves and stops at ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step >= self.step:
            control.should_save = True
            control.should_training_stop = True
        return control


def _train(
    tmp: Path,
    demos: list[Any],
    *,
    steps: int = 6,
    save_steps: int = 0,
    stop_at: int | None = None,
    resume: bool = False,
    lora: bool = False,
    seed: int = 0,
) -> tuple[SFTTrainer, Any]:
    config = TrainConfig(
        max_steps=steps,
        batch_size=4,
        learning_rate=3e-3,
        warmup_steps=1,
        logging_steps=1,
        save_steps=save_steps,
        max_length=256,
        lora=LoRAConfig(enabled=lora, r=4, alpha=8, target_modules=("q_proj", "v_proj")),
    )
    tokenizer = build_tokenizer()
    model = build_model(SMALL, seed=seed, vocab_size=len(tokenizer))
    callbacks = [_StopAt(stop_at)] if stop_at is not None else []
    trainer = SFTTrainer(
        model, tokenizer, config, RunDir(tmp), seed=seed, system_prompt="", callbacks=callbacks
    )
    return trainer, trainer.train(demos, resume=resume)


def test_two_runs_with_one_seed_give_identical_losses(tmp_path: Path, demos: list[Any]) -> None:
    _, a = _train(tmp_path / "a", demos)
    _, b = _train(tmp_path / "b", demos)
    assert a.losses == b.losses
    assert len(a.losses) == 6
    _, c = _train(tmp_path / "c", demos, seed=1)
    assert c.losses != a.losses


def test_every_trainable_parameter_changes(tmp_path: Path, demos: list[Any]) -> None:
    tokenizer = build_tokenizer()
    before = {
        n: p.detach().clone()
        for n, p in build_model(SMALL, seed=0, vocab_size=len(tokenizer)).named_parameters()
    }
    trainer, _ = _train(tmp_path, demos)
    unchanged = [
        n
        for n, p in trainer.model.named_parameters()
        if p.requires_grad and torch.equal(p.detach(), before[n])
    ]
    assert unchanged == []


def test_lora_trains_only_adapter_weights(tmp_path: Path, demos: list[Any]) -> None:
    tokenizer = build_tokenizer()
    base = {
        n: p.detach().clone()
        for n, p in build_model(SMALL, seed=0, vocab_size=len(tokenizer)).named_parameters()
    }
    trainer, _ = _train(tmp_path, demos, lora=True)
    changed, frozen_changed = [], []
    for name, param in trainer.model.named_parameters():
        if "lora_" in name:
            assert param.requires_grad
            changed.append(name)
        else:
            assert not param.requires_grad, name
            original = name.replace("base_model.model.", "").replace(".base_layer", "")
            if not torch.equal(param.detach(), base[original]):
                frozen_changed.append(name)
    assert changed
    assert frozen_changed == []
    lora_b = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # adapters moved away from their zero init


def test_evaluations_during_training_are_timed_apart_from_training(
    tmp_path: Path, demos: list[Any]
) -> None:
    """The reported tokens/s leaves out held-out evaluations: the callback times them."""
    import time

    def slow_evaluation(model: Any) -> dict[str, float]:
        time.sleep(1.0)
        return {"success": 0.0}

    config = TrainConfig(max_steps=3, batch_size=4, logging_steps=1, max_length=256)
    tokenizer = build_tokenizer()
    model = build_model(SMALL, seed=0, vocab_size=len(tokenizer))
    trainer = SFTTrainer(
        model,
        tokenizer,
        config,
        RunDir(tmp_path),
        system_prompt="",
        evaluate=slow_evaluation,
        eval_every=1,
    )
    result = trainer.train(demos)
    evals = [p["step"] for p in RunDir(tmp_path).metrics() if "eval/success" in p]
    assert evals == [1, 2]  # not after the last step: the caller evaluates the final model
    assert 2.0 <= trainer.callback.eval_seconds < result.seconds
    assert result.tokens_per_second > 0


def test_resume_after_a_checkpoint_ends_with_the_same_losses(
    tmp_path: Path, demos: list[Any]
) -> None:
    _, full = _train(tmp_path / "full", demos, steps=6, save_steps=3)
    _train(tmp_path / "part", demos, steps=6, save_steps=3, stop_at=3)
    assert last_checkpoint(str(tmp_path / "part" / "checkpoints")) is not None
    _, resumed = _train(tmp_path / "part", demos, steps=6, save_steps=3, resume=True)
    assert resumed.resumed_from is not None
    assert resumed.resumed_from.endswith("checkpoint-3")
    full_tail = [loss for step, loss in full.losses if step > 3]
    resumed_tail = [loss for step, loss in resumed.losses if step > 3]
    assert resumed_tail == pytest.approx(full_tail, rel=1e-5)


def test_a_checkpoint_is_never_half_written(tmp_path: Path, demos: list[Any]) -> None:
    """A save that dies midway (here: the optimizer state fails to write) leaves the last
    complete checkpoint as the one to resume from, and no partial checkpoint-N."""
    import trl

    class _FailingSave(AtomicCheckpoints, trl.SFTTrainer):  # type: ignore[misc]
        def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
            if self.state.global_step >= 4:
                raise OSError("disk full")
            super()._save_optimizer_and_scheduler(output_dir)

    import datasets

    from llm_trainer.algorithms.hf import training_kwargs
    from llm_trainer.algorithms.sft import chat_rows

    config = TrainConfig(max_steps=4, batch_size=4, warmup_steps=1, save_steps=2, max_length=256)
    tokenizer = build_tokenizer()
    out = str(tmp_path / "ckpt")
    args = trl.SFTConfig(
        **training_kwargs(config, out, 0), assistant_only_loss=True, max_length=256
    )
    trainer = _FailingSave(
        model=build_model(SMALL, vocab_size=len(tokenizer)),
        args=args,
        train_dataset=datasets.Dataset.from_list(chat_rows(demos, "")),
        processing_class=tokenizer,
    )
    with pytest.raises(OSError, match="disk full"):
        trainer.train()
    names = sorted(os.listdir(out))
    assert "checkpoint-2" in names
    assert "checkpoint-4" not in names
    assert last_checkpoint(out) == os.path.join(out, "checkpoint-2")
    assert (Path(out) / "checkpoint-2" / "optimizer.pt").exists()


def test_dpo_raises_the_chosen_over_rejected_margin(tmp_path: Path, demos: list[Any]) -> None:
    pairs = corrupted_pairs(demos, seed=0, system_prompt="")
    assert len(pairs) >= 32
    assert all(p.chosen != p.rejected for p in pairs)
    tokenizer = build_tokenizer()
    model = build_model(SMALL, seed=0, vocab_size=len(tokenizer))
    config = TrainConfig(
        max_steps=20,
        batch_size=8,
        learning_rate=1e-2,
        warmup_steps=1,
        logging_steps=1,
        max_length=256,
    )
    dpo = DPOTrainer(model, tokenizer, config, DPOSettings(beta=0.5), RunDir(tmp_path), seed=0)
    dpo.train(pairs)
    history = [h for h in dpo.trainer.state.log_history if "rewards/margins" in h]
    # The policy starts equal to the reference: every margin starts at 0.
    late = history[-3:]
    late_margin = sum(h["rewards/margins"] for h in late) / len(late)
    late_accuracy = sum(h["rewards/accuracies"] for h in late) / len(late)
    assert late_margin > 0.1
    assert late_margin > history[0]["rewards/margins"] + 0.1
    assert late_accuracy > 0.6
