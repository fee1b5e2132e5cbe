"""Fixtures for the search tests: a small tiny model (2 layers, 64 wide), saved once per
session, whose random weights sample varied candidates quickly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from llm_trainer.agents.tinylm import TinyLMConfig, create_tiny_model

    config = TinyLMConfig(n_layers=2, hidden_size=64, n_heads=2, intermediate_size=128)
    return create_tiny_model(tmp_path_factory.mktemp("search") / "model", config, seed=0)


@pytest.fixture(scope="session")
def small_backend(small_model_dir: Path) -> Any:
    from llm_trainer.agents.backends import make_backend

    return make_backend(f"transformers:{small_model_dir}", {})
