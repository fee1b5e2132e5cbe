"""Shared fixtures: every registered env id, single-agent and multi-agent apart, for the
conformance suites; and the ``gpu`` marker's skip on a machine without a CUDA GPU."""

from __future__ import annotations

import os

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
