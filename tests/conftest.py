"""Shared fixtures: every registered env id, single-agent and multi-agent apart, for the
conformance suites; the ``gpu`` marker's skip on a machine without a CUDA GPU; and the weak
calculator agent.

Fixtures for the training tests.

``weak_calculator_agent`` is the starting point of the online-RL tests (PPO, GRPO, expert
iteration): ``configs/calculator_weak_sft.yaml``, the tiny model (2 layers, 192 wide, 4 heads)
fine-tuned on Calculator-v0 (difficulty 1) oracle demonstrations until it answers a quarter of
the validation tasks right, so that it calls the calculator in the right format but answers
only part of the tasks right: the room RL must close. It is trained once per session (about 2
minutes on two idle cores) through ``run_experiment``, like any run, and its ``final_model``
is a Hugging Face model directory. Set ``LLM_TRAINER_WEAK_AGENT`` to such a directory (a
``calculator_weak_sft`` run's ``final_model``) to reuse one across pytest sessions.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import llm_trainer
import llm_trainer.envs.registration

#: Single-agent (gymnasium) ids: what the single-agent suites iterate over.
ENV_IDS = sorted(llm_trainer.envs.registration.single_agent_ids())
#: Multi-agent (PettingZoo) ids, made with ``llm_trainer.make_multiagent``.
MULTIAGENT_ENV_IDS = sorted(llm_trainer.envs.registration.multi_agent_ids())

# CI gets more examples; a deadline would make timing on a loaded 2-core machine a failure cause.
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu``-marked tests where ``torch.cuda.is_available()`` is false (torch is
    imported only when such a test was collected)."""
    gpu = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu:
        return
    try:
        import torch
    except ImportError:
        reason = "needs a CUDA GPU (torch is not installed)"
    else:
        if torch.cuda.is_available():
            return
        reason = "needs a CUDA GPU (torch.cuda.is_available() is false)"
    for item in gpu:
        item.add_marker(pytest.mark.skip(reason=reason))


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="session")
def weak_calculator_agent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved model directory: the weak SFT agent (``system_prompt=""``, greedy success on
    held-out Calculator-v0 difficulty-1 tasks well between 0 and 1)."""
    pytest.importorskip("trl")
    reuse = os.environ.get("LLM_TRAINER_WEAK_AGENT")
    if reuse:
        return Path(reuse)
    from llm_trainer.algorithms.config import load_experiment
    from llm_trainer.algorithms.experiment import run_experiment

    out = tmp_path_factory.mktemp("weak")
    config = load_experiment(CONFIGS / "calculator_weak_sft.yaml", [f"output_dir={out}"])
    summary = run_experiment(config, log=lambda message: None)
    return Path(summary["model_dir"])
