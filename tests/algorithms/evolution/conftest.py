"""A small tiny model (the embedded Llama, 2 layers, 64 wide, built from scratch) for the
evolution tests that play or vary genomes with a real LLM."""

from __future__ import annotations

from pathlib import Path

import pytest

SMALL_TINY = {"n_layers": 2, "hidden_size": 64, "n_heads": 4, "intermediate_size": 128}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from llm_trainer.agents.tinylm import TinyLMConfig, create_tiny_model

    path = tmp_path_factory.mktemp("evolution_tiny") / "model"
    return Path(create_tiny_model(path, TinyLMConfig(**SMALL_TINY), seed=1))
