"""Loading the model an experiment starts from, on the right device.

:func:`load_model` builds the embedded tiny model from scratch (into the run directory) or
loads any local Hugging Face model directory, and puts it on ``train.device``: with
``auto``, the GPU when there is one, so every algorithm started from the command line trains
there (TRL's trainers and our PPO use the device the model is on).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_trainer.core.errors import ConfigError

if TYPE_CHECKING:
    from llm_trainer.algorithms.config import ModelConfig


def resolve_device(device: str) -> str:
    """``cuda`` or ``cpu`` for a ``train.device`` value (``auto``: the GPU when available).

    Raises:
        ConfigError: for ``cuda`` on a machine without a GPU.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' needs a GPU and this machine has none")
    return device


def load_model(
    config: ModelConfig, model_dir: str | Path, *, seed: int = 0, device: str = "cpu"
) -> tuple[Any, Any]:
    """The model and tokenizer of ``config`` (fp32 weights; trainers choose the compute
    precision), moved to ``device``.

    Args:
        config: The ``model`` section.
        model_dir: Where the tiny model is built (``config.path == "tiny"``) or loaded from.
        seed: Seeds the tiny model's initialisation (on a private generator).
        device: ``cpu`` or ``cuda``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm_trainer.agents.tinylm import create_tiny_model

    path = Path(model_dir)
    if config.path == "tiny":
        if not (path / "config.json").exists():
            create_tiny_model(path, config.tiny, seed=seed)
    elif not (path / "config.json").exists():
        raise ConfigError(
            f"model.path: {path} is not a Hugging Face model directory (no config.json); "
            "use 'tiny' for the embedded default model"
        )
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.to(device)  # type: ignore[arg-type]  # transformers types .to() for dtypes only
    return model, tokenizer
