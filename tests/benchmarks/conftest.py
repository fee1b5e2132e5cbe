"""Result files of the smoke suite, made once per test session (in-process, fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_trainer.benchmarks.runner import BenchConfig, run_bench

SMOKE = "tooluse-smoke-v0"
POLICIES = "python:llm_trainer.tests.benchmarks.policies"


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{name: result file}`` of oracle, half-oracle, random and a second random entry (the
    same agent under another name: a statistical tie by construction)."""
    out = tmp_path_factory.mktemp("smoke-results")
    specs = {
        "oracle": "oracle",
        "half-oracle": f"{POLICIES}:half_oracle",
        "random": "random",
        "random-again": "random",
    }
    files = {}
    for name, spec in specs.items():
        config = BenchConfig(SMOKE, spec, name=name, out=out / f"{name}.json", workers=1)
        files[name] = run_bench(config).path
    return files
