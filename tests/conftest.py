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

``ray_cluster`` is one real local Ray cluster for the whole session (starting one takes several
seconds), shared by ``tests/distributed`` and the tests that run other work on Ray (MCTS trees):
this process is its driver, and tests connect other processes to it by its address. Its workers
inherit ``LLM_TRAINER_TEST_KILL_DIR`` (``kill_dir``), where the work the Ray tests run in them
puts its "kill me the first time" markers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
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


#: Where the work the Ray tests run in Ray workers puts its kill markers (workers inherit the
#: environment the cluster starts in; ``tests/distributed/helpers.py`` reads it).
KILL_DIR_VARIABLE = "LLM_TRAINER_TEST_KILL_DIR"


@pytest.fixture(scope="session")
def kill_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ray-kill-markers")


@pytest.fixture(scope="session")
def ray_cluster(kill_dir: Path) -> Iterator[str]:
    """A local Ray cluster of 2 CPUs (``ray.init()``, this process connected); its address.
    Skips where the ``ray`` extra is not installed."""
    ray = pytest.importorskip("ray", reason="the ray extra: pip install 'llm-trainer[ray]'")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KILL_DIR_VARIABLE, str(kill_dir))
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
        try:
            yield str(ray.get_runtime_context().gcs_address)
        finally:
            ray.shutdown()
