"""Fixtures for the agent tests: the embedded tiny model, saved once per session.

``tiny_model_dir`` is the default model exactly as shipped (random weights, initialised with
std 0.02: its distributions are nearly flat). ``sharp_model_dir`` has the same architecture and
tokenizer with weights drawn with std 0.1, so that greedy decoding produces varied text that
sometimes ends at ``</answer>``, ``</tool_call>`` or the end-of-sequence token: a better probe
for parity and stop handling than a model that repeats one token.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def make_sharp_model(path: Path, *, std: float = 0.1, seed: int = 0) -> Path:
    """The tiny model with every weight matrix redrawn from N(0, std) (a private generator)."""
    import torch
    from transformers import AutoModelForCausalLM

    from llm_trainer.agents.tinylm import create_tiny_model

    create_tiny_model(path, seed=seed)
    model = AutoModelForCausalLM.from_pretrained(path)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from llm_trainer.agents.tinylm import create_tiny_model

    return create_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def sharp_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sharp_model(tmp_path_factory.mktemp("sharp") / "model")
