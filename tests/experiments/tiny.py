"""The tiny experiment of the experiments tests: SFT of a 1-layer, 32-wide tiny model for 2
steps on 32 oracle demonstrations, measured on 8 held-out episodes (a few seconds once torch is
loaded)."""

from __future__ import annotations

from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "calculator_sft.yaml"

TINY = (
    "model.tiny.n_layers=1",
    "model.tiny.hidden_size=32",
    "model.tiny.n_heads=2",
    "model.tiny.intermediate_size=64",
    "data.episodes=32",
    "train.max_steps=2",
    "train.batch_size=4",
    "train.warmup_steps=0",
    "train.logging_steps=1",
    "train.save_steps=0",
    "eval.episodes=8",
    "eval.episodes_before=0",
    "eval.every_steps=0",
    "eval.max_new_tokens=8",
)


def set_flags(overrides: tuple[str, ...] | list[str]) -> list[str]:
    """``--set`` flags of the command line for ``overrides``."""
    return [x for item in overrides for x in ("--set", item)]
