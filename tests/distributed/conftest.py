"""One real local Ray cluster for the whole session (starting one takes several seconds): this
process is its driver, and tests connect other processes to it by its address."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

#: The agents and functions the tests run in Ray workers read this to know where their
#: "kill me the first time" markers go (workers inherit the environment the cluster starts in).
KILL_DIR_VARIABLE = "LLM_TRAINER_TEST_KILL_DIR"


@pytest.fixture(scope="session")
def kill_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ray-kill-markers")


@pytest.fixture(scope="session")
def ray_cluster(kill_dir: Path) -> Iterator[str]:
    """A local Ray cluster of 2 CPUs (``ray.init()``, this process connected); its address."""
    ray = pytest.importorskip("ray", reason="the ray extra: pip install 'llm-trainer[ray]'")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KILL_DIR_VARIABLE, str(kill_dir))
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
        try:
            yield str(ray.get_runtime_context().gcs_address)
        finally:
            ray.shutdown()
