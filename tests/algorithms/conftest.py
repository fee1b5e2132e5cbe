"""Fixtures for the training tests.

``weak_calculator_agent`` is the starting point of the online-RL tests (PPO, GRPO): a tiny
model (2 layers, 192 wide, 4 heads) fine-tuned on Calculator-v0 (difficulty 1) oracle
demonstrations until it answers a quarter of the validation tasks right
(``sft_calculator_agent``), so that it calls the calculator in the right format but answers only
part of the tasks right: the room RL must close. It is trained once per session (about 2
minutes on two idle cores) and saved as a Hugging Face model directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def weak_calculator_agent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved model directory: the weak SFT agent (``system_prompt=""``, greedy success on
    held-out Calculator-v0 difficulty-1 tasks well between 0 and 1)."""
    pytest.importorskip("trl")
    from llm_trainer.algorithms.experiment import sft_calculator_agent

    return sft_calculator_agent(tmp_path_factory.mktemp("weak") / "model")
